"""The list of packed AudioSet stores: the one file a distillation waits for instead of every store.

Written once all stores are complete (each is written whole: atomic.py); Snakemake reruns it, and every
distillation after it, when a store is rebuilt or missing.
"""

from __future__ import annotations

from pathlib import Path

from prunekd.atomic import atomic_path
from prunekd.errors import PrunekdError


def packed_list_step(stores, out, log=print) -> None:
    """`prunekd packed-list`: the stores, one path per line."""
    missing = [s for s in stores if not Path(s).is_dir()]
    if missing:
        raise PrunekdError(f"{missing[0]}: packed store missing ({len(missing)} of {len(stores)})")
    with atomic_path(out) as tmp:
        Path(tmp).write_text("".join(f"{s}\n" for s in stores))
    log(f"{len(stores)} packed stores listed in {out}")
