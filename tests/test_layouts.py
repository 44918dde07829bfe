"""Data as PaSST, EfficientAT and DCASE-baseline users hold it: AudioSet in *_mp3.hdf files, the TAU split files
in split_setup/ (or any split_dir), and the challenge evaluation set (no labels) for a submission."""

import io
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import zarr
from conftest import snakemake

from prunekd.dag.layouts import TAU_SPLIT_FILES, audioset_layout
from prunekd.data.audio import AudioError, load_clip
from prunekd.data.audioset_hdf5 import audioset_hdf5_manifest
from prunekd.data.manifest import MetadataError, audioset_manifest, tau_manifest

SUBSETS = ["eval", "balanced_train", "unbalanced_train"]
HEADER = [
    "# Segments csv created Sun Mar  5 10:54:31 2017",
    "# num_ytids=%d, num_segs=%d, num_unique_labels=527, num_positive_labels=%d",
    "# YTID, start_seconds, end_seconds, positive_labels",
]
CORRUPT = b"ID3\x04\x00" + b"not an mp3 frame " * 40


def mp3_bytes(x, sr=32000) -> bytes:
    b = io.BytesIO()
    sf.write(b, x, sr, format="MP3")
    return b.getvalue()


def write_both_layouts(src_root, src_manifest, files_root, hdf5_root, per_subset, corrupt_id=None, base="."):
    """The same clips (MP3 bytes, 32 kHz mono) twice: segment lists + one file per clip, and PaSST's HDF5 files.

    src: an AudioSet-format pool (class_labels_indices.csv) and its manifest (id, subset, path relative to
    `base`, labels).
    """
    classes = pd.read_csv(Path(src_root) / "class_labels_indices.csv")
    man = pd.read_csv(src_manifest, sep="\t", dtype={"labels": str}, keep_default_na=False)
    man = man[man["status"] == "ok"]
    (files_root / "audio").mkdir(parents=True)
    hdf5_root.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(src_root) / "class_labels_indices.csv", files_root)
    for subset, n in per_subset.items():
        lines, names, blobs, targets = list(HEADER), [], [], []
        for r in man[man["subset"] == subset].itertuples():
            if len(names) == n:
                break
            try:
                data = CORRUPT if r.id == corrupt_id else mp3_bytes(sf.read(Path(base) / r.path, dtype="float32")[0])
            except sf.LibsndfileError:  # the pool's damaged clips
                continue
            k, idx = len(names), [int(t) for t in r.labels.split()]
            (files_root / "audio" / f"Y{r.id}.mp3").write_bytes(data)
            mids = ",".join(classes["mid"][i] for i in idx)
            lines.append(f'{r.id}, 0.000, 10.000, "{mids}"')
            # PaSST names the unbalanced clips after the part folder they came from: NN/Y<YTID>.mp3
            names.append((f"{k % 3:02d}/" if subset == "unbalanced_train" else "") + f"Y{r.id}.mp3")
            blobs.append(np.frombuffer(data, np.uint8))
            hot = np.zeros(527, bool)
            hot[idx] = True
            targets.append(np.packbits(hot))
        (files_root / f"{subset}_segments.csv").write_text("\n".join(lines) + "\n")
        with h5py.File(hdf5_root / f"{subset}_segments_mp3.hdf", "w") as f:
            f.create_dataset("audio_name", data=np.array(names, dtype="S20"))
            mp3 = f.create_dataset("mp3", shape=(len(blobs),), dtype=h5py.vlen_dtype(np.dtype("uint8")))
            for i, b in enumerate(blobs):
                mp3[i] = b
            f.create_dataset("target", data=np.stack(targets))


def test_hdf5_manifest_and_clips_equal_the_single_files(tiny_data, tmp_path):
    src = tiny_data / "audioset"
    seg, _ = audioset_manifest(src, SUBSETS)
    seg_path = tmp_path / "src.tsv"
    seg.to_csv(seg_path, sep="\t", index=False)
    victim = seg[seg["subset"] == "unbalanced_train"]["id"].iloc[1]
    write_both_layouts(
        src,
        seg_path,
        tmp_path / "files",
        tmp_path / "hdf5",
        {"eval": 5, "balanced_train": 4, "unbalanced_train": 6},
        corrupt_id=victim,
    )
    a, rej_a = audioset_manifest(tmp_path / "files", SUBSETS)
    b, rej_b = audioset_hdf5_manifest(tmp_path / "hdf5", SUBSETS)
    assert len(a) == 15 and rej_a.empty and rej_b.empty
    cols = ["row", "id", "subset", "labels", "status"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert b["path"][0] == f"{tmp_path / 'hdf5' / 'eval_segments_mp3.hdf'}::0"
    for pa, pb, i in zip(a["path"], b["path"], a["id"]):
        if i == victim:  # bytes that do not decode: the same reason either way, so the clip is skipped and listed
            for p in (pa, pb):
                with pytest.raises(AudioError) as e:
                    load_clip(p, 32000, 32000)
                assert e.value.reason == "exists but unreadable"
        else:
            np.testing.assert_array_equal(load_clip(pa, 32000, 32000), load_clip(pb, 32000, 32000))
    assert audioset_layout(tmp_path / "hdf5", SUBSETS) == "hdf5"
    assert audioset_layout(tmp_path / "files", SUBSETS) == "segments"
    shutil.copy(tmp_path / "hdf5/eval_segments_mp3.hdf", tmp_path / "files")
    with pytest.raises(ValueError, match="both segment lists and .*set paths.audioset_layout"):
        audioset_layout(tmp_path / "files", SUBSETS)


def test_bad_hdf5_files_are_named(tmp_path):
    with h5py.File(tmp_path / "eval_segments_mp3.hdf", "w") as f:
        f.create_dataset("audio_name", data=np.array([b"Yabc.mp3"]))
        f.create_dataset("target", data=np.zeros((1, 527), np.uint8))  # unpacked: wrong
        f.create_dataset("mp3", shape=(1,), dtype=h5py.vlen_dtype(np.dtype("uint8")))
    with pytest.raises(MetadataError, match=r"eval_segments_mp3.hdf: `target` must be \[n, 66\] uint8"):
        audioset_hdf5_manifest(tmp_path, ["eval"])
    with pytest.raises(MetadataError, match="balanced_train_segments_mp3.hdf: no such file"):
        audioset_hdf5_manifest(tmp_path, ["balanced_train"])


def test_tau_split_files_from_split_setup_or_split_dir(tiny_data, tmp_path):
    beside = tau_manifest(tiny_data / "tau")[0]
    root = tmp_path / "tau"
    shutil.copytree(tiny_data / "tau", root)
    (root / "split_setup").mkdir()
    for f in TAU_SPLIT_FILES:  # as the DCASE2024 baseline fetches them
        (root / f).rename(root / "split_setup" / f)
    fixed = ["path"]
    got = tau_manifest(root)[0]
    pd.testing.assert_frame_equal(got.drop(columns=fixed), beside.drop(columns=fixed))
    elsewhere = tmp_path / "splits"
    shutil.move(root / "split_setup", elsewhere)
    got = tau_manifest(root, split_dir=elsewhere)[0]
    pd.testing.assert_frame_equal(got.drop(columns=fixed), beside.drop(columns=fixed))
    with pytest.raises(MetadataError, match=r"tau/split5.csv: no such split file \(targets.<name>.split_dir"):
        tau_manifest(root)


def _tree(root):
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(Path(root).rglob("*"))}


def test_hdf5_audioset_split_setup_and_submission_through_the_dag(demo_run, tmp_path):
    """One small DAG on AudioSet in PaSST's HDF5 files, TAU with split_setup/ and the evaluation set; the same
    AudioSet clips as single MP3 files with segment lists then give the same manifest, logits and pruned set."""
    wd = tmp_path / "run"
    data = wd / "data"
    src = demo_run / "data/demo/audioset"
    victim = (
        pd.read_csv(demo_run / "results/manifests/audioset.tsv", sep="\t")
        .query("subset == 'unbalanced_train' and status == 'ok'")["id"]
        .iloc[2]
    )
    write_both_layouts(
        src,
        demo_run / "results/manifests/audioset.tsv",
        data / "as_files",
        data / "as_hdf5",
        {"eval": 30, "balanced_train": 10, "unbalanced_train": 30},
        corrupt_id=victim,
        base=demo_run,
    )
    tau = data / "tau"
    shutil.copytree(demo_run / "data/demo/tau", tau)
    (tau / "split_setup").mkdir()
    for f in TAU_SPLIT_FILES:
        (tau / f).rename(tau / "split_setup" / f)
    ev = data / "eval"
    (ev / "audio").mkdir(parents=True)
    test_clips = pd.read_csv(tau / "split_setup/test.csv", sep="\t")["filename"][:5]
    for i, f in enumerate(test_clips):
        shutil.copy(tau / f, ev / f"audio/{i}.wav")
    (ev / "audio/5.wav").write_bytes(b"RIFF\x00\x00")  # truncated: predicted from silence (below) and listed
    (ev / "meta.csv").write_text("filename\n" + "".join(f"audio/{i}.wav\n" for i in range(6)))
    before = _tree(data)
    weights = demo_run / "results/demo/weights"
    common = (
        f"paths:\n  teacher_weights: {weights}\n  audioset_layout: auto\n"
        "demo:\n  enabled: false\n"
        "targets:\n  tau:\n    root: data/tau\n    splits: [100]\n    sweep_split: null\n"
        "    evaluation: {root: data/eval, models: per_seed}\n"
        "grid:\n  targets: [tau]\ncontrols:\n  random: false\n  full: false\n"
        "distillation:\n  audio_input: decode\n  iterations: 2\n"
        "training:\n  num_workers: 0\n"
        "submission:\n  undecodable: silence\n"
    )
    cfg_h = tmp_path / "hdf5.yaml"
    cfg_h.write_text(common.replace("paths:\n", "paths:\n  audioset: data/as_hdf5\n"))
    kept = "results/prune/tau/all/split100/thr0.3/kept.tsv"
    sub = "results/submission/tau/split100/seed0"
    snakemake(wd, kept, f"{sub}/output.csv", extra_config=[str(cfg_h)])
    assert _tree(data) == before  # nothing written into the data folders
    man_h = pd.read_csv(wd / "results/manifests/audioset.tsv", sep="\t", keep_default_na=False)
    assert man_h["path"].str.contains(r"_mp3\.hdf::\d+$").all() and len(man_h) == 70
    rej = pd.read_csv(wd / "results/logits/audioset.rejected.tsv", sep="\t")
    assert rej.set_index("id")["reason"][victim] == "exists but unreadable"
    # The submission: a row for every evaluation clip, in the challenge's format, with the model's complexity.
    out = pd.read_csv(wd / f"{sub}/output.csv", sep="\t")
    classes = [
        "airport",
        "bus",
        "metro",
        "metro_station",
        "park",
        "public_square",
        "shopping_mall",
        "street_pedestrian",
        "street_traffic",
        "tram",
    ]
    assert list(out.columns) == ["filename", "scene_label", *classes]
    assert list(out["filename"]) == [f"{i}.wav" for i in range(6)]
    assert (out["scene_label"] == out[classes].idxmax(axis=1)).all()
    np.testing.assert_allclose(out[classes].sum(axis=1), 1.0, atol=1e-3)
    info = json.loads((wd / f"{sub}/info.json").read_text())
    assert (info["Params"], info["MACs"]) == (61148, 29419156) and info["within_limits"]
    assert info["model"].endswith("finetune/tau/all/split100/pruned/thr0.3/seed0/model.pt")
    assert info["from_silence"] == [{"filename": "audio/5.wav", "reason": "exists but unreadable"}]
    assert info["precision"] == "float16" and info["undecodable"] == "silence"
    dev = json.loads((wd / "results/eval/finetune/tau/all/split100/pruned/thr0.3/seed0/metrics.json").read_text())
    assert info["test"]["macro_accuracy"] == dev["macro_accuracy"]
    assert dev["complexity"]["macs"] == info["MACs"]

    # The same clips as single files: only the AudioSet side reruns, and gives the same results.
    saved = tmp_path / "hdf5_results"
    shutil.copytree(wd / "results", saved)
    cfg_f = tmp_path / "files.yaml"
    cfg_f.write_text(common.replace("paths:\n", "paths:\n  audioset: data/as_files\n"))
    snakemake(wd, kept, extra_config=[str(cfg_f)])
    man_f = pd.read_csv(wd / "results/manifests/audioset.tsv", sep="\t", keep_default_na=False)
    cols = ["row", "id", "subset", "labels", "status"]
    pd.testing.assert_frame_equal(man_f[cols], man_h[cols])
    assert man_f["path"].str.endswith(".mp3").all()
    a = zarr.open_group(str(saved / "logits/audioset.zarr"), mode="r")
    b = zarr.open_group(str(wd / "results/logits/audioset.zarr"), mode="r")
    for k in ("row", "id_utf8", "released", "member_logits", "ensemble", "labels"):
        np.testing.assert_array_equal(a[k][:], b[k][:], err_msg=k)
    pd.testing.assert_frame_equal(
        pd.read_csv(saved / kept.removeprefix("results/"), sep="\t"), pd.read_csv(wd / kept, sep="\t")
    )
    assert len(pd.read_csv(wd / kept, sep="\t")) > 0
    pd.testing.assert_frame_equal(
        pd.read_csv(saved / "logits/audioset.rejected.tsv", sep="\t"),
        pd.read_csv(wd / "results/logits/audioset.rejected.tsv", sep="\t"),
    )


def test_evaluation_meta_errors_name_the_file_and_line(tmp_path):
    from prunekd.student.submission import read_eval_meta

    with pytest.raises(MetadataError, match=r"meta.csv: no such file \(targets.<name>.evaluation.root\)"):
        read_eval_meta(tmp_path)
    (tmp_path / "meta.csv").write_text("file,name\naudio/0.wav,x\n")
    with pytest.raises(MetadataError, match=r"meta.csv: no `filename` column.*is it tab-separated"):
        read_eval_meta(tmp_path)
    (tmp_path / "meta.csv").write_text("filename\naudio/0.wav\naudio/1.wav\naudio/0.wav\n")
    with pytest.raises(MetadataError, match=r"meta.csv line 4: duplicate filename audio/0.wav"):
        read_eval_meta(tmp_path)
    (tmp_path / "meta.csv").write_text("filename\naudio/0.wav\naudio/1.wav\n")
    assert list(read_eval_meta(tmp_path)["path"]) == [str(tmp_path / "audio/0.wav"), str(tmp_path / "audio/1.wav")]
