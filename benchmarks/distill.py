"""Benchmark: CP-Mobile distillation steps/s at batch 32, input pipeline attached.

Runs `prunekd.distill.distill` itself (MixUp, SpecAugment, AdamW, schedule, checkpoints) on synthetic
clips packed into the store layout the pipeline uses (`prunekd.packed`), with teacher logits in a
Zarr store laid out as `prunekd gather` writes it. On a GPU it runs there (bf16 autocast, as
configured) and reports the time 100 k iterations would take.

    python benchmarks/distill.py [--quick] [--workers N] [--clip-seconds S]   # last line: JSON
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
import yaml
import zarr

from prunekd.distill import distill
from prunekd.packed import pack_shard
from prunekd.store import N_CLASSES, create_ensemble_array

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 s clips, few steps: ends within a minute")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clip-seconds", type=float)
    ap.add_argument("--steps", type=int)
    a = ap.parse_args()
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    seconds = a.clip_seconds or (1.0 if a.quick else 10.0)
    gpu = torch.cuda.is_available()
    steps = a.steps or (8 if a.quick else (300 if gpu else 12))
    n_clips = 256
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = []
        for i in range(n_clips):
            paths.append(str(tmp / f"c{i}.flac"))
            sf.write(paths[-1], rng.normal(0, 0.1, int(32000 * seconds)).astype(np.float32), 32000)
        pd.DataFrame(
            {
                "row": range(n_clips),
                "id": [f"c{i}" for i in range(n_clips)],
                "subset": "unbalanced_train",
                "path": paths,
                "labels": "0",
                "duration": seconds,
                "status": "ok",
            }
        ).to_csv(tmp / "m.tsv", sep="\t", index=False)
        pack_shard(
            tmp / "m.tsv",
            0,
            n_clips,
            ["unbalanced_train"],
            32000,
            seconds,
            tmp / "packed.zarr",
            num_workers=a.workers,
            log=lambda *_: None,
        )
        g = zarr.open_group(str(tmp / "s.zarr"), mode="w")
        g.attrs["members"] = ["m"]
        g.create_array("row", data=np.arange(n_clips))
        create_ensemble_array(g, n_clips)[:] = rng.normal(-5, 2, (n_clips, N_CLASSES)).astype(np.float32)
        g.create_array("labels", data=rng.random((n_clips, N_CLASSES)) > 0.99)
        pd.DataFrame({"position": range(n_clips)}).to_csv(tmp / "k.tsv", sep="\t", index=False)
        dcfg = {
            **cfg["distillation"],
            "iterations": steps,
            "num_workers": a.workers,
            "checkpoint_every": max(1, steps // 2),
            "log_every": max(1, steps // 4),
        }
        lines = []
        t0 = time.perf_counter()
        distill(
            tmp / "s.zarr",
            tmp / "m.tsv",
            tmp / "k.tsv",
            dcfg,
            cfg["student"],
            cfg["frontend"],
            seconds,
            tmp / "student.pt",
            tmp / "curve.tsv",
            tmp / "ck",
            log=lines.append,
            packed=[tmp / "packed.zarr"],
        )
        wall = time.perf_counter() - t0
    # Steady-state rate from the loop's own progress lines (excludes start-up and the first batches).
    rates = [float(m.group(1)) for line in lines if (m := re.search(r"([\d.]+) steps/s", line))]
    rate = rates[-1] if rates else steps / wall
    res = {
        "benchmark": "distill",
        "quick": a.quick,
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "batch": cfg["distillation"]["batch_size"],
        "clip_seconds": seconds,
        "steps": steps,
        "workers": a.workers,
        "input": "packed",
        "steps_per_s": round(rate, 3),
        "wall_s": round(wall, 1),
        "minutes_for_100k": round(100_000 / rate / 60, 1),
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
