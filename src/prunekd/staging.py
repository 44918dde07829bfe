"""Node-local staging of a distillation's clips (README, "Audio input of distillation").

Why: a distillation draws steps x batch random clips from the packed stores on the shared file system (3.2 M reads
of 640 kB at the report's 100 k steps of 32: 2 TB, and a file open per read), but its pruned set holds only n
distinct clips. Copied once to the node's own disk (n x 640 kB, read shard file by shard file in file order) and
drawn from there, the shared file system serves 3.2 M / n times fewer bytes, all of them sequential, and one open.
The steps see the same int16 samples (tested).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .packed import PackedReader, read_exact

MARGIN = 1 << 30  # bytes left free on the node's disk after the copy
BLOCK = 256  # clips per write
PREFIX = "prunekd-stage"


class StagedClips:
    """The clips of a PackedReader in one flat int16 file (clip after clip, in the order they were copied).

    Same read_into as PackedReader, so reader_batches takes either: one positioned read per clip from one open file.
    """

    def __init__(self, path, slot: np.ndarray, n_samples: int):
        self.path, self.slot, self.n = str(path), slot, n_samples
        self.fd = os.open(self.path, os.O_RDONLY)

    def __len__(self):
        return len(self.slot)

    def read_into(self, i: int, out: np.ndarray) -> None:
        read_exact(self.fd, memoryview(out).cast("B"), int(self.slot[i]) * 2 * self.n, self.path)

    def close(self) -> None:
        os.close(self.fd)


def reason_not_to_stage(reader: PackedReader, stage_dir, draws: int) -> str | None:
    """Why the steps should read the shared stores instead (None: stage). Staging pays when the steps draw more
    clips than the set holds, and needs the set plus MARGIN free on the node's disk."""
    need = len(reader) * reader.n * 2
    if draws <= len(reader):
        return f"the steps draw {draws:,} clips from {len(reader):,}: a copy would read more than it saves"
    if not Path(stage_dir).is_dir():
        return f"{stage_dir} is not a folder (resources.tmpdir)"
    free = shutil.disk_usage(stage_dir).free
    if need + MARGIN > free:
        return f"the copy needs {need / 1e9:.1f} GB and {stage_dir} has {free / 1e9:.1f} GB free (1 GB kept free)"
    return None


@contextlib.contextmanager
def staged(reader: PackedReader, stage_dir, draws: int, threads: int, log=print):
    """Yield what the steps read: a node-local copy of the reader's clips in `stage_dir`, removed when the block
    ends (also on an exception or SIGTERM, which SLURM sends at the time limit), or the reader itself where staging
    does not pay or fit (logged)."""
    why = reason_not_to_stage(reader, stage_dir, draws)
    if why:
        log(f"reading the packed clips from the shared stores: {why}")
        yield reader
        return
    remove_orphans(stage_dir, log)
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{socket.gethostname()}-{os.getpid()}-", dir=stage_dir))
    clips = None
    try:
        with _sigterm_as_exit():
            try:
                clips = copy_clips(reader, folder / "clips.i16", threads, log)
            except DiskFull as e:  # another job filled the disk since the check: go on without the copy
                shutil.rmtree(folder, ignore_errors=True)
                log(f"reading the packed clips from the shared stores: {e}")
            yield clips if clips is not None else reader
    finally:
        if clips is not None:
            clips.close()
        shutil.rmtree(folder, ignore_errors=True)


class DiskFull(OSError):
    pass


def copy_clips(reader: PackedReader, path: Path, threads: int, log=print) -> StagedClips:
    """Copy every clip of `reader` into one flat file, in store and file order (sequential reads of each shard
    file); reads in `threads` threads, one block of BLOCK clips read ahead of the one being written."""
    n, width = len(reader), reader.n * 2
    order = np.lexsort((reader.loc[:, 1], reader.loc[:, 0]))  # by store, then by index in it: file order
    slot = np.empty(n, np.int64)
    slot[order] = np.arange(n)
    bufs = [np.empty((BLOCK, reader.n), np.int16) for _ in range(2)]
    t0 = last = time.time()
    part = path.with_name(path.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with ThreadPoolExecutor(max(1, threads), thread_name_prefix="stage") as pool:

            def submit(b):
                rows = order[b * BLOCK : (b + 1) * BLOCK]
                buf = bufs[b % 2]
                return [pool.submit(reader.read_into, int(i), buf[j]) for j, i in enumerate(rows)]

            blocks = -(-n // BLOCK)
            pending = submit(0) if blocks else []
            for b in range(blocks):
                for f in pending:
                    f.result()  # a failed read raises here, naming the file
                count = min(BLOCK, n - b * BLOCK)
                pending = submit(b + 1) if b + 1 < blocks else []
                data = memoryview(bufs[b % 2][:count]).cast("B")
                done = 0
                try:
                    while done < len(data):
                        done += os.pwrite(fd, data[done:], b * BLOCK * width + done)
                except OSError as e:
                    if e.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise DiskFull(f"{part}: {e.strerror} after {b * BLOCK:,} of {n:,} clips") from None
                    raise
                if time.time() - last > 30:
                    last = time.time()
                    copied = b * BLOCK + count
                    rate = copied / (last - t0)
                    log(
                        f"staging {copied:,}/{n:,} clips ({rate * width / 1e9:.2f} GB/s), "
                        f"{(n - copied) / rate / 60:.1f} min left"
                    )
    finally:
        os.close(fd)
    os.replace(part, path)  # complete: only now under its name
    took = time.time() - t0
    log(
        f"staged {n:,} clips ({n * width / 1e9:.2f} GB) to {path} in {took:.1f} s "
        f"({n * width / 1e9 / max(took, 1e-9):.2f} GB/s)"
    )
    return StagedClips(path, slot, reader.n)


def remove_orphans(stage_dir, log=print) -> None:
    """Remove copies left by staging jobs of this user on this node whose process is gone (killed with SIGKILL:
    out of memory, a failed node); a live job's copy and other users' files are left alone."""
    host = socket.gethostname()
    for d in Path(stage_dir).glob(f"{PREFIX}-{host}-*-*"):
        try:
            pid = int(d.name[len(f"{PREFIX}-{host}-") :].split("-")[0])
            if d.stat().st_uid != os.getuid() or _alive(pid):
                continue
        except (ValueError, OSError):
            continue
        shutil.rmtree(d, ignore_errors=True)
        log(f"removed {d}, left by a staging job that was killed")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def _sigterm_as_exit():
    """SIGTERM raises SystemExit(143) inside the block, so that its cleanup runs (SLURM's time limit and scancel send
    SIGTERM before SIGKILL). Only in the main thread, and only over Python's default handling."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def exit_143(signum, frame):
        raise SystemExit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, exit_143)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
