import numpy as np
import pandas as pd
import torch
import zarr

from prunekd import distill as distill_mod

STUDENT = {"base_channels": 32, "channels_multiplier": 1.8, "expansion_rate": 2.1, "n_blocks": [3, 2, 1],
           "strides": {"b2": [1, 1], "b3": [1, 2], "b4": [2, 1]}}
FRONTEND = {"sample_rate": 32000, "n_fft": 4096, "win_length": 3072, "hop_length": 500, "n_mels": 256,
            "f_min": 0, "f_max": None, "freqm": 48}
CFG = {"batch_size": 4, "iterations": 6, "lr": 5e-3, "final_lr_fraction": 0.01, "warmup_fraction": 0.2,
       "weight_decay": 1e-4, "grad_clip": 1.0, "kd_lambda": 0.9, "temperature": 1.0, "mixup_p": 0.5,
       "mixup_alpha": 2.0, "seed": 0, "checkpoint_every": 3, "log_every": 1, "num_workers": 0}


def _inputs(tmp_path):
    import soundfile as sf
    rng = np.random.default_rng(0)
    paths = []
    for i in range(10):
        p = tmp_path / f"c{i}.wav"
        sf.write(str(p), rng.normal(0, 0.1, 16000), 32000)
        paths.append(str(p))
    pd.DataFrame({"row": range(10), "id": [f"c{i}" for i in range(10)], "path": paths,
                  "labels": ["0"] * 10, "subset": ["balanced_train"] * 10, "status": ["ok"] * 10}) \
        .to_csv(tmp_path / "m.tsv", sep="\t", index=False)
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    g.create_array("row", data=np.arange(10))
    g.create_array("ensemble", data=rng.normal(0, 2, (10, 527)).astype(np.float32))
    g.create_array("labels", data=rng.random((10, 527)) > 0.95)
    g.attrs["members"] = ["a"]
    pd.DataFrame({"position": range(10)}).to_csv(tmp_path / "k.tsv", sep="\t", index=False)


def _run(tmp_path, name):
    return distill_mod.distill(tmp_path / "s.zarr", tmp_path / "m.tsv", tmp_path / "k.tsv", CFG, STUDENT, FRONTEND,
                               1.0, tmp_path / f"{name}.pt", tmp_path / f"{name}.tsv", tmp_path / f"{name}_ck",
                               log=lambda s: None)


def test_killed_distillation_resumes_to_identical_weights(tmp_path, monkeypatch):
    _inputs(tmp_path)
    _run(tmp_path, "full")
    # Kill the second run right after its first checkpoint (step 3).
    real_save = distill_mod.save_checkpoint

    class Killed(Exception):
        pass

    def save_then_die(*a, **k):
        real_save(*a, **k)
        raise Killed

    monkeypatch.setattr(distill_mod, "save_checkpoint", save_then_die)
    try:
        _run(tmp_path, "cut")
    except Killed:
        pass
    assert not (tmp_path / "cut.pt").exists()          # nothing that looks complete
    assert (tmp_path / "cut_ck" / "last.pt").exists()
    monkeypatch.setattr(distill_mod, "save_checkpoint", real_save)
    torch.manual_seed(123)                             # a fresh process would have another RNG state
    _run(tmp_path, "cut")
    a = torch.load(tmp_path / "full.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "cut.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    curve = pd.read_csv(tmp_path / "cut.tsv", sep="\t")
    assert list(curve["step"]) == list(range(1, 7))
