"""Plots of the pipeline's intermediate results (the summary's own plots are in summarise.py)."""

from __future__ import annotations

import numpy as np


def training_score_histogram(audioset_store, audioset_manifest, scores_path, thresholds, title: str, out) -> None:
    """Histogram (PNG) of a split's scores over the AudioSet training clips, thresholds marked."""
    from .logit_store import training_rows

    _, train_pos = training_rows(audioset_store, audioset_manifest)
    score_histogram(np.load(scores_path)[train_pos], thresholds, title, out)


def score_histogram(scores: np.ndarray, thresholds, title: str, out) -> None:
    """Histogram (PNG, log counts) of domain classifier scores with each threshold and its kept share."""
    import matplotlib

    matplotlib.use("Agg")  # no display on compute nodes
    import matplotlib.pyplot as plt

    from .atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(scores, bins=50, range=(0, 1), color="steelblue")
    ax.set_yscale("log")
    for t in thresholds:
        ax.axvline(t, color="crimson", ls="--", lw=1)
        ax.text(t, ax.get_ylim()[1] * 0.5, f" {t:g}: {100 * (scores > t).mean():.1f} %", rotation=90, fontsize=7)
    ax.set_xlabel("domain classifier score")
    ax.set_ylabel("AudioSet training clips")
    ax.set_title(f"Domain classifier scores: {title}")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def curve_png_name(kind: str, run: str) -> str:
    """File name of a training run's curve plot: one folder per kind, the run's path flattened."""
    return f"{kind}/{run.replace('/', '_')}.png"


def training_curves(curves, outdir) -> list:
    """One PNG per training curve: loss and learning rate over the steps, and the test-split accuracy where the
    curve has it. curves: (kind, run, curve.tsv) triples, kind "distill", "finetune" or "baseline". Returns the
    PNGs written, under outdir/<kind>/."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")  # no display on compute nodes
    import matplotlib.pyplot as plt
    import pandas as pd

    from .atomic import atomic_path

    written = []
    for kind, run, path in curves:
        c = pd.read_csv(path, sep="\t")
        acc = [col for col in c.columns if col.startswith("test_") and c[col].notna().any()]
        fig, axes = plt.subplots(1, 2 if acc else 1, figsize=(9 if acc else 6, 3.5), squeeze=False)
        ax = axes[0][0]
        ax.plot(c["step"], c["loss"], color="steelblue", lw=1.2)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss", color="steelblue")
        lr = ax.twinx()
        lr.plot(c["step"], c["lr"], color="grey", lw=0.8, ls="--")
        lr.set_ylabel("learning rate", color="grey")
        if acc:
            a = axes[0][1]
            for col in acc:
                rows = c[c[col].notna()]
                a.plot(rows["step"], 100 * rows[col], marker="o", ms=3, label=col.removeprefix("test_"))
            a.set_xlabel("step")
            a.set_ylabel("test split accuracy (%)")
            a.legend(fontsize=7)
        fig.suptitle(f"{kind}: {run}", fontsize=9)
        fig.tight_layout()
        out = Path(outdir) / curve_png_name(kind, run)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=90)
        plt.close(fig)
        written.append(out)
    return written


def histogram_step(audioset_store, audioset_manifest, scores, thresholds, title, out, log=print) -> None:
    """`prunekd histogram`."""
    training_score_histogram(audioset_store, audioset_manifest, scores, thresholds, title, out)
