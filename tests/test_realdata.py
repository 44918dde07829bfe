"""Real data, real mistakes (issue 17): a user's folders are never overwritten, a bad line or clip never stops a
skip-mode run, and every problem is reported for what it is. Each test writes its data in the real layout."""

import json
import subprocess

import numpy as np
import pytest
import soundfile as sf
from conftest import BIN, REPO, TINY_CONFIGS

from prunekd.data.audio import AudioError, load_clip
from prunekd.data.manifest import MetadataError, audioset_manifest
from prunekd.results.summarise import write_summary

CLASSES = 'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/0dgw9r,"Human sounds"\n2,/m/07qfr4h,"Engine"\n'
HEADER = [
    "# Segments csv created Sun Mar  5 10:54:31 2017",
    "# num_ytids=3, num_segs=3, num_unique_labels=3, num_positive_labels=4",
    "# YTID, start_seconds, end_seconds, positive_labels",
]


def _audioset(root, rows, eval_rows=()):
    """AudioSet layout: class_labels_indices.csv and segment lists (3 '#' lines, ', ' separators, quoted labels)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "class_labels_indices.csv").write_text(CLASSES)
    for name, part in (("eval", eval_rows), ("balanced_train", rows), ("unbalanced_train", ())):
        lines = HEADER + [f'{y}, {s:.3f}, {s + 10:.3f}, "{labels}"' for y, s, labels in part]
        (root / f"{name}_segments.csv").write_text("\n".join(lines) + "\n")
    return root


def _tone(seconds, sr, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.stack([x] * channels, 1) if channels > 1 else x


def test_unknown_label_id_is_dropped_and_listed_in_skip_mode_and_stops_in_fail_mode(tmp_path):
    root = _audioset(
        tmp_path / "as",
        [
            ("--PJHxphWEs", 30.0, "/m/09x0r,/m/zzzzzz"),
            ("-0RWZT-miFs", 0.0, "/m/zzzzzz"),
            ("-1nilez17Dg", 20.0, "/m/07qfr4h"),
        ],
    )
    audio = root / "audio"
    audio.mkdir()
    for y in ("--PJHxphWEs", "-0RWZT-miFs", "-1nilez17Dg"):
        sf.write(str(audio / f"{y}.flac"), _tone(1, 32000), 32000)
    with pytest.raises(MetadataError, match=r"balanced_train_segments.csv line 4: unknown label id '/m/zzzzzz'"):
        audioset_manifest(root, ["eval", "balanced_train"], bad_labels="fail")
    man, rej = audioset_manifest(root, ["eval", "balanced_train"], bad_labels="skip")
    assert list(man["labels"]) == ["0", "", "2"]  # the unknown id dropped, the others kept
    assert list(man["status"]) == ["ok", "no known label", "ok"]  # a clip with no label left is dropped
    assert dict(zip(rej["id"], rej["reason"])) == {
        "--PJHxphWEs": "unknown label id /m/zzzzzz (label dropped, clip kept)",
        "-0RWZT-miFs": "unknown label id /m/zzzzzz (clip dropped: no label left)",
    }
    assert list(rej["line"]) == [4, 5]


def test_every_format_the_decoder_reads_is_found_and_an_unreadable_file_is_said_to_exist(tmp_path):
    ids = ["a-flac32k01", "b-mp3stereo", "c-wav48kst", "d-oggvorbis", "e-opus48k01", "f-m4a-fmt01", "g-notaudio"]
    root = _audioset(tmp_path / "as", [(y, 10.0, "/m/09x0r") for y in ids])
    audio = root / "audio" / "sub"
    audio.mkdir(parents=True)
    sf.write(str(audio / f"{ids[0]}.flac"), _tone(1, 32000), 32000)
    sf.write(str(audio / f"{ids[1]}.mp3"), _tone(1, 44100, 2), 44100, format="MP3")
    sf.write(str(audio / f"{ids[2]}.wav"), _tone(1, 48000, 2), 48000)
    sf.write(str(audio / f"{ids[3]}.ogg"), _tone(1, 44100), 44100, format="OGG", subtype="VORBIS")
    sf.write(str(audio / f"Y{ids[4]}.opus"), _tone(1, 48000), 48000, format="OGG", subtype="OPUS")
    (audio / f"{ids[5]}.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(100))  # a format libsndfile lacks
    (audio / f"{ids[6]}.ogg").write_bytes(b"<html>404 Not Found</html>")  # a download gone wrong
    man, rej = audioset_manifest(root, ["eval", "balanced_train"], bad_labels="skip")
    status = dict(zip(man["id"], man["status"]))
    assert [status[y] for y in ids[:5]] == ["ok"] * 5
    assert status[ids[5]] == "exists but not in a format the decoder reads (.m4a)"
    assert list(rej["id"]) == [ids[5]]
    paths = dict(zip(man["id"], man["path"]))
    for y in ids[:5]:
        x = load_clip(paths[y], 32000, 32000)
        assert x.shape == (32000,) and np.abs(x).max() > 0.1
    with pytest.raises(AudioError) as e:
        load_clip(paths[ids[6]], 32000, 32000)
    assert e.value.reason == "exists but unreadable" and "26 bytes" in str(e.value)


def test_zero_length_file_is_empty(tmp_path):
    p = tmp_path / "--PJHxphWEs.wav"
    p.write_bytes(b"")
    with pytest.raises(AudioError) as e:
        load_clip(p, 32000, 32000)
    assert e.value.reason == "empty" and "pipe" not in str(e.value)


def _tau(root, train, test):
    """TAU 2022 layout: meta.csv and split files, tab-separated, 1 s 44.1 kHz WAVs under audio/."""
    (root / "audio").mkdir(parents=True)
    rows = []
    for i, (scene, split) in enumerate([(s, "train") for s in train] + [(s, "test") for s in test]):
        name = f"audio/{scene}-lisbon-1000-{i * 10}-0-a.wav"
        sf.write(str(root / name), _tone(1, 44100), 44100)
        rows.append((name, scene, split))
    (root / "meta.csv").write_text(
        "filename\tscene_label\tidentifier\tsource_label\n" + "".join(f"{n}\t{s}\tlisbon-1000\ta\n" for n, s, _ in rows)
    )
    for pct in (5, 10, 25, 50, 100):
        (root / f"split{pct}.csv").write_text(
            "filename\tscene_label\n" + "".join(f"{n}\t{s}\n" for n, s, sp in rows if sp == "train")
        )
    (root / "test.csv").write_text("filename\n" + "".join(f"{n}\n" for n, _, sp in rows if sp == "test"))


def test_test_classes_missing_from_training_are_warned_in_the_manifest_log_and_the_summary(tmp_path):
    _tau(tmp_path / "tau", ["airport", "bus", "airport"], ["airport", "bus", "park"])
    settings = {
        "adapter": "tau2022",
        "root": str(tmp_path / "tau"),
        "splits": [5, 10, 25, 50, 100],
        "bad_audio": "skip",
    }
    out = tmp_path / "m.tsv"
    p = subprocess.run(
        [
            str(BIN / "prunekd"),
            "manifest",
            "--out",
            str(out),
            "--rejected",
            str(tmp_path / "r.tsv"),
            "--settings",
            json.dumps(settings),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert "split 100: test classes never in training: park" in p.stderr
    metrics = tmp_path / "metrics.json"
    metrics.write_text(
        json.dumps(
            {
                "key": {
                    "target": "tau",
                    "ensemble": None,
                    "split": "100",
                    "method": "baseline",
                    "threshold": None,
                    "seed": 0,
                },
                "macro_accuracy": 0.5,
                "n": 3,
                "per_device": {"a": 0.5},
                "per_device_group": {},
                "per_class": {},
            }
        )
    )
    stats = tmp_path / "stats.json"
    stats.write_text(
        json.dumps(
            {
                "target": "tau",
                "ensemble": "all",
                "split": "100",
                "threshold": 0.3,
                "train_clips": 10,
                "kept": 5,
                "kept_share": 0.5,
            }
        )
    )
    # the summary of these files (prunekd summarise lists a grid's files from its settings, then calls this)
    cfg = {"sweep_split": 100, "threshold": 0.3, "target": "tau"}
    write_summary([str(metrics)], [str(stats)], tmp_path / "sum", cfg, str(out), log=lambda *_: None)
    for name in ("table1.md", "table2.md", "table1.html"):
        assert "test classes never in training: park" in (tmp_path / "sum" / name).read_text(), name


# ---- the workflow: a user's folders, config mistakes, absent data, profiles --------------------------------

DEMO_CFG = {
    "seed": 1,
    "audioset_clips": {"eval": 3, "balanced_train": 3, "unbalanced_train": 3},
    "audioset_sample_rate": 32000,
    "audioset_clip_seconds": 1.0,
    "scene_share": 0.3,
    "tau_train_clips": 20,
    "tau_test_clips": 10,
}


def _users_audioset(root):
    """A user's AudioSet copy: the four metadata files and one FLAC per segment."""
    rows = [("--PJHxphWEs", 30.0, "/m/09x0r"), ("-0RWZT-miFs", 0.0, "/m/07qfr4h")]
    _audioset(root, rows, eval_rows=[("-1nilez17Dg", 20.0, "/m/09x0r")])
    (root / "audio").mkdir()
    for y, _, _ in rows + [("-1nilez17Dg", 0, "")]:
        sf.write(str(root / "audio" / f"{y}.flac"), _tone(1, 32000), 32000)
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _smk(workdir, *args, cwd=None):
    from conftest import LOCAL_ENV

    p = subprocess.run(
        [str(BIN / "snakemake"), *args, "--directory", str(workdir), "--cores", "1"],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        env=LOCAL_ENV,
    )
    return p.returncode, p.stdout + p.stderr


def _demo_args(*extra):
    return [
        "-s",
        str(REPO / "Snakefile"),
        "--configfiles",
        *TINY_CONFIGS,
        *map(str, extra),
    ]


def test_demo_never_writes_into_a_users_folder(tmp_path):
    from prunekd.dag.checks import CheckError
    from prunekd.demo.worlds import make_demo_data

    users = tmp_path / "AudioSet"
    before = _users_audioset(users)
    with pytest.raises(CheckError, match=rf"paths.audioset: {users} holds files the demo did not write"):
        make_demo_data(users, tmp_path / "tau", DEMO_CFG)
    assert {p: p.read_bytes() for p in users.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "tau").exists()  # nothing written anywhere
    # The workflow refuses when the DAG is built (Snakemake would delete the demo's outputs before its job).
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(f"paths:\n  audioset: {users}\n")
    for args in (["-n"], ["-n", "--forceall"], []):
        rc, out = _smk(tmp_path / "wd", *_demo_args(cfg), *args)
        assert rc != 0 and f"paths.audioset: {users} holds files the demo did not write" in out, out[-2000:]
    assert {p: p.read_bytes() for p in users.rglob("*") if p.is_file()} == before
    # A folder the demo made is its own: a second run may rewrite it.
    make_demo_data(tmp_path / "demo_as", tmp_path / "demo_tau", DEMO_CFG)
    make_demo_data(tmp_path / "demo_as", tmp_path / "demo_tau", DEMO_CFG)


def test_config_typo_is_one_short_line_naming_file_key_and_the_nearest_key(tmp_path):
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("distilation:\n  iterations: 3\n")
    rc, out = _smk(tmp_path / "wd", *_demo_args(cfg), "-n")
    assert rc != 0 and f"{cfg}: unknown config key 'distilation'; did you mean 'distillation'?" in out
    assert len(out.splitlines()) < 10 and "additionalProperties" not in out


def test_config_files_apply_in_order_and_a_file_named_twice_counts_where_it_applies_last(tmp_path):
    from prunekd.dag.checks import config_files, file_setting

    (tmp_path / "config.yaml").write_text("grid:\n  seeds: [0]\n  thresholds: [0.1]\n")
    (tmp_path / "mine.yaml").write_text("grid:\n  thresholds: [0.1, 1.5]\n")
    # The Snakefile's `configfile: config.yaml` comes first, then `--configfiles config.yaml mine.yaml`.
    files = config_files([tmp_path / "config.yaml"], [tmp_path / "config.yaml", tmp_path / "mine.yaml"], tmp_path)
    assert files == ["config.yaml", "mine.yaml"]
    assert file_setting("grid.thresholds.1", files, start=tmp_path) == "mine.yaml"
    assert file_setting("grid.seeds", files, start=tmp_path) == "config.yaml"
    assert file_setting("grid.seeds", files, {"grid": {"seeds": [1]}}, tmp_path) == "--config"
    assert config_files([], ["/elsewhere/mine.yaml"], tmp_path) == ["/elsewhere/mine.yaml"]


@pytest.mark.parametrize(
    "mine,line",
    [
        (
            {
                "mine": {
                    "adapter": "CSV",
                    "csv": "a.csv",
                    "audio_root": "a",
                    "clip_seconds": 1,
                    "tile_to_10s": False,
                    "splits": ["a"],
                    "sweep_split": None,
                }
            },
            "config key 'targets.mine.adapter': 'CSV' is not one of ['tau2022', 'csv']",
        ),
        (
            {"mine": {"adapter": "csv"}},
            "config key 'targets.mine': missing 'clip_seconds', 'tile_to_10s', 'splits', 'sweep_split', 'csv', "
            "'audio_root'",
        ),
        ({"tau": {"evaluation": {"root": "eval"}}}, "config key 'targets.tau.evaluation': missing 'models'"),
        (
            {"tau": {"sweep_split": 7}},
            "config key 'targets.tau.sweep_split': 7 is not one of [5, 10, 25, 50, 100, None]",
        ),
    ],
)
def test_a_schema_error_is_one_line_that_says_what_the_value_may_be(tmp_path, mine, line):
    """`oneOf` blocks (the adapters, null-or-block settings) name the branch meant, every missing key at once."""
    import jsonschema
    import yaml

    from prunekd.dag.checks import validation_message

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for name, block in mine.items():
        config["targets"][name] = {**config["targets"].get(name, {}), **block}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({"targets": mine}))
    errors = list(jsonschema.validators.validator_for(schema)(schema).iter_errors(config))
    # the first error, as the validator Snakemake calls raises it
    msg = validation_message(errors[0], ["mine.yaml"], start=tmp_path, others=errors)
    assert msg == f"ValidationError: mine.yaml: {line}"


@pytest.mark.parametrize(
    "mine,blamed,key",
    [
        ("targets:\n  tau:\n    splits: [5, 15]\n", "mine.yaml", "targets.tau.splits"),
        ("teachers:\n  members: [passt_s_swa_p16_128_ap476, passt_s_p16_128_ap47]\n", "mine.yaml", "teachers.members"),
        ("grid:\n  thresholds: [0.1, 0.3, 1.5]\n", "mine.yaml", "grid.thresholds"),
        ("domain_classifier:\n  batch_size: 601\n", "mine.yaml", "domain_classifier.batch_size"),
        ("grid:\n  seeds: [0]\n", "config.yaml", "training.batch_size"),  # the user's edited copy of config.yaml
    ],
)
def test_a_bad_value_is_blamed_on_the_file_that_sets_it(tmp_path, mine, blamed, key):
    """The README's layering, `--configfiles config.yaml mine.yaml`, in the folder holding both."""
    text = (REPO / "config.yaml").read_text()
    if blamed == "config.yaml":
        text = text.replace("\n  batch_size: 256", "\n  batch_size: 0", 1)
        assert "batch_size: 0" in text
    (tmp_path / "config.yaml").write_text(text)
    (tmp_path / "mine.yaml").write_text(mine)
    rc, out = _smk(
        tmp_path, "-n", "-s", str(REPO / "Snakefile"), "--configfiles", "config.yaml", "mine.yaml", cwd=tmp_path
    )
    line = next((x for x in out.splitlines() if "ValidationError" in x), "")
    assert rc != 0 and line.startswith(f"ValidationError: {blamed}: ") and key in line, out[-2000:]


def test_every_absent_input_is_named_at_the_dry_run_summarised_at_its_end_and_stops_a_real_run(tmp_path):
    """A TAU copy without its audio/ folder and two of its split files; then a mistyped split_dir."""
    import shutil

    _users_audioset(tmp_path / "AudioSet")
    tau = tmp_path / "TAU"
    _tau(tau, ["airport", "bus"], ["airport", "bus"])
    shutil.rmtree(tau / "audio")
    (tau / "split25.csv").unlink()
    (tau / "test.csv").unlink()
    cfg = tmp_path / "real.yaml"
    cfg.write_text(
        f"demo:\n  enabled: false\npaths:\n  audioset: {tmp_path / 'AudioSet'}\ntargets:\n  tau:\n    root: {tau}\n"
    )
    args = ["-s", str(REPO / "Snakefile"), "--configfiles", str(REPO / "config.yaml"), str(cfg)]
    lines = [
        f"targets.tau.root (audio/): {tau}/audio does not exist",
        f"targets.tau.root (split25.csv): {tau}/split25.csv does not exist",
        f"targets.tau.root (test.csv): {tau}/test.csv does not exist",
    ]
    rc, out = _smk(tmp_path / "wd", *args, "-n")
    assert rc == 0 and all(f"warning: {x}" in out for x in lines), out[-3000:]  # a dry run still plans
    summary = out.split("This was a dry-run")[1]  # once more after the job listing, every one of them
    assert "Absent inputs (3)" in summary and all(f"  {x}\n" in summary for x in lines), summary
    rc, out = _smk(tmp_path / "wd", *args)
    assert rc != 0 and all(x in out for x in lines) and "FileNotFoundError" not in out
    assert not (tmp_path / "wd/results").exists()  # stopped before any job
    # A mistyped split_dir is one mistake: one line, naming the key to fix.
    cfg.write_text(cfg.read_text() + f"    split_dir: {tmp_path / 'splits-mistyped'}\n")
    rc, out = _smk(tmp_path / "wd", *args, "-n", "--quiet", "rules")
    line = f"targets.tau.split_dir: {tmp_path / 'splits-mistyped'} does not exist (nor the 6 files"
    assert rc == 0 and line in out.split("This was a dry-run")[1], out[-3000:]


def test_own_config_over_the_tour_profile_is_refused_with_the_way_that_layers(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("grid:\n  seeds: [0, 1]\n")
    rc, out = _smk(tmp_path / "wd", "--profile", "profiles/tour", "--configfile", str(mine), "-n")
    layered = f"--configfiles config.yaml profiles/tour/tour.yaml {mine}"
    assert rc != 0 and "profiles/tour/tour.yaml would be dropped" in out and layered in out
    rc, out = _smk(tmp_path / "wd", "--profile", "profiles/tour", *layered.split(), "-n")
    assert rc == 0 and "demo_data" in out and "baseline" in out, out[-2000:]
