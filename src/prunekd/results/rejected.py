"""Rejected clips of every dataset, counted by reason, for the report (nothing is dropped silently)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from prunekd.atomic import atomic_path, write_table


def rejected_report(tables: dict[str, str], outdir) -> pd.DataFrame:
    """tables: dataset -> rejected TSV (row, id, reason). Writes rejected.tsv and rejected_counts.{csv,md,html}."""
    outdir = Path(outdir)
    frames = []
    for ds, path in tables.items():
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        frames.append(df.assign(dataset=ds)[["dataset", "row", "id", "reason"]])
    every = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["dataset", "row", "id", "reason"])
    counts = every.groupby(["dataset", "reason"]).size().rename("clips").reset_index()
    for ds in tables:  # a dataset without rejected clips still gets its row
        if ds not in set(counts["dataset"]):
            counts.loc[len(counts)] = [ds, "(none)", 0]
    counts = counts.sort_values(["dataset", "reason"]).reset_index(drop=True)
    write_table(outdir / "rejected.tsv", every)
    write_table(outdir / "rejected_counts.csv", counts)
    with atomic_path(outdir / "rejected_counts.md") as tmp:
        tmp.write_text("# Rejected clips\n\n" + counts.to_markdown(index=False) + "\n")
    listing = every.head(200).to_html(index=False) if len(every) else "<p>none</p>"
    with atomic_path(outdir / "rejected_counts.html") as tmp:
        tmp.write_text(
            "<html><head><meta charset='utf-8'><title>Rejected clips</title></head><body>"
            "<h2>Rejected clips (skipped and listed)</h2>"
            + counts.to_html(index=False)
            + f"<h3>Clips (first 200 of {len(every)}; all in rejected.tsv)</h3>"
            + listing
            + "</body></html>\n"
        )
    return counts


def rejected_step(tables: list[str], outdir, log=print) -> pd.DataFrame:
    """`prunekd rejected`: DATASET=rejected.tsv arguments into the report's counts."""
    named = dict(t.split("=", 1) for t in tables)
    counts = rejected_report(named, outdir)
    log(f"rejected clips: {int(counts['clips'].sum())} ({', '.join(f'{k}: {v}' for k, v in named.items())})")
    return counts
