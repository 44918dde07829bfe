"""Helpers the benchmarks share: synthetic clips, device syncs, matmul and loader rates.

Each benchmark runs alone as a script (`python benchmarks/<name>.py`), so this folder is on its import path.
"""

from __future__ import annotations

import time

import numpy as np
import torch


def synthetic_clip(rng: np.random.Generator, sr: int, seconds: float) -> np.ndarray:
    """A tone in noise: audio that encodes and decodes like a real clip (not silence, not white noise)."""
    t = np.arange(int(sr * seconds)) / sr
    tone = np.sin(2 * np.pi * rng.uniform(100, 2000) * t) * rng.uniform(0.05, 0.3)
    return (tone + rng.normal(0, 0.02, len(t))).astype(np.float32)


def sync(device=None) -> None:
    """Wait for the GPU (a timing's end must include the queued kernels); nothing on a CPU."""
    if (device is None or torch.device(device).type == "cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def matmul_rate(dtype=None, n: int | None = None, reps: int | None = None) -> float:
    """FLOP/s of a large square matmul: fp16 on a GPU by default (the teachers' autocast), fp32 on a CPU."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = dtype or (torch.float16 if dev == "cuda" else torch.float32)
    n = n or (8192 if dev == "cuda" else 1024)
    reps = reps or (20 if dev == "cuda" else 3)
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    for _ in range(3):  # warm-up: the library picks its kernels
        a @ b
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def loader_rate(dataset, workers: int, collate, batch: int = 32) -> float:
    """Clips/s of a DataLoader reading `dataset` in a random order, every clip once."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
    batches = [order[i : i + batch] for i in range(0, len(order), batch)]
    dl = torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate, prefetch_factor=4 if workers else None
    )
    t0 = time.perf_counter()
    n = sum(len(b[0]) for b in dl)
    return n / (time.perf_counter() - t0)
