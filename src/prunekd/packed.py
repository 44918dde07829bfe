"""Packed AudioSet audio: the training clips decoded once to 32 kHz int16 and stored in Zarr.

Why: distillation draws 32 random clips per step, 100 k steps. Decoding the source files (MP3 or
FLAC, one small file per clip) costs CPU per clip and many small reads per step on a cluster file
system; a packed store costs one partial read per clip and no decoding (benchmarks/audio_input.py).

One store per manifest row block (the teacher shards' blocks, so a shard job packs what it owns):
  row [n] int64 (manifest row), audio [n, samples] int16, attrs.rejected (clips that failed to decode).
`audio` is chunked one clip per chunk inside Zarr shards of many clips, so a random clip is one
partial read and a store is a handful of files, not one file per clip.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
import zarr

from .atomic import atomic_path
from .audio import AudioError, load_clip
from .manifest import ok_rows

CLIPS_PER_FILE = 64


class _Decode(torch.utils.data.Dataset):
    def __init__(self, paths, sr, n):
        self.paths, self.sr, self.n = list(paths), sr, n

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            return i, load_clip(self.paths[i], self.sr, self.n), ""
        except AudioError as e:
            return i, None, e.reason


def pack_shard(
    manifest_path,
    shard: int,
    shard_size: int,
    subsets,
    sample_rate: int,
    clip_seconds: float,
    out,
    num_workers: int = 0,
    log=print,
) -> dict:
    """Decode the clips of one manifest row block (only `subsets`) into a packed store, atomically."""
    manifest = pd.read_csv(manifest_path, sep="\t", dtype={"labels": str}, keep_default_na=False)
    part = ok_rows(manifest, shard * shard_size, (shard + 1) * shard_size)
    part = part[part["subset"].isin(subsets)]
    n = int(round(clip_seconds * sample_rate))
    loader = torch.utils.data.DataLoader(
        _Decode(part["path"], sample_rate, n),
        batch_size=None,
        num_workers=num_workers,
        prefetch_factor=8 if num_workers else None,
    )
    rows_all = part["row"].to_numpy()
    keep, rejected, t0 = [], [], time.time()
    with atomic_path(out) as tmp:
        g = zarr.open_group(str(tmp), mode="w")
        # Uncompressed: zstd saved 7 % of the bytes on audio and cost 37 % of the read rate (measured).
        audio = g.create_array(
            "audio",
            shape=(len(part), n),
            dtype="int16",
            chunks=(1, n),
            shards=(max(1, min(len(part), CLIPS_PER_FILE)), n),
            compressors=None,
        )
        buf = np.zeros((CLIPS_PER_FILE, n), np.int16)
        k = 0  # clips written (rejected clips leave no gap)
        for j, (i, x, why) in enumerate(loader):
            if x is None:
                rejected.append([int(rows_all[i]), why])
            else:
                buf[k % CLIPS_PER_FILE] = np.clip(np.round(x * 32767.0), -32768, 32767)
                keep.append(int(rows_all[i]))
                k += 1
                if k % CLIPS_PER_FILE == 0:  # whole Zarr shards: one write each
                    audio[k - CLIPS_PER_FILE : k] = buf
            if (j + 1) % 1000 == 0:
                log(f"packed {j + 1}/{len(part)} clips ({(j + 1) / (time.time() - t0):.0f} clips/s)")
        if k % CLIPS_PER_FILE:
            audio[k - k % CLIPS_PER_FILE : k] = buf[: k % CLIPS_PER_FILE]
        if k < len(part):
            audio.resize((k, n))
        g.create_array("row", data=np.asarray(keep, dtype=np.int64))
        g.attrs.update({"shard": shard, "sample_rate": sample_rate, "samples": n, "rejected": rejected})
    log(f"shard {shard}: packed {k} clips, {len(rejected)} failed to decode")
    return {"packed": k, "rejected": len(rejected)}


class PackedAudio(torch.utils.data.Dataset):
    """Clips by manifest row from a set of packed stores; yields (int16 waveform, index, reason).

    Same item layout as training.WaveDataset, so the training loops take either. The samples stay int16 up to
    the device (training.as_float turns them into the float32 x / 32768 there, exactly): half the bytes through
    the loader's shared memory, the pinning and the host-to-device copy (issue 15).
    Stores are opened lazily, once per DataLoader worker.
    """

    def __init__(self, store_paths, rows, n_samples: int):
        self.paths = [str(p) for p in store_paths]
        self.rows = np.asarray(rows, dtype=np.int64)
        self.n = n_samples
        # Row -> (store, index) by sorted search: 2 M rows need no Python dict.
        all_rows, store_of, index_in = [], [], []
        for s, p in enumerate(self.paths):
            r = zarr.open_group(p, mode="r")["row"][:]
            all_rows.append(r)
            store_of.append(np.full(len(r), s, np.int64))
            index_in.append(np.arange(len(r), dtype=np.int64))
        all_rows = np.concatenate(all_rows) if all_rows else np.zeros(0, np.int64)
        order = np.argsort(all_rows, kind="stable")
        sorted_rows = all_rows[order]
        at = np.searchsorted(sorted_rows, self.rows)
        ok = (at < len(sorted_rows)) & (sorted_rows[np.minimum(at, len(sorted_rows) - 1)] == self.rows)
        if not ok.all():
            raise KeyError(
                f"{int((~ok).sum())} clips are not in the packed stores, "
                f"e.g. manifest rows {self.rows[~ok][:5].tolist()}"
            )
        src = order[at]
        self.loc = np.stack([np.concatenate(store_of)[src], np.concatenate(index_in)[src]], axis=1)
        self._arrays = None

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        if self._arrays is None:
            self._arrays = [zarr.open_group(p, mode="r")["audio"] for p in self.paths]
        s, k = self.loc[i]
        x = self._arrays[s][int(k)]
        if len(x) != self.n:  # another clip length than packed: pad or crop like load_clip
            x = np.pad(x, (0, max(0, self.n - len(x))))[: self.n]
        return torch.from_numpy(x), i, ""


def pack_step(manifest, shard, out, settings: dict, log=print) -> dict:
    """`prunekd pack-audio`: the step's config slice unpacked."""
    s = settings
    return pack_shard(
        manifest, shard, s["shard_size"], s["subsets"], s["sample_rate"], s["clip_seconds"], out, s["num_workers"], log
    )
