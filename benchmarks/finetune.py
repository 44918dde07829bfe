"""Benchmark: fine-tuning steps/s (the DCASE2024 baseline recipe: batch 256, 1 s clips), input pipeline attached.

Runs what the workflow runs: `prunekd decode-target` (the target's clips decoded and resampled once into a
float32 store, a CPU job) and then `prunekd.student.finetune.finetune` reading the split from that store (into memory,
batches drawn by index on the device, roll, Freq-MixStyle, SpecAugment, AdamW, schedule, checkpoints), on
synthetic 1 s clips at 44.1 kHz (TAU's rate, so every clip is resampled), and beside it the component rates:

  model step alone   a fixed batch on the device: mel + SpecAugment, Freq-MixStyle, forward, backward, AdamW
  data alone         batches drawn from clips in memory by index, rolled, on the device
  decode once        clips/s of decode_target (once per target, not in any GPU job)
  read the split     clips/s of a training job's read of its split from the store (its start-up, not in the steps/s)

Steady state: the rate between the loop's first and last progress line (start-up, the decode and the
first steps excluded). On a GPU it also counts host syncs per step (torch.cuda sync debug mode).
On CPU, --quick uses batch 32 so that it ends within a minute on 2 cores (batch 256 costs about 10 s a step there).

    python benchmarks/finetune.py [--quick] [--workers N] [--batch B] [--steps N] [--clips N]   # last line: JSON
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import student_step  # LoopMeter: the loop's steady rate and host syncs, as distill.py measures them
import torch
import torch.nn.functional as F
import yaml
from common import sync

from prunekd.data.decoded import write_decoded
from prunekd.student.cpmobile import build_student
from prunekd.student.finetune import finetune
from prunekd.student.frontend import freq_mixstyle, roll_waveform
from prunekd.student.training import Reading, StepSampler, indexed_batches, on_device

REPO = Path(__file__).resolve().parents[1]


def model_rate(tcfg, cfg, batch: int, n: int, steps: int) -> float:
    """Steps/s of the model step alone on one fixed batch already on the device."""
    model = build_student(cfg["student"], n_classes=10)
    device, autocast, mel = on_device(model, cfg["frontend"], tcfg["precision"])
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg["lr"], weight_decay=tcfg["weight_decay"])
    wav, y = torch.randn(batch, n, device=device) * 0.1, torch.randint(0, 10, (batch,), device=device)

    def step():
        x = freq_mixstyle(mel(wav), tcfg["mixstyle_p"], tcfg["mixstyle_alpha"])
        with autocast():
            out = model(x.contiguous(memory_format=torch.channels_last))
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps / (time.perf_counter() - t0)


def data_rate(tcfg, n_clips: int, batch: int, n: int, steps: int, device) -> float:
    """Steps/s of drawing batches from clips in memory (on the device) and rolling them."""
    clips = torch.randn(n_clips, n, device=device)
    sampler = StepSampler(n_clips, batch, steps + 2, 0, drop_last=False)
    it = indexed_batches(clips, sampler, device)
    for _ in range(2):
        next(it)
    sync(device)
    t0 = time.perf_counter()
    for wav, _ in it:
        wav = roll_waveform(wav, int(tcfg["roll_seconds"] * 32000))
    sync(device)
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few steps (on CPU at batch 32): ends within a minute")
    ap.add_argument("--workers", type=int, default=2, help="decoding processes of decode_target")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--clips", type=int)
    a = ap.parse_args()
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    batch = a.batch or (256 if gpu or not a.quick else 32)
    steps = a.steps or ((100 if a.quick else 400) if gpu else (16 if a.quick else 12))
    n_clips = a.clips or (4096 if gpu else 8 * batch)
    seconds, sr_in = 1.0, 44100
    n = int(seconds * cfg["frontend"]["sample_rate"])
    per_epoch = math.ceil(n_clips / batch)
    epochs = math.ceil(steps / per_epoch)
    tcfg = {
        **cfg["training"],
        "epochs": epochs,
        "batch_size": batch,
        "clip_seconds": seconds,
        "log_every": max(1, steps // 8),
    }
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = []
        for i in range(n_clips):
            paths.append(str(tmp / f"t{i}.wav"))
            sf.write(paths[-1], rng.normal(0, 0.1, int(sr_in * seconds)).astype(np.float32), sr_in)
        pd.DataFrame(
            {
                "id": [f"t{i}" for i in range(n_clips)],
                "path": paths,
                "label": np.arange(n_clips) % 10,
                "split100": "True",
                "status": "ok",
            }
        ).to_csv(tmp / "m.tsv", sep="\t", index=False)
        t0 = time.perf_counter()
        write_decoded(
            tmp / "m.tsv", cfg["frontend"]["sample_rate"], seconds, tmp / "decoded", a.workers, lambda s: None
        )
        decode = time.perf_counter() - t0

        def run(tcfg, name, log):
            finetune(
                tmp / "m.tsv",
                "split100",
                tcfg,
                cfg["student"],
                cfg["frontend"],
                0,
                tmp / f"{name}.pt",
                tmp / f"{name}.tsv",
                tmp / f"ck_{name}",
                log=log,
                decoded=tmp / "decoded",
                reading=Reading(a.workers),
            )

        with student_step.LoopMeter() as meter:
            t0 = time.perf_counter()
            run(tcfg, "model", meter.log)
            wall = time.perf_counter() - t0
        # Copies to the GPU from pageable memory per step (GPU only; sync debug mode misses them): runs of 1 and 2
        # epochs, so that start-up cancels out.
        pageable = student_step.pageable_per_step(
            lambda k: run({**tcfg, "epochs": k // per_epoch}, f"p{k}", lambda *_: None), per_epoch, 2 * per_epoch
        )
    total = epochs * per_epoch
    rate, syncs = meter.steady()
    read = next((float(m.group(1)) for line in meter.lines if (m := re.search(r"in ([\d.]+) s$", line))), None)
    k = max(3, min(steps, 50)) if gpu else max(2, steps // 4)
    model = model_rate(tcfg, cfg, batch, n, k)
    data = data_rate(tcfg, n_clips, batch, n, 50, device)
    print(
        f"fine-tuning {rate:.2f} steps/s (steady, batch {batch}, {seconds:g} s clips, {total} steps) | "
        f"model step alone {model:.2f} steps/s | data alone {data:.1f} steps/s | "
        f"decode once {n_clips / decode:.0f} clips/s | "
        f"read the split {n_clips / read if read else float('nan'):.0f} clips/s"
        + (f" | {syncs:.2f} host syncs/step" if syncs is not None else "")
        + (f" | {pageable:.2f} pageable copies/step" if pageable is not None else "")
    )
    res = {
        "benchmark": "finetune",
        "quick": a.quick,
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "batch": batch,
        "clip_seconds": seconds,
        "clips": n_clips,
        "steps": total,
        "workers": a.workers,
        "input": "decoded once (decode_target), read into memory",
        "steps_per_s": round(rate, 3),
        "model_step_alone_steps_per_s": round(model, 3),
        "data_alone_steps_per_s": round(data, 2),
        "decode_clips_per_s": round(n_clips / decode, 1),
        "read_split_clips_per_s": round(n_clips / read, 1) if read else None,
        "host_syncs_per_step": round(syncs, 3) if syncs is not None else None,
        "pageable_copies_per_step": round(pageable, 3) if pageable is not None else None,
        "wall_s": round(wall, 1),
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
