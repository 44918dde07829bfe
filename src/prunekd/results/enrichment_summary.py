"""A target's pruned sets side by side (`prunekd enrichment-summary`): the most over- and under-represented
AudioSet classes of every set, the domain classifiers' weights by class, and one plot per target of how the
enrichment of the classes most over- and under-represented at the grid threshold changes with the threshold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from prunekd.selection.enrichment import MIN_CLIPS, TOP


def summary_tables(summaries: list[dict], tables: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(top classes per pruned set and direction, classifier weights per split) for a target's summary."""
    rows, wrows = [], []
    seen = set()
    for s in sorted(summaries, key=lambda s: (s["ensemble"], str(s["split"]), s["threshold"])):
        for view in ("labels", "teachers"):
            for direction in ("over", "under"):
                for rank, c in enumerate(s[f"top_by_{view}"][direction], start=1):
                    rows.append(
                        {
                            "ensemble": s["ensemble"],
                            "split": s["split"],
                            "threshold": s["threshold"],
                            "view": view,
                            "direction": direction,
                            "rank": rank,
                            "class": c["class"],
                            "log2_enrichment": c[f"log2_enrichment_{view}"],
                        }
                    )
        k = (s["ensemble"], str(s["split"]))
        if k not in seen:  # one classifier per (ensemble, split), whatever the threshold
            seen.add(k)
            for direction, part in s["classifier_weights"].items():
                for rank, c in enumerate(part, start=1):
                    wrows.append({"ensemble": k[0], "split": k[1], "direction": direction, "rank": rank, **c})
    return pd.DataFrame(rows), pd.DataFrame(wrows)


def plot_threshold_change(summaries: list[dict], tables: dict, threshold: float, title: str, out, k: int = 8):
    """log2 enrichment (teachers' view) against the threshold, for the classes most over- and under-represented at
    `threshold`, on the split with the most thresholds (the sweep split), report's ensemble."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from prunekd.atomic import atomic_path

    mine = [s for s in summaries if s["ensemble"] == "all"] or summaries
    by_split = {}
    for s in mine:
        by_split.setdefault(str(s["split"]), []).append(s)
    fig, ax = plt.subplots(figsize=(8, 5))
    if by_split:
        split = max(by_split, key=lambda sp: len(by_split[sp]))
        sets = sorted(by_split[split], key=lambda s: s["threshold"])
        ref = min(sets, key=lambda s: abs(s["threshold"] - threshold))
        ref_t = tables[(ref["ensemble"], str(ref["split"]), ref["threshold"])]
        ranked = ref_t.sort_values("log2_enrichment_teachers")
        chosen = list(ranked["index"].iloc[::-1][:k]) + list(ranked["index"].iloc[:k])
        thr = [s["threshold"] for s in sets]
        for i in chosen:
            y = [
                tables[(s["ensemble"], str(s["split"]), s["threshold"])]["log2_enrichment_teachers"].iloc[i]
                for s in sets
            ]
            over = i in chosen[:k]
            ax.plot(thr, y, "o-" if over else "s--", lw=1, label=ref_t["class"].iloc[i])
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"{title}: split {split}, classes most over/under-represented at {ref['threshold']:g}")
        ax.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_xlabel("pruning threshold")
    ax.set_ylabel("log2 enrichment (teachers' probabilities)")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_enrichment_summary(json_files, table_files, outdir, threshold: float, target: str = "", log=print) -> dict:
    """`prunekd enrichment-summary`: enrichment (top classes per set) and classifier_weights tables, the plot."""
    from prunekd.results.summarise import write_table_formats

    outdir = Path(outdir)
    summaries = [json.loads(Path(f).read_text()) for f in json_files]
    tables = {}
    for s, f in zip(summaries, table_files):
        tables[(s["ensemble"], str(s["split"]), s["threshold"])] = pd.read_csv(f, sep="\t")
    top, weights = summary_tables(summaries, tables)
    name = f"{target}: " if target else ""
    write_table_formats(
        top,
        outdir / "enrichment",
        f"{name}what each pruned set contains: the {TOP} most over- and under-represented AudioSet classes",
        note="log2(share in the pruned set / share in all training clips); labels: clips labelled with the class "
        f"(classes with at least {MIN_CLIPS} labelled training clips); teachers: mean sigmoid of the ensemble logits.",
    )
    write_table_formats(
        weights,
        outdir / "classifier_weights",
        f"{name}domain classifier weights: the classes that push the score towards the target and away from it",
    )
    plot_threshold_change(summaries, tables, threshold, target or "pruned sets", outdir / "enrichment.png")
    log(f"enrichment of {len(summaries)} pruned sets written to {outdir}")
    return {"sets": len(summaries)}


def enrichment_summary_step(outdir, settings: dict, log=print) -> None:
    """`prunekd enrichment-summary`: every pruned set's enrichment.json and .tsv of the target, listed from the grid
    in the settings as the rule lists them (dag.grid.Grid.spec)."""
    from prunekd.dag.grid import Grid

    g, target = Grid.from_spec(settings["grid"]), settings["target"]
    json_files, tables = g.prune_files(target, "enrichment.json"), g.prune_files(target, "enrichment.tsv")
    write_enrichment_summary(json_files, tables, outdir, settings["threshold"], target, log)
