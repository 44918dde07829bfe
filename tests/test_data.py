import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from prunekd.data.audio import AudioError, load_clip
from prunekd.data.manifest import MetadataError, audioset_manifest, csv_target_manifest, read_segments, tau_manifest


def test_demo_data_is_in_the_real_formats(tiny_data):
    root = tiny_data / "audioset"
    head = (root / "eval_segments.csv").read_text().splitlines()
    assert all(h.startswith("#") for h in head[:3])
    assert head[2] == "# YTID, start_seconds, end_seconds, positive_labels"
    assert head[3].count(", ") >= 3 and head[3].endswith('"')
    assert (root / "class_labels_indices.csv").read_text().splitlines()[0] == "index,mid,display_name"
    seg = read_segments(root / "eval_segments.csv")
    assert len(seg) == 20 and (seg["end"] - seg["start"] == 10).all()
    tau = tiny_data / "tau"
    meta = pd.read_csv(tau / "meta.csv", sep="\t")
    assert list(meta.columns) == ["filename", "scene_label", "identifier", "source_label"]
    info = sf.info(str(tau / meta["filename"][0]))
    assert info.samplerate == 44100 and info.frames == 44100 and info.channels == 1
    assert meta["filename"][0].endswith(f"-{meta['source_label'][0]}.wav")
    test = set(pd.read_csv(tau / "test.csv", sep="\t")["filename"])
    train_dev = set(meta[~meta["filename"].isin(test)]["source_label"])
    assert train_dev <= {"a", "b", "c", "s1", "s2", "s3"}
    splits = [set(pd.read_csv(tau / f"split{p}.csv", sep="\t")["filename"]) for p in (5, 10, 25, 50, 100)]
    assert all(a <= b for a, b in zip(splits, splits[1:])) and not (splits[-1] & test)


def test_demo_data_is_deterministic(tmp_path, tiny_data):
    from prunekd.demo.worlds import make_demo_data

    cfg = {
        "seed": 1,
        "audioset_clips": {"eval": 20, "balanced_train": 10, "unbalanced_train": 30},
        "audioset_sample_rate": 32000,
        "audioset_clip_seconds": 1.0,
        "scene_share": 0.3,
        "tau_train_clips": 40,
        "tau_test_clips": 30,
    }
    make_demo_data(tmp_path / "a", tmp_path / "t", cfg)
    a = sf.read(str(tmp_path / "t" / pd.read_csv(tmp_path / "t/meta.csv", sep="\t")["filename"][3]))[0]
    b = sf.read(str(tiny_data / "tau" / pd.read_csv(tiny_data / "tau/meta.csv", sep="\t")["filename"][3]))[0]
    assert np.array_equal(a, b)


def test_audioset_manifest_rejects_missing_files_and_goes_on(tmp_path, tiny_data):
    root = tmp_path / "as"
    shutil.copytree(tiny_data / "audioset", root)
    victim = sorted((root / "audio" / "eval").iterdir())[0]
    victim.unlink()
    man, rej = audioset_manifest(root, ["eval", "balanced_train", "unbalanced_train"])
    assert len(man) == 60 and list(rej["id"]) == [victim.stem] and list(rej["reason"]) == ["missing"]
    assert (man["status"] == "ok").sum() == 59
    assert man["labels"].str.len().gt(0).all()


def test_unknown_label_and_duplicate_ids_name_file_and_line(tmp_path, tiny_data):
    root = tmp_path / "as"
    shutil.copytree(tiny_data / "audioset", root)
    f = root / "balanced_train_segments.csv"
    lines = f.read_text().splitlines()
    lines[5] = lines[5].rsplit('"', 2)[0] + '"/m/nonexistent"'
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(MetadataError, match=r"balanced_train_segments.csv line 6: unknown label id '/m/nonexistent'"):
        audioset_manifest(root, ["eval", "balanced_train"])
    lines = (tiny_data / "audioset/balanced_train_segments.csv").read_text().splitlines()
    lines.append(lines[4])
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(MetadataError, match=r"line \d+: duplicate YTID"):
        audioset_manifest(root, ["eval", "balanced_train"])
    lines[4] = lines[4].split(",")[0]
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(MetadataError, match=r"balanced_train_segments.csv line 5: expected 4 fields"):
        read_segments(f)


def test_tau_split_naming_absent_clip_is_an_error(tmp_path, tiny_data):
    root = tmp_path / "tau"
    shutil.copytree(tiny_data / "tau", root)
    man, rej = tau_manifest(root)
    assert man["split100"].sum() == 40 and man["test"].sum() == 30 and rej.empty
    with open(root / "split25.csv", "a") as fh:
        fh.write("audio/ghost-paris-1-2-3-a.wav\tbus\n")
    with pytest.raises(MetadataError, match=r"split25.csv line \d+: audio/ghost-paris-1-2-3-a.wav is not in meta.csv"):
        tau_manifest(root)


def test_audio_is_downmixed_resampled_and_padded(tmp_path):
    t = np.arange(22050) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], 1) * 0.5
    sf.write(str(tmp_path / "s.flac"), stereo, 44100)
    x = load_clip(tmp_path / "s.flac", 32000, 32000)
    assert x.shape == (32000,) and x.dtype == np.float32
    assert np.abs(x[:15000]).max() == pytest.approx(0.5, abs=0.02) and np.all(x[16100:] == 0)


@pytest.mark.parametrize(
    "kind,reason",
    [
        ("missing", "missing"),
        ("empty", "empty"),
        ("corrupt", "exists but unreadable"),
        ("nan", "non-finite samples"),
        ("silent", "silent"),
    ],
)
def test_bad_clips_raise_a_named_reason(tmp_path, kind, reason):
    p = tmp_path / f"{kind}.wav"
    if kind == "empty":
        sf.write(str(p), np.zeros(0), 32000)
    elif kind == "corrupt":
        p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 3)
    elif kind == "nan":
        sf.write(str(p), np.array([0.1, np.nan, 0.2] * 100), 32000, subtype="FLOAT")
    elif kind == "silent":
        sf.write(str(p), np.zeros(3200), 32000)
    with pytest.raises(AudioError) as e:
        load_clip(p, 32000, 32000)
    assert e.value.reason == reason and str(p) in str(e.value)


def _csv_target(tmp_path, rows, header="filename,label,device,split"):
    for name in {r.split(",")[0] for r in rows}:
        sf.write(str(tmp_path / name), np.zeros(800, np.float32) + 0.1, 8000)
    f = tmp_path / "t.csv"
    f.write_text("\n".join([header, *rows]) + "\n")
    return f


def test_csv_target_manifest_has_the_target_layout(tmp_path):
    f = _csv_target(tmp_path, ["a.wav,dog,p1,train", "b.wav,cat,p2,train small", "c.wav,dog,p1,test"])
    (tmp_path / "b.wav").unlink()
    man, rej = csv_target_manifest(f, tmp_path, ["train", "small"])
    assert list(man["class_label"]) == ["dog", "cat", "dog"] and list(man["label"]) == [1, 0, 1]
    assert list(man["splittrain"]) == [True, True, False] and list(man["splitsmall"]) == [False, True, False]
    assert list(man["test"]) == [False, False, True] and list(man["device"]) == ["p1", "p2", "p1"]
    assert list(man["status"]) == ["ok", "missing", "ok"] and list(rej["id"]) == ["b.wav"]


@pytest.mark.parametrize(
    "gone,audio_root,message",
    [
        ((), "wrong", "mine: no usable clip: all 4 clips rejected (first: a.wav, missing: {root}/wrong/a.wav)"),
        (("a.wav", "b.wav", "c.wav"), ".", "mine: split train has no usable clip: all 3 clips rejected (first: a.wav"),
        (("d.wav",), ".", "mine: test split test has no usable clip: all 1 clips rejected (first: d.wav"),
        (("b.wav",), ".", "mine: class cat has no usable clip: all 1 clips rejected (first: b.wav"),
    ],
)
def test_a_target_left_without_usable_clips_stops_at_its_manifest_naming_the_key(tmp_path, gone, audio_root, message):
    """A CSV target whose audio_root is wrong, or a split or class whose every clip is missing: one line, and no
    manifest for the steps after it to queue GPU jobs on."""
    import subprocess
    import sys

    f = _csv_target(tmp_path, ["a.wav,dog,p1,train", "b.wav,cat,p2,train", "c.wav,dog,p1,train", "d.wav,dog,p1,test"])
    for name in gone:
        (tmp_path / name).unlink()
    settings = {"adapter": "csv", "csv": str(f), "audio_root": str(tmp_path / audio_root), "splits": ["train"]}
    settings |= {"test_split": "test", "bad_audio": "skip"}
    out = tmp_path / "manifests" / "mine.tsv"
    cmd = ["manifest", "--out", str(out), "--rejected", str(tmp_path / "r.tsv"), "--settings", json.dumps(settings)]
    p = subprocess.run([str(Path(sys.executable).parent / "prunekd"), *cmd], capture_output=True, text=True)
    assert p.returncode != 0 and message.format(root=tmp_path) in p.stderr, p.stderr
    assert "check targets.mine.audio_root" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not out.exists()


def test_a_csv_targets_city_column_is_kept_for_the_per_city_accuracy(tmp_path):
    f = _csv_target(
        tmp_path, ["a.wav,dog,p1,train,lyon", "b.wav,cat,p2,test,porto"], "filename,label,device,split,city"
    )
    man, _ = csv_target_manifest(f, tmp_path, ["train"])
    assert list(man["city"]) == ["lyon", "porto"]


@pytest.mark.parametrize(
    "rows,header,message",
    [
        (["a.wav,dog,train"], "filename,class,split", "missing column(s) ['label']"),
        (["a.wav,dog,train", "a.wav,cat,test"], "filename,label,split", "line 3: duplicate filename a.wav"),
        (["a.wav,,train", "b.wav,cat,test"], "filename,label,split", "line 2: empty label"),
        (
            ["a.wav,dog,train test", "b.wav,cat,test"],
            "filename,label,split",
            "line 2: a.wav is in a training split and",
        ),
        (["a.wav,dog,other", "b.wav,cat,test"], "filename,label,split", "no clip is in split 'train'"),
    ],
)
def test_csv_target_errors_name_file_and_line(tmp_path, rows, header, message):
    f = _csv_target(tmp_path, rows, header)
    with pytest.raises(MetadataError, match=None) as e:
        csv_target_manifest(f, tmp_path, ["train"])
    assert str(f) in str(e.value) and message in str(e.value)


def test_an_audioset_subset_without_usable_clips_names_the_audio_folder_key():
    from prunekd.data.manifest import unusable

    man = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "subset": ["eval", "balanced_train", "balanced_train"],
            "path": ["/as/audio/a.flac", "", ""],
            "status": ["ok", "missing", "missing"],
        }
    )
    s = {"adapter": "audioset", "bad_audio": "skip"}
    assert unusable(man, s, "audioset") == (
        "audioset: subset balanced_train has no usable clip: all 2 clips rejected (first: b, missing); "
        "check paths.audioset_audio (default: <paths.audioset>/audio)"
    )
    assert unusable(man.iloc[:1], s, "audioset") is None
