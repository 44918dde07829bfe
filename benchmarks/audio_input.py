"""Benchmark: distillation input pipeline, packed Zarr audio against decoding the source files.

The same clips (10 s, 32 kHz content) are written as WAV, FLAC and MP3 (what local AudioSet copies
use; MP3 at 44.1 kHz as downloaded, so decoding also resamples), and packed once with
`prunekd.data.packed.pack_shard`. Each source is read through a DataLoader with the same number of
workers, batch 32, random order, as the distillation loop does. Reports clips/s and bytes per clip.

    python benchmarks/audio_input.py [--quick] [--workers N]     # last line: one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import pandas as pd
import soundfile as sf
from common import loader_rate, synthetic_clip

from prunekd.data.datasets import WaveDataset, collate
from prunekd.data.packed import PackedAudio, pack_shard


def dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer clips: ends within a minute")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    n_clips, seconds, sr = (64, 10.0, 32000) if a.quick else (512, 10.0, 32000)
    res = {
        "benchmark": "audio_input",
        "quick": a.quick,
        "clips": n_clips,
        "clip_seconds": seconds,
        "workers": a.workers,
        "cpu_count": os.cpu_count(),
    }
    n = int(sr * seconds)
    with tempfile.TemporaryDirectory() as tmp:
        formats = {
            "wav": ("WAV", "PCM_16", 32000),
            "flac": ("FLAC", "PCM_16", 32000),
            "mp3": ("MP3", "MPEG_LAYER_III", 44100),
        }
        manifests = {}
        for ext, (fmt, subtype, fsr) in formats.items():
            os.makedirs(os.path.join(tmp, ext))
            paths = []
            for i in range(n_clips):
                p = os.path.join(tmp, ext, f"c{i}.{ext}")
                y = synthetic_clip(np.random.default_rng(i), fsr, seconds)  # same sound in each format
                try:
                    sf.write(p, y, fsr, format=fmt, subtype=subtype)
                except (sf.LibsndfileError, ValueError, TypeError) as e:  # an old libsndfile without MP3
                    res[f"{ext}_error"] = str(e)[:100]
                    break
                paths.append(p)
            else:
                manifests[ext] = paths
                res[f"{ext}_bytes_per_clip"] = dir_bytes(os.path.join(tmp, ext)) // n_clips
        for ext, paths in manifests.items():
            res[f"{ext}_decode_clips_per_s"] = round(loader_rate(WaveDataset(paths, sr, n), a.workers, collate), 1)
        # Pack once (from FLAC, as a local copy would be), then read.
        src = manifests.get("flac") or manifests["wav"]
        man = pd.DataFrame(
            {
                "row": range(n_clips),
                "id": [f"c{i}" for i in range(n_clips)],
                "path": src,
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
        res["pack_clips_per_s"] = round(n_clips / (time.perf_counter() - t0), 1)
        res["packed_bytes_per_clip"] = dir_bytes(store) // n_clips
        res["packed_files"] = sum(len(fs) for _, _, fs in os.walk(store))
        res["packed_clips_per_s"] = round(
            loader_rate(PackedAudio([store], np.arange(n_clips), n), a.workers, collate), 1
        )
    best_decode = max(v for k, v in res.items() if k.endswith("_decode_clips_per_s"))
    res["packed_speedup_over_best_decode"] = round(res["packed_clips_per_s"] / best_decode, 2)
    # Full AudioSet training set (2.06 M clips of 10 s) packed, in TB.
    res["packed_tb_for_audioset_train"] = round(res["packed_bytes_per_clip"] * 2.06e6 / 1e12, 2)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
