"""Control subsets of AudioSet for the distillation: a random draw of a pruned set's size, and every clip.

Same layout as a pruned set (position, row, id), so the distillation reads them the same way.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd


def subset_rng(seed: int, name: str) -> np.random.Generator:
    """A generator fixed by the seed and the pruned set's name: each pruned set gets its own draw, and the
    same seed always gives the same draw."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]))


def _table(store, positions: np.ndarray) -> pd.DataFrame:
    from prunekd.teachers.logit_store import ids as store_ids

    positions = np.sort(np.asarray(positions, dtype=np.int64))
    rows, ids = store["row"][:], store_ids(store)
    return pd.DataFrame({"position": positions, "row": rows[positions], "id": ids[positions]})


def random_subset(store, train_positions: np.ndarray, size: int, seed: int, name: str) -> pd.DataFrame:
    """`size` of the training positions, uniformly without replacement."""
    if size > len(train_positions):
        raise ValueError(f"random subset for {name}: {size} clips asked, only {len(train_positions)} exist")
    pick = subset_rng(seed, name).choice(len(train_positions), size=size, replace=False)
    return _table(store, np.asarray(train_positions)[pick])


def full_set(store, train_positions: np.ndarray) -> pd.DataFrame:
    return _table(store, train_positions)


def write_random_subset(audioset_store, audioset_manifest, like, seed: int, name: str, out, log=print) -> None:
    """Write a random draw of AudioSet training clips as large as the pruned set `like` (TSV)."""
    from prunekd.atomic import write_table
    from prunekd.teachers.logit_store import training_rows

    store, train_pos = training_rows(audioset_store, audioset_manifest)
    pruned = pd.read_csv(like, sep="\t")
    table = random_subset(store, train_pos, len(pruned), seed, name)
    write_table(out, table)
    overlap = len(set(table["position"]) & set(pruned["position"]))
    log(
        f"random subset of {len(table)} of {len(train_pos)} clips (seed {seed}, {name}); "
        f"{overlap} also in the pruned set"
    )


def write_full_set(audioset_store, audioset_manifest, out, log=print) -> None:
    """Write every AudioSet training clip with logits (TSV)."""
    from prunekd.atomic import write_table
    from prunekd.teachers.logit_store import training_rows

    store, train_pos = training_rows(audioset_store, audioset_manifest)
    write_table(out, full_set(store, train_pos))
    log(f"all {len(train_pos)} AudioSet training clips with logits")


def random_subset_step(audioset_store, audioset_manifest, like, seed, name, out, log=print) -> None:
    """`prunekd random-subset`."""
    write_random_subset(audioset_store, audioset_manifest, like, seed, name, out, log)


def full_set_step(audioset_store, audioset_manifest, out, log=print) -> None:
    """`prunekd full-set`."""
    write_full_set(audioset_store, audioset_manifest, out, log)
