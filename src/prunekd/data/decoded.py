"""A target's clips decoded once: resampled to the students' rate, padded or cut to the target's clip length.

Why: every fine-tuning, baseline and evaluation job of a target reads the same clips. Decoding them in each
job meant every small WAV file of the split read from the shared file system and resampled in every one of the
grid's training jobs (and the test clips again in each evaluation), GPU time spent decoding. `prunekd
decode-target` (rule decode_target, a CPU job) decodes them once, as the DCASE baseline caches its resampled
audio; a job then reads the rows it needs in large slices of one file.

float32, not int16: the very samples load_clip returns, so a job trains and evaluates on the numbers it saw when
it decoded the files itself (tested: the same weights bit for bit).

A store is a folder:
  audio.npy   float32 [clips, samples], a plain .npy (memory-mapped by the readers)
  clips.tsv   id, path, reason (why the clip failed to decode; empty if it decoded: a failed clip is silence)
  info.json   sample_rate, samples
It holds the usable clips (manifest status ok) of the target's training splits and test split, in manifest order.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from prunekd.atomic import atomic_path
from prunekd.data.datasets import WaveDataset, collate
from prunekd.errors import PrunekdError


class DecodedError(PrunekdError, ValueError):
    pass


def clip_samples(seconds: float, sample_rate: int) -> int:
    """Samples of a clip of `seconds`: the one count the store and the jobs that read it agree on."""
    return int(seconds * sample_rate)


def read_manifest(path) -> pd.DataFrame:
    """A target's manifest as fine-tuning, evaluation and the store read it (ids as text: "007" stays "007")."""
    return pd.read_csv(path, sep="\t", dtype={"id": str, "path": str}, keep_default_na=False)


def in_split(manifest: pd.DataFrame, column: str) -> pd.Series:
    """Usable clips of a split column (split<name> or test)."""
    return (manifest[column].astype(str) == "True") & (manifest["status"] == "ok")


def clip_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """The rows a target's store holds: usable clips in a training split (split*) or in the test split."""
    cols = [c for c in manifest.columns if c.startswith("split") or c == "test"]
    used = pd.Series(False, index=manifest.index)
    for c in cols:
        used |= in_split(manifest, c)
    return manifest[used]


def decoded_batches(paths, sample_rate: int, n_samples: int, num_workers: int, batch: int = 64):
    """(first index, float32 [k, n_samples], [(index, reason)] of clips that failed: silence) in order.

    Decoded in `num_workers` processes; the private generator leaves the global RNG alone (resume determinism).
    """
    dl = torch.utils.data.DataLoader(
        WaveDataset(paths, sample_rate, n_samples),
        batch_size=batch,
        num_workers=num_workers,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(0),
        prefetch_factor=4 if num_workers else None,
    )
    for wav, idx, bad in dl:
        yield int(idx[0]), wav, bad


def _where(nbytes: int, device: torch.device) -> torch.device:
    """Where clips drawn from by index live: on the GPU when they fit beside training, else in host memory."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        if nbytes > free - max(8 << 30, total // 5):  # leave room for training's activations
            return torch.device("cpu")
    return device


def _empty(n: int, n_samples: int, device) -> torch.Tensor:
    device = torch.device(device)
    where = _where(n * n_samples * 4, device)
    pin = where.type == "cpu" and device.type == "cuda"  # pinned: batches drawn there copy asynchronously
    return torch.empty((n, n_samples), dtype=torch.float32, device=where, pin_memory=pin)


def _log_kept(log, n: int, clips: torch.Tensor, how: str, t0: float) -> None:
    log(
        f"{how} {n} clips into {'GPU' if clips.device.type == 'cuda' else 'host'} memory "
        f"({clips.numel() * 4 / 1e9:.2f} GB float32) in {time.time() - t0:.2f} s"
    )


def decode_all(paths, sample_rate: int, n_samples: int, num_workers: int, device, log=print) -> torch.Tensor:
    """Every clip decoded in this job: float32 [N, n_samples] where batches are drawn from it by index (the
    GPU when it fits there, else pinned host memory). For a job without a decoded store (`prunekd finetune`
    run by hand); the workflow's jobs read the store decode_target wrote. A failed clip is silence, reported."""
    t0 = time.time()
    clips = _empty(len(paths), n_samples, device)
    for first, wav, bad in decoded_batches(paths, sample_rate, n_samples, num_workers):
        clips[first : first + len(wav)] = wav.to(clips.device)
        for i, why in bad:
            log(f"warning: {paths[i]}: {why}; used as silence")
    _log_kept(log, len(paths), clips, "decoded", t0)
    return clips


def write_decoded(manifest_path, sample_rate: int, clip_seconds: float, out, num_workers: int = 0, log=print) -> dict:
    """`prunekd decode-target`: the store of a target (module docstring), written atomically."""
    table = clip_table(read_manifest(manifest_path))
    if table.empty:
        raise DecodedError(f"{manifest_path}: no usable clip in a training or test split")
    twice = table["id"][table["id"].duplicated()]
    if len(twice):
        raise DecodedError(
            f"{manifest_path}: id {twice.iloc[0]!r} is listed {int((table['id'] == twice.iloc[0]).sum())} times"
        )
    paths = table["path"].tolist()
    n = clip_samples(clip_seconds, sample_rate)
    reasons = [""] * len(paths)
    t0, every = time.time(), max(1000, len(paths) // 20)
    with atomic_path(out) as tmp:
        tmp = Path(tmp)
        tmp.mkdir(parents=True)
        audio = np.lib.format.open_memmap(tmp / "audio.npy", mode="w+", dtype=np.float32, shape=(len(paths), n))
        _reserve(tmp / "audio.npy", out)
        for first, wav, bad in decoded_batches(paths, sample_rate, n, num_workers):
            audio[first : first + len(wav)] = wav.numpy()
            for i, why in bad:
                reasons[i] = why
                log(f"warning: {paths[i]}: {why}; stored as silence")
            end = first + len(wav)  # batches come in order: clips [0, end) are decoded
            if end // every > first // every or end == len(paths):
                rate = end / max(time.time() - t0, 1e-9)
                log(f"decoded {end}/{len(paths)} clips ({rate:.0f} clips/s, {(len(paths) - end) / rate:.0f} s left)")
        audio.flush()
        del audio
        pd.DataFrame({"id": table["id"].tolist(), "path": paths, "reason": reasons}).to_csv(
            tmp / "clips.tsv", sep="\t", index=False
        )
        (tmp / "info.json").write_text(json.dumps({"sample_rate": sample_rate, "samples": n}))
    failed = sum(bool(r) for r in reasons)
    log(
        f"{out}: {len(paths)} clips at {sample_rate} Hz, {n} samples each ({len(paths) * n * 4 / 1e9:.2f} GB), "
        f"{failed} failed to decode (silence) in {time.time() - t0:.1f} s"
    )
    return {"clips": len(paths), "failed": failed}


def _reserve(path: Path, out) -> None:
    """The store's whole size reserved on disk before the first clip: a full disk is a clear error now, not a
    SIGBUS (a write through the memory map to a page the disk has no room for) half an hour in."""
    import errno
    import shutil

    from prunekd.data.files import reserve

    size = path.stat().st_size
    fd = os.open(path, os.O_RDWR)
    try:
        reserve(fd, size)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        free = shutil.disk_usage(path.parent).free
        raise DecodedError(
            f"{out}: the decoded clips need {size / 1e9:.1f} GB, {path.parent} has {free / 1e9:.1f} GB free"
        ) from None
    finally:
        os.close(fd)


class Decoded:
    """A target's decoded store, opened for reading the clips of given ids."""

    def __init__(self, path, sample_rate: int, n_samples: int):
        self.path = Path(path)
        try:
            info = json.loads((self.path / "info.json").read_text())
            self.table = pd.read_csv(self.path / "clips.tsv", sep="\t", dtype=str, keep_default_na=False)
            self.audio = np.load(self.path / "audio.npy", mmap_mode="r")
        except (OSError, ValueError) as e:
            raise DecodedError(f"{self.path}: not a decoded store ({e}); rerun decode_target") from None
        for key, want in (("sample_rate", sample_rate), ("samples", n_samples)):
            if info.get(key) != want:
                raise DecodedError(f"{self.path}: {key} {info.get(key)}, this job needs {want}; rerun decode_target")
        a = self.audio
        if a.shape != (len(self.table), n_samples) or a.dtype != np.dtype("<f4") or not a.flags.c_contiguous:
            raise DecodedError(
                f"{self.path}: audio.npy is {a.dtype} {a.shape}, expected little-endian float32 "
                f"({len(self.table)}, {n_samples}) as clips.tsv lists; rerun decode_target"
            )
        self._position = pd.Index(self.table["id"])
        if not self._position.is_unique:
            raise DecodedError(f"{self.path}: clips.tsv lists an id twice; rerun decode_target")

    def positions(self, ids, paths=None) -> np.ndarray:
        """Rows of the store holding `ids`; an id it lacks is named, and so is one decoded from another file than
        `paths` says (the store is older than the manifest)."""
        ids = pd.Index([str(i) for i in ids])
        at = self._position.get_indexer(ids)
        if (at < 0).any():
            missing = ids[at < 0]
            raise DecodedError(
                f"{self.path}: {len(missing)} clips are not in the decoded store, e.g. {list(missing[:3])}; "
                "rerun decode_target"
            )
        if paths is not None:
            stored, paths = self.table["path"].to_numpy()[at], np.asarray(paths, dtype=str)
            if (stored != paths).any():
                i = int(np.flatnonzero(stored != paths)[0])
                raise DecodedError(
                    f"{self.path}: clip {ids[i]} was decoded from {stored[i]}, the manifest says {paths[i]}; "
                    "rerun decode_target"
                )
        return at

    def failed(self, at: np.ndarray) -> list[tuple[int, str]]:
        """(index into `at`, reason) of the clips that failed to decode (stored as silence)."""
        reasons = self.table["reason"].to_numpy()[at]
        return [(i, r) for i, r in enumerate(reasons) if r]

    def batches(self, ids, batch_size: int, paths=None):
        """(float32 [k, samples], [(index, reason)] of failed clips in the batch) for ids in order."""
        at = self.positions(ids, paths)
        for s in range(0, len(at), batch_size):
            part = at[s : s + batch_size]
            wav = torch.empty((len(part), self.audio.shape[1]), dtype=torch.float32)
            self._read_into(part, wav.numpy(), threads=1)
            yield wav, [(s + i, why) for i, why in self.failed(part)]

    def read(self, ids, device, log=print, paths=None, threads: int = 4, chunk_bytes: int = 1 << 30) -> torch.Tensor:
        """Clips of `ids` as float32 [len(ids), samples] where batches are drawn from them by index (the GPU when
        they fit there, else pinned host memory). Read by `threads` threads, each run of consecutive clips with
        one positioned read (a split's clips lie in manifest order: a few large reads); to the GPU through a
        pinned buffer of `chunk_bytes`, so that host memory stays small."""
        t0 = time.time()
        at = self.positions(ids, paths)
        chunk = max(1, chunk_bytes // (self.audio.shape[1] * 4))
        clips = _empty(len(at), self.audio.shape[1], device)
        if clips.device.type == "cpu":
            self._read_into(at, clips.numpy(), threads)
        else:
            buf = torch.empty((min(chunk, len(at)), self.audio.shape[1]), dtype=torch.float32, pin_memory=True)
            for s in range(0, len(at), chunk):
                part = at[s : s + chunk]
                self._read_into(part, buf.numpy()[: len(part)], threads)
                clips[s : s + len(part)].copy_(buf[: len(part)])  # synchronous: the buffer is refilled next
        for i, why in self.failed(at):
            log(f"warning: {self.table['path'].iloc[at[i]]}: {why}; used as silence")
        _log_kept(log, len(at), clips, f"read from {self.path}", t0)
        return clips

    def _read_into(self, at: np.ndarray, out: np.ndarray, threads: int) -> None:
        """Rows `at` of audio.npy into `out` (float32 [len(at), samples]): each run of consecutive rows one
        positioned read (numpy's fancy indexing of the memory map reads at half the rate), `threads` parts at once."""
        from concurrent.futures import ThreadPoolExecutor

        from prunekd.data.files import read_exact

        path, row = self.path / "audio.npy", self.audio.shape[1] * 4
        # runs of consecutive rows, cut every 1,024 rows so that the threads share a long run
        starts = np.union1d(np.flatnonzero(np.diff(at) != 1) + 1, np.arange(0, len(at), 1024))
        starts = np.append(starts, len(at))

        def runs(lo: int, hi: int) -> None:
            fd = os.open(path, os.O_RDONLY)
            try:
                for a, b in zip(starts[lo:hi], starts[lo + 1 : hi + 1]):
                    read_exact(fd, memoryview(out[a:b]).cast("B"), self.audio.offset + int(at[a]) * row, path)
            finally:
                os.close(fd)

        n_runs = len(starts) - 1
        if threads <= 1 or n_runs < 2:
            runs(0, n_runs)
            return
        cuts = np.linspace(0, n_runs, min(threads, n_runs) + 1).astype(int)
        with ThreadPoolExecutor(len(cuts) - 1) as pool:
            for f in [pool.submit(runs, int(lo), int(hi)) for lo, hi in zip(cuts[:-1], cuts[1:])]:
                f.result()


def decode_target_step(manifest, out, settings: dict, threads: int = 1, log=print) -> dict:
    """`prunekd decode-target`: the step's config slice unpacked; the job's threads decode (one: in this process)."""
    workers = 0 if threads < 2 else threads
    return write_decoded(manifest, settings["sample_rate"], settings["clip_seconds"], out, workers, log)
