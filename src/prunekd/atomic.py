"""Write outputs so that a killed job never leaves a file that looks complete."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import threading
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary sibling path; rename it onto `path` only when the block succeeds.

    Works for files and directories (Zarr stores). The rename is atomic on POSIX file systems.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        if path.exists() and path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def _remove_stale(path: Path) -> None:
    """Temporary siblings of `path` left by killed writers (SIGKILL, a node that died): their process is gone.
    A large one (a decoded store, a packed shard) would otherwise stay, hidden, until someone looks."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.tmp-(\d+)$")
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return
    for p in siblings:
        m = pattern.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            _remove(p)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def sigterm_as_exit():
    """SIGTERM raises SystemExit(143) inside the block, so that its cleanup runs (SLURM's time limit, scancel and
    preemption send SIGTERM before SIGKILL): a half-written output's temporary folder is removed, not left hidden.
    Only in the main thread, and only over Python's default handling. Python runs the handler between the main
    thread's bytecodes: a training loop gets there within a step."""
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


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def strict(obj):
    """`obj` as strict JSON holds it: a figure that does not exist (NaN, an infinity) becomes null, NumPy
    scalars and arrays plain numbers and lists. Python's json writes bare NaN, which jq, JavaScript and strict
    parsers refuse."""
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, (str, int, float, bool)) else k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # NumPy scalar or array
        return strict(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path, obj) -> None:
    """Strict JSON (see `strict`), written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(strict(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_table(path, df, sep=None, **kw) -> None:
    """TSV (or CSV by extension, unless `sep` is given) written atomically."""
    sep = sep or ("," if str(path).endswith(".csv") else "\t")
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep=sep, index=False, **kw)
