"""Faults: strict mode names the bad clip, bad config names the key, a killed writer leaves nothing whole."""

import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
from conftest import BIN, snakemake

from prunekd.teachers.logits import gather


def test_strict_mode_stops_at_the_first_undecodable_clip_naming_it(demo_run, tmp_path):
    shards = sorted((demo_run / "results/logits/audioset/shards").iterdir())
    teachers = {"members": ["passt_s_swa_p16_128_ap476", "passt_s_p16_s12_128_ap470", "passt_s_p16_s16_128_ap468"]}
    rejected = pd.read_csv(demo_run / "results/logits/audioset.rejected.tsv", sep="\t")
    with pytest.raises(RuntimeError) as e:
        gather(
            demo_run / "results/manifests/audioset.tsv",
            demo_run / "results/manifests/audioset.rejected.tsv",
            shards,
            "audioset",
            teachers,
            demo_run / "results/demo/weights",
            tmp_path / "s.zarr",
            tmp_path / "r.tsv",
            log=lambda *_: None,
            bad_audio="fail",
        )
    msg = str(e.value)
    assert "data.bad_audio: fail" in msg and ".wav" in msg
    assert any(f"{i}.wav" in msg for i in rejected["id"]) and any(r in msg for r in rejected["reason"])
    assert not (tmp_path / "s.zarr").exists()


def test_strict_mode_manifest_names_list_and_line(demo_run, tmp_path):
    settings = json.dumps(
        {"adapter": "audioset", "audioset_subsets": ["eval", "balanced_train", "unbalanced_train"], "bad_audio": "fail"}
    )
    p = subprocess.run(
        [
            str(BIN / "prunekd"),
            "manifest",
            "--root",
            str(demo_run / "data/demo/audioset"),
            "--out",
            str(tmp_path / "m.tsv"),
            "--rejected",
            str(tmp_path / "r.tsv"),
            "--settings",
            settings,
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode != 0 and "unbalanced_train_segments.csv line" in p.stderr and "missing" in p.stderr
    assert not (tmp_path / "m.tsv").exists()


@pytest.mark.parametrize(
    "yaml_text,key",
    [
        ("distillation:\n  iterations: many\n", "iterations"),
        ("targets:\n  tau:\n    splits: [5, 7]\n", "splits"),
        (
            "targets:\n  mine:\n    adapter: csv\n    clip_seconds: 1\n    tile_to_10s: false\n    splits: [a]\n"
            "    sweep_split: null\n",
            "audio_root",
        ),
        ("training:\n  batch_size: 0\n", "batch_size"),
        ("paths:\n  audioset: 3\n", "audioset"),
    ],
)
def test_bad_config_is_refused_before_any_job_naming_the_key(tmp_path, yaml_text, key):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text)
    p = snakemake(tmp_path, "-n", extra_config=[str(bad)], check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and key in out and "ValidationError" in out
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "yaml_text,message",
    [
        ("grid:\n  targets: [tau, esc50]\n", "grid.targets: 'esc50' is not defined under `targets`"),
        (
            "ensembles:\n  two: [passt_s_swa_p16_128_ap476, passt_s_p16_128_ap472]\n",
            "ensembles.two: ['passt_s_p16_128_ap472'] not in teachers.members",
        ),
        ("targets:\n  tau:\n    sweep_split: 50\n", "targets.tau.sweep_split: 50 is not one of targets.tau.splits"),
    ],
)
def test_inconsistent_config_is_refused_naming_the_key(tmp_path, yaml_text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text)
    p = snakemake(tmp_path, "-n", extra_config=[str(bad)], check=False)
    assert p.returncode != 0 and message in p.stdout + p.stderr
    assert not (tmp_path / "results").exists()


def test_killed_writer_leaves_no_output_that_looks_complete(tmp_path):
    out = tmp_path / "table.tsv"
    out.write_text("old\tcomplete\n")
    code = (
        "import sys, time, pandas as pd\nfrom prunekd.atomic import atomic_path\n"
        f"with atomic_path({str(out)!r}) as tmp:\n"
        "    tmp.write_text('half of a new tab')\n    print('writing', flush=True)\n    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert out.read_text() == "old\tcomplete\n"  # the old output untouched, the new one never took its name
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".table.tsv.tmp")]  # only a hidden temp
