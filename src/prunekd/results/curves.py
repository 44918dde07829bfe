"""The training curves' plots (loss, learning rate, test-split accuracy), one PNG per run, for the report."""

from __future__ import annotations


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

    from prunekd.atomic import atomic_path

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
