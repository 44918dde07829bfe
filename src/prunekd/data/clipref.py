"""A clip inside a PaSST-style HDF5 file, `<file>::<index>` in a manifest's `path`, read as MP3 bytes.

Its own small module so that whatever reads clips (audio.load_clip) needs nothing of the manifest side
(audioset_hdf5.py lists such files into a manifest). Standard library and h5py only.
"""

from __future__ import annotations

import io
import os
import re

_REF = re.compile(r"^(?P<file>.+\.(?:hdf|hdf5|h5))::(?P<index>\d+)$")


def clip_ref(file, index: int) -> str:
    return f"{file}::{index}"


# Open files per process: a DataLoader worker must not reuse a handle opened before the fork.
_open: dict[str, object] = {}
_pid = None


def hdf5_clip(path):
    """The MP3 bytes of `<file>::<index>` as a file object for soundfile; None for an ordinary path.

    A file or index that cannot be read gives empty bytes, which then fail to decode: the clip is skipped and
    listed, the job goes on.
    """
    m = _REF.match(str(path))
    if m is None:
        return None
    global _pid
    import h5py

    if _pid != os.getpid():
        _open.clear()
        _pid = os.getpid()
    try:
        f = _open.get(m["file"])
        if f is None:
            f = _open[m["file"]] = h5py.File(m["file"], "r")
        return io.BytesIO(f["mp3"][int(m["index"])].tobytes())
    except (OSError, KeyError, IndexError, ValueError):
        return io.BytesIO(b"")
