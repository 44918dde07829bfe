"""Reading and laying out the teacher logits stores (Zarr), for every step downstream of the teachers.

Layout of a gathered store (written by `prunekd gather`):
  id [N] str, row [N] int64 (manifest row), member_logits [N, M, 527] float16, ensemble [N, 527] float32
  (mean of the members in logit space, uncompressed), labels [N, 527] bool (AudioSet), attrs with
  provenance (members, strides, checkpoint hashes, versions).
"""

from __future__ import annotations

import numpy as np
import zarr

from .layouts import TRAIN_SUBSETS

N_CLASSES = 527  # AudioSet's classes: the width of every logits array and of the student's output

ROW_CHUNK = 1024  # rows per chunk of member_logits and labels
ENSEMBLE_CHUNK = 8192  # rows per chunk of the ensemble array, read in long streams by scoring


def create_ensemble_array(group, n: int):
    """The ensemble mean [n, 527] float32, uncompressed: logits barely compress (about 10 %), and scoring
    2 M clips per split is bound by reading this array, so decompression would only cost time."""
    return group.create_array(
        "ensemble",
        shape=(n, N_CLASSES),
        dtype="float32",
        chunks=(max(1, min(n, ENSEMBLE_CHUNK)), N_CLASSES),
        compressors=None,
    )


def open_store(path):
    return zarr.open_group(str(path), mode="r")


def rows_where(store_path, manifest_path, column: str, values: list[str]):
    """(store, its positions whose manifest row has `column` in `values`)."""
    import pandas as pd

    store = open_store(store_path)
    man = pd.read_csv(manifest_path, sep="\t", dtype=str, keep_default_na=False)
    col = man[column].to_numpy()[store["row"][:]]
    return store, np.flatnonzero(np.isin(col, values))


def training_rows(store_path, manifest_path):
    """(AudioSet store, its positions of the training clips)."""
    return rows_where(store_path, manifest_path, "subset", TRAIN_SUBSETS)


def embeddings(store, rows: np.ndarray | slice | None = None, members: list[str] | None = None) -> np.ndarray:
    """Ensemble logits [n, 527] float32 for the given store positions, optionally of a member subset."""
    if rows is None:
        rows = slice(None)
    if members is None or list(members) == list(store.attrs["members"]):
        arr = store["ensemble"]
        return arr[rows] if isinstance(rows, slice) else arr.get_orthogonal_selection((rows, slice(None)))
    unknown = [m for m in members if m not in store.attrs["members"]]
    if unknown:
        raise KeyError(f"members {unknown} are not in the store (it holds {store.attrs['members']})")
    idx = [store.attrs["members"].index(m) for m in members]
    ml = store["member_logits"]
    sel = ml[rows] if isinstance(rows, slice) else ml.get_orthogonal_selection((rows, slice(None), slice(None)))
    return sel[:, idx].astype(np.float32).mean(axis=1)
