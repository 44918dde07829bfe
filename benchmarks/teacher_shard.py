"""Benchmark: one teacher shard job end to end (`prunekd.teachers.logits.compute_shard`) beside its parts alone.

The shard job as the pipeline runs it: nine checkpoints in the release shapes (PaSST-S, random weights,
saved as plain state dicts like the releases) loaded from disk, 10 s FLAC clips decoded by loader workers,
the ensemble on the GPU under the configured autocast, float16 logits into a Zarr shard. Reported:

  shard_clips_per_s   steady state of the job's loop (its own progress lines, the first batches excluded)
  load_s              the nine checkpoints loaded onto the device, once per shard
  decode_clips_per_s  the loader alone (same workers, same files, no model)
  forward_clips_per_s the ensemble alone on a batch already on the device
  syncs_per_batch     host syncs in the job's loop per batch (GPU: CUDA's sync debug mode; a sync stalls the
                      next batch's launches), None on CPU

The batch is `teachers.batch_size` clips of 10 s; shorter clips fill it with as many seconds, as the job does
(--seconds 1: TAU's clips). On CPU (--quick) the transformer is shrunk (2 blocks, 96 dims) and the clips are 2 s.

    python benchmarks/teacher_shard.py [--quick] [--clips N] [--seconds S] [--workers N] [--batch N]   # last line: JSON
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
import yaml

from prunekd.data.datasets import ClipDataset, clip_collate
from prunekd.teachers.logits import compute_shard, teacher_batch
from prunekd.teachers.passt import MEMBERS, Ensemble, build_member, checkpoint_file, load_member

REPO = Path(__file__).resolve().parents[1]
SMALL = {"n_mels": 128, "embed_dim": 96, "depth": 2, "num_heads": 4}


def _write_clip(args):
    path, seed, n = args
    sf.write(path, np.random.default_rng(seed).normal(0, 0.1, n).astype(np.float32), 32000, subtype="PCM_16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--clips", type=int)
    ap.add_argument("--seconds", type=float, help="clip length (default: 10 on a GPU, 2 on CPU)")
    ap.add_argument("--workers", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--precision", help="teachers.precision (default: config.yaml's)")
    a = ap.parse_args()
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    gpu = torch.cuda.is_available()
    arch = cfg["teachers"]["architecture"] if gpu else SMALL
    seconds = a.seconds or (10.0 if gpu else 2.0)
    workers = a.workers if a.workers is not None else (min(14, (os.cpu_count() or 2) - 2) if gpu else 1)
    batch = a.batch or (cfg["teachers"]["batch_size"] if gpu else 8)
    # GPU: 4,096 clips of 10 s; shorter clips as many seconds of audio. CPU: four batches.
    n_clips = a.clips or (
        round((1024 if a.quick else 4096) * 10 / seconds) if gpu else 4 * teacher_batch(batch, seconds)
    )
    teachers = {
        **cfg["teachers"],
        "members": list(MEMBERS),
        "architecture": arch,
        "batch_size": batch,
        "num_workers": workers,
        "precision": a.precision or cfg["teachers"]["precision"],
    }
    data = {"clip_seconds": seconds, "tile_to_10s": False}
    n = int(seconds * 32000)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "w").mkdir()
        torch.manual_seed(0)
        built = {}
        for m, (stride, _, _) in MEMBERS.items():  # one random member per stride, saved under each release name
            if stride not in built:
                built[stride] = build_member(stride, arch, 998).state_dict()
            torch.save(built[stride], tmp / "w" / checkpoint_file(m))
        del built
        paths = [str(tmp / f"c{i}.flac") for i in range(n_clips)]
        with ProcessPoolExecutor(max(1, (os.cpu_count() or 2))) as pool:
            list(pool.map(_write_clip, [(p, i, n) for i, p in enumerate(paths)], chunksize=16))
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
        lines = []
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if gpu:
                torch.cuda.set_sync_debug_mode("warn")
            loaded_at = [0]  # warnings so far when the members were on the device: their copies are not the loop's

            def log(line):
                if "loaded in" in line:
                    loaded_at[0] = len(caught)
                lines.append(line)

            try:
                compute_shard(tmp / "m.tsv", "audioset", 0, n_clips, tmp / "w", teachers, data, tmp / "s.zarr", log=log)
            finally:
                if gpu:
                    torch.cuda.set_sync_debug_mode(0)
        wall = time.perf_counter() - t0
        batch = teacher_batch(batch, seconds)  # what the job ran: the parts alone run the same batches
        batches = -(-n_clips // batch)
        syncs = sum("synchroniz" in str(w.message) for w in caught[loaded_at[0] :]) if gpu else None
        # Parts alone: the loader without a model, then the ensemble on a batch already on the device.
        loader = torch.utils.data.DataLoader(
            ClipDataset(paths, range(n_clips), 32000, n),
            batch_size=batch,
            num_workers=workers,
            collate_fn=clip_collate,
            prefetch_factor=4 if workers else None,
        )
        t0, seen, first = time.perf_counter(), 0, None
        for r, _, _ in loader:
            seen += len(r)
            if first is None:  # start-up (worker spawn, first batch) excluded
                first, t0 = seen, time.perf_counter()
        decode = (seen - first) / (time.perf_counter() - t0)
        dev = torch.device("cuda" if gpu else "cpu")
        ens = Ensemble([load_member(tmp / "w" / checkpoint_file(m), MEMBERS[m][0], arch) for m in MEMBERS]).to(dev)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(teachers["precision"]) if gpu else None
    if gpu and teachers["precision"] == "fp16_weights":
        ens.members.half()
    wav = torch.randn(batch, n, device=dev) * 0.1
    for _ in range(2):
        ens(wav, amp)
    reps = 10 if gpu else 2
    if gpu:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        ens(wav, amp)
    if gpu:
        torch.cuda.synchronize()
    forward = batch * reps / (time.perf_counter() - t0)
    prog = [(int(m.group(1)), float(m.group(2))) for x in lines if (m := re.search(r": (\d+)/\d+ clips, ([\d.]+)", x))]
    # Progress is the mean rate since the loop started (clip k at time k / rate): the rate between the
    # 10th-percentile line and the last excludes start-up.
    (c0, r0), (c1, r1) = prog[len(prog) // 10], prog[-1]
    shard = (c1 - c0) / max(c1 / r1 - c0 / r0, 1e-9) if c1 > c0 else r1
    load = next(float(m.group(1)) for x in lines if (m := re.search(r"loaded in ([\d.]+) s", x)))
    res = {
        "benchmark": "teacher_shard",
        "quick": a.quick,
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "cpu_count": os.cpu_count(),
        "members": len(MEMBERS),
        "arch": arch,
        "precision": teachers["precision"],
        "clip_seconds": seconds,
        "clips": n_clips,
        "batch": batch,
        "workers": workers,
        "shard_clips_per_s": round(shard, 1),
        "load_s": load,
        "decode_clips_per_s": round(decode, 1),
        "forward_clips_per_s": round(forward, 1),
        # the end of the shard (logits to the host) is one sync; the rest are the loop's
        "syncs_per_batch": round(syncs / batches, 2) if syncs is not None else None,
        "wall_s": round(wall, 1),
    }
    print(
        f"shard {shard:.1f} clips/s steady (+{load:.1f} s load) | decode alone {decode:.1f} | "
        f"forward alone {forward:.1f} clips/s | batch {batch} of {seconds:g} s clips"
        + (f", {syncs / batches:.2f} host syncs per batch" if syncs is not None else "")
    )
    print(json.dumps(res))


if __name__ == "__main__":
    main()
