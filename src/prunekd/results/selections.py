"""Per target: the selection methods side by side (grid.selections, docs/selections.md).

One row per selection at each (split, threshold) of the report's ensemble: the report's pruned set, its random
control and every grid.selections entry. Columns: clips kept, the KL-reduction proxy (one codebook per split, so
rows of a split compare), the overlap with the report's pruned set (Jaccard), the macro accuracy's mean and
standard deviation over seeds, its gain over the random subset of the same size and whether it beats that subset
and the pruned set by a stated test, and, where the world's truth is known (the demo worlds), the kept clips'
precision and recall against it and each kind of clip's share of them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from prunekd.results.significance import permutation_p
from prunekd.results.summarise import _save, write_table_formats

BUILTIN = {"pruned": ("domain_classifier", "logits", "the report's pruned set"), "random": ("random", "-", "control")}


def _describe(sel: str) -> tuple[str, str, str]:
    if sel in BUILTIN:
        return BUILTIN[sel]
    method, _, rest = sel.partition("-")
    feature, _, budget = rest.partition("-")
    return method, feature, budget or "equal"


def jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / max(1, len(a | b))


def accuracy(metrics_files, target: str) -> pd.DataFrame:
    rows = []
    for f in metrics_files:
        m = json.loads(Path(f).read_text())
        k = m["key"]
        if k["target"] == target and k.get("ensemble") in ("all", None) and k["method"] != "baseline":
            rows.append({**k, "split": str(k["split"]), "threshold": f"{float(k['threshold']):g}"
                         if k["threshold"] is not None else None, "acc": 100 * m["macro_accuracy"]})  # fmt: skip
    return pd.DataFrame(rows, columns=["target", "ensemble", "split", "method", "threshold", "seed", "acc"])


def _p(better, worse, itself: bool) -> float:
    return np.nan if itself or not len(better) or not len(worse) else round(permutation_p(better, worse), 3)


def table(sets: dict[str, str], metrics_files, target: str, proxies=None, truth=None, kinds=None) -> pd.DataFrame:
    """sets: "<selection>/split<s>/thr<t>" -> kept clips TSV; proxies: split -> Proxy-like with figure(kept positions)
    (None: no proxy column); truth: clip id -> 1 (target-like), between (partly useful), 0 (unrelated); kinds: clip
    id -> the world's kind of clip (the graded world's), for each kind's share of the kept clips."""
    runs = accuracy(metrics_files, target)
    tables = {label: pd.read_csv(path, sep="\t", dtype={"id": str}) for label, path in sets.items()}
    kept = {label: t["position"].to_numpy() for label, t in tables.items()}
    rows = []
    for label, pos in kept.items():
        sel, split, thr = label.split("/")
        split, thr = split.removeprefix("split"), thr.removeprefix("thr")
        method, feature, budget = _describe(sel)
        acc = runs[(runs["method"] == sel) & (runs["split"] == split) & (runs["threshold"] == thr)]["acc"]
        rand = runs[(runs["method"] == "random") & (runs["split"] == split) & (runs["threshold"] == thr)]["acc"]
        pruned = runs[(runs["method"] == "pruned") & (runs["split"] == split) & (runs["threshold"] == thr)]["acc"]
        row = {
            "split": split,
            "threshold": thr,
            "selection": sel,
            "method": method,
            "feature": feature,
            "budget": budget,
            "kept": len(pos),
            "kl_reduction": round(proxies[split].figure(pos, label)["kl_reduction"], 4) if proxies else np.nan,
            "jaccard_vs_pruned": round(jaccard(pos, kept.get(f"pruned/split{split}/thr{thr}", [])), 4),
            "acc_mean": round(acc.mean(), 2) if len(acc) else np.nan,
            "acc_std": round(acc.std(ddof=1), 2) if len(acc) > 1 else np.nan,
            "seeds": len(acc),
            "gain_over_random": round(acc.mean() - rand.mean(), 2) if len(acc) and len(rand) else np.nan,
            # one-sided exact permutation tests over the seeds' runs: is this selection better than random, than
            # the report's pruned set (the smallest p three seeds against three can give is 1/20)
            "p_vs_random": _p(acc, rand, sel == "random"),
            "p_vs_pruned": _p(acc, pruned, sel == "pruned"),
        }
        if truth is not None:
            t = np.array([truth.get(i, 0.0) for i in tables[label]["id"]])
            useful = sum(1 for v in truth.values() if v >= 1)
            row["precision"] = round(float((t >= 1).mean()), 4) if len(t) else np.nan
            row["recall"] = round(float((t >= 1).sum() / max(1, useful)), 4)
            row["graded_precision"] = round(float(t.mean()), 4) if len(t) else np.nan
        if kinds is not None:
            k = pd.Series([kinds.get(i, "unknown") for i in tables[label]["id"]], dtype=object)
            for kind in sorted(set(kinds.values())):
                row[f"share_{kind}"] = round(float((k == kind).mean()), 4) if len(k) else np.nan
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["split", "threshold", "acc_mean"], ascending=[True, True, False])


def plot(df: pd.DataFrame, out, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 0.5 * max(6, len(df)) + 1.5))
    labels = [f"{r.selection} (split {r.split}, thr {r.threshold})" for r in df.itertuples()]
    y = np.arange(len(df))
    a1.barh(y, df["acc_mean"].fillna(0), xerr=df["acc_std"].fillna(0), color="tab:blue")
    a1.set_yticks(y, labels, fontsize=8)
    a1.invert_yaxis()
    a1.set_xlabel("macro accuracy (%), mean and std over seeds")
    lo = np.nanmin(df["acc_mean"]) if df["acc_mean"].notna().any() else 0
    a1.set_xlim(max(0, lo - 10), None)
    a2.scatter(df["kl_reduction"], df["acc_mean"])
    for r in df.itertuples():
        a2.annotate(r.selection, (r.kl_reduction, r.acc_mean), fontsize=7)
    a2.set_xlabel("KL reduction (proxy, before training)")
    a2.set_ylabel("macro accuracy (%)")
    fig.suptitle(title)
    _save(fig, out)


def summarise_selections(
    sets, metrics, target, outdir, proxies=None, truth=None, log=print, kinds=None
) -> pd.DataFrame:
    df = table(sets, metrics, target, proxies, truth, kinds)
    stem = Path(outdir) / "selections"
    note = (
        "Every selection at the same split and threshold keeps as many clips as the report's pruned set unless its "
        "budget says otherwise; kl_reduction is computed before any training (higher: closer to the target); "
        "gain_over_random is the accuracy minus that of the random subset of the pruned set's size; p_vs_random and "
        "p_vs_pruned: one-sided exact permutation tests over the seeds that the selection beats random, the pruned set."
    )
    write_table_formats(df, stem, f"{target}: selection methods side by side", note=note)
    plot(df, f"{stem}.png", f"{target}: selection methods")
    log(f"{target}: {len(df)} selections compared")
    return df


def proxies_of(audioset_store, audioset_manifest, target_store, target_manifest, splits, cfg, members=None):
    """split -> a Proxy over the AudioSet training clips (kept positions are store positions)."""
    from prunekd.selection.compare import Proxy, features
    from prunekd.teachers.logit_store import rows_where, training_rows

    store, train_pos = training_rows(audioset_store, audioset_manifest)
    pool = features(store, train_pos, "logits", members)
    out = {}
    for s in splits:
        t_store, pos = rows_where(target_store, target_manifest, f"split{s}", ["True"])
        out[s] = _ByPosition(Proxy(features(t_store, pos, "logits", members), pool, cfg), train_pos)
    return out


class _ByPosition:
    def __init__(self, proxy, train_pos):
        self.proxy, self.train_pos = proxy, train_pos

    def figure(self, positions, name):
        return self.proxy.figure(np.searchsorted(self.train_pos, positions), name)


def selections_step(audioset_store, audioset_manifest, target_store, target_manifest, outdir, settings: dict,
                    truth=None, log=print) -> None:  # fmt: skip
    """`prunekd summarise-selections`: the target's selections and evaluations listed from the grid in the settings,
    as the rule lists them (dag.grid.Grid.spec)."""
    from prunekd.dag.grid import Grid

    g = Grid.from_spec(settings["grid"])
    pairs, metrics = g.selection_sets(settings["target"]), g.eval_metrics(settings["target"])
    splits = sorted({label.split("/")[1].removeprefix("split") for label in pairs})
    proxies = proxies_of(audioset_store, audioset_manifest, target_store, target_manifest, splits,
                         settings.get("proxy"), settings.get("members"))  # fmt: skip
    known = kinds = None
    if truth:  # the demo world's truth.tsv: id, subset, target_like, and in the graded world each clip's kind
        t = pd.read_csv(truth, sep="\t", dtype={"id": str})
        t = t[t["subset"] != "eval"]  # recall over the clips a selection can keep
        known = dict(zip(t["id"], t["target_like"].astype(float)))
        kinds = dict(zip(t["id"], t["kind"])) if "kind" in t.columns else None
    summarise_selections(pairs, metrics, settings["target"], outdir, proxies, known, log, kinds)
