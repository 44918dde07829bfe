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

import os
import time

import numpy as np
import pandas as pd
import torch
import zarr

from prunekd.atomic import atomic_path
from prunekd.data.audio import AudioError, load_clip
from prunekd.data.files import OpenFiles, raise_file_limit, read_exact
from prunekd.data.tables import ok_rows

CLIPS_PER_FILE = 64
FILES_SPARE = 256  # descriptors a reader leaves to the rest of its process (logs, stores, the staged copy)


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
        # Uncompressed: on audio zstd saves few bytes and costs much of the read rate (docs/performance.md).
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
                buf[k % CLIPS_PER_FILE] = np.clip(np.round(np.asarray(x) * 32767.0), -32768, 32767)  # x: a torch tensor
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


def locate_rows(store_paths, rows) -> np.ndarray:
    """[len(rows), 2]: the store and the index in it of each manifest row, by sorted search (2 M rows need no
    Python dict). A row in no store is named."""
    rows = np.asarray(rows, dtype=np.int64)
    all_rows, store_of, index_in = [], [], []
    for s, p in enumerate(store_paths):
        r = zarr.open_group(str(p), mode="r")["row"][:]
        all_rows.append(r)
        store_of.append(np.full(len(r), s, np.int64))
        index_in.append(np.arange(len(r), dtype=np.int64))
    all_rows = np.concatenate(all_rows) if all_rows else np.zeros(0, np.int64)
    order = np.argsort(all_rows, kind="stable")
    sorted_rows = all_rows[order]
    at = np.searchsorted(sorted_rows, rows)
    ok = (at < len(sorted_rows)) & (sorted_rows[np.minimum(at, len(sorted_rows) - 1)] == rows)
    if not ok.all():
        raise KeyError(
            f"{int((~ok).sum())} clips are not in the packed stores, e.g. manifest rows {rows[~ok][:5].tolist()}"
        )
    src = order[at]
    return np.stack([np.concatenate(store_of)[src], np.concatenate(index_in)[src]], axis=1)


class PackedAudio(torch.utils.data.Dataset):
    """Clips by manifest row from a set of packed stores; yields (int16 waveform, index, reason).

    Same item layout as datasets.WaveDataset, so the training loops take either. The samples stay int16 up to
    the device (training.as_float turns them into the float32 x / 32768 there, exactly): half the bytes through
    the loader's shared memory, the pinning and the host-to-device copy.
    Stores are opened lazily, once per DataLoader worker.
    """

    def __init__(self, store_paths, rows, n_samples: int):
        self.paths = [str(p) for p in store_paths]
        self.rows = np.asarray(rows, dtype=np.int64)
        self.n = n_samples
        self.loc = locate_rows(self.paths, self.rows)
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


class RawLayoutError(ValueError):
    """A packed store not in the raw layout `pack_shard` writes (another codec or layout): read it through zarr."""


def _raw_layout(store) -> tuple[int, int]:
    """(clips per shard file, samples per clip) of a packed store's `audio` if its shard files hold raw little-endian
    int16 clips with the shard index at the end (what pack_shard writes); else RawLayoutError."""
    import json
    from pathlib import Path

    meta = json.loads((Path(store) / "audio" / "zarr.json").read_text())
    codecs = meta.get("codecs", [])
    if (
        meta.get("data_type") != "int16"
        or len(codecs) != 1
        or codecs[0].get("name") != "sharding_indexed"
        or meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator") != "/"
    ):
        raise RawLayoutError(f"{store}: audio is not sharded raw int16")
    conf = codecs[0]["configuration"]
    inner = conf["codecs"]
    if (
        conf.get("index_location", "end") != "end"
        or [c["name"] for c in inner] != ["bytes"]
        or inner[0].get("configuration", {}).get("endian", "little") != "little"
        or [c["name"] for c in conf.get("index_codecs", [])] != ["bytes", "crc32c"]
        or conf["chunk_shape"][0] != 1
    ):
        raise RawLayoutError(f"{store}: audio's shard codecs are not the raw layout pack_shard writes")
    per_file, samples = meta["chunk_grid"]["configuration"]["chunk_shape"]
    return int(per_file), int(samples)


class PackedReader:
    """Clips of packed stores read straight from their shard files into a batch buffer, in threads.

    What PackedAudio does through zarr in loader processes, without the processes: each clip is one positioned
    read (os.preadv, which releases the GIL) into its row of a pinned int16 batch, so the bytes go file ->
    pinned memory -> GPU. No pickling, no shared-memory copy, no pin copy: the main thread only submits the
    reads (with many loader processes the main thread spent as long receiving a batch as the GPU spent on the
    step: docs/performance.md). Same int16 samples as PackedAudio (tested). Each shard file's index (the offset of
    every clip in it) is read once and kept, and the files stay open (OpenFiles) until `close`.
    """

    def __init__(self, store_paths, rows, n_samples: int):
        self.paths = [str(p) for p in store_paths]
        self.layout = [_raw_layout(p) for p in self.paths]  # RawLayoutError: use PackedAudio
        self.loc = locate_rows(self.paths, rows)
        self.n = n_samples
        self._index: dict[tuple[int, int], np.ndarray] = {}
        per_file = np.array([per for per, _ in self.layout], dtype=np.int64)
        n_files = len(np.unique(self.loc[:, 0] * (1 << 40) + self.loc[:, 1] // per_file[self.loc[:, 0]]))
        # Room for every file the rows lie in, with 256 descriptors left for the rest of the job.
        self.files = OpenFiles(min(n_files, raise_file_limit(n_files + FILES_SPARE) - FILES_SPARE))

    def close(self) -> None:
        self.files.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __len__(self):
        return len(self.loc)

    def _offset(self, s: int, k: int) -> tuple[str, int, int]:
        per_file, samples = self.layout[s]
        shard, inner = divmod(k, per_file)
        path = f"{self.paths[s]}/audio/c/{shard}/0"
        index = self._index.get((s, shard))
        if index is None:
            size = 16 * per_file + 4  # (offset, nbytes) uint64 per clip, then a crc32c
            with self.files.fd(path) as fd:
                end = os.fstat(fd).st_size
                if end < size:
                    raise OSError(f"{path}: {end} bytes, shorter than its index of {size}")
                raw = bytearray(size)
                read_exact(fd, memoryview(raw), end - size, path)
            index = np.frombuffer(bytes(raw[:-4]), dtype="<u8").reshape(per_file, 2)
            self._index[(s, shard)] = index
        offset, nbytes = (int(v) for v in index[inner])
        if nbytes != 2 * samples:
            raise OSError(f"{path}: clip {inner} has {nbytes} bytes, expected {2 * samples}")
        return path, offset, samples

    def read_into(self, i: int, out: np.ndarray) -> None:
        """Clip i (its position in `rows`) into `out` (int16 [n_samples]): padded with zeros or cut like load_clip."""
        self.read_many([i], [out])

    def read_many(self, idx, outs) -> None:
        """Clips idx into outs (staging's copy reads many in file order)."""
        for i, out in zip(idx, outs):
            path, offset, samples = self._offset(*(int(v) for v in self.loc[i]))
            view = memoryview(out[: min(samples, self.n)]).cast("B")
            out[len(view) // 2 :] = 0
            with self.files.fd(path) as fd:
                read_exact(fd, view, offset, path)


def reader_batches(reader, sampler, threads: int, pin: bool, ahead: int = 4):
    """(int16 batch, indices) per step of `sampler`, read from `reader` (a PackedReader or its staged copy,
    staging.StagedClips) by `threads` threads `ahead` batches in advance; both pinned when `pin` (their copies to
    the GPU are then asynchronous)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pending: deque = deque()
    batches = iter(sampler)
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="packed") as pool:

        def submit() -> bool:
            idx = next(batches, None)
            if idx is None:
                return False
            wav = torch.empty((len(idx), reader.n), dtype=torch.int16, pin_memory=pin)
            rows = wav.numpy()
            pending.append((wav, idx, [pool.submit(reader.read_into, i, rows[j]) for j, i in enumerate(idx)]))
            return True

        try:
            while len(pending) < ahead and submit():
                pass
            while pending:
                wav, idx, futures = pending.popleft()
                for f in futures:
                    f.result()  # a failed read raises here, naming the file
                submit()
                idx = torch.tensor(idx)
                yield wav, (idx.pin_memory() if pin else idx)
        finally:  # closed early (a failed step): the reads not yet started are dropped, not waited for
            pool.shutdown(wait=True, cancel_futures=True)


def pack_step(manifest, shard, out, settings: dict, threads: int = 1, log=print) -> dict:
    """`prunekd pack-audio`: the step's config slice unpacked; the job's threads decode (one: in this process)."""
    s = settings
    workers = 0 if threads < 2 else threads
    return pack_shard(
        manifest, shard, s["shard_size"], s["subsets"], s["sample_rate"], s["clip_seconds"], out, workers, log
    )
