"""Table 1 (thresholds on split 100) and Table 2 (every split: method vs baseline), with plots.

Each table is written as CSV, Markdown and HTML; the report's published numbers stand beside ours.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_path, write_table

PAPER_TABLE1 = {0.1: (57.8, 30.9), 0.2: (56.7, 19.2), 0.3: (60.0, 14.2), 0.4: (59.1, 10.9), 0.5: (58.1, 8.5)}
PAPER_TABLE2 = {5: (45.8, 42.4), 10: (50.3, 45.3), 25: (53.8, 50.3), 50: (55.0, 53.2), 100: (60.0, 57.0)}


def _mean_std(values):
    v = np.asarray(values, float) * 100
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def collect(metric_files: list[str], prune_files: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long tables of every evaluated model and every pruned set, keyed by the path layout."""
    runs = []
    for f in metric_files:
        m = json.loads(Path(f).read_text())
        runs.append({**m["key"], "macro_accuracy": m["macro_accuracy"], **{f"device_{d}": a for d, a in m["per_device"].items()}})
    prunes = [json.loads(Path(f).read_text()) for f in prune_files]
    return pd.DataFrame(runs), pd.DataFrame(prunes)


def table1(runs: pd.DataFrame, prunes: pd.DataFrame, sweep_split: int) -> pd.DataFrame:
    rows = []
    kd = runs[(runs["method"] == "kd") & (runs["split"] == sweep_split)]
    for thr, g in sorted(kd.groupby("threshold"), key=lambda x: x[0]):
        mean, std = _mean_std(g["macro_accuracy"])
        p = prunes[(prunes["split"] == sweep_split) & np.isclose(prunes["threshold"], thr)].iloc[0]
        paper = PAPER_TABLE1.get(round(thr, 3), (np.nan, np.nan))
        rows.append({"threshold": thr, "macro_acc": round(mean, 2), "macro_acc_std": round(std, 2), "seeds": len(g),
                     "kept_share_pct": round(100 * p["kept_share"], 2), "kept_clips": int(p["kept"]),
                     "paper_macro_acc": paper[0], "paper_kept_share_pct": paper[1]})
    return pd.DataFrame(rows)


def table2(runs: pd.DataFrame, threshold: float) -> pd.DataFrame:
    rows = []
    for split in sorted(runs["split"].unique()):
        kd = runs[(runs["method"] == "kd") & (runs["split"] == split) & np.isclose(runs["threshold"], threshold)]
        base = runs[(runs["method"] == "baseline") & (runs["split"] == split)]
        km, ks = _mean_std(kd["macro_accuracy"]) if len(kd) else (np.nan, np.nan)
        bm, bs = _mean_std(base["macro_accuracy"]) if len(base) else (np.nan, np.nan)
        paper = PAPER_TABLE2.get(int(split), (np.nan, np.nan))
        rows.append({"split": int(split), "method_macro_acc": round(km, 2), "method_std": round(ks, 2),
                     "baseline_macro_acc": round(bm, 2), "baseline_std": round(bs, 2),
                     "gain": round(km - bm, 2), "paper_method": paper[0], "paper_baseline": paper[1]})
    return pd.DataFrame(rows)


def write_table_formats(df: pd.DataFrame, stem, title: str) -> None:
    write_table(f"{stem}.csv", df)
    with atomic_path(f"{stem}.md") as tmp:
        tmp.write_text(f"# {title}\n\n" + df.to_markdown(index=False) + "\n")
    with atomic_path(f"{stem}.html") as tmp:
        tmp.write_text(f"<html><head><meta charset='utf-8'><title>{title}</title>"
                       "<style>table{border-collapse:collapse;font-family:sans-serif}"
                       "td,th{border:1px solid #999;padding:4px 8px;text-align:right}</style></head>"
                       f"<body><h2>{title}</h2>" + df.to_html(index=False, na_rep="-") + "</body></html>\n")


def plot_table1(t1: pd.DataFrame, out) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(t1["threshold"], t1["macro_acc"], yerr=t1["macro_acc_std"], marker="o", label="this run")
    ax.plot(t1["threshold"], t1["paper_macro_acc"], "s--", label="report")
    ax.set_xlabel("pruning threshold")
    ax.set_ylabel("macro accuracy (%)")
    ax2 = ax.twinx()
    ax2.bar(t1["threshold"], t1["kept_share_pct"], width=0.03, alpha=0.3, color="grey")
    ax2.set_ylabel("kept share of AudioSet (%)")
    ax.legend(loc="lower left")
    ax.set_title("Table 1: threshold sweep")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_table2(t2: pd.DataFrame, out) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(len(t2))
    ax.bar(x - 0.2, t2["method_macro_acc"], 0.4, yerr=t2["method_std"], label="pruned KD + fine-tune")
    ax.bar(x + 0.2, t2["baseline_macro_acc"], 0.4, yerr=t2["baseline_std"], label="baseline")
    ax.plot(x - 0.2, t2["paper_method"], "k^", label="report: method")
    ax.plot(x + 0.2, t2["paper_baseline"], "kv", label="report: baseline")
    ax.set_xticks(x, [f"{s} %" for s in t2["split"]])
    ax.set_xlabel("training split")
    ax.set_ylabel("macro accuracy (%)")
    ax.legend(fontsize=8)
    ax.set_title("Table 2: method vs baseline")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_devices(runs: pd.DataFrame, threshold: float, out) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = sorted(c for c in runs.columns if c.startswith("device_"))
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, sel in (("method", (runs["method"] == "kd") & np.isclose(runs["threshold"].fillna(-1), threshold)),
                       ("baseline", runs["method"] == "baseline")):
        g = runs[sel & (runs["split"] == runs["split"].max())]
        if len(g):
            ax.plot([c[7:] for c in cols], 100 * g[cols].mean().to_numpy(), "o-", label=label)
    ax.set_xlabel("device")
    ax.set_ylabel("macro accuracy (%)")
    ax.set_title(f"Accuracy per device (split {int(runs['split'].max())})")
    ax.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def summarise(metric_files, prune_files, outdir, sweep_split: int, threshold: float) -> dict:
    outdir = Path(outdir)
    runs, prunes = collect(metric_files, prune_files)
    write_table(outdir / "runs.tsv", runs)
    t1 = table1(runs, prunes, sweep_split)
    t2 = table2(runs, threshold)
    write_table_formats(t1, outdir / "table1", f"Table 1: pruning thresholds on split {sweep_split}")
    write_table_formats(t2, outdir / "table2", f"Table 2: every split, threshold {threshold}")
    plot_table1(t1, outdir / "table1.png")
    plot_table2(t2, outdir / "table2.png")
    plot_devices(runs, threshold, outdir / "devices.png")
    return {"table1_rows": len(t1), "table2_rows": len(t2)}
