"""The errors of bad metadata and the readers of the tables steps share (torch-free).

Steps downstream of the manifest (teacher logits, packing, evaluation) read the manifest's tables through
these, not through manifest.py, which builds the tables from the layouts users hold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prunekd.errors import PrunekdError

N_CLASSES = 527  # AudioSet's classes: the width of its labels, of every logits array and of the student's output


class MetadataError(PrunekdError, ValueError):
    """Bad metadata; the message names the file and line."""


class BadAudioError(PrunekdError, RuntimeError):
    """A clip that cannot be used while data.bad_audio is `fail`; the message names its list and line (or file)."""


def read_tsv(path, required: list[str]) -> pd.DataFrame:
    path = Path(path)
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, on_bad_lines="error")
    except FileNotFoundError:
        raise MetadataError(f"{path}: no such file (targets.<name>.root)") from None
    except pd.errors.ParserError as e:
        raise MetadataError(f"{path}: malformed row: {e}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise MetadataError(f"{path}: missing column(s) {missing}; found {list(df.columns)} (is it tab-separated?)")
    return df


def class_names(manifest: pd.DataFrame) -> list[str]:
    """Class names of a target manifest, in label order."""
    pairs = manifest[["label", "class_label"]].drop_duplicates().sort_values("label")
    return pairs["class_label"].astype(str).tolist()


def ok_rows(manifest: pd.DataFrame, start: int, stop: int) -> pd.DataFrame:
    part = manifest.iloc[start:stop]
    return part[part["status"] == "ok"]


def labels_multi_hot(labels: pd.Series, n_classes: int) -> np.ndarray:
    out = np.zeros((len(labels), n_classes), dtype=bool)
    for i, s in enumerate(labels):
        if isinstance(s, str) and s:
            out[i, [int(t) for t in s.split()]] = True
    return out
