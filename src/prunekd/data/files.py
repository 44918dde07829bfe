"""Low-level file helpers the readers and writers of clip stores share: positioned reads, space reserved up
front, and descriptors kept open across reads."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import threading
from collections import OrderedDict


def read_exact(fd: int, view: memoryview, offset: int, path) -> None:
    """Fill `view` from byte `offset` of an open file; a positioned read may return less (network file systems)."""
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            raise OSError(f"{path}: ends inside clip data at byte {offset + done}")
        done += got


def raise_file_limit(wanted: int) -> int:
    """The process's limit of open files, raised towards `wanted` (at most to the hard limit); the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < top:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
            soft = top
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else wanted


class OpenFiles:
    """Read-only descriptors of shard files, kept open and shared by the reading threads.

    Read unstaged, a step's 32 random clips were 32 opens and closes: on a cluster file system each open is a
    round trip to its metadata server, about 1,900 a second for one distillation at 60 steps/s and 35 k for
    the paper grid's 18. Kept open, each file is opened about once per job. At most `limit` stay open (the
    least recently used is closed first, never one a thread is reading from): positioned reads need no
    per-thread file position, so threads share a descriptor.
    """

    def __init__(self, limit: int):
        self.limit = max(1, limit)
        self.opens = 0  # how many times a file was opened (the metadata operations it cost)
        self._lock = threading.Lock()
        # path -> [fd (None while being opened), threads using it, set once opened], least recently used first
        self._fds: OrderedDict[str, list] = OrderedDict()

    @contextlib.contextmanager
    def fd(self, path: str):
        entry = self._acquire(path)
        try:
            yield entry[0]
        finally:
            self._release(entry)

    def _acquire(self, path: str) -> list:
        with self._lock:
            entry = self._fds.get(path)
            opener = entry is None
            if opener:  # this thread opens it; others asking meanwhile wait for it, not open it again
                entry = self._fds[path] = [None, 0, threading.Event()]
                self.opens += 1
            self._fds.move_to_end(path)
            entry[1] += 1
        if opener:
            try:
                entry[0] = os.open(path, os.O_RDONLY)  # outside the lock: threads open different files at once
            finally:
                entry[2].set()
                if entry[0] is None:  # the open failed: forget the entry, the next read tries again
                    with self._lock:
                        entry[1] -= 1
                        if self._fds.get(path) is entry:
                            del self._fds[path]
        entry[2].wait()
        if entry[0] is None:
            self._release(entry)
            raise OSError(f"{path}: could not be opened")
        return entry

    def _release(self, entry: list) -> None:
        with self._lock:
            entry[1] -= 1
            while len(self._fds) > self.limit:  # close the least recent that no thread is using
                idle = next((p for p, e in self._fds.items() if e[1] == 0 and e[0] is not None), None)
                if idle is None:  # every open file is in use: over the limit until one is done
                    break
                os.close(self._fds.pop(idle)[0])

    def close(self) -> None:
        """Close every file; only once no thread reads (a reader's batches and staging's copy have ended)."""
        with self._lock:
            while self._fds:
                fd = self._fds.popitem()[1][0]
                if fd is not None:
                    os.close(fd)

    def __del__(self):  # a reader dropped without close() leaves no descriptors behind
        with contextlib.suppress(Exception):
            self.close()


def reserve(fd: int, size: int) -> bool:
    """Reserve `size` bytes for an open file without writing them (Linux fallocate(2)); OSError (ENOSPC) where they
    are not free. False, and nothing reserved, where the file system cannot (NFS before 4.2, for one): glibc's
    posix_fallocate would then write the whole size, in the job's main thread, before its first step."""
    if size <= 0:
        return True
    try:
        fallocate = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):  # not Linux
        return False
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if fallocate(fd, 0, 0, size) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS):
        return False
    raise OSError(err, os.strerror(err))
