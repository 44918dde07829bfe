"""The job outputs that read given clips, for `snakemake --forcerun` after clips were replaced (docs/cluster.md)."""

from __future__ import annotations

from pathlib import Path

from prunekd.errors import PrunekdError


class UnknownClipError(PrunekdError, LookupError):
    """A clip the manifest does not hold; the message names the manifest."""


def clip_jobs(manifest_path, clips, shard_size: int) -> list[str]:
    """Teacher-logits shards (and, for AudioSet, packed-audio shards; for a target, its decoded store) holding `clips`
    (ids, paths or file names)."""
    import pandas as pd

    man_path = Path(manifest_path)
    dataset, results = man_path.stem, man_path.parent.parent  # results/manifests/<dataset>.tsv
    man = pd.read_csv(man_path, sep="\t", dtype=str, keep_default_na=False)
    # With released logits the AudioSet teacher shards are blocks of the rows the members compute.
    compute = results / "logits" / dataset / "released" / "compute.tsv"
    position = None
    if compute.exists():
        rows = pd.read_csv(compute, sep="\t")["row"].tolist()
        position = {r: i for i, r in enumerate(rows)}
    out = []
    for clip in clips:
        hit = man[(man["id"] == clip) | (man["path"] == clip) | (man["path"].map(lambda p: Path(p).name) == clip)]
        if hit.empty:
            raise UnknownClipError(f"{man_path}: no clip {clip!r} (give an id, a path or a file name)")
        for row in hit["row"].astype(int):
            shard = f"{row // shard_size:05d}"
            if position is None:
                out.append(f"{results}/logits/{dataset}/shards/{shard}.zarr")
            elif row in position:  # else its logits come from the released file: no teacher job holds it
                out.append(f"{results}/logits/{dataset}/shards/{position[row] // shard_size:05d}.zarr")
            if dataset == "audioset":
                out.append(f"{results}/packed/audioset/{shard}.zarr")
            else:  # fine-tuning, the baseline and evaluation read the target's clips from there
                out.append(f"{results}/decoded/{dataset}")
    return list(dict.fromkeys(out))
