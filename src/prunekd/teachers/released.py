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
"""

from __future__ import annotations

import numpy as np

from prunekd.dag.layouts import TRAIN_SUBSETS
from prunekd.dag.released_index import ReleasedLogitsError, load_index, rows_by_clip, to_compute
from prunekd.data.tables import N_CLASSES


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


def write_coverage(manifest_path, cfg: dict, planned_shards: int, shard_size: int, out_dir, log=print) -> dict:
    """`prunekd released-index`: which AudioSet clips come from the released files and which the members compute.

    Writes into out_dir: released.tsv (row, id, released_row: covered training clips), compute.tsv (row: the
    manifest rows the teacher shards compute, in order; shard i is its block i), uncovered.tsv (row, id, what
    happens to it), released.json (the counts).
    """
    from pathlib import Path

    import pandas as pd

    from prunekd.atomic import write_json, write_table
    from prunekd.dag.layouts import ytid_of_audio_name

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
