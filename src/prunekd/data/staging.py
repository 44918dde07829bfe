"""Node-local staging of a distillation's clips (docs/cluster.md, "Audio input of distillation").

Why: a distillation draws steps x batch random clips from the packed stores on the shared file system (3.2 M reads
of 640 kB at the report's 100 k steps of 32: 2 TB, and a file open per read), but its pruned set holds only n
distinct clips. Copied once to the node's own disk (n x 640 kB, read shard file by shard file in file order) and
drawn from there, the shared file system serves 3.2 M / n times fewer bytes, all of them sequential, and no open
per step. The copy runs beside the first steps, which read the shared stores until their clips are copied: the GPU
never waits for it. The steps see the same int16 samples either way (tested).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from prunekd.atomic import pid_alive, sigterm_as_exit
from prunekd.data.files import read_exact, reserve
from prunekd.data.packed import PackedReader

MARGIN = 1 << 30  # bytes left free on the node's disk after the copy
BLOCK = 256  # clips per write
PREFIX = "prunekd-stage"


class StagedClips:
    """The clips of a PackedReader, copied in a background thread into one flat int16 file on the node's disk.

    Same read_into as PackedReader, so reader_batches takes either: a clip already copied is one positioned read
    from the one open file, any other is read from the shared stores. The file holds the clips in copy order (store
    by store, in file order); `ready` counts the clips copied so far.
    """

    def __init__(self, source: PackedReader, path, threads: int, log=print):
        self.source, self.path, self.n, self.log = source, str(path), source.n, log
        self.order = np.lexsort((source.loc[:, 1], source.loc[:, 0]))  # by store, then by index in it: file order
        self.slot = np.empty(len(source), np.int64)
        self.slot[self.order] = np.arange(len(source))
        self.ready = 0  # clips at slots [0, ready) are in the file (one int: read and written whole under the GIL)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            # The whole copy's space now: a disk too small (or filled by another job since the check) fails here,
            # before any step, instead of part way with a partial copy held until the job ends.
            reserve(self.fd, len(self.slot) * 2 * self.n)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._copy, args=(max(1, threads),), name="stage", daemon=True)
            self._thread.start()
        except BaseException:
            os.close(self.fd)
            raise

    def __len__(self):
        return len(self.slot)

    def read_into(self, i: int, out: np.ndarray) -> None:
        s = int(self.slot[i])
        if s < self.ready:
            read_exact(self.fd, memoryview(out).cast("B"), s * 2 * self.n, self.path)
        else:
            self.source.read_into(i, out)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the copy ended (complete, stopped or failed); True if it did within `timeout`."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        os.close(self.fd)

    def _copy(self, threads: int) -> None:
        n, width = len(self.slot), 2 * self.n
        bufs = [np.empty((BLOCK, self.n), np.int16) for _ in range(2)]
        t0 = last = time.time()
        try:
            with ThreadPoolExecutor(threads, thread_name_prefix="stage-read") as pool:

                def submit(b):
                    # A block in file order, in one contiguous run per thread: each shard file opened about once.
                    rows, buf = self.order[b * BLOCK : (b + 1) * BLOCK], bufs[b % 2]
                    cuts = np.linspace(0, len(rows), min(threads, len(rows)) + 1).astype(int)
                    runs = [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]  # slices: views of buf
                    return [pool.submit(self.source.read_many, rows[r], buf[r]) for r in runs]

                blocks = -(-n // BLOCK)
                pending = submit(0) if blocks else []
                for b in range(blocks):
                    for f in pending:
                        f.result()  # a failed read raises here, naming the file
                    if self._stop.is_set():
                        return
                    count = min(BLOCK, n - b * BLOCK)
                    pending = submit(b + 1) if b + 1 < blocks else []  # read the next block while this one is written
                    self._write(memoryview(bufs[b % 2][:count]).cast("B"), b * BLOCK * width)
                    self.ready = b * BLOCK + count
                    if time.time() - last > 30:
                        last = time.time()
                        rate = self.ready / (last - t0)
                        self.log(
                            f"staging {self.ready:,}/{n:,} clips ({rate * width / 1e9:.2f} GB/s), "
                            f"{(n - self.ready) / rate / 60:.1f} min left; the steps read the rest from the stores"
                        )
        except OSError as e:  # the steps go on reading what is not copied from the shared stores
            why = e.strerror if e.errno in (errno.ENOSPC, errno.EDQUOT) else str(e)
            self.log(f"staging stopped after {self.ready:,} of {n:,} clips ({why}); the rest is read from the stores")
            return
        took = time.time() - t0
        self.log(
            f"staged {n:,} clips ({n * width / 1e9:.2f} GB) to {self.path} in {took:.1f} s "
            f"({n * width / 1e9 / max(took, 1e-9):.2f} GB/s)"
        )

    def _write(self, data: memoryview, offset: int) -> None:
        done = 0
        while done < len(data):
            done += os.pwrite(self.fd, data[done:], offset + done)


def reason_not_to_stage(reader: PackedReader, stage_dir, draws: int) -> str | None:
    """Why the steps should read the shared stores instead (None: stage). Staging pays when the steps draw more
    clips than the set holds, and needs the set plus MARGIN free on the node's disk."""
    need = len(reader) * reader.n * 2
    if draws <= len(reader):
        return f"the steps draw {draws:,} clips from {len(reader):,}: a copy would read more than it saves"
    if not Path(stage_dir).is_dir():
        return f"{stage_dir} is not a folder (resources.tmpdir)"
    fs = file_system_type(stage_dir)
    if fs in ("tmpfs", "ramfs"):
        return f"{stage_dir} is {fs}: the copy would be held in memory (point resources.tmpdir at the node's disk)"
    free = shutil.disk_usage(stage_dir).free
    if need + MARGIN > free:
        return f"the copy needs {need / 1e9:.1f} GB and {stage_dir} has {free / 1e9:.1f} GB free (1 GB kept free)"
    return None


def file_system_type(path, mountinfo="/proc/self/mountinfo") -> str | None:
    """The type of the file system `path` is on (the longest mount point above it in /proc/self/mountinfo)."""
    real = os.path.realpath(path)
    best, fs = "", None
    try:
        lines = Path(mountinfo).read_text().splitlines()
    except OSError:  # not Linux
        return None
    for line in lines:
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])  # mountinfo's octal escapes
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fs = mount, line.split(" - ", 1)[1].split()[0]
    return fs


@contextlib.contextmanager
def staged(reader: PackedReader, stage_dir, draws: int, threads: int, log=print):
    """Yield what the steps read: a StagedClips copying the reader's clips into `stage_dir`, removed when the block
    ends (also on an exception or SIGTERM, which SLURM sends at the time limit), or the reader itself where staging
    does not pay or fit (logged)."""
    why = reason_not_to_stage(reader, stage_dir, draws)
    if why:
        log(f"reading the packed clips from the shared stores: {why}")
        yield reader
        return
    remove_orphans(stage_dir, log)
    with sigterm_as_exit():
        folder, clips = None, None
        try:
            try:
                folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{socket.gethostname()}-{os.getpid()}-", dir=stage_dir))
                clips = StagedClips(reader, folder / "clips.i16", threads, log)
            except OSError as e:  # not writable, or the space is gone: the job goes on without a copy
                log(f"reading the packed clips from the shared stores: no copy in {stage_dir} ({e})")
            else:
                log(f"staging {len(reader):,} clips ({len(reader) * reader.n * 2 / 1e9:.2f} GB) to {folder}")
            yield clips if clips is not None else reader
        finally:
            if clips is not None:
                clips.close()
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


def remove_orphans(stage_dir, log=print) -> None:
    """Remove copies left by staging jobs of this user on this node whose process is gone (killed with SIGKILL:
    out of memory, a failed node); a live job's copy and other users' files are left alone."""
    host = socket.gethostname()
    for d in Path(stage_dir).glob(f"{PREFIX}-{host}-*-*"):
        try:
            # {PREFIX}-{host}-{pid}-{random}: mkdtemp's random part has no "-", a host name may
            d_host, pid, _ = d.name[len(PREFIX) + 1 :].rsplit("-", 2)
            if d_host != host or d.lstat().st_uid != os.getuid() or pid_alive(int(pid)):
                continue
        except (ValueError, OSError):
            continue
        shutil.rmtree(d, ignore_errors=True)
        log(f"removed {d}, left by a staging job that was killed")
