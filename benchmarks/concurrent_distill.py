"""Benchmark: K distillations sharing one GPU, their summed steps/s against one alone.

The student is a 61 k-parameter model whose step is memory-bound (benchmarks/profile_steps.py: the bytes it moves
against the device's bandwidth), so one job may leave the GPU idle between and inside its kernels. If K jobs on
one GPU sum to more than one job's rate, the grid's distillations cost fewer GPU-hours when they share GPUs
(SLURM's gres/shard, or several jobs per allocation); if not, sharing only slows each job down.

Each job is `benchmarks/distill.py --loop-only` (the pipeline's own `distill`, packed input, staging as
configured) in its own process with workers_total / K reading threads; all K start their loops together (a
barrier) and each reports its steady-state rate from its own progress lines. With --mps the jobs run under
CUDA's Multi-Process Service (kernels of different processes may run at the same time; without it the GPU
time-slices between processes), when `nvidia-cuda-mps-control` is on the machine.

    python benchmarks/concurrent_distill.py [--quick] [--jobs 1,2,4] [--steps N] [--workers-total N] [--mps]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def run_jobs(k: int, steps: int, workers: int, quick: bool, env: dict) -> list[dict]:
    """K distill.py processes started together; each one's JSON result."""
    # Each job its share of the cores for its own threads (on a GPU the loop keeps at most 4 anyway).
    env = {**env, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // k))}
    with tempfile.TemporaryDirectory() as barrier:
        cmd = [sys.executable, str(HERE / "distill.py"), "--loop-only", "--steps", str(steps)]
        cmd += ["--workers", str(workers), "--barrier", f"{barrier}:{k}"] + (["--quick"] if quick else [])
        procs = [
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            for _ in range(k)
        ]
        outs = [p.communicate()[0] for p in procs]
    results = []
    for p, out in zip(procs, outs):
        lines = out.strip().splitlines()
        if p.returncode != 0 or not lines:
            raise SystemExit(f"a distill.py job failed ({p.returncode}):\n" + "\n".join(lines[-20:]))
        results.append(json.loads(lines[-1]))
    return results


class Mps:
    """CUDA MPS for the jobs' processes (its pipe and log folders private to this benchmark), when available."""

    def __init__(self, wanted: bool):
        self.exe = shutil.which("nvidia-cuda-mps-control") if wanted and torch.cuda.is_available() else None
        self.env = dict(os.environ)

    def __enter__(self):
        if self.exe:
            self.dir = tempfile.mkdtemp()
            self.env.update(CUDA_MPS_PIPE_DIRECTORY=self.dir + "/pipe", CUDA_MPS_LOG_DIRECTORY=self.dir + "/log")
            subprocess.run([self.exe, "-d"], env=self.env, check=True)
            time.sleep(1)
        return self

    def __exit__(self, *exc):
        if self.exe:
            subprocess.run([self.exe], input="quit\n", text=True, env=self.env)
            shutil.rmtree(self.dir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 s clips, few steps, 1 and 2 jobs: within a minute")
    ap.add_argument("--jobs", help="numbers of concurrent jobs, comma-separated (default 1,2,4; --quick 1,2)")
    ap.add_argument("--steps", type=int, help="steps per job (default 1000 on a GPU; --quick 8)")
    ap.add_argument("--workers-total", type=int, help="reading threads shared by the jobs (default: the cores - 2)")
    ap.add_argument("--mps", action="store_true", help="under CUDA MPS, where nvidia-cuda-mps-control exists")
    a = ap.parse_args()
    gpu = torch.cuda.is_available()
    ks = [int(k) for k in (a.jobs or ("1,2" if a.quick else "1,2,4")).split(",")]
    steps = a.steps or (8 if a.quick or not gpu else 1000)
    total_workers = a.workers_total or max(1, (os.cpu_count() or 2) - 2)
    per_k = {}
    with Mps(a.mps) as mps:
        for k in ks:
            res = run_jobs(k, steps, max(1, total_workers // k), a.quick, mps.env)
            rates = [r["steps_per_s"] for r in res]
            per_k[k] = {"sum_steps_per_s": round(sum(rates), 2), "each_steps_per_s": rates}
            print(f"{k} job(s): {sum(rates):.2f} steps/s together ({', '.join(f'{r:.2f}' for r in rates)})", flush=True)
    one = per_k.get(1, {}).get("sum_steps_per_s")
    out = {
        "benchmark": "concurrent_distill",
        "quick": a.quick,
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "cpu_count": os.cpu_count(),
        "mps": bool(mps.exe),
        "steps_per_job": steps,
        "workers_total": total_workers,
        "clip_seconds": res[0]["clip_seconds"],
        "batch": res[0]["batch"],
        "jobs": per_k,
        # device-hours of a distillation when k share the device (GPU, or the cores on CPU), as a share of one alone
        "device_hours_share": {k: round(one / v["sum_steps_per_s"], 3) for k, v in per_k.items()} if one else None,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
