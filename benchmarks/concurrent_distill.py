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
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def run_jobs(k: int, steps: int, workers: int, quick: bool, env: dict) -> list[dict]:
    """K distill.py processes started together; each one's JSON result. The first to fail stops the others
    (they would wait at the barrier)."""
    # Each job its share of the cores for its own threads (on a GPU the loop keeps at most 4 anyway).
    env = {**env, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // k))}
    with tempfile.TemporaryDirectory() as barrier, tempfile.TemporaryDirectory() as logs:
        cmd = [sys.executable, str(HERE / "distill.py"), "--loop-only", "--steps", str(steps)]
        cmd += ["--workers", str(workers), "--barrier", f"{barrier}:{k}"] + (["--quick"] if quick else [])
        outs = [Path(logs, f"{i}.txt") for i in range(k)]
        procs = []
        for o in outs:
            with o.open("w") as fh:  # the child keeps its own copy of the descriptor
                procs.append(
                    subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
                )
        try:
            while any(p.poll() is None for p in procs):
                if any(p.returncode not in (None, 0) for p in procs):
                    break
                time.sleep(0.2)
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
                p.wait()
        texts = [o.read_text() for o in outs]
    for p, text in zip(procs, texts):
        found = [line for line in text.splitlines() if line.startswith("{")]
        if p.returncode != 0 or not found:
            raise SystemExit(
                f"{k} jobs: a distill.py job failed ({p.returncode}):\n" + "\n".join(text.splitlines()[-20:])
            )
    return [json.loads([line for line in t.splitlines() if line.startswith("{")][-1]) for t in texts]


def common_rates(results: list[dict]) -> tuple[list[float], float]:
    """Each job's steps/s over the interval in which all of them were in their loops (from the first progress line
    of the last to start to the last line of the first to end), and that interval's length in seconds. A job
    that runs alone at the start or the end is faster than while it shares: those seconds are left out."""
    points = [r["progress"] for r in results]
    t0, t1 = max(p[0][0] for p in points), min(p[-1][0] for p in points)
    if t1 <= t0:  # no common interval (a job ended before another began): each its own steady rate
        return [r["steps_per_s"] for r in results], 0.0

    def step_at(p, t):  # linear between progress lines
        for (ta, sa), (tb, sb) in zip(p, p[1:]):
            if ta <= t <= tb:
                return sa + (sb - sa) * (t - ta) / max(tb - ta, 1e-9)
        return p[-1][1] if t >= p[-1][0] else p[0][1]

    return [(step_at(p, t1) - step_at(p, t0)) / (t1 - t0) for p in points], t1 - t0


class Mps:
    """CUDA MPS for the jobs' processes (its pipe and log folders private to this benchmark), when available."""

    def __init__(self, wanted: bool):
        self.wanted = wanted
        self.exe = shutil.which("nvidia-cuda-mps-control") if wanted and torch.cuda.is_available() else None
        self.env = dict(os.environ)

    def __enter__(self):
        if self.wanted and torch.cuda.is_available() and not self.exe:
            raise SystemExit("--mps: nvidia-cuda-mps-control is not on this machine (PATH); nothing measured")
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
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a time limit still stops the MPS daemon and the jobs
    gpu = torch.cuda.is_available()
    ks = [int(k) for k in (a.jobs or ("1,2" if a.quick else "1,2,4")).split(",")]
    steps = a.steps or (8 if a.quick or not gpu else 1000)
    total_workers = a.workers_total or max(1, (os.cpu_count() or 2) - 2)
    per_k = {}
    with Mps(a.mps) as mps:
        for k in ks:
            res = run_jobs(k, steps, max(1, total_workers // k), a.quick, mps.env)
            rates, seconds = common_rates(res)
            per_k[k] = {
                "sum_steps_per_s": round(sum(rates), 2),
                "each_steps_per_s": [round(r, 3) for r in rates],
                "common_seconds": round(seconds, 1),
            }
            print(f"{k} job(s): {sum(rates):.2f} steps/s together ({', '.join(f'{r:.2f}' for r in rates)})", flush=True)
            print(
                json.dumps({"benchmark": "concurrent_distill", "part": f"{k} jobs", "mps": bool(mps.exe), **per_k[k]})
            )
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
