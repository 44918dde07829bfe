"""Benchmark: the CP-Mobile training step alone (no loader), in the ways a GPU can run it.

The two shapes the pipeline trains: distillation (batch 32, 10 s clips, 527 outputs, BCE) and fine-tuning
(batch 256, 1 s clips, 10 outputs, cross-entropy). One fixed batch already on the device; a step is
mel -> SpecAugment -> model -> loss -> backward -> grad clip -> AdamW. Each variant is a rate over
`--steps` steps after warm-up steps (compilation and cuDNN's algorithm search excluded):

  eager          the plain step: fp32, channels_last, cudnn.benchmark off
  bench          + cudnn.benchmark (fixed shapes: cuDNN times its algorithms once and keeps the fastest)
  bench_nchw     cudnn.benchmark, contiguous (NCHW) instead of channels_last
  bf16           cudnn.benchmark, bf16 autocast (a deviation from the fp32 references)
  compile        cudnn.benchmark, the model under torch.compile (fused BatchNorm/ReLU/adds)
  compile_bf16   compile + bf16 autocast
  graph          cudnn.benchmark, the whole step captured once as a CUDA graph and replayed (no launch cost)

On CPU (--quick) only the eager variants run, a few steps each.

    python benchmarks/student_step.py [--quick] [--shape distill|finetune|both] [--variants a,b] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from common import sync

from prunekd.student.cpmobile import build_student
from prunekd.student.frontend import MelFrontEnd

REPO = Path(__file__).resolve().parents[1]
SHAPES = {"distill": (32, 10.0, 527), "finetune": (256, 1.0, 10)}
GPU_VARIANTS = ["eager", "bench", "bench_nchw", "bf16", "compile", "compile_bf16", "graph"]


_PROGRESS = re.compile(r"step (\d+)/\d+ .* ([\d.]+) steps/s")  # training.Progress's lines


class LoopMeter:
    """A training run's `log`, keeping its progress lines with the host syncs seen up to each (on a GPU, CUDA's
    sync debug mode warns at every sync: a copy to the host, .item(), ...). Shared by distill.py and finetune.py.

        with LoopMeter() as m:
            train(..., log=m.log)
        steps_per_s, syncs_per_step = m.steady()
    """

    def __init__(self):
        self.lines: list[str] = []
        self.syncs_at: list[int] = []
        self.times: list[float] = []  # wall clock (time.time) of each line: comparable across processes

    def __enter__(self):
        self._warnings = warnings.catch_warnings(record=True)
        self._caught = self._warnings.__enter__()
        warnings.simplefilter("always")
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc):
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode(0)
        return self._warnings.__exit__(*exc)

    def log(self, line: str) -> None:
        self.times.append(time.time())
        self.lines.append(line)
        self.syncs_at.append(sum("synchroniz" in str(w.message) for w in self._caught))
        print(line, flush=True)  # a run cut by a time limit still shows how far it got

    def progress(self) -> list[tuple[float, int]]:
        """(wall clock, step) of each progress line."""
        return [(t, int(m.group(1))) for t, line in zip(self.times, self.lines) if (m := _PROGRESS.search(line))]

    def steady(self) -> tuple[float, float | None]:
        """(steps/s, host syncs per step, None on CPU) between the first and the last progress line.

        Each progress line gives the mean rate since the loop started (step s at time s / rate), so the rate
        between the first and the last excludes start-up and compilation."""
        prog = [
            (int(m.group(1)), float(m.group(2)), k)
            for k, line in enumerate(self.lines)
            if (m := _PROGRESS.search(line))
        ]
        (s0, r0, k0), (s1, r1, k1) = prog[0], prog[-1]
        if s1 <= s0:
            return r1, None
        syncs = (self.syncs_at[k1] - self.syncs_at[k0]) / (s1 - s0) if torch.cuda.is_available() else None
        return (s1 - s0) / max(s1 / r1 - s0 / r0, 1e-9), syncs


def host_copies(run) -> tuple[int, int] | None:
    """(copies to the GPU from pageable host memory, all copies to the GPU) while `run()` runs, from CUDA's own
    activity records (CUPTI names each copy's source memory); None without a GPU. A copy from pageable memory
    waits for all queued GPU work, like a sync, but CUDA's sync debug mode (LoopMeter) does not report it."""
    if not torch.cuda.is_available():
        return None
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    names = [e.name for e in prof.events() if "HtoD" in e.name]
    if not names:  # no copy recorded at all (there is always one: the weights): CUDA's activity unavailable
        raise RuntimeError("the profiler recorded no copies to the GPU")
    return sum("Pageable" in n for n in names), len(names)


def pageable_per_step(run, short: int, long: int) -> float | None:
    """Pageable copies to the GPU per step of a training loop: `run(steps)` for a short and a long run, the
    difference over the steps between them (start-up copies, the model's weights say, cancel out)."""
    if not torch.cuda.is_available():
        return None
    try:
        a, b = host_copies(lambda: run(short)), host_copies(lambda: run(long))
    except Exception as e:  # the profiler's CUDA activity unavailable: the other figures still stand
        print(f"pageable copies not counted: {type(e).__name__}: {e}")
        return None
    print(f"copies to the GPU: {short} steps {a[1]} ({a[0]} pageable), {long} steps {b[1]} ({b[0]} pageable)")
    return (b[0] - a[0]) / (long - short)


def rate(variant: str, shape, cfg: dict, steps: int, warmup: int) -> float:
    """Steps/s of one variant; `shape` names one of SHAPES or is (batch, clip seconds, classes)."""
    run = make_step(variant, shape, cfg)
    for _ in range(warmup):
        run()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        run()
    sync()
    return steps / (time.perf_counter() - t0)


def make_step(variant: str, shape, cfg: dict):
    """One training step of a variant on a fixed batch on the device, as a function of no arguments."""
    batch, seconds, n_classes = SHAPES[shape] if isinstance(shape, str) else shape
    gpu = torch.cuda.is_available()
    dev = torch.device("cuda" if gpu else "cpu")
    torch.backends.cudnn.benchmark = variant != "eager"
    torch.manual_seed(0)
    model = build_student(cfg["student"], n_classes)
    fmt = torch.contiguous_format if variant == "bench_nchw" else torch.channels_last
    model.to(dev, memory_format=fmt)
    mel = MelFrontEnd(cfg["frontend"]).to(dev).train()
    net = torch.compile(model) if variant.startswith("compile") else model
    bf16 = gpu and variant in ("bf16", "compile_bf16")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4, capturable=variant == "graph")
    wav = torch.randn(batch, int(seconds * 32000), device=dev) * 0.1
    y = (
        (torch.rand(batch, n_classes, device=dev) > 0.99).float()
        if n_classes == 527
        else torch.randint(0, n_classes, (batch,), device=dev)
    )

    def loss_of():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out = net(mel(wav).contiguous(memory_format=fmt)).float()
        return F.binary_cross_entropy_with_logits(out, y) if n_classes == 527 else F.cross_entropy(out, y)

    def step():
        opt.zero_grad(set_to_none=variant != "graph")
        loss = loss_of()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    run = step
    if variant == "graph":
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):  # warm-up outside the graph (cuDNN's search, the optimizer's state)
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            step()

        def run():
            g.replay()

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few steps; on CPU the eager variant only")
    ap.add_argument("--shape", choices=["distill", "finetune", "both"], default="both")
    ap.add_argument("--variants", help="comma-separated subset of: " + ", ".join(GPU_VARIANTS))
    ap.add_argument("--steps", type=int)
    a = ap.parse_args()
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    gpu = torch.cuda.is_available()
    variants = a.variants.split(",") if a.variants else (GPU_VARIANTS if gpu else ["eager"])
    steps = a.steps or ((30 if a.quick else 200) if gpu else 2)
    warmup = 10 if gpu else 1
    shapes = list(SHAPES) if a.shape == "both" else [a.shape]
    if not gpu and a.quick:
        SHAPES.update({"distill": (8, 2.0, 527), "finetune": (32, 1.0, 10)})
    res = {
        "benchmark": "student_step",
        "quick": a.quick,
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "cpu_count": os.cpu_count(),
        "steps": steps,
    }
    for shape in shapes:
        b, sec, _ = SHAPES[shape]
        res[shape] = {"batch": b, "clip_seconds": sec}
        for v in variants:
            try:
                r = rate(v, shape, cfg, steps, warmup)
            except Exception as e:  # a variant this torch/GPU cannot run is reported, the others still run
                res[shape][v] = f"failed: {type(e).__name__}: {str(e)[:200]}"
                print(f"{shape} {v}: failed: {e}", flush=True)
                continue
            res[shape][v] = round(r, 2)
            print(f"{shape} {v}: {r:.2f} steps/s", flush=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
