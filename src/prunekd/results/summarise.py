"""Per target: Table 1 (thresholds on the sweep split), Table 2 (every split: method vs baseline) and the
controls (pruned vs random subset of the same size vs all of AudioSet vs no distillation, per ensemble), with
plots.

Each table is written as CSV, Markdown and HTML; for TAU the report's published numbers stand beside ours.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from prunekd.atomic import atomic_path, write_table

PAPER_TABLE1 = {0.1: (57.8, 30.9), 0.2: (56.7, 19.2), 0.3: (60.0, 14.2), 0.4: (59.1, 10.9), 0.5: (58.1, 8.5)}
PAPER_TABLE2 = {5: (45.8, 42.4), 10: (50.3, 45.3), 25: (53.8, 50.3), 50: (55.0, 53.2), 100: (60.0, 57.0)}
# Class-weighted precision / recall (%) the authors' main_tau2022.ipynb prints for its TAU classifier (its file
# names say split 100), held-out AudioSet eval against the test split (docs/method.md, "validation").
AUTHORS_VALIDATION = {0.1: (77.0, 100.0), 0.3: (87.8, 99.4), 0.5: (92.4, 97.1)}
AUTHORS_VALIDATION_SPLIT = "100"


def _mean_std(values):
    v = np.asarray(values, float) * 100
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _split_order(split) -> tuple:
    """Numeric splits (TAU's 5..100) in number order, named ones after them by name."""
    s = str(split)
    return (0, float(s), "") if s.replace(".", "", 1).isdigit() else (1, 0.0, s)


def _sorted_splits(values) -> list[str]:
    """TAU's numeric splits in number order; named splits in the order they come (the config's)."""
    seen = list(dict.fromkeys(str(v) for v in values))
    return sorted(seen, key=_split_order) if all(_split_order(v)[0] == 0 for v in seen) else seen


def collect(metric_files: list[str], prune_files: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long tables of every evaluated model and every pruned set, keyed by the path layout."""
    runs = []
    for f in metric_files:
        m = json.loads(Path(f).read_text())
        runs.append(
            {
                **m["key"],
                "macro_accuracy": m["macro_accuracy"],
                # metrics.json before the logloss: no value rather than a made-up one
                "logloss": m.get("logloss", np.nan),
                **{f"device_{d}": a for d, a in m["per_device"].items()},
                **{f"city_{c}": a for c, a in m.get("per_city", {}).items()},
            }
        )
    prunes = [json.loads(Path(f).read_text()) for f in prune_files]
    runs, prunes = pd.DataFrame(runs), pd.DataFrame(prunes)
    for df in (runs, prunes):
        if "split" in df.columns:
            df["split"] = df["split"].astype(str)
        if "ensemble" not in df.columns:
            df["ensemble"] = "all"
    return runs, prunes


def _main(runs: pd.DataFrame) -> pd.DataFrame:
    """The method itself: the report's ensemble, distilled on the pruned sets."""
    return runs[(runs["method"] == "pruned") & (runs["ensemble"].fillna("all") == "all")]


def read_validations(files) -> pd.DataFrame:
    """One row per validation.json (split, ensemble from its members' path, the whole file as `v`)."""
    rows = []
    for f in files or []:
        v = json.loads(Path(f).read_text())
        ensemble = Path(f).parent.parent.name  # domain/<target>/<ensemble>/split<split>/validation.json
        rows.append({"split": str(v["split"]), "ensemble": ensemble, "v": v})
    return pd.DataFrame(rows, columns=["split", "ensemble", "v"])


def _curve_at(v: dict, threshold: float, key: str) -> float:
    """A validation figure at a threshold: from `at_threshold` if there, else the 0.01-step curve."""
    for r in v.get("at_threshold", []):
        if np.isclose(r["threshold"], threshold) and key in r:
            return float(r[key])
    c = v.get("curve") or {}
    for t, x in zip(c.get("threshold", []), c.get(key, [])):
        if np.isclose(t, threshold):
            return float(x)
    return float("nan")


def table1(runs: pd.DataFrame, prunes: pd.DataFrame, sweep_split, paper: bool = True, validations=None) -> pd.DataFrame:
    """validations (read_validations): adds the kept share of the held-out AudioSet eval clips per threshold,
    the classifier's own estimate of the share it keeps (what Table 1's "relative size" compares with)."""
    rows = []
    val = None
    if validations is not None and len(validations):
        hit = validations[(validations["split"] == str(sweep_split)) & (validations["ensemble"] == "all")]
        val = hit["v"].iloc[0] if len(hit) else None
    sweep_split = str(sweep_split)
    kd = _main(runs)
    kd = kd[kd["split"] == sweep_split]
    prunes = prunes[prunes["ensemble"] == "all"]
    for thr, g in sorted(kd.groupby("threshold"), key=lambda x: x[0]):
        mean, std = _mean_std(g["macro_accuracy"])
        p = prunes[(prunes["split"] == sweep_split) & np.isclose(prunes["threshold"], thr)].iloc[0]
        paper_row = PAPER_TABLE1.get(round(thr, 3), (np.nan, np.nan)) if paper else (np.nan, np.nan)
        rows.append(
            {
                "threshold": thr,
                "macro_acc": round(mean, 2),
                "macro_acc_std": round(std, 2),
                "seeds": len(g),
                "kept_share_pct": round(100 * p["kept_share"], 2),
                "kept_share_of_heldout_eval_pct": (
                    round(100 * _curve_at(val, thr, "kept_share_of_negatives"), 2) if val else np.nan
                ),
                "kept_clips": int(p["kept"]),
                "paper_macro_acc": paper_row[0],
                "paper_kept_share_pct": paper_row[1],
            }
        )
    cols = ["threshold", "macro_acc", "macro_acc_std", "seeds", "kept_share_pct", "kept_share_of_heldout_eval_pct"]
    cols += ["kept_clips"]
    out = pd.DataFrame(rows, columns=cols + ["paper_macro_acc", "paper_kept_share_pct"])
    return out if paper else out[cols]


def validation_table(validations: pd.DataFrame, paper: bool = True) -> pd.DataFrame:
    """Per ensemble, split and reported threshold: ROC AUC, both precisions, recall, the kept share of the
    held-out eval clips; for TAU the authors' class-weighted figures beside the split they name."""
    rows = []
    if validations is None or not len(validations):
        return pd.DataFrame(rows)
    for ens, split, v in validations[["ensemble", "split", "v"]].itertuples(index=False):
        for r in v["at_threshold"]:
            authors = AUTHORS_VALIDATION.get(round(r["threshold"], 3)) if paper else None
            authors = authors if authors and split == AUTHORS_VALIDATION_SPLIT and ens == "all" else (np.nan, np.nan)
            rows.append(
                {
                    "ensemble": ens,
                    "split": int(split) if split.isdigit() else split,
                    "threshold": r["threshold"],
                    "auc": round(v["auc"], 4),
                    "precision_plain_pct": round(100 * r.get("precision_plain", r.get("precision", np.nan)), 1),
                    "precision_class_weighted_pct": round(100 * r.get("precision_class_weighted", np.nan), 1),
                    "recall_pct": round(100 * r["recall"], 1),
                    "kept_share_of_heldout_eval_pct": round(100 * r["kept_share_of_negatives"], 2),
                    "n_val_pos": v["n_val_pos"],
                    "n_val_neg": v["n_val_neg"],
                    "authors_precision_class_weighted_pct": authors[0],
                    "authors_recall_pct": authors[1],
                }
            )
    out = pd.DataFrame(rows)
    out = out.sort_values(
        ["ensemble", "split", "threshold"], key=lambda c: c.map(_split_order) if c.name == "split" else c
    )
    out = out.reset_index(drop=True)
    return out if paper else out.drop(columns=["authors_precision_class_weighted_pct", "authors_recall_pct"])


VALIDATION_NOTE = (
    "precision_plain: tp / (tp + fp). precision_class_weighted: tp/n_pos / (tp/n_pos + fp/n_neg), each count "
    "divided by its class's size, as the authors' domain_classifier/train.py computes it; the authors' figures "
    "(main_tau2022.ipynb, its file names point to a split-100 classifier) are class-weighted and compare with "
    "that column. Positives: the target's test split; negatives: the held-out fifth of AudioSet eval. "
    "kept_share_of_heldout_eval_pct: the share of those negatives scoring above the threshold."
)


def table2(runs: pd.DataFrame, threshold: float, paper: bool = True) -> pd.DataFrame:
    rows = []
    main = _main(runs)
    for split in _sorted_splits(runs["split"]):
        kd = main[(main["split"] == split) & np.isclose(main["threshold"], threshold)]
        base = runs[(runs["method"] == "baseline") & (runs["split"] == split)]
        km, ks = _mean_std(kd["macro_accuracy"]) if len(kd) else (np.nan, np.nan)
        bm, bs = _mean_std(base["macro_accuracy"]) if len(base) else (np.nan, np.nan)
        kl = kd["logloss"].mean() if len(kd) and "logloss" in kd else np.nan
        bl = base["logloss"].mean() if len(base) and "logloss" in base else np.nan
        paper_row = PAPER_TABLE2.get(int(split), (np.nan, np.nan)) if paper and split.isdigit() else (np.nan, np.nan)
        rows.append(
            {
                "split": int(split) if split.isdigit() else split,
                "method_macro_acc": round(km, 2),
                "method_std": round(ks, 2),
                "method_runs": len(kd),
                "baseline_macro_acc": round(bm, 2),
                "baseline_std": round(bs, 2),
                "baseline_runs": len(base),
                "gain": round(km - bm, 2),
                "method_logloss": round(kl, 3),
                "baseline_logloss": round(bl, 3),
                "paper_method": paper_row[0],
                "paper_baseline": paper_row[1],
            }
        )
    out = pd.DataFrame(rows)
    return out if paper else out.drop(columns=["paper_method", "paper_baseline"])


def table2_note(t2: pd.DataFrame, paper: bool) -> str:
    """What each column of Table 2 averages, said beside the table (docs/method.md, "Repetitions")."""
    if t2.empty:
        return ""

    def runs(col):
        return "/".join(str(n) for n in sorted(set(t2[col])))

    note = (
        f"Means (and standard deviations) over {runs('method_runs')} run(s) per split of the method and "
        f"{runs('baseline_runs')} of the baseline (grid.seeds, grid.baseline_seeds). Accuracy and logloss of the "
        "models with float16 parameters, as submitted; logloss: the mean over the classes of each class's mean "
        "cross-entropy (natural log)."
    )
    if paper:
        note += (
            " The report's columns: its method is one run per split; its baseline is the DCASE2024 "
            "baseline's published mean over 5 runs."
        )
    return note


CONTROL_METHODS = ["pruned", "random", "full", "baseline"]


def controls(runs: pd.DataFrame, prunes: pd.DataFrame) -> pd.DataFrame:
    """One row per pruned set (ensemble, split, threshold): the accuracy after distilling on it, on a random
    subset of its size, on all of AudioSet (per split) and with no distillation (the baseline)."""
    rows = []
    for _, p in prunes.sort_values(["ensemble", "threshold"]).iterrows():
        split, ens, thr = str(p["split"]), p["ensemble"], p["threshold"]
        here = runs[runs["split"] == split]
        sel = {
            "pruned": here[
                (here["method"] == "pruned")
                & (here["ensemble"] == ens)
                & np.isclose(here["threshold"].astype(float), thr)
            ],
            "random": here[
                (here["method"] == "random")
                & (here["ensemble"] == ens)
                & np.isclose(here["threshold"].astype(float), thr)
            ],
            "full": here[(here["method"] == "full") & (here["ensemble"] == ens)],
            "baseline": here[here["method"] == "baseline"],
        }
        row = {
            "ensemble": ens,
            "split": int(split) if split.isdigit() else split,
            "threshold": thr,
            "kept_clips": int(p["kept"]),
            "kept_share_pct": round(100 * p["kept_share"], 2),
        }
        for name, g in sel.items():
            label = "no_distillation" if name == "baseline" else name
            m, sd = _mean_std(g["macro_accuracy"]) if len(g) else (np.nan, np.nan)
            row[label], row[f"{label}_std"], row[f"{label}_seeds"] = round(m, 2), round(sd, 2), len(g)
        row["pruned_minus_random"] = round(row["pruned"] - row["random"], 2)
        row["pruned_minus_none"] = round(row["pruned"] - row["no_distillation"], 2)
        rows.append(row)
    out = pd.DataFrame(rows)
    if len(out):
        out = out.sort_values(
            ["ensemble", "split", "threshold"], key=lambda c: c.map(_split_order) if c.name == "split" else c
        )
    return out.reset_index(drop=True)


def with_class_mix(ct: pd.DataFrame, enrichment_files) -> pd.DataFrame:
    """The controls table with `random_vs_pruned_class_mix_tvd`: the total variation distance between the random
    control's and the pruned set's AudioSet label distributions (enrichment.py), per pruned set."""
    if not len(ct) or not enrichment_files:
        return ct
    dist = {}
    for f in enrichment_files:
        e = json.loads(Path(f).read_text())
        d = e.get("class_mix_distance", {}).get("random_vs_pruned")
        dist[(e["ensemble"], str(e["split"]), round(float(e["threshold"]), 6))] = np.nan if d is None else round(d, 4)
    ct = ct.copy()
    ct["random_vs_pruned_class_mix_tvd"] = [
        dist.get((e, str(s), round(float(t), 6)), np.nan)
        for e, s, t in zip(ct["ensemble"], ct["split"], ct["threshold"])
    ]
    return ct


def write_table_formats(df: pd.DataFrame, stem, title: str, warnings=(), note: str = "") -> None:
    import html

    write_table(f"{stem}.csv", df)
    md_warn = "".join(f"> **Warning:** {w}\n" for w in warnings) + ("\n" if warnings else "")
    html_warn = "".join(f"<p style='color:#a00'><b>Warning:</b> {html.escape(w)}</p>" for w in warnings)
    md_warn += f"{note}\n\n" if note else ""
    html_warn += f"<p>{html.escape(note)}</p>" if note else ""
    with atomic_path(f"{stem}.md") as tmp:
        tmp.write_text(f"# {title}\n\n" + md_warn + df.to_markdown(index=False) + "\n")
    with atomic_path(f"{stem}.html") as tmp:
        tmp.write_text(
            f"<html><head><meta charset='utf-8'><title>{title}</title>"
            "<style>table{border-collapse:collapse;font-family:sans-serif}"
            "td,th{border:1px solid #999;padding:4px 8px;text-align:right}</style></head>"
            f"<body><h2>{title}</h2>" + html_warn + df.to_html(index=False, na_rep="-") + "</body></html>\n"
        )


def _save(fig, out) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_table1(t1: pd.DataFrame, out) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(t1["threshold"], t1["macro_acc"], yerr=t1["macro_acc_std"], marker="o", label="this run")
    if "paper_macro_acc" in t1:
        ax.plot(t1["threshold"], t1["paper_macro_acc"], "s--", label="report")
    ax.set_xlabel("pruning threshold")
    ax.set_ylabel("macro accuracy (%)")
    ax2 = ax.twinx()
    ax2.bar(t1["threshold"], t1["kept_share_pct"], width=0.03, alpha=0.3, color="grey", label="kept: training")
    if "kept_share_of_heldout_eval_pct" in t1 and t1["kept_share_of_heldout_eval_pct"].notna().any():
        ax2.plot(t1["threshold"], t1["kept_share_of_heldout_eval_pct"], "x:", color="grey", label="kept: held-out eval")
    if "paper_kept_share_pct" in t1:
        ax2.plot(t1["threshold"], t1["paper_kept_share_pct"], "d", color="black", alpha=0.5, label="kept: report")
    ax2.set_ylabel("kept share of AudioSet (%)")
    ax2.legend(loc="upper right", fontsize=7)
    ax.legend(loc="lower left")
    ax.set_title("Table 1: threshold sweep")
    _save(fig, out)


def plot_table2(t2: pd.DataFrame, out) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, axl) = plt.subplots(1, 2, figsize=(10, 4), width_ratios=[3, 2])
    x = np.arange(len(t2))
    ax.bar(x - 0.2, t2["method_macro_acc"], 0.4, yerr=t2["method_std"], label="pruned KD + fine-tune")
    ax.bar(x + 0.2, t2["baseline_macro_acc"], 0.4, yerr=t2["baseline_std"], label="baseline")
    if "paper_method" in t2:
        ax.plot(x - 0.2, t2["paper_method"], "k^", label="report: method")
        ax.plot(x + 0.2, t2["paper_baseline"], "kv", label="report: baseline")
    ax.set_xticks(x, [f"{s} %" for s in t2["split"]])
    ax.set_xlabel("training split")
    ax.set_ylabel("macro accuracy (%)")
    ax.legend(fontsize=8)
    ax.set_title("Table 2: method vs baseline")
    # The challenge reports the logloss beside the accuracy it ranks on: lower is better.
    axl.bar(x - 0.2, t2["method_logloss"], 0.4, label="pruned KD + fine-tune")
    axl.bar(x + 0.2, t2["baseline_logloss"], 0.4, label="baseline")
    axl.set_xticks(x, [f"{s} %" for s in t2["split"]])
    axl.set_xlabel("training split")
    axl.set_ylabel("logloss (lower is better)")
    axl.set_title("logloss")
    _save(fig, out)


def plot_controls(ct: pd.DataFrame, out) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(ct) + 2), 4))
    x = np.arange(len(ct))
    names = [
        ("pruned", "pruned set"),
        ("random", "random subset, same size"),
        ("full", "all of AudioSet"),
        ("no_distillation", "no distillation"),
    ]
    for i, (col, label) in enumerate(names):
        if col in ct.columns and ct[col].notna().any():
            ax.bar(x + (i - 1.5) * 0.2, ct[col], 0.2, yerr=ct[f"{col}_std"], label=label)
    ax.set_xticks(
        x,
        [f"{e}\n{s}/{t:g}" for e, s, t in zip(ct.get("ensemble", []), ct.get("split", []), ct.get("threshold", []))],
        fontsize=7,
    )
    ax.set_xlabel("ensemble, split / threshold")
    ax.set_ylabel("macro accuracy (%)")
    ax.legend(fontsize=7)
    ax.set_title("Controls: distilled on the pruned set vs a random subset vs all vs none")
    _save(fig, out)


def plot_devices(runs: pd.DataFrame, threshold: float, out) -> None:
    """Accuracy per device and, where the target names cities, per city (the method and the baseline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cities = sorted(c for c in runs.columns if c.startswith("city_"))
    panels = [("device_", "device")] + ([("city_", "city")] if cities else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4), squeeze=False)
    last = _sorted_splits(runs["split"])[-1]
    main = (runs["method"] == "pruned") & (runs["ensemble"].fillna("all") == "all")
    for ax, (prefix, what) in zip(axes[0], panels):
        cols = sorted(c for c in runs.columns if c.startswith(prefix))
        for label, sel in (
            ("method", main & np.isclose(runs["threshold"].astype(float).fillna(-1), threshold)),
            ("baseline", runs["method"] == "baseline"),
        ):
            g = runs[sel & (runs["split"] == last)]
            if len(g):
                ax.plot([c[len(prefix) :] for c in cols], 100 * g[cols].mean().to_numpy(), "o-", label=label)
        ax.set_xlabel(what)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"Accuracy per {what} (split {last})")
        ax.tick_params(axis="x", labelsize=7, rotation=45 if what == "city" else 0)
        ax.legend()
    _save(fig, out)


def summarise(
    metric_files,
    prune_files,
    outdir,
    sweep_split,
    threshold: float,
    target: str = "",
    adapter: str = "tau2022",
    warnings=(),
    validation_files=(),
    enrichment_files=(),
) -> dict:
    """warnings: lines shown above every table (e.g. test classes that never occur in training).
    validation_files: the domain classifiers' validation.json (the validation table, Table 1's kept share of
    held-out eval)."""
    outdir = Path(outdir)
    runs, prunes = collect(metric_files, prune_files)
    validations = read_validations(validation_files)
    paper = adapter == "tau2022"  # the report's numbers are for TAU only
    write_table(outdir / "runs.tsv", runs)
    t1 = (
        table1(runs, prunes, sweep_split, paper, validations)
        if sweep_split is not None
        else table1(runs.iloc[:0], prunes, "", paper)
    )
    t2 = table2(runs, threshold, paper)
    ct = with_class_mix(controls(runs, prunes), enrichment_files)
    name = f"{target}: " if target else ""
    write_table_formats(t1, outdir / "table1", f"{name}Table 1, pruning thresholds on split {sweep_split}", warnings)
    write_table_formats(
        t2, outdir / "table2", f"{name}Table 2, every split, threshold {threshold}", warnings, table2_note(t2, paper)
    )
    write_table_formats(
        ct, outdir / "controls", f"{name}pruned vs random subset vs all of AudioSet vs no distillation", warnings
    )
    vt = validation_table(validations, paper)
    write_table_formats(
        vt, outdir / "validation", f"{name}domain classifiers: held-out validation", warnings, VALIDATION_NOTE
    )
    plot_table1(t1, outdir / "table1.png")
    plot_table2(t2, outdir / "table2.png")
    plot_controls(ct, outdir / "controls.png")
    plot_devices(runs, threshold, outdir / "devices.png")
    return {"table1_rows": len(t1), "table2_rows": len(t2), "control_rows": len(ct), "validation_rows": len(vt)}


def write_summary(
    metric_files, prune_files, outdir, cfg: dict, manifest=None, validation=(), log=print, enrichment=()
) -> dict:
    """The summary from the step's settings; with the target `manifest`, its class coverage warnings go above
    the tables."""
    from prunekd.data.manifest import class_coverage_warnings

    warnings = []
    if manifest:
        warnings = class_coverage_warnings(pd.read_csv(manifest, sep="\t", dtype=str, keep_default_na=False))
        for w in warnings:
            log(f"warning: {manifest}: {w}")
    out = summarise(
        metric_files,
        prune_files,
        outdir,
        cfg["sweep_split"],
        cfg["threshold"],
        cfg.get("target", ""),
        cfg.get("adapter", "tau2022"),
        warnings,
        validation,
        enrichment,
    )
    log(f"summary written to {outdir}")
    return out


def summarise_step(outdir, settings: dict, manifest=None, log=print) -> None:
    """`prunekd summarise`: the target's evaluations, pruned sets and validation reports, listed from the grid in
    the settings as the rule lists them (dag.grid.Grid.spec); the training runs behind the tables plotted into
    <outdir>/curves, one plot each for the report."""
    from prunekd.dag.grid import Grid
    from prunekd.results.curves import training_curves

    g, target = Grid.from_spec(settings["grid"]), settings["target"]
    prunes, enrichment = g.prune_files(target, "stats.json"), g.prune_files(target, "enrichment.json")
    write_summary(g.eval_metrics(target), prunes, outdir, settings, manifest, g.validation_reports(target), log,
                  enrichment)  # fmt: skip
    curves = present_curves(g.training_curves(target), log)
    if curves:
        training_curves([(*name.split(":", 1), path) for name, path in curves.items()], Path(outdir) / "curves")


def present_curves(curves: dict, log=print) -> dict:
    """The curves (name -> curve.tsv) whose file is there. A curve is not an input of the rule (its model's metrics
    order the step), so Snakemake does not rebuild one deleted beside its model: its plot is left out, named."""
    missing = [p for p in curves.values() if not Path(p).is_file()]
    for p in missing:
        log(f"warning: {p} is missing, its training curve is not plotted (snakemake --forcerun on the run rebuilds it)")
    return {k: p for k, p in curves.items() if p not in missing}
