"""Benchmark: the student's mel front end on the CPU, torchaudio's dense MelSpectrogram against the one the pipeline
runs there (the power as re^2 + im^2, the filter bank band by band: student/frontend.py), and the distillation
step they sit in.

The distillation's batch (32 clips) at the known-answer world's 0.5 s and TAU's 1 s, one thread (the demo's jobs
run with one each). Each figure is the median over repeats of a timed loop after warm-up steps; both front ends
and the step run in the same process, so their ratio holds on a VM whose speed changes from day to day.

    python benchmarks/frontend.py [--quick] [--threads N]     # last line: one JSON object
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from prunekd.student.cpmobile import build_student
from prunekd.student.frontend import MelFrontEnd

REPO = Path(__file__).resolve().parents[1]


def rates(fns: dict, steps: int, repeats: int) -> dict:
    """Milliseconds per call of each function: the median of `repeats` loops of `steps` calls, after two warm-up
    calls; the functions' loops take turns, so that a slower moment of the machine hits each of them."""
    for fn in fns.values():
        fn(), fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            times[k].append((time.perf_counter() - t0) / steps)
    return {k: 1000 * statistics.median(v) for k, v in times.items()}


def measure(fe, model, opt, seconds: float, sample_rate: int, steps: int, repeats: int) -> dict:
    """Both front ends alone and in the distillation step, on a batch of 32 clips of `seconds`."""
    wav = torch.randn(32, int(seconds * sample_rate))
    teacher = torch.randn(32, 527)

    def dense():
        x = fe.mel(wav).unsqueeze(1)  # torchaudio's MelSpectrogram: |STFT|^2, dense filter-bank product
        return (fe.freqm(x) + 1e-5).log()

    def step(front):
        x = front().contiguous(memory_format=torch.channels_last)
        F.binary_cross_entropy_with_logits(model(x), torch.sigmoid(teacher)).backward()
        opt.step()
        opt.zero_grad()

    with torch.no_grad():
        diff = (fe.eval()(wav) - (fe.mel(wav).unsqueeze(1) + 1e-5).log()).abs().max().item()
    fe.train()
    ms = rates({"dense_ms": dense, "frontend_ms": lambda: fe(wav)}, steps, repeats)
    ms.update(rates({"step_dense_ms": lambda: step(dense), "step_ms": lambda: step(lambda: fe(wav))}, steps, repeats))
    return {
        **{k: round(v, 2) for k, v in ms.items()},
        "frontend_speedup": round(ms["dense_ms"] / ms["frontend_ms"], 2),
        "step_speedup": round(ms["step_dense_ms"] / ms["step_ms"], 2),
        "max_abs_diff_log_mel": diff,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls: ends within a minute")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    steps, repeats = (5, 5) if a.quick else (20, 7)
    fe = MelFrontEnd(cfg["frontend"])  # training mode: SpecAugment as in a training step
    model = build_student(cfg["student"], n_classes=527).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    out = {"threads": a.threads, "batch": 32, "quick": a.quick}
    for seconds in (0.5, 1.0):
        sr = cfg["frontend"]["sample_rate"]
        out[f"{seconds:g}s"] = measure(fe, model, opt, seconds, sr, steps, repeats)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
