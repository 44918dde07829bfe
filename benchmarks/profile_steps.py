"""Benchmark: where the time of a GPU step goes (torch.profiler), for the two steps below their goals.

  student   the distillation step alone: batch 32, 10 s clips, fp32, cudnn.benchmark, channels_last
            (benchmarks/student_step.py's `bench` variant, the pipeline's way)
  teachers  the ensemble forward: nine PaSST-S members of the release shapes (random weights), batch 64,
            10 s clips, fp16 autocast (the shard job's way)

After warm-up steps (cuDNN's search, allocator), `--steps` steps run under the profiler. Per step it prints
the wall time, the time the device is busy (the kernels' time: on a GPU with a CUDA device; on CPU the
operators' own time), and that time by kind (matmul/conv, attention, normalisation, elementwise, copies,
fft, other), with the ten most expensive operators. A step whose device time is near its wall time is bound by
its kernels, not by the host; the kinds say which kernels. On CPU (--quick) both run shrunk.

It also counts the bytes one step moves: every operator's tensors read and written once, as eager runs them
(views and metadata-only ops left out), over the device's measured copy bandwidth: the time the step would take
if every kernel ran at full memory bandwidth (`memory_floor_ms`). The student step is memory-bound (a 61 k
parameter model on 10 s clips), so the device time against that floor says how far its kernels are from it.

    python benchmarks/profile_steps.py [--quick] [--which student|teachers|both] [--steps N]   # last line: JSON
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import student_step  # the student step, built as the student benchmark builds it
import teachers as teacher_bench  # release-shaped members, as the teacher benchmark builds them
import torch
import yaml
from common import matmul_rate, sync
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

REPO = Path(__file__).resolve().parents[1]
# Kinds by operator or kernel name (lower case), first match wins.
KINDS = [
    ("attention", ("flash", "fmha", "attention", "sdpa")),
    (
        "matmul/conv",
        ("gemm", "matmul", "addmm", "::mm", "aten::bmm", "conv", "cutlass", "xmma", "cudnn", "sm90_", "linear"),
    ),
    ("normalisation", ("norm",)),
    ("copies", ("memcpy", "memset", "copy_", "to_copy", "contiguous", "cat")),
    ("fft", ("fft",)),
    (
        "elementwise",
        ("elementwise", "vectorized", "reduce", "softmax", "gelu", "relu", "add", "mul", "div", "pow", "abs", "clamp")
        + ("threshold", "sigmoid", "exp", "log", "sqrt", "where"),
    ),
]


def kind(name: str) -> str:
    n = name.lower()
    for k, keys in KINDS:
        if any(key in n for key in keys):
            return k
    return "other"


def profiled(run, steps: int, warmup: int) -> dict:
    gpu = torch.cuda.is_available()
    for _ in range(warmup):
        run()
    sync()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    with profile(activities=acts) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            run()
        sync()
        wall = (time.perf_counter() - t0) / steps
    # On a GPU the kernels (device events) are the device's time; on CPU the operators' own time.
    events = [
        e
        for e in prof.key_averages()
        if (e.device_type == torch.autograd.DeviceType.CUDA) == gpu and _self_time(e, gpu) > 0
    ]
    total = sum(_self_time(e, gpu) for e in events) / 1e3 / steps  # ms per step
    by_kind: dict[str, float] = {}
    for e in events:
        by_kind[kind(e.key)] = by_kind.get(kind(e.key), 0.0) + _self_time(e, gpu) / 1e3 / steps
    top = sorted(events, key=lambda e: -_self_time(e, gpu))[:10]
    return {
        "wall_ms_per_step": round(wall * 1e3, 2),
        "device_ms_per_step": round(total, 2),
        "device_busy_share": round(total / (wall * 1e3), 3),
        "ms_per_step_by_kind": {k: round(v, 2) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "top_ops": [
            {"name": e.key[:90], "kind": kind(e.key), "ms_per_step": round(_self_time(e, gpu) / 1e3 / steps, 3)}
            for e in top
        ],
    }


MATMULS = ("mm", "addmm", "bmm")


def _flops(name: str, args) -> int:
    """Multiply-add FLOPs (x2) of a matmul or attention operator; 0 for the rest (convolutions included: the
    student's are a 61 k parameter model's, its step is bound by memory)."""
    if name in MATMULS:
        a, b = (args[1], args[2]) if name == "addmm" else (args[0], args[1])
        return 2 * a.numel() * b.shape[-1]
    if "scaled_dot_product" in name:  # q [B, H, Nq, D], k [B, H, Nk, D]: q k^T and the weights times v
        q, k = args[0], args[1]
        return 4 * q.numel() * k.shape[-2]
    return 0


class _Bytes(TorchDispatchMode):
    """Bytes of the tensors every operator reads and writes (inputs + outputs), views left out; and the FLOPs of
    the matmuls and attention, with the bytes of the other operators apart (matmuls are bound by compute)."""

    def __init__(self):
        super().__init__()
        self.total, self.ops, self.flops, self.other = 0, 0, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not (func.is_view or torch.Tag.inplace_view in func.tags):  # views and transpose_ move no data
            self.ops += 1
            nbytes = sum(
                t.numel() * t.element_size()
                for t in tree_flatten((args, kwargs, out))[0]
                if isinstance(t, torch.Tensor)
            )
            self.total += nbytes
            flops = _flops(func.overloadpacket.__name__, args)
            self.flops += flops
            if not flops and "convolution" not in func.overloadpacket.__name__:
                self.other += nbytes
        return out


def step_bytes(run) -> _Bytes:
    """Bytes, operators and FLOPs of one call of `run`, as eager runs it operator by operator."""
    with _Bytes() as b:
        run()
    return b


def copy_bandwidth(gb: float) -> float:
    """The device's memory bandwidth in bytes/s, measured as a large tensor copy (read + write)."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    n = int(gb * 1e9) // 4
    src, dst = torch.empty(n, device=dev).fill_(1.0), torch.empty(n, device=dev)
    dst.copy_(src)
    sync()
    reps = 10
    t0 = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    sync()
    return 2 * n * 4 * reps / (time.perf_counter() - t0)


def with_floor(res: dict, run, bandwidth: float, flop_rate: float | None = None) -> dict:
    """res + the step's bytes and its time at full memory bandwidth (and the device time's share of that floor).

    With `flop_rate`, also the floor of a step with real compute (the teachers): its matmul and attention FLOPs at
    the matmul rate plus the other operators' bytes at the copy bandwidth, one kernel after the other."""
    b = step_bytes(run)
    floor = b.total / bandwidth * 1e3
    out = {
        **res,
        "gb_per_step": round(b.total / 1e9, 2),
        "ops_per_step": b.ops,
        "memory_floor_ms": round(floor, 2),
        "floor_share_of_device_time": round(floor / max(res["device_ms_per_step"], 1e-9), 3),
    }
    if flop_rate:
        both = (b.flops / flop_rate + b.other / bandwidth) * 1e3
        out.update(
            {
                "tflop_per_step": round(b.flops / 1e12, 3),
                "non_matmul_gb_per_step": round(b.other / 1e9, 2),
                "matmul_tflop_per_s": round(flop_rate / 1e12, 1),
                "compute_and_memory_floor_ms": round(both, 2),
                "compute_and_memory_floor_share_of_device_time": round(both / max(res["device_ms_per_step"], 1e-9), 3),
            }
        )
    return out


def _self_time(e, gpu: bool) -> float:
    """Self time in microseconds: on the device (torch >= 2.4 names it device time) or on the CPU."""
    if gpu:
        return getattr(e, "self_device_time_total", 0.0) or getattr(e, "self_cuda_time_total", 0.0)
    return e.self_cpu_time_total


def teachers_forward(quick: bool):
    from prunekd.teachers.passt import Ensemble, n_frames

    gpu = torch.cuda.is_available()
    seconds, batch, arch = (2.0, 2, teacher_bench.SMALL) if quick and not gpu else (10.0, 64, teacher_bench.PASST_S)
    frames = n_frames(seconds)
    dev = torch.device("cuda" if gpu else "cpu")
    try:  # random init on the device: nine PaSST-S on one CPU core would take half a minute
        with torch.device(dev):
            ens = Ensemble(teacher_bench.members(arch, frames)).to(dev).eval()
    except Exception as e:  # an init that needs the CPU: slower, not wrong
        print(f"members built on the CPU ({type(e).__name__}: {e})", flush=True)
        ens = Ensemble(teacher_bench.members(arch, frames)).to(dev).eval()
    wav = torch.randn(batch, int(seconds * 32000), device=dev) * 0.1
    return (lambda: ens(wav, torch.float16 if gpu else None)), {"batch": batch, "clip_seconds": seconds, "arch": arch}


def _floor_line(r: dict) -> str:
    return (
        f"| {r['gb_per_step']} GB per step, floor {r['memory_floor_ms']} ms at the copy bandwidth, "
        f"device {r['device_ms_per_step']} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few steps, shrunk shapes on CPU: ends within a minute")
    ap.add_argument("--which", choices=["student", "teachers", "both"], default="both")
    ap.add_argument("--steps", type=int)
    a = ap.parse_args()
    gpu = torch.cuda.is_available()
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    steps = a.steps or ((10 if a.quick else 30) if gpu else 2)
    warmup = 10 if gpu else 1
    if gpu:
        torch.backends.cudnn.benchmark = True
    bandwidth = copy_bandwidth(4.0 if gpu else 0.5)
    res = {
        "benchmark": "profile_steps",
        "quick": a.quick,
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "cpu_count": os.cpu_count(),
        "steps": steps,
        "copy_bandwidth_gb_per_s": round(bandwidth / 1e9, 1),
    }
    if a.which in ("student", "both"):
        shape = student_step.SHAPES["distill"] if gpu or not a.quick else (8, 2.0, 527)
        res["student"] = {"batch": shape[0], "clip_seconds": shape[1]}
        run = student_step.make_step("bench", shape, cfg)
        res["student"].update(with_floor(profiled(run, steps, warmup), run, bandwidth))
        print("student:", json.dumps(res["student"]["ms_per_step_by_kind"]), _floor_line(res["student"]), flush=True)
    if a.which in ("teachers", "both"):
        run, about = teachers_forward(a.quick)
        res["teachers"] = {**about, **with_floor(profiled(run, steps, warmup), run, bandwidth, matmul_rate())}
        print("teachers:", json.dumps(res["teachers"]["ms_per_step_by_kind"]), _floor_line(res["teachers"]), flush=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
