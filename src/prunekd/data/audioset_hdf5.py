"""AudioSet as PaSST and EfficientAT users hold it: one HDF5 file per subset, MP3 bytes inside.

`eval_segments_mp3.hdf`, `balanced_train_segments_mp3.hdf`, `unbalanced_train_segments_mp3.hdf` (PaSST's
audioset/prepare_scripts), each with the datasets
  audio_name [n] bytes    `Y<YTID>.mp3` (unbalanced: `NN/Y<YTID>.mp3`, the part folder it came from)
  mp3        [n] vlen uint8: the clip's MP3 file, 32 kHz mono
  target     [n, 66] uint8: the 527 labels as np.packbits (np.unpackbits(..., count=527) reads them back)

The manifest gets one row per clip with `path` = `<file>::<index>` (clipref.py); audio.load_clip decodes
such a clip from memory (no file per clip is ever written), so the teacher pass, packing and distillation read
it like any other clip, and a clip whose bytes do not decode is skipped and listed like any other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prunekd.dag.layouts import HDF5_FILES, ytid_of_audio_name
from prunekd.data.clipref import clip_ref
from prunekd.data.tables import N_CLASSES, MetadataError


def read_index(path, subset: str) -> pd.DataFrame:
    """id, labels (indices, space-separated) and path of every clip in one HDF5 file; errors name the file."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise MetadataError(f"{path}: no such file (paths.audioset, layout hdf5)")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("audio_name", "mp3", "target") if k not in f]
            if missing:
                raise MetadataError(f"{path}: missing dataset(s) {missing}; found {sorted(f.keys())}")
            names = f["audio_name"][:]
            n_mp3 = len(f["mp3"])
            target = f["target"][:]
    except OSError as e:
        raise MetadataError(f"{path}: not a readable HDF5 file ({e})") from None
    packed_len = -(-N_CLASSES // 8)
    if target.ndim != 2 or target.shape[1] != packed_len or target.dtype != np.uint8:
        raise MetadataError(
            f"{path}: `target` must be [n, {packed_len}] uint8 (the 527 labels, np.packbits); "
            f"found {target.shape} {target.dtype}"
        )
    if not (len(names) == n_mp3 == len(target)):
        raise MetadataError(
            f"{path}: audio_name, mp3 and target differ in length ({len(names)}, {n_mp3}, {len(target)})"
        )
    ids = [_ytid(n) for n in names]
    hot = np.unpackbits(target, axis=1, count=N_CLASSES).astype(bool)
    # One string per distinct label set (2 M clips carry a few hundred thousand).
    keys = np.packbits(hot, axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    text = [" ".join(map(str, np.flatnonzero(np.unpackbits(u, count=N_CLASSES)))) for u in uniq]
    return pd.DataFrame(
        {
            "id": ids,
            "subset": subset,
            "labels": [text[i] for i in inverse.reshape(-1)],
            "path": [clip_ref(path, i) for i in range(len(names))],
            "list": str(path),
            "line": np.arange(len(names)),
        }
    )


def _ytid(name) -> str:
    """`Y--4gqARaEJE.mp3` or `03/Y--4gqARaEJE.mp3` -> `--4gqARaEJE` (layouts.ytid_of_audio_name)."""
    return ytid_of_audio_name(name)


def audioset_hdf5_manifest(root, subsets) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(manifest, rejected) in the layout of manifest.audioset_manifest; rows in subset order, file order within.

    No clip is missing (the files hold the clips themselves); clips that do not decode are found by the
    teacher pass, which reads every clip anyway. `line` in the rejected table is the index in the file.
    """
    parts = [read_index(Path(root) / HDF5_FILES[s], s) for s in subsets]
    df = pd.concat(parts, ignore_index=True)
    dup = df["id"].duplicated()
    if dup.any():
        r = df[dup].iloc[0]
        raise MetadataError(f"{r['list']} index {r['line']}: duplicate YTID {r['id']}")
    df.insert(0, "row", np.arange(len(df)))
    df["duration"] = 10.0
    df["status"] = "ok"
    manifest = df[["row", "id", "subset", "path", "labels", "duration", "status"]]
    rejected = pd.DataFrame(columns=["row", "id", "subset", "list", "line", "reason"])
    return manifest, rejected
