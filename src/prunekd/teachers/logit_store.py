"""Reading and laying out the teacher logits stores (Zarr), for every step downstream of the teachers.

Layout of a gathered store (written by `prunekd gather`):
  id_utf8 [N, W] uint8 (each clip's id, UTF-8, zero-padded to the longest), row [N] int64 (manifest row),
  member_logits [N, M, 527] float16, ensemble [N, 527] float32
  (mean of the members in logit space, uncompressed), member_embeddings [N, M, D] float16 (each member's pre-head
  features; absent where teachers.embeddings was off), labels [N, 527] bool (AudioSet), released [N] bool
  (the row's ensemble logits come from teachers.released_logits; its member logits are NaN), attrs with
  provenance (members, strides, checkpoint hashes, versions, the released files).
Every array has a data type of the Zarr v3 specification (bool, int, uint, float), so that any Zarr reader
(xarray, tensorstore, zarr-python) reads it. Stores written before the ids moved to `id_utf8` hold them as `id`
[N] str (numpy fixed-width unicode, a type without a v3 specification); `ids()` reads either.
"""

from __future__ import annotations

import numpy as np
import zarr

from prunekd.dag.layouts import TRAIN_SUBSETS
from prunekd.data.tables import N_CLASSES  # noqa: F401 (the width of every logits array)
from prunekd.errors import PrunekdError

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


ID_ARRAY = "id_utf8"
LEGACY_ID_ARRAY = "id"


def encode_ids(ids) -> np.ndarray:
    """Ids as UTF-8 bytes, one row each, zero-padded to the longest: [N, W] uint8 (W at least 1)."""
    raw = [str(i).encode("utf-8") for i in ids]
    if any(b"\0" in b for b in raw):
        raise ValueError("a clip id holds a NUL character, which the id_utf8 padding cannot keep")
    width = max([len(b) for b in raw] + [1])
    return np.frombuffer(b"".join(b.ljust(width, b"\0") for b in raw), np.uint8).reshape(len(raw), width).copy()


def decode_ids(codes: np.ndarray) -> np.ndarray:
    """The inverse of encode_ids: [N, W] uint8 -> [N] str."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if codes.shape[0] == 0:
        return np.zeros(0, dtype=str)
    return np.char.decode(codes.view(f"S{codes.shape[1]}").ravel(), "utf-8")


def write_ids(group, ids, chunk_rows: int = 1 << 16):
    codes = encode_ids(ids)
    arr = group.create_array(ID_ARRAY, data=codes, chunks=(max(1, min(len(codes), chunk_rows)), codes.shape[1]))
    arr.attrs["encoding"] = "utf-8, one id per row, zero-padded"
    return arr


def ids(group) -> np.ndarray:
    """Every clip id of a store, [N] str, from a store of today (id_utf8) or of before (id)."""
    if ID_ARRAY in group:
        return decode_ids(group[ID_ARRAY][:])
    import warnings

    with warnings.catch_warnings():  # the old type warns on every read; the store is only being read
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        return np.asarray(group[LEGACY_ID_ARRAY][:]).astype(str)


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
    if "released" in store:
        rel = store["released"][rows] if isinstance(rows, slice) else store["released"].get_coordinate_selection(rows)
        if rel.any():
            raise ValueError(
                f"members {list(members)}: {int(rel.sum())} of these clips have only the released ensemble mean "
                "(teachers.released_logits), no per-member logits; a member ablation cannot run on them"
            )
    idx = [store.attrs["members"].index(m) for m in members]
    ml = store["member_logits"]
    sel = ml[rows] if isinstance(rows, slice) else ml.get_orthogonal_selection((rows, slice(None), slice(None)))
    return sel[:, idx].astype(np.float32).mean(axis=1)


class NoEmbeddingsError(PrunekdError, ValueError):
    """Embeddings asked of a store, or of rows, that hold none."""


def embedding_features(store, rows: np.ndarray | slice | None = None, members: list[str] | None = None) -> np.ndarray:
    """The members' embeddings averaged over the members [n, D] float32 (a fixed linear map of their
    concatenation, one member's width), for the given store positions.

    Raises NoEmbeddingsError, one line naming the key, where the store has none (teachers.embeddings off) or a
    row has none (released logits carry no embeddings)."""
    if "member_embeddings" not in store:
        raise NoEmbeddingsError(
            f"{store.store}: the teacher store holds no member_embeddings (teachers.embeddings was off when it was "
            "computed); turn teachers.embeddings on or use the feature `logits`"
        )
    if rows is None:
        rows = slice(None)
    names = list(store.attrs["members"])
    idx = [names.index(m) for m in (members or names)]
    arr = store["member_embeddings"]
    sel = arr[rows] if isinstance(rows, slice) else arr.get_orthogonal_selection((rows, slice(None), slice(None)))
    out = sel[:, idx].astype(np.float32).mean(axis=1)
    if not np.isfinite(out).all():
        raise NoEmbeddingsError(
            f"{store.store}: {int((~np.isfinite(out).all(axis=1)).sum())} of these clips have no member_embeddings "
            "(their logits come from teachers.released_logits); use the feature `logits` for them"
        )
    return out
