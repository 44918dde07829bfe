"""Benchmark: AudioSet read from PaSST's *_mp3.hdf files, against single MP3 files and the packed store.

The same 10 s clips (32 kHz mono MP3, as in PaSST's HDF5 files) are written once into an HDF5 file in
PaSST's layout and once as one file per clip; the packed int16 Zarr store is made from the HDF5 file with
`prunekd.data.packed.pack_shard` (what `pack_audio` does). Each source is read the way the pipeline reads it,
through a DataLoader with the same workers:
  teacher pass   every clip once, in manifest order, batch 32 (datasets.ClipDataset)
  distillation   random clips, batch 32 (datasets.WaveDataset / packed.PackedAudio)
Steady state: the first two batches (worker start-up) are not timed. Reports clips/s and bytes per clip.

    python benchmarks/audioset_hdf5.py [--quick] [--workers N]     # last line: one JSON object
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time

import h5py
import numpy as np
import pandas as pd
import soundfile as sf
import torch
from common import synthetic_clip

from prunekd.data.clipref import clip_ref
from prunekd.data.datasets import ClipDataset, WaveDataset, clip_collate, collate
from prunekd.data.packed import PackedAudio, pack_shard


def steady_rate(loader, warmup: int = 2) -> float:
    """Clips/s of the batches after the first `warmup` (the clock starts when batch warmup-1 has arrived)."""
    n, t0 = 0, None
    for k, batch in enumerate(loader):
        if k == warmup - 1:
            t0 = time.perf_counter()
        elif k >= warmup:
            n += len(batch[0])
    return n / (time.perf_counter() - t0)


def teacher_rate(paths, n, workers, repeat):
    paths = list(paths) * repeat  # more batches than clips written: the rate, not the start-up
    ds = ClipDataset(paths, range(len(paths)), 32000, n)
    dl = torch.utils.data.DataLoader(
        ds, batch_size=32, num_workers=workers, collate_fn=clip_collate, prefetch_factor=4 if workers else None
    )
    return steady_rate(dl)


def distill_rate(dataset, steps, workers):
    g = np.random.default_rng(0)
    batches = [g.integers(0, len(dataset), 32).tolist() for _ in range(steps)]
    dl = torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate, prefetch_factor=4 if workers else None
    )
    return steady_rate(dl)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer clips: ends within a minute")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    n_clips, repeat, steps, seconds, sr = (96, 4, 12, 10.0, 32000) if a.quick else (320, 4, 40, 10.0, 32000)
    n = int(sr * seconds)
    res = {
        "benchmark": "audioset_hdf5",
        "quick": a.quick,
        "clips": n_clips,
        "teacher_pass_reads": n_clips * repeat,
        "distill_steps": steps,
        "clip_seconds": seconds,
        "workers": a.workers,
        "cpu_count": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        hdf = os.path.join(tmp, "unbalanced_train_segments_mp3.hdf")
        os.makedirs(os.path.join(tmp, "mp3"))
        files = []
        with h5py.File(hdf, "w") as f:
            f.create_dataset("audio_name", data=np.array([f"00/Yc{i}.mp3" for i in range(n_clips)], dtype="S20"))
            mp3 = f.create_dataset("mp3", shape=(n_clips,), dtype=h5py.vlen_dtype(np.dtype("uint8")))
            f.create_dataset("target", data=np.zeros((n_clips, 66), np.uint8))
            for i in range(n_clips):
                b = io.BytesIO()
                sf.write(b, synthetic_clip(np.random.default_rng(i), sr, seconds), sr, format="MP3")
                mp3[i] = np.frombuffer(b.getvalue(), np.uint8)
                files.append(os.path.join(tmp, "mp3", f"Yc{i}.mp3"))
                with open(files[-1], "wb") as fh:
                    fh.write(b.getvalue())
        refs = [clip_ref(hdf, i) for i in range(n_clips)]
        res["hdf5_bytes_per_clip"] = os.path.getsize(hdf) // n_clips
        res["teacher_pass_hdf5_clips_per_s"] = round(teacher_rate(refs, n, a.workers, repeat), 1)
        res["teacher_pass_mp3_files_clips_per_s"] = round(teacher_rate(files, n, a.workers, repeat), 1)
        man = pd.DataFrame(
            {
                "row": range(n_clips),
                "id": [f"c{i}" for i in range(n_clips)],
                "path": refs,
                "subset": "unbalanced_train",
                "labels": "0",
                "duration": seconds,
                "status": "ok",
            }
        )
        man.to_csv(os.path.join(tmp, "m.tsv"), sep="\t", index=False)
        store = os.path.join(tmp, "packed.zarr")
        t0 = time.perf_counter()
        pack_shard(
            os.path.join(tmp, "m.tsv"),
            0,
            n_clips,
            ["unbalanced_train"],
            sr,
            seconds,
            store,
            num_workers=a.workers,
            log=lambda *_: None,
        )
        res["pack_from_hdf5_clips_per_s"] = round(n_clips / (time.perf_counter() - t0), 1)
        res["packed_bytes_per_clip"] = (
            sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(store) for f in fs) // n_clips
        )
        res["distill_hdf5_clips_per_s"] = round(distill_rate(WaveDataset(refs, sr, n), steps, a.workers), 1)
        res["distill_packed_clips_per_s"] = round(
            distill_rate(PackedAudio([store], np.arange(n_clips), n), steps, a.workers), 1
        )
    res["distill_packed_over_hdf5"] = round(res["distill_packed_clips_per_s"] / res["distill_hdf5_clips_per_s"], 2)
    # Per decoding process: what 8 workers per GPU job (config teachers/distillation.num_workers) can feed.
    res["hdf5_decode_clips_per_s_per_worker"] = round(res["distill_hdf5_clips_per_s"] / max(1, a.workers), 1)
    # AudioSet's 2.06 M training clips: PaSST's HDF5 files as they are, and the packed copy on top.
    res["hdf5_tb_for_audioset_train"] = round(res["hdf5_bytes_per_clip"] * 2.06e6 / 1e12, 3)
    res["packed_tb_for_audioset_train"] = round(res["packed_bytes_per_clip"] * 2.06e6 / 1e12, 2)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
