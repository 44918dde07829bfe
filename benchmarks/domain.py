"""Benchmark: domain classifier training at split-100 size and scoring of all AudioSet training clips.

Full size: 140 k positives, 16 k negatives, 527 dimensions, 400 epochs (104 k iterations of
batch 600), then scoring 2 M clips streamed from a Zarr store laid out as `prunekd gather` writes it.
Each phase runs in a fresh process so its peak memory (ru_maxrss) is its own.
Goals: training < 60 s, scoring < 10 s, peak memory < 2 GB (2-core CPU).

    python benchmarks/domain.py [--quick]     # last line: one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def synthetic_logits(n: int, shift: float, seed: int, dim: int = 527) -> np.ndarray:
    # Sparse "present" classes at high logits over a low background, like a tagger's output.
    rng = np.random.default_rng(seed)
    x = rng.normal(-6.0, 1.5, (n, dim)).astype(np.float32)
    hot = rng.random((n, dim)) < 0.01
    x[hot] += 7.0
    x[:, :8] += shift
    return x


def phase_train(n_pos: int, n_neg: int, epochs: int) -> dict:
    from prunekd.selection.domain import roc_auc, score, train_classifier

    pos = synthetic_logits(n_pos, 3.0, 1)
    neg = synthetic_logits(n_neg, 0.0, 2)
    cfg = {"seed": 0, "lr": 1e-4, "batch_size": 600, "epochs": epochs}
    t0 = time.perf_counter()
    model, stats = train_classifier(pos, neg, cfg, log=lambda *_: None)
    secs = time.perf_counter() - t0
    s = score(model, np.concatenate([pos[:5000], neg[:5000]]))
    auc = roc_auc(s, np.r_[np.ones(min(5000, n_pos)), np.zeros(min(5000, n_neg))])
    return {
        "train_seconds": round(secs, 2),
        "iterations": stats["iterations"],
        "ms_per_iteration": round(1000 * secs / stats["iterations"], 4),
        "train_auc": round(auc, 4),
    }


def phase_write(path: str, n: int) -> dict:
    import zarr

    from prunekd.teachers.logit_store import create_ensemble_array

    g = zarr.open_group(path, mode="w")
    g.attrs["members"] = ["m"]
    g.create_array("row", data=np.arange(n, dtype=np.int64))
    en = create_ensemble_array(g, n)
    block = 1 << 16
    for i in range(0, n, block):
        en[i : i + block] = synthetic_logits(min(block, n - i), 0.0, i)
    return {}


def phase_score(path: str, n: int) -> dict:
    import torch

    from prunekd.selection.domain import score_store
    from prunekd.teachers.logit_store import open_store

    torch.manual_seed(0)
    model = torch.nn.Linear(527, 1)
    store = open_store(path)
    positions = np.arange(n)
    t0 = time.perf_counter()
    s = score_store(model, store, positions, log=lambda *_: None)
    secs = time.perf_counter() - t0
    assert np.isfinite(s).all()
    return {"score_seconds": round(secs, 2), "clips_per_second": round(n / secs)}


def child(phase: str, args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a tenth of the clips, 40 epochs: ends within a minute")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.phase:
        fn = {
            "train": lambda: phase_train(*a.n),
            "write": lambda: phase_write(a.path, a.n[0]),
            "score": lambda: phase_score(a.path, a.n[0]),
        }[a.phase]
        res = fn()
        res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps(res))
        return
    scale = 10 if a.quick else 1
    n_pos, n_neg, epochs, n_score = 140_000 // scale, 16_000 // scale, 400 // scale, 2_000_000 // scale
    train = child("train", ["--n", str(n_pos), str(n_neg), str(epochs)])
    with tempfile.TemporaryDirectory(dir=os.environ.get("PRUNEKD_BENCH_TMP")) as tmp:
        path = os.path.join(tmp, "audioset.zarr")
        child("write", ["--path", path, "--n", str(n_score)])
        scored = child("score", ["--path", path, "--n", str(n_score)])
    result = {
        "benchmark": "domain",
        "quick": a.quick,
        "n_pos": n_pos,
        "n_neg": n_neg,
        "epochs": epochs,
        "n_scored": n_score,
        "cpu_count": os.cpu_count(),
        **{k: v for k, v in train.items() if k != "peak_rss_mb"},
        "train_peak_rss_mb": train["peak_rss_mb"],
        **{k: v for k, v in scored.items() if k != "peak_rss_mb"},
        "score_peak_rss_mb": scored["peak_rss_mb"],
    }
    if not a.quick:
        result["goals_met"] = {
            "train_under_60s": result["train_seconds"] < 60,
            "score_under_10s": result["score_seconds"] < 10,
            "peak_under_2GB": max(train["peak_rss_mb"], scored["peak_rss_mb"]) < 2048,
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
