"""The shared training loop with fine-tuning's in-memory clips: same batches as the loader, exact resume."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml

from prunekd.data import datasets
from prunekd.data import decoded as decoded_mod
from prunekd.student import finetune as finetune_mod
from prunekd.student import training
from prunekd.student.evaluate import predict

REPO = Path(__file__).resolve().parents[1]
_CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
STUDENT, FRONTEND = _CONFIG["student"], _CONFIG["frontend"]
# The baseline recipe, shrunk in size only: 11 clips at batch 4 -> 3 steps per epoch, the last one partial.
CFG = {
    **_CONFIG["training"],
    "epochs": 2,
    "batch_size": 4,
    "warmup_steps": 2,
    "checkpoint_every": 3,
    "log_every": 1,
    "clip_seconds": 0.5,
}


def _target(tmp_path):
    """11 training clips as TAU's: 44.1 kHz 24-bit WAV (resampled to 32 kHz), 3 classes; clip 4 is corrupt. The
    manifest also lists, as a real one does, a test-only clip with a numeric-looking id ("007", between t5 and
    t6), a clip whose file is missing (status) and a clip in no split: the training clips are not the manifest's
    first rows in order."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(11):
        p = tmp_path / f"t{i}.wav"
        if i == 4:
            p.write_bytes(b"RIFF0000garbage")
        else:
            sf.write(str(p), rng.normal(0, 0.1, 22050 if i % 3 else 15000), 44100, subtype="PCM_24")
        paths.append(str(p))
    sf.write(str(tmp_path / "007.wav"), rng.normal(0, 0.1, 22050), 44100, subtype="PCM_24")
    sf.write(str(tmp_path / "unused.wav"), rng.normal(0, 0.1, 22050), 44100)
    rows = [
        {
            "id": f"t{i}",
            "path": paths[i],
            "label": i % 3,
            "split5": "True",
            "test": str(i >= 8 or i == 4),
            "status": "ok",
        }
        for i in range(11)
    ]
    rows.insert(6, {"id": "007", "path": str(tmp_path / "007.wav"), "label": 1, "split5": "False", "test": "True"})
    rows[6]["status"] = "ok"
    rows.insert(0, {"id": "gone", "path": str(tmp_path / "gone.wav"), "label": 0, "split5": "True", "test": "False"})
    rows[0]["status"] = "missing"
    rows.append({"id": "unused", "path": str(tmp_path / "unused.wav"), "label": 2, "split5": "False", "test": "False"})
    rows[-1]["status"] = "ok"
    pd.DataFrame(rows).to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    return paths


def test_decoded_clips_are_the_loaders_batches_and_a_bad_clip_is_silence_reported_once(tmp_path):
    paths = _target(tmp_path)
    logged = []
    clips = decoded_mod.decode_all(paths, 32000, 16000, 0, torch.device("cpu"), logged.append)
    assert clips.dtype == torch.float32 and clips.shape == (11, 16000)
    assert sum("t4.wav" in line for line in logged) == 1 and not clips[4].any()
    sampler = lambda: training.StepSampler(11, 4, 6, seed=3, drop_last=False)  # noqa: E731
    ds = datasets.WaveDataset(paths, 32000, 16000)
    seen = list(training.clip_batches(ds, sampler(), 0, paths, lambda s: None))
    drawn = list(training.indexed_batches(clips, sampler(), torch.device("cpu")))
    assert [len(i) for _, i in drawn] == [4, 4, 3] * 2
    for (wa, ia), (wb, ib) in zip(seen, drawn):
        assert torch.equal(ia, ib) and torch.equal(wa, wb)


def test_progress_syncs_at_log_steps_only_with_the_per_step_mean():
    losses = [0.7, 0.123456789, 1e-3, 2.5]
    p = training.Progress(4, 0, lambda s: None, every=2, name="t")
    for step, v in enumerate(losses):
        p.update(step, torch.tensor(v), 0.1)
    f32 = [torch.tensor(v).item() for v in losses]
    assert [r["loss"] for r in p.take_rows()] == [(0.0 + f32[0] + f32[1]) / 2, (0.0 + f32[2] + f32[3]) / 2]
    assert p.rows == []


def _run(tmp_path, name, cfg=CFG, log=lambda s: None, decoded=None, reading=None):
    return finetune_mod.finetune(
        tmp_path / "t.tsv",
        "split5",
        cfg,
        STUDENT,
        FRONTEND,
        1,
        tmp_path / f"{name}.pt",
        tmp_path / f"{name}.tsv",
        tmp_path / f"{name}_ck",
        log=log,
        decoded=decoded,
        reading=reading,
    )


def test_killed_finetuning_resumes_to_identical_weights(tmp_path, monkeypatch):
    _target(tmp_path)
    _run(tmp_path, "full")
    real_save = training.save_checkpoint

    class Killed(Exception):
        pass

    def save_then_die(*a, **k):
        real_save(*a, **k)
        raise Killed

    monkeypatch.setattr(training, "save_checkpoint", save_then_die)
    try:
        _run(tmp_path, "cut")
    except Killed:
        pass
    assert not (tmp_path / "cut.pt").exists()
    monkeypatch.setattr(training, "save_checkpoint", real_save)
    torch.manual_seed(123)
    # Resumed with the split decoded by 2 processes instead of none: how it is read is not what is trained.
    log = []
    _run(tmp_path, "cut", log=log.append, reading=training.Reading(num_workers=2))
    assert any(line.startswith("resuming from") for line in log)
    a = torch.load(tmp_path / "full.pt", weights_only=True)
    b = torch.load(tmp_path / "cut.pt", weights_only=True)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert a["steps"] == b["steps"] == 6 and a["n_classes"] == 3
    full, cut = pd.read_csv(tmp_path / "full.tsv", sep="\t"), pd.read_csv(tmp_path / "cut.tsv", sep="\t")
    assert list(cut["step"]) == list(range(1, 7))
    assert full[["step", "loss", "lr"]].equals(cut[["step", "loss", "lr"]])


def test_test_split_accuracy_every_epoch_goes_into_the_curve_and_changes_no_weight(tmp_path):
    """training.test_every_epochs: the test split's macro accuracy at each epoch's end, in the curve beside the loss;
    the evaluation draws no random number and updates no statistic, so the model is the one trained without it."""
    _target(tmp_path)
    _run(tmp_path, "plain")
    log = []
    _run(tmp_path, "acc", {**CFG, "test_every_epochs": 1}, log.append)
    a = torch.load(tmp_path / "plain.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "acc.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain, acc = (pd.read_csv(tmp_path / f"{n}.tsv", sep="\t") for n in ("plain", "acc"))
    assert "test_macro_acc" not in plain and plain["loss"].equals(acc["loss"])
    measured = acc.dropna(subset=["test_macro_acc"])
    assert list(measured["step"]) == [3, 6] and measured["test_macro_acc"].between(0, 1).all()  # 3 steps an epoch
    assert sum("test_macro_acc" in line for line in log) == 2


def test_a_target_decoded_once_trains_and_evaluates_as_decoding_in_each_job(tmp_path, monkeypatch):
    """The workflow's jobs read the target's decoded store (decode_target): the same samples, so the same
    weights bit for bit and the same test predictions as decoding the files in the job; a corrupt clip is
    still silence, reported by the job; a store for other settings or an older manifest is refused by name, and
    so is a disk without room for it, before the first clip."""
    paths = _target(tmp_path)
    store = tmp_path / "decoded" / "t"
    (tmp_path / "decoded").mkdir()
    (tmp_path / "decoded" / ".t.tmp-99999999").mkdir()  # left by a writer that was killed (SIGKILL)
    logged = []
    out = decoded_mod.write_decoded(tmp_path / "t.tsv", 32000, CFG["clip_seconds"], store, 0, logged.append)
    assert out == {"clips": 12, "failed": 1} and sum("t4.wav" in line for line in logged) == 1
    assert sorted(p.name for p in (tmp_path / "decoded").iterdir()) == ["t"]
    held = pd.read_csv(store / "clips.tsv", sep="\t", dtype=str)["id"].tolist()
    assert held == [f"t{i}" for i in range(6)] + ["007"] + [f"t{i}" for i in range(6, 11)]

    ids = [f"t{i}" for i in range(11)]
    d = decoded_mod.Decoded(store, 32000, 16000)
    in_job = decoded_mod.decode_all(paths, 32000, 16000, 0, "cpu", lambda s: None)
    assert torch.equal(d.read(ids, "cpu", lambda s: None), in_job)
    some = [3, 1, 2, 9, 10]  # runs of consecutive clips, each one read, in threads
    assert torch.equal(d.read([f"t{i}" for i in some], "cpu", lambda s: None, threads=3), in_job[some])

    _run(tmp_path, "files")
    job_log = []
    _run(tmp_path, "store", log=job_log.append, decoded=store)
    assert sum("t4.wav" in line and "silence" in line for line in job_log) == 1
    a = torch.load(tmp_path / "files.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "store.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    _, test, p_files, skip_files = predict(tmp_path / "files.pt", tmp_path / "t.tsv", FRONTEND, 0.5, batch_size=2)
    _, _, p_store, skip_store = predict(tmp_path / "files.pt", tmp_path / "t.tsv", FRONTEND, 0.5, 2, decoded=store)
    assert list(test["id"]) == ["t4", "007", "t8", "t9", "t10"] and np.array_equal(p_files, p_store)
    assert skip_files == skip_store and [i for i, _ in skip_store] == [0]  # t4: left out of the metrics

    with pytest.raises(decoded_mod.DecodedError, match="sample_rate 32000, this job needs 16000"):
        decoded_mod.Decoded(store, 16000, 8000)
    with pytest.raises(decoded_mod.DecodedError, match=r"1 clips are not in the decoded store, e\.g\. \['t99'\]"):
        d.positions(["t1", "t99"])
    with pytest.raises(decoded_mod.DecodedError, match="clip t2 was decoded from .*t2.wav, the manifest says /new/t2"):
        d.positions(["t1", "t2"], paths=[paths[1], "/new/t2.wav"])
    man = pd.read_csv(tmp_path / "t.tsv", sep="\t", dtype=str)
    pd.concat([man, man.iloc[[3]]]).to_csv(tmp_path / "twice.tsv", sep="\t", index=False)
    with pytest.raises(decoded_mod.DecodedError, match="twice.tsv: id 't2' is listed 2 times"):
        decoded_mod.write_decoded(tmp_path / "twice.tsv", 32000, 0.5, tmp_path / "twice", 0, lambda s: None)

    import errno

    from prunekd.data import files

    def full(fd, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "reserve", full)
    with pytest.raises(decoded_mod.DecodedError, match=r"full: the decoded clips need 0\.0 GB, .* GB free"):
        decoded_mod.write_decoded(tmp_path / "t.tsv", 32000, 0.5, tmp_path / "full", 0, lambda s: None)
    assert not (tmp_path / "full").exists() and not list(tmp_path.glob(".full.tmp-*"))


def test_a_decode_job_stopped_by_slurm_leaves_no_store_and_no_hidden_copy(tmp_path):
    """SLURM's time limit and scancel send SIGTERM: `prunekd` turns it into an exit that removes the half-written
    store (21.7 GB for TAU) instead of leaving it hidden beside the output."""
    import subprocess
    import sys

    _target(tmp_path)
    driver = f"""
import os, signal, time, torch
from prunekd import cli
from prunekd.data import decoded

def batches(*a, **k):
    yield 0, torch.zeros(4, 16000), []
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)

decoded.decoded_batches = batches
cli.main(["decode-target", "--manifest", "{tmp_path / "t.tsv"}", "--out", "{tmp_path / "out" / "t"}",
          "--settings", '{{"sample_rate": 32000, "clip_seconds": 0.5}}'])
"""
    p = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=120)
    assert p.returncode == 143, p.stderr[-2000:]
    assert list((tmp_path / "out").iterdir()) == []
