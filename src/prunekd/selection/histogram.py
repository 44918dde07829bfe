"""Histogram of a split's domain classifier scores over the AudioSet training clips, thresholds marked."""

from __future__ import annotations

import numpy as np


def training_score_histogram(audioset_store, audioset_manifest, scores_path, thresholds, title: str, out) -> None:
    """Histogram (PNG) of a split's scores over the AudioSet training clips, thresholds marked."""
    from prunekd.teachers.logit_store import training_rows

    _, train_pos = training_rows(audioset_store, audioset_manifest)
    score_histogram(np.load(scores_path)[train_pos], thresholds, title, out)


def score_histogram(scores: np.ndarray, thresholds, title: str, out) -> None:
    """Histogram (PNG, log counts) of domain classifier scores with each threshold and its kept share."""
    import matplotlib

    matplotlib.use("Agg")  # no display on compute nodes
    import matplotlib.pyplot as plt

    from prunekd.atomic import atomic_path

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


def histogram_step(audioset_store, audioset_manifest, scores, thresholds, title, out, log=print) -> None:
    """`prunekd histogram`."""
    training_score_histogram(audioset_store, audioset_manifest, scores, thresholds, title, out)
