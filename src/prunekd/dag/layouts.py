"""Where a dataset's files lie, in the layouts users hold them (docs/usage.md, "Data layouts").

Standard library only: the workflow loads this file at DAG time (workflow/rules/common.smk), before any
job runs, to name each step's inputs; the manifest step resolves the same way.
"""

from __future__ import annotations

from pathlib import Path

TRAIN_SUBSETS = ["balanced_train", "unbalanced_train"]  # what is scored, pruned, packed and drawn from
# Listed rows of the real data, to plan shards before the metadata is on disk (docs/method.md, "Data").
NOMINAL_ROWS = {"eval": 20383, "balanced_train": 22160, "unbalanced_train": 2041789, "tau2022": 230350}
TAU_SPLIT_FILES = ["split5.csv", "split10.csv", "split25.csv", "split50.csv", "split100.csv", "test.csv"]
SEGMENT_FILES = {
    "eval": "eval_segments.csv",
    "balanced_train": "balanced_train_segments.csv",
    "unbalanced_train": "unbalanced_train_segments.csv",
}
# PaSST's prepare scripts and EfficientAT's datasets/audioset.py: one HDF5 file per subset.
HDF5_FILES = {
    "eval": "eval_segments_mp3.hdf",
    "balanced_train": "balanced_train_segments_mp3.hdf",
    "unbalanced_train": "unbalanced_train_segments_mp3.hdf",
}


def tau_split_dir(root, split_dir: str | None = None) -> str:
    """The folder of the challenge split files (split5.csv .. split100.csv, test.csv).

    targets.<name>.split_dir when set; else the dataset root when it holds test.csv, else
    <root>/split_setup (where the DCASE2024 baseline puts the files it fetches) when that does;
    else the root, and the manifest names the missing file.
    """
    if split_dir:
        return str(split_dir)
    for d in (Path(root), Path(root) / "split_setup"):
        if (d / "test.csv").exists():
            return str(d)
    return str(root)


def audioset_layout(root, subsets, configured: str = "auto") -> str:
    """`segments` (segment lists + one audio file per clip) or `hdf5` (PaSST's *_mp3.hdf files).

    auto: whichever of the two is in `root`; neither yet (a dry run before the data is there) plans
    the segment lists; both is ambiguous and an error.
    """
    if configured != "auto":
        return configured
    root = Path(root)
    has_lists = any((root / SEGMENT_FILES[s]).exists() for s in subsets)
    has_hdf5 = any((root / HDF5_FILES[s]).exists() for s in subsets)
    if has_lists and has_hdf5:
        raise ValueError(
            f"paths.audioset: {root} holds both segment lists and *_mp3.hdf files; "
            "set paths.audioset_layout to segments or hdf5"
        )
    return "hdf5" if has_hdf5 else "segments"


def hdf5_rows(path) -> int:
    """Clips in one AudioSet HDF5 file (its `audio_name` length), read without loading anything."""
    import h5py

    with h5py.File(path, "r") as f:
        return len(f["audio_name"])


def count_listed(path, header_lines: int) -> int:
    """Data rows of a metadata file, counted without parsing (to plan shards when the DAG is built)."""
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            n += chunk.count(b"\n")
    return max(0, n - header_lines)


def ytid_of_audio_name(name) -> str:
    """`Y--4gqARaEJE.mp3` or `03/Y--4gqARaEJE.mp3` -> `--4gqARaEJE`: the clip id of a name in PaSST's HDF5
    files (PaSST prefixes every name with 'Y'); the manifest and the released-logits index use the same rule."""
    import os

    s = name.decode() if isinstance(name, bytes) else str(name)
    s = os.path.splitext(s.rsplit("/", 1)[-1])[0]
    return s[1:] if s.startswith("Y") else s


def listed_ids(path, layout: str) -> list[str]:
    """The clip ids of one AudioSet subset as its manifest will hold them, in list order (no audio read):
    the YTIDs of a segment list (after its three header lines), or the HDF5 file's names."""
    if layout == "hdf5":
        import h5py

        with h5py.File(path, "r") as f:
            return [ytid_of_audio_name(n) for n in f["audio_name"][:]]
    out = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if lineno > 3 and line.strip():
                out.append(line.split(",", 1)[0].strip().strip('"'))
    return out
