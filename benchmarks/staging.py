"""Benchmark: node-local staging of a distillation's packed clips (`distillation.staging: auto`).

Packs synthetic clips into two stores with `prunekd.data.packed.pack_shard` (the layout pack-audio writes), takes a
random pruned subset of them and measures, with the distillation's own code:
  - the copy to the stage folder (`prunekd.data.staging.staged`) alone: seconds and GB/s;
  - the steps' input read from the shared stores, from the finished copy, and while the copy runs beside them
    (`reader_batches`, batch 32): batches/s and files opened per batch;
  - what a distillation asks of the shared file system either way, for this run and for the report's
    100 k steps of 32 on a 200 k-clip pruned set.
Both reads come from the page cache here; the shared stores' shard files are opened once each and kept open
(files.OpenFiles; each clip was an open and a close before), so what differs is where the bytes lie. On a
cluster file system the shared reads also pay its latency and share its bandwidth with every other job.

    python benchmarks/staging.py [--quick] [--stage-dir DIR] [--workers N]   # last line: JSON
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import zarr

from prunekd.data import packed as packed_mod
from prunekd.data import staging
from prunekd.data.packed import PackedReader, pack_shard, reader_batches
from prunekd.student.training import StepSampler


def read_rate(reader, n_clips: int, steps: int, threads: int) -> tuple[float, float]:
    """(batches/s, files opened per batch) of `reader_batches` over `steps` batches of 32, after 10 to warm up."""
    opens = [0]
    real_open = os.open

    def counting_open(*a, **k):
        opens[0] += 1
        return real_open(*a, **k)

    sampler = StepSampler(n_clips, 32, steps + 10, seed=0)
    packed_mod.os.open = counting_open  # os.open for the whole process: only the reads run while it counts
    try:
        for k, _ in enumerate(reader_batches(reader, sampler, threads, pin=False)):
            if k == 10:
                t0, o0 = time.perf_counter(), opens[0]
        rate = steps / (time.perf_counter() - t0)
        return rate, (opens[0] - o0) / steps
    finally:
        packed_mod.os.open = real_open


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 s clips: ends within a minute")
    ap.add_argument("--stage-dir", help="the node-local folder (default: a temporary folder)")
    ap.add_argument("--workers", type=int, default=2, help="reading threads (distillation.num_workers)")
    a = ap.parse_args()
    seconds = 1.0 if a.quick else 10.0
    n_total, n_pruned, steps = (1024, 512, 200) if a.quick else (1024, 512, 100)
    n = int(seconds * 32000)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = []
        for i in range(n_total):
            p = tmp / "audio" / f"c{i}.wav"
            p.parent.mkdir(exist_ok=True)
            sf.write(str(p), rng.normal(0, 0.1, n).astype(np.float32), 32000, subtype="PCM_16")
            rows.append({"row": i, "id": f"c{i}", "subset": "unbalanced_train", "path": str(p), "labels": "0"})
            rows[-1].update(duration=seconds, status="ok")
        pd.DataFrame(rows).to_csv(tmp / "m.tsv", sep="\t", index=False)
        stores = [tmp / "a.zarr", tmp / "b.zarr"]
        for shard, p in enumerate(stores):
            pack_shard(tmp / "m.tsv", shard, n_total // 2, ["unbalanced_train"], 32000, seconds, p, a.workers, print)
        all_rows = np.concatenate([zarr.open_group(str(p), mode="r")["row"][:] for p in stores])
        pruned = rng.permutation(all_rows)[:n_pruned]
        loc = PackedReader(stores, pruned, n).loc
        files = len({(int(st), int(k) // packed_mod.CLIPS_PER_FILE) for st, k in loc})
        shared = PackedReader(stores, pruned, n)
        shared_rate, shared_opens = read_rate(shared, n_pruned, steps, a.workers)
        stage_dir = Path(a.stage_dir) if a.stage_dir else tmp / "node"
        stage_dir.mkdir(exist_ok=True)
        log = []
        t0 = time.perf_counter()
        draws = 100_000 * 32
        opens, real_open = [0], os.open

        def counting_open(*args, **kw):
            opens[0] += 1
            return real_open(*args, **kw)

        packed_mod.os.open = counting_open  # the shard files the copy opens
        try:
            with staging.staged(PackedReader(stores, pruned, n), stage_dir, draws, a.workers, log.append) as copy:
                assert isinstance(copy, staging.StagedClips), log
                copy.wait()  # the copy alone
                copy_s = time.perf_counter() - t0
                copy_opens = opens[0]
                packed_mod.os.open = real_open
                staged_rate, staged_opens = read_rate(copy, n_pruned, steps, a.workers)
        finally:
            packed_mod.os.open = real_open
        with staging.staged(PackedReader(stores, pruned, n), stage_dir, draws, a.workers, log.append) as copy:
            during_rate, _ = read_rate(copy, n_pruned, steps, a.workers)  # the steps while the copy runs
            copy.wait()
    clip_bytes = 2 * n
    result = {
        "clip_seconds": seconds,
        "pruned_clips": n_pruned,
        "threads": a.workers,
        "copy_s": round(copy_s, 2),
        "copy_gb_per_s": round(n_pruned * clip_bytes / 1e9 / copy_s, 2),
        "shared_batches_per_s": round(shared_rate, 1),
        "staged_batches_per_s": round(staged_rate, 1),
        "during_copy_batches_per_s": round(during_rate, 1),
        "shared_opens_per_batch": shared_opens,
        "staged_opens_per_batch": staged_opens,
        # The report's distillation: 100 k steps of 32 draws on a pruned set of 200 k 10 s clips (640 kB each).
        "report_shared_tb_unstaged": round(100_000 * 32 * 640_000 / 1e12, 2),
        "report_shared_tb_staged": round(200_000 * 640_000 / 1e12, 2),
        # each of AudioSet's shard files opened once while the open-file limit allows (3.2 M: one per clip read)
        "report_shared_opens_unstaged_at_most": -(-2_060_000 // packed_mod.CLIPS_PER_FILE),
        "copy_opens": copy_opens,
        "copy_files": files,  # shard files the pruned clips lie in: the copy opens each about once
        # at most one open per shard file of AudioSet's packed stores (64 clips each), kept open for the steps
        "report_shared_opens_staged_at_most": -(-2_060_000 // packed_mod.CLIPS_PER_FILE),
    }
    print(
        f"copy of {n_pruned} {seconds:g} s clips: {copy_s:.2f} s ({result['copy_gb_per_s']} GB/s, "
        f"{copy_opens} opens of the {files} shard files it reads); "
        f"steps' input from the shared stores {shared_rate:.0f} batches/s ({shared_opens:.0f} opens per batch), "
        f"from the copy {staged_rate:.0f} ({staged_opens:.0f} opens), while the copy runs {during_rate:.0f}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
