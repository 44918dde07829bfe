"""Manifests: one table per dataset, built from the on-disk metadata (docs/method.md, "Data").

AudioSet: every listed segment becomes a row in list order, with its local audio file, its labels
as indices into class_labels_indices.csv, and a status. Missing files are found with one directory
scan (no decoding), so 2 M rows take seconds. Decoding problems are found later, by the teacher
pass, which reads every clip anyway.

Targets (one layout whatever the adapter): row, id, path, class_label, label (class index), device,
one boolean column per training split (split5, ..., or split<name>), test, status.
  tau2022: every row of TAU Urban Acoustic Scenes 2022 Mobile's meta.csv, with the challenge split files.
  csv:     any dataset described by one CSV: filename (relative to the audio root), label, split (the
           names of the splits the clip belongs to, space-separated, e.g. "train" or "25 50 100" or
           "test"), optional device (or group) for the per-device accuracies, optional city for the
           per-city ones.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from prunekd.dag.layouts import SEGMENT_FILES, tau_split_dir
from prunekd.data.tables import BadAudioError, MetadataError, read_tsv

# File extensions per libsndfile format: the manifest looks for exactly the files the decoder reads.
_FORMAT_EXTENSIONS = {
    "WAV": (".wav",),
    "WAVEX": (".wav",),
    "FLAC": (".flac",),
    "MP3": (".mp3",),
    "OGG": (".ogg", ".oga", ".opus"),
    "AIFF": (".aiff", ".aif"),
    "CAF": (".caf",),
    "AU": (".au", ".snd"),
    "W64": (".w64",),
    "RF64": (".rf64",),
}
AUDIO_EXTS = tuple(sorted({e for f, exts in _FORMAT_EXTENSIONS.items() if f in sf.available_formats() for e in exts}))
SCENES = [
    "airport",
    "bus",
    "metro",
    "metro_station",
    "park",
    "public_square",
    "shopping_mall",
    "street_pedestrian",
    "street_traffic",
    "tram",
]
TAU_SPLITS = (5, 10, 25, 50, 100)


def read_class_labels(path) -> pd.DataFrame:
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"index": int, "mid": str, "display_name": str})
    except Exception as e:
        raise MetadataError(f"{path}: cannot parse class list: {e}") from None
    if list(df.columns) != ["index", "mid", "display_name"]:
        raise MetadataError(f"{path}: header must be 'index,mid,display_name', found {','.join(df.columns)}")
    if not np.array_equal(df["index"].to_numpy(), np.arange(len(df))):
        raise MetadataError(f"{path}: indices must run 0..{len(df) - 1} in order")
    dup = df["mid"].duplicated()
    if dup.any():
        raise MetadataError(f"{path} line {int(np.flatnonzero(dup)[0]) + 2}: duplicate mid {df['mid'][dup].iloc[0]}")
    return df


def read_segments(path) -> pd.DataFrame:
    """Parse an AudioSet segment list: 3 '#' header lines, then `YTID, start, end, "m1,m2"`."""
    path = Path(path)
    with open(path) as fh:
        head = [fh.readline() for _ in range(3)]
    if not all(h.startswith("#") for h in head):
        raise MetadataError(f"{path}: expected three header lines starting with '#'")
    rows = []
    with open(path, newline="") as fh:
        for lineno, rec in enumerate(csv.reader(fh, skipinitialspace=True), start=1):
            if lineno <= 3 or not rec:
                continue
            if len(rec) != 4:
                raise MetadataError(
                    f"{path} line {lineno}: expected 4 fields (YTID, start, end, labels), got {len(rec)}"
                )
            rows.append(rec)
    df = pd.DataFrame(rows, columns=["ytid", "start", "end", "mids"])
    try:
        df["start"] = df["start"].astype(float)
        df["end"] = df["end"].astype(float)
    except ValueError:
        bad = next(i for i, (s, e) in enumerate(zip(df["start"], df["end"])) if not (_isfloat(s) and _isfloat(e)))
        raise MetadataError(f"{path} line {bad + 4}: start/end are not numbers") from None
    return df


def _isfloat(s) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def scan_audio(root) -> tuple[dict[str, str], dict[str, str]]:
    """One recursive scan of root: (stem -> path of every file the decoder reads, stem -> path of any other file).

    The second map lets a listed clip whose only file is in another format be reported as existing.
    """
    found: dict[str, str] = {}
    other: dict[str, str] = {}
    stack = [str(root)]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except FileNotFoundError:
            continue
        with it:
            for e in it:
                if e.is_dir(follow_symlinks=True):
                    stack.append(e.path)
                elif e.name.lower().endswith(AUDIO_EXTS):
                    found.setdefault(os.path.splitext(e.name)[0], e.path)
                else:
                    other.setdefault(os.path.splitext(e.name)[0], e.path)
    return found, other


def _find(files: dict, y: str, s: float):
    # Local copies name files after the YTID, sometimes with a 'Y' prefix or the start time.
    return (
        files.get(y)
        or files.get("Y" + y)
        or files.get(f"{y}_{int(s)}")
        or files.get(f"{y}_{int(s * 1000)}")
        or files.get(f"Y{y}_{s:.3f}_{s + 10:.3f}")
    )


def audioset_manifest(root, subsets, audio_dir=None, bad_labels: str = "fail") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (manifest, rejected). Manifest rows are in list order: eval, balanced, unbalanced.

    bad_labels: "fail" stops at a label id missing from class_labels_indices.csv; "skip" drops the id
    from the clip's labels (the clip itself when no label is left) and lists it in `rejected`: the
    ontology changed between AudioSet releases, so real copies have such lines.
    """
    root = Path(root)
    classes = read_class_labels(root / "class_labels_indices.csv")
    mid_index = dict(zip(classes["mid"], classes["index"]))
    files, other = scan_audio(Path(audio_dir) if audio_dir else root / "audio")
    parts = []
    for subset in subsets:
        path = root / SEGMENT_FILES[subset]
        seg = read_segments(path)
        seg["subset"] = subset
        seg["line"] = np.arange(len(seg)) + 4
        seg["list"] = str(path)
        parts.append(seg)
    df = pd.concat(parts, ignore_index=True)
    dup = df["ytid"].duplicated()
    if dup.any():
        r = df[dup].iloc[0]
        raise MetadataError(f"{r['list']} line {r['line']}: duplicate YTID {r['ytid']}")
    # Plain lists (iterating pandas string columns is slow) and one parse per distinct label set: 2 M rows
    # carry a few hundred thousand distinct sets.
    labels, unknown, parsed = [], [], {}
    for i, mids in enumerate(df["mids"].tolist()):
        out = parsed.get(mids)
        if out is None:
            idx, bad = [], []
            for m in mids.split(","):
                m = m.strip()
                if m in mid_index:
                    idx.append(str(mid_index[m]))
                elif bad_labels == "skip":
                    bad.append(m)
                else:
                    raise MetadataError(
                        f"{df['list'].iat[i]} line {df['line'].iat[i]}: unknown label id {m!r} "
                        "(not in class_labels_indices.csv; data.bad_audio: skip drops it)"
                    )
            out = parsed[mids] = (" ".join(idx), " ".join(bad))
        labels.append(out[0])
        unknown.append(out[1])
    df["labels"] = labels
    paths = [_find(files, y, s) or "" for y, s in zip(df["ytid"].tolist(), df["start"].tolist())]
    df["path"] = paths
    df["duration"] = df["end"] - df["start"]
    status = np.where(df["path"] == "", "missing", "ok").astype(object)
    for i in np.flatnonzero(df["path"] == ""):  # a file in a format the decoder does not read is not "missing"
        o = _find(other, df["ytid"].iat[i], df["start"].iat[i])
        if o:
            status[i] = f"exists but not in a format the decoder reads ({os.path.splitext(o)[1] or 'no extension'})"
    unknown = np.array(unknown, dtype=object)
    has_unknown = unknown != ""
    no_label = has_unknown & (df["labels"] == "").to_numpy()
    status[no_label] = "no known label"
    df["status"] = status
    df.insert(0, "row", np.arange(len(df)))
    df = df.rename(columns={"ytid": "id"})
    manifest = df[["row", "id", "subset", "path", "labels", "duration", "status"]]
    reason = pd.Series(status, index=df.index, dtype=object)
    reason[no_label] = [f"unknown label id {u} (clip dropped: no label left)" for u in unknown[no_label]]
    dropped = has_unknown & ~no_label
    reason[dropped] = [f"unknown label id {u} (label dropped, clip kept)" for u in unknown[dropped]]
    listed = (reason != "ok").to_numpy()
    rejected = df.loc[listed, ["row", "id", "subset", "list", "line"]].assign(reason=reason[listed].to_numpy())
    return manifest, rejected


def tau_manifest(root, splits=TAU_SPLITS, split_dir=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (manifest, rejected) for TAU Urban Acoustic Scenes 2022 Mobile (development set).

    The split files are read from `split_dir` (layouts.tau_split_dir: the root, else <root>/split_setup).
    """
    root = Path(root)
    split_dir = Path(tau_split_dir(root, split_dir))
    meta = read_tsv(root / "meta.csv", ["filename", "scene_label", "identifier", "source_label"])
    dup = meta["filename"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise MetadataError(f"{root / 'meta.csv'} line {i + 2}: duplicate filename {meta['filename'][i]}")
    unknown = ~meta["scene_label"].isin(SCENES)
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise MetadataError(f"{root / 'meta.csv'} line {i + 2}: unknown scene label {meta['scene_label'][i]!r}")
    df = pd.DataFrame(
        {
            "row": np.arange(len(meta)),
            "id": meta["filename"],
            "path": [str(root / f) for f in meta["filename"]],
            "class_label": meta["scene_label"],
            "scene_label": meta["scene_label"],
            "label": meta["scene_label"].map({s: i for i, s in enumerate(SCENES)}),
            "device": meta["source_label"],
            "identifier": meta["identifier"],
        }
    )
    known = set(meta["filename"])
    for name in [f"split{s}" for s in splits] + ["test"]:
        f = split_dir / f"{name}.csv"
        if not f.exists():
            raise MetadataError(
                f"{f}: no such split file (targets.<name>.split_dir; default: the dataset root, "
                "then <root>/split_setup)"
            )
        part = read_tsv(f, ["filename"])
        if part.empty:
            raise MetadataError(f"{f}: split is empty")
        absent = ~part["filename"].isin(known)
        if absent.any():
            i = int(np.flatnonzero(absent)[0])
            raise MetadataError(f"{f} line {i + 2}: {part['filename'][i]} is not in meta.csv")
        df[name] = df["id"].isin(set(part["filename"]))
    exists = np.array([os.path.exists(p) for p in df["path"]])
    df["status"] = np.where(exists, "ok", "missing")
    rejected = df.loc[~exists, ["row", "id"]].assign(reason="missing")
    return df, rejected


def csv_target_manifest(csv_path, audio_root, splits, test_split: str = "test") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (manifest, rejected) for a target described by a CSV (see the module docstring)."""
    csv_path, audio_root = Path(csv_path), Path(audio_root)
    try:
        meta = pd.read_csv(csv_path, dtype=str, keep_default_na=False, sep=None, engine="python")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise MetadataError(f"{csv_path}: cannot parse: {e}") from None
    except FileNotFoundError:
        raise MetadataError(f"{csv_path}: no such file (targets.<name>.csv)") from None
    missing = [c for c in ("filename", "label", "split") if c not in meta.columns]
    if missing:
        raise MetadataError(f"{csv_path}: missing column(s) {missing}; found {list(meta.columns)}")
    for col in ("filename", "label", "split"):
        empty = meta[col].str.strip() == ""
        if empty.any():
            raise MetadataError(f"{csv_path} line {int(np.flatnonzero(empty)[0]) + 2}: empty {col}")
    dup = meta["filename"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise MetadataError(f"{csv_path} line {i + 2}: duplicate filename {meta['filename'][i]}")
    classes = sorted(meta["label"].str.strip().unique())
    member = [set(v.replace(";", " ").replace(",", " ").split()) for v in meta["split"]]
    df = pd.DataFrame(
        {
            "row": np.arange(len(meta)),
            "id": meta["filename"],
            "path": [str(audio_root / f) for f in meta["filename"]],
            "class_label": meta["label"].str.strip(),
            "label": meta["label"].str.strip().map({c: i for i, c in enumerate(classes)}),
            "device": meta["device"] if "device" in meta.columns else "all",
        }
    )
    if "city" in meta.columns:  # the evaluation's per-city accuracy (student/evaluate.py, city_of_clips)
        df["city"] = meta["city"].str.strip()
    for name in [str(x) for x in splits] + [test_split]:
        col = "test" if name == test_split else f"split{name}"
        df[col] = [name in m for m in member]
        if not df[col].any():
            raise MetadataError(f"{csv_path}: no clip is in split {name!r} (column `split`)")
    both = df["test"] & df[[f"split{x}" for x in splits]].any(axis=1)
    if both.any():
        i = int(np.flatnonzero(both)[0])
        raise MetadataError(f"{csv_path} line {i + 2}: {df['id'][i]} is in a training split and in the test split")
    exists = np.array([os.path.exists(p) for p in df["path"]])
    df["status"] = np.where(exists, "ok", "missing")
    rejected = df.loc[~exists, ["row", "id"]].assign(reason="missing")
    return df, rejected


def target_manifest(s: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A target's manifest from its settings (the adapter and where its data lies)."""
    if s["adapter"] == "tau2022":
        return tau_manifest(s["root"], split_dir=s.get("split_dir"))
    return csv_target_manifest(s["csv"], s["audio_root"], s["splits"], s.get("test_split", "test"))


def build_manifest(s: dict, root, out, rejected_out, log=print) -> None:
    """Write a dataset's manifest and its rejected table, from the settings `s` (the adapter, where the data lies)."""
    import time

    from prunekd.atomic import write_table

    t0 = time.time()
    if s["adapter"] == "audioset":
        if not root:
            raise MetadataError("--root (the AudioSet folder) is needed for the audioset adapter")
        if s.get("layout") == "hdf5":  # PaSST's *_mp3.hdf files: names, labels and MP3 bytes in one file per subset
            from .audioset_hdf5 import audioset_hdf5_manifest

            man, rej = audioset_hdf5_manifest(root, s["audioset_subsets"])
        else:
            man, rej = audioset_manifest(
                root, s["audioset_subsets"], s.get("audioset_audio_dir") or None, bad_labels=s["bad_audio"]
            )
    else:
        man, rej = target_manifest(s)
    if len(rej) and s["bad_audio"] == "fail":
        r = rej.iloc[0]
        where = f"{r['list']} line {r['line']}" if "list" in r else str(man.loc[man["row"] == r["row"], "path"].iloc[0])
        raise BadAudioError(
            f"{where}: clip {r['id']} is {r['reason']} ({out}; data.bad_audio: fail); {len(rej)} such clips"
        )
    problem = unusable(man, s, Path(out).name.removesuffix(".tsv"))
    if problem:
        raise MetadataError(problem)
    if s["adapter"] != "audioset":
        for w in class_coverage_warnings(man):
            log(f"warning: {out}: {w}")
    write_table(rejected_out, rej)
    write_table(out, man)
    log(f"{out}: {len(man)} rows, {len(rej)} rejected, {time.time() - t0:.1f} s")


def _key_to_check(s: dict, name: str) -> str:
    """The config key that says where a dataset's audio lies (what a user mistypes)."""
    if s["adapter"] == "audioset":
        return (
            "paths.audioset" if s.get("layout") == "hdf5" else "paths.audioset_audio (default: <paths.audioset>/audio)"
        )
    return f"targets.{name}.root" if s["adapter"] == "tau2022" else f"targets.{name}.audio_root"


def unusable(man: pd.DataFrame, s: dict, name: str) -> str | None:
    """One line when a dataset, one of its subsets or splits, or one of a target's classes has no usable clip
    left: every job after the manifest would train or score on nothing, so the run stops here."""
    ok = (man["status"] == "ok").to_numpy()
    key = _key_to_check(s, name)

    def why(rows) -> str:
        bad = man[rows & ~ok]
        first = bad.iloc[0]
        what = first["status"] + (f": {first['path']}" if first.get("path") else "")
        return f"all {len(bad)} clips rejected (first: {first['id']}, {what}); check {key}"

    everything = np.ones(len(man), dtype=bool)
    if not len(man) or not ok.any():
        return f"{name}: no usable clip{': ' + why(everything) if len(man) else ' listed'}"
    if s["adapter"] == "audioset":
        groups = [(f"subset {v}", (man["subset"] == v).to_numpy()) for v in man["subset"].unique()]
    else:
        splits = [c for c in man.columns if c.startswith("split")]
        test = s.get("test_split", "test") if s["adapter"] == "csv" else "test"
        groups = [(f"split {c[5:]}", man[c].astype(str).eq("True").to_numpy()) for c in splits]
        groups.append((f"test split {test}", man["test"].astype(str).eq("True").to_numpy()))
        labels = man["class_label"].astype(str)
        groups += [(f"class {c}", (labels == c).to_numpy()) for c in sorted(labels.unique())]
    for what, rows in groups:
        if rows.any() and not (rows & ok).any():
            return f"{name}: {what} has no usable clip: {why(rows)}"
    return None


def class_coverage_warnings(manifest: pd.DataFrame) -> list[str]:
    """Classes a split cannot teach: test classes absent from a training split's usable clips, and
    classes of the dataset a split lacks. Without a warning every such accuracy reads 0 unexplained."""
    ok = manifest[manifest["status"] == "ok"]
    every = set(manifest["class_label"].astype(str))
    test = set(ok.loc[ok["test"].astype(str) == "True", "class_label"].astype(str))
    out = []
    for col in [c for c in manifest.columns if c.startswith("split")]:
        have = set(ok.loc[ok[col].astype(str) == "True", "class_label"].astype(str))
        split = f"split {col[5:]}"  # the split's name in the config (targets.<name>.splits), not the column
        never = sorted(test - have)
        if never:
            out.append(f"{split}: test classes never in training: {', '.join(never)} (their accuracy will be 0)")
        lacks = sorted(every - have - test)
        if lacks:
            out.append(f"{split}: lacks classes {', '.join(lacks)}")
    lacks = sorted(every - test)
    if lacks:
        out.append(f"test split: lacks classes {', '.join(lacks)}")
    return out


def manifest_step(out, rejected, settings: dict, root=None, log=print) -> None:
    """`prunekd manifest`."""
    build_manifest(settings, root, out, rejected, log)
