from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
import zarr

from prunekd.dag.reruns import computed
from prunekd.student import distill as distill_mod
from prunekd.student import training as training_mod  # the shared loop saves the checkpoints
from prunekd.student.training import Reading

REPO = Path(__file__).resolve().parents[1]
_CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
STUDENT, FRONTEND = _CONFIG["student"], _CONFIG["frontend"]
# The report's distillation settings, shrunk in size only.
CFG = {
    **computed(_CONFIG["distillation"]),  # the settings; how the clips are read travels apart (training.Reading)
    "batch_size": 4,
    "iterations": 6,
    "warmup_fraction": 0.2,
    "checkpoint_every": 3,
    "log_every": 1,
}


def _inputs(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(0)
    paths = []
    for i in range(10):
        p = tmp_path / f"c{i}.wav"
        sf.write(str(p), rng.normal(0, 0.1, 16000), 32000)
        paths.append(str(p))
    pd.DataFrame(
        {
            "row": range(10),
            "id": [f"c{i}" for i in range(10)],
            "path": paths,
            "labels": ["0"] * 10,
            "subset": ["balanced_train"] * 10,
            "status": ["ok"] * 10,
        }
    ).to_csv(tmp_path / "m.tsv", sep="\t", index=False)
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    g.create_array("row", data=np.arange(10))
    g.create_array("ensemble", data=rng.normal(0, 2, (10, 527)).astype(np.float32))
    g.create_array("labels", data=rng.random((10, 527)) > 0.95)
    g.attrs["members"] = ["a"]
    pd.DataFrame({"position": range(10)}).to_csv(tmp_path / "k.tsv", sep="\t", index=False)


def _run(tmp_path, name, packed=None, stage_dir=None, log=lambda s: None):
    return distill_mod.distill(
        tmp_path / "s.zarr",
        tmp_path / "m.tsv",
        tmp_path / "k.tsv",
        CFG,
        STUDENT,
        FRONTEND,
        1.0,
        tmp_path / f"{name}.pt",
        tmp_path / f"{name}.tsv",
        tmp_path / f"{name}_ck",
        log=log,
        packed=packed,
        reading=Reading(staging="auto", stage_dir=stage_dir),
    )


class Killed(Exception):
    """What a killed job leaves: the checkpoint just written, nothing after it."""


def _die_after_each_checkpoint(monkeypatch):
    """Make training raise Killed right after writing a checkpoint; returns the real save_checkpoint to restore."""
    real_save = training_mod.save_checkpoint

    def save_then_die(*a, **k):
        real_save(*a, **k)
        raise Killed

    monkeypatch.setattr(training_mod, "save_checkpoint", save_then_die)
    return real_save


def test_killed_distillation_resumes_to_identical_weights(tmp_path, monkeypatch):
    _inputs(tmp_path)
    _run(tmp_path, "full")
    # Kill the second run right after its first checkpoint (step 3).
    real_save = _die_after_each_checkpoint(monkeypatch)
    try:
        _run(tmp_path, "cut")
    except Killed:
        pass
    assert not (tmp_path / "cut.pt").exists()  # nothing that looks complete
    assert (tmp_path / "cut_ck" / "last.pt").exists()
    monkeypatch.setattr(training_mod, "save_checkpoint", real_save)
    torch.manual_seed(123)  # a fresh process would have another RNG state
    _run(tmp_path, "cut")
    a = torch.load(tmp_path / "full.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "cut.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    curve = pd.read_csv(tmp_path / "cut.tsv", sep="\t")
    assert list(curve["step"]) == list(range(1, 7))


def test_curve_rows_are_written_as_logged_and_a_resume_drops_those_past_its_checkpoint(tmp_path, monkeypatch):
    """A running job's curve can be followed: each logged row is in the curve beside the checkpoint at once,
    also past the last checkpoint; a job killed there resumes to the same weights and the same whole curve."""
    _inputs(tmp_path)
    _run(tmp_path, "full")
    real_append = training_mod.append_curve
    seen = []

    def append_then_die_at_step_5(path, rows):
        real_append(path, rows)
        seen.append(list(pd.read_csv(path, sep="\t")["step"]))
        if rows and rows[-1]["step"] == 5:  # past the checkpoint of step 3, before the next
            raise Killed

    monkeypatch.setattr(training_mod, "append_curve", append_then_die_at_step_5)
    try:
        _run(tmp_path, "cut")
    except Killed:
        pass
    assert seen[:5] == [list(range(1, k + 1)) for k in range(1, 6)]  # one row more at every logged step
    monkeypatch.setattr(training_mod, "append_curve", real_append)
    _run(tmp_path, "cut")
    a = torch.load(tmp_path / "full.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "cut.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    full, cut = (pd.read_csv(tmp_path / f"{n}.tsv", sep="\t") for n in ("full", "cut"))
    assert list(cut["step"]) == list(range(1, 7))
    pd.testing.assert_series_equal(full["loss"], cut["loss"])


def test_killed_job_resumes_with_the_whole_curve_after_snakemake_deleted_its_outputs(tmp_path, monkeypatch, capfd):
    """`prunekd distill` as the rule runs it: Snakemake deletes a failed job's curve.tsv, the checkpoints stay.
    The retry reads with other loader settings (flags outside --settings): it still resumes."""
    import json

    from prunekd import cli

    _inputs(tmp_path)
    settings = json.dumps({"distillation": CFG, "student": STUDENT, "frontend": FRONTEND, "clip_seconds": 1.0})
    argv = [
        "distill",
        "--store",
        str(tmp_path / "s.zarr"),
        "--manifest",
        str(tmp_path / "m.tsv"),
        "--kept",
        str(tmp_path / "k.tsv"),
        "--out",
        str(tmp_path / "out/student.pt"),
        "--curve",
        str(tmp_path / "out/curve.tsv"),
        "--checkpoint-dir",
        str(tmp_path / "out/checkpoints"),
        "--settings",
        settings,
    ]
    real_save = _die_after_each_checkpoint(monkeypatch)
    try:
        cli.main(argv)
    except Killed:
        pass
    for out in ("student.pt", "curve.tsv"):  # what Snakemake removes of a failed job
        (tmp_path / "out" / out).unlink(missing_ok=True)
    monkeypatch.setattr(training_mod, "save_checkpoint", real_save)
    capfd.readouterr()
    cli.main([*argv, "--num-workers", "2", "--staging", "auto", "--stage-dir", str(tmp_path)])
    assert "resuming from" in capfd.readouterr().err
    curve = pd.read_csv(tmp_path / "out/curve.tsv", sep="\t")
    assert list(curve["step"]) == list(range(1, 7))


def test_distillation_reads_packed_clips_in_threads_to_the_weights_zarr_loading_gives(tmp_path, monkeypatch):
    from prunekd.data import packed as packed_mod

    _inputs(tmp_path)
    packed_mod.pack_shard(tmp_path / "m.tsv", 0, 10, ["balanced_train"], 32000, 1.0, tmp_path / "p.zarr")
    _run(tmp_path, "threads", packed=[tmp_path / "p.zarr"])  # PackedReader: positioned reads in threads
    from prunekd.data import staging

    node, log, from_copy = tmp_path / "node", [], []
    node.mkdir()
    monkeypatch.setattr(staging, "MARGIN", 0)
    read_into = staging.StagedClips.read_into

    def counted(self, i, out):
        from_copy.append(self.slot[i] < self.ready)
        read_into(self, i, out)

    monkeypatch.setattr(staging.StagedClips, "read_into", counted)
    _run(tmp_path, "staged", packed=[tmp_path / "p.zarr"], stage_dir=node, log=log.append)  # 24 draws of 10 clips
    assert any(line.startswith("staging 10 clips") for line in log) and list(node.iterdir()) == []
    assert len(from_copy) == 24 and any(from_copy)  # the steps read the copy once it was there

    def other_layout(*a, **k):
        raise packed_mod.RawLayoutError("a store in another layout")

    monkeypatch.setattr(packed_mod, "PackedReader", other_layout)  # -> PackedAudio through zarr
    _run(tmp_path, "zarr", packed=[tmp_path / "p.zarr"])
    a = torch.load(tmp_path / "threads.pt", weights_only=True)["state_dict"]
    for other in ("zarr", "staged"):
        b = torch.load(tmp_path / f"{other}.pt", weights_only=True)["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c) for k, c in _initial_weights().items() if k in a)  # it trained


def _initial_weights():
    from prunekd.student.cpmobile import build_student

    torch.manual_seed(CFG["seed"])
    return build_student(STUDENT, n_classes=527).state_dict()


def test_a_resumed_job_stages_only_when_the_steps_left_pay_for_the_copy(tmp_path, monkeypatch):
    from prunekd.data import packed as packed_mod
    from prunekd.data import staging

    _inputs(tmp_path)
    packed_mod.pack_shard(tmp_path / "m.tsv", 0, 10, ["balanced_train"], 32000, 1.0, tmp_path / "p.zarr")
    monkeypatch.setattr(staging, "MARGIN", 0)
    node, log = tmp_path / "node", []
    node.mkdir()
    cfg = {**CFG, "checkpoint_every": 4}  # 6 steps of 4 clips from 10: 24 draws; after step 4, 8 are left
    real_save = _die_after_each_checkpoint(monkeypatch)
    args = (tmp_path / "s.zarr", tmp_path / "m.tsv", tmp_path / "k.tsv", cfg, STUDENT, FRONTEND, 1.0)
    outs = (tmp_path / "r.pt", tmp_path / "r.tsv", tmp_path / "r_ck")
    staged = Reading(staging="auto", stage_dir=node)
    try:
        distill_mod.distill(*args, *outs, log=log.append, packed=[tmp_path / "p.zarr"], reading=staged)
    except Killed:
        pass
    assert any(line.startswith("staging 10 clips") for line in log)  # 24 draws of 10 clips: a copy pays
    monkeypatch.setattr(training_mod, "save_checkpoint", real_save)
    log.clear()
    distill_mod.distill(*args, *outs, log=log.append, packed=[tmp_path / "p.zarr"], reading=staged)
    assert any("resuming" in line for line in log)
    assert any("the steps draw 8 clips from 10" in line for line in log)  # the 2 steps left: no copy
    assert not any(line.startswith("staging") for line in log)
