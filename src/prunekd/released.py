"""Released ensemble logits of the AudioSet training clips (`teachers.released_logits`), in EfficientAT's layout.

EfficientAT (fschmid56/EfficientAT, `ex_audioset.py`) publishes a PaSST ensemble's logits as two files:
  passt_enemble_logits_mAP_495.npy  float array [N, 527], one row of logits per clip (np.save)
  fname_to_index.pkl                a pickled dict: the clip's `audio_name` in PaSST's HDF5 files
                                    (`Y<YTID>.mp3`) -> its row in the array
EfficientAT looks a clip up by that name and gives a clip the dict lacks no teacher target (index -1, its
distillation loss multiplied by 0). Here a clip is matched by its id (the YTID: layouts.ytid_of_audio_name, the
manifest's rule); covered training clips take their row, the others are computed by the members or, with
`uncovered: list`, left out and listed. AudioSet eval and the targets are always computed by the members (the
domain classifier is trained on them).

A pickle from the internet is code: `load_index` never calls pickle.load; its unpickler builds only a dict of
str to int (numpy integer scalars allowed, as np.int64 values pickle) and refuses anything else.

Standard library and numpy at import: the workflow loads this file at DAG time (plan.py) to plan the teacher
shards of what is left to compute.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

from .errors import PrunekdError
from .layouts import TRAIN_SUBSETS
from .tables import N_CLASSES


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


def open_logits(path) -> np.ndarray:
    """The released array, memory-mapped ([N, 527] floats; no pickled objects allowed)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ReleasedLogitsError(f"{path}: not a readable .npy array of logits ({e})") from None
    if arr.ndim != 2 or arr.shape[1] != N_CLASSES or arr.dtype.kind != "f":
        raise ReleasedLogitsError(
            f"{path}: expected a float array [N, {N_CLASSES}] (EfficientAT's layout), found {arr.dtype} {arr.shape}"
        )
    return arr


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


def write_coverage(manifest_path, cfg: dict, planned_shards: int, shard_size: int, out_dir, log=print) -> dict:
    """`prunekd released-index`: which AudioSet clips come from the released files and which the members compute.

    Writes into out_dir: released.tsv (row, id, released_row: covered training clips), compute.tsv (row: the
    manifest rows the teacher shards compute, in order; shard i is its block i), uncovered.tsv (row, id, what
    happens to it), released.json (the counts).
    """
    from pathlib import Path

    import pandas as pd

    from .atomic import write_json, write_table
    from .layouts import ytid_of_audio_name

    out_dir = Path(out_dir)
    manifest = pd.read_csv(manifest_path, sep="\t", dtype={"id": str, "labels": str}, keep_default_na=False)
    logits = open_logits(cfg["logits"])
    covered = rows_by_clip(load_index(cfg["index"]), ytid_of_audio_name, len(logits), cfg["index"])
    uncovered = cfg.get("uncovered", "compute")
    compute = to_compute(manifest["subset"], manifest["id"], covered, uncovered)
    train = manifest["subset"].isin(TRAIN_SUBSETS).to_numpy()
    has = manifest["id"].map(covered).notna().to_numpy()
    need = -(-int(compute.sum()) // shard_size)
    if need > planned_shards:
        raise ReleasedLogitsError(
            f"{manifest_path}: {int(compute.sum())} clips to compute need {need} shards, the workflow planned "
            f"{planned_shards}: the AudioSet lists or {cfg['index']} changed since it started; run it again"
        )
    if planned_shards > max(1, need):
        log(
            f"{planned_shards - need} of the {planned_shards} planned teacher shards are empty: the AudioSet lists "
            "or the index were not on disk when the workflow started (the next run plans only what is needed)"
        )
    rel = manifest.loc[train & has, ["row", "id"]].copy()
    rel["released_row"] = rel["id"].map(covered).astype(np.int64)
    unc = manifest.loc[train & ~has, ["row", "id"]].copy()
    unc["action"] = "computed by the members" if uncovered == "compute" else "left out (uncovered: list)"
    write_table(out_dir / "released.tsv", rel)
    write_table(out_dir / "compute.tsv", manifest.loc[compute, ["row"]])
    write_table(out_dir / "uncovered.tsv", unc)
    ok = (manifest["status"] == "ok").to_numpy()
    counts = {
        "logits": str(cfg["logits"]),
        "index": str(cfg["index"]),
        "released_rows": int(len(logits)),
        "index_entries": len(covered),
        "training_clips": int(train.sum()),
        "covered": int((train & has).sum()),
        "covered_usable": int((train & has & ok).sum()),
        "uncovered": int((train & ~has).sum()),
        "uncovered_action": uncovered,
        "computed_by_members": int(compute.sum()),
        "computed_eval": int((compute & ~train).sum()),
        "computed_uncovered_training": int((compute & train).sum()),
    }
    write_json(out_dir / "released.json", counts)
    log(
        f"released logits: {counts['covered']} of {counts['training_clips']} AudioSet training clips covered by "
        f"{cfg['index']}; {counts['uncovered']} not covered ({counts['uncovered_action']}); the members compute "
        f"{counts['computed_by_members']} clips ({counts['computed_eval']} eval) in {need} shards"
    )
    return counts


def released_index_step(manifest, planned_shards, out_dir, settings: dict, log=print) -> dict:
    """`prunekd released-index`."""
    return write_coverage(manifest, settings["released_logits"], planned_shards, settings["shard_size"], out_dir, log)
