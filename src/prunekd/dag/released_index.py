"""The released logits' index (EfficientAT's `fname_to_index.pkl`): which AudioSet training clips it covers.

A pickle from the internet is code: `load_index` never calls pickle.load; its unpickler builds only a dict of
str to int (numpy integer scalars allowed, as np.int64 values pickle) and refuses anything else.

Standard library and numpy only: the workflow reads the index at DAG time (plan.py) to plan the teacher shards
of what is left to compute. The array itself and the coverage step are teachers/released.py.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

from prunekd.dag.layouts import TRAIN_SUBSETS
from prunekd.errors import PrunekdError


class ReleasedLogitsError(PrunekdError, ValueError):
    """A released-logits file that cannot be used; the message is one line naming the file."""


def _integer_dtype(*args):
    d = np.dtype(*args)
    if d.kind not in "iu":
        raise pickle.UnpicklingError(f"a numpy dtype {d} (only integer scalars are accepted)")
    return d


def _integer_scalar(dtype, *args):
    if not isinstance(dtype, np.dtype) or dtype.kind not in "iu":
        raise pickle.UnpicklingError("a numpy scalar that is not an integer")
    return _numpy_scalar()(dtype, *args)


def _numpy_scalar():
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    return scalar


# The only globals an index may name: what pickling a numpy integer scalar writes (numpy 1 and 2 paths).
_ALLOWED = {
    ("numpy", "dtype"): _integer_dtype,
    ("numpy.core.multiarray", "scalar"): _integer_scalar,
    ("numpy._core.multiarray", "scalar"): _integer_scalar,
}


class _IndexUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        fn = _ALLOWED.get((module, name))
        if fn is None:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which an index of names never needs")
        return fn

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("it holds a persistent id")


def load_index(path) -> dict[str, int]:
    """The name -> row dict of `fname_to_index.pkl`, built by a restricted unpickler (see the module doc)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise ReleasedLogitsError(f"{path}: cannot read the released-logits index ({e.strerror})") from None
    try:
        obj = _IndexUnpickler(io.BytesIO(data)).load()
    except Exception as e:  # any refusal or corrupt stream: one line, nothing run
        raise ReleasedLogitsError(
            f"{path}: refused: not a pickled dict of clip names to rows ({str(e).splitlines()[0] if str(e) else e!r})"
        ) from None
    if not isinstance(obj, dict):
        raise ReleasedLogitsError(f"{path}: refused: holds a {type(obj).__name__}, not a dict of clip names to rows")
    out = {}
    for k, v in obj.items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ReleasedLogitsError(
                f"{path}: refused: entry {k!r}: {type(v).__name__}; only str -> int entries are accepted"
            )
        out[k] = int(v)
    return out


def rows_by_clip(index: dict[str, int], normalise, n_rows: int | None = None, path="index") -> dict[str, int]:
    """Clip id -> released row. `normalise` maps an index name to a clip id (layouts.ytid_of_audio_name).
    Two names of one clip with different rows, or a row outside the array, are refused."""
    out: dict[str, int] = {}
    for name, row in index.items():
        if n_rows is not None and not 0 <= row < n_rows:
            raise ReleasedLogitsError(f"{path}: {name!r} points to row {row}; the logits have {n_rows} rows")
        clip = normalise(name)
        if out.setdefault(clip, row) != row:
            raise ReleasedLogitsError(f"{path}: clip {clip} is named twice with rows {out[clip]} and {row}")
    return out


def to_compute(subsets, ids, covered: dict[str, int], uncovered: str) -> np.ndarray:
    """Per clip (aligned arrays of subset and id) whether the members compute it: eval always, a training clip
    when the released files lack it and `uncovered` is `compute`."""
    subsets, ids = np.asarray(subsets), np.asarray(ids)
    train = np.isin(subsets, TRAIN_SUBSETS)
    has = np.fromiter((i in covered for i in ids), bool, len(ids))
    return ~train | (~has & (uncovered == "compute"))


def planned_rows(subset_ids: dict, index_path, normalise, uncovered: str) -> int:
    """Rows the members compute, from the lists alone (DAG time): the teacher shards are planned from it."""
    covered = rows_by_clip(load_index(index_path), normalise, path=index_path)
    subsets = [s for s, ids in subset_ids.items() for _ in ids]
    ids = [i for ids in subset_ids.values() for i in ids]
    return int(to_compute(subsets, ids, covered, uncovered).sum())
