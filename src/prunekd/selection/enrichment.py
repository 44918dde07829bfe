"""What a pruned set contains: the share of every AudioSet class in it against all training clips.

Per pruned set (`prunekd enrichment`), two views of a class's share:
  labels       the share of the set's clips labelled with the class
  teachers     the mean teachers' probability of the class, sigmoid(ensemble logits), over the set's clips
and their enrichment, log2(share in the set / share in all training clips), the 20 most over- and
under-represented classes by name (class_labels_indices.csv), the domain classifier's weights by class (the
classes that push the score towards the target and away from it, as the authors' main_tau2022.ipynb prints them),
and how far the random control's class mix is from the pruned set's (total variation distance between the two
sets' label distributions, each class's label count over all labels of the set).

`prunekd enrichment-summary` (enrichment_summary.py) gathers a target's sets into tables and a plot.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

TOP = 20  # classes listed per direction
MIN_CLIPS = 5  # a class needs this many labelled training clips to be ranked by its label share
EPS = 1e-9


def class_names(path, n: int) -> list[str]:
    """display_name per index from class_labels_indices.csv; `class <i>` without the file."""
    if path and Path(path).exists():
        df = pd.read_csv(path)
        if list(df.columns[:3]) == ["index", "mid", "display_name"] and len(df) == n:
            return df["display_name"].astype(str).tolist()
    return [f"class {i}" for i in range(n)]


def class_sums(store, positions_sets: dict, all_positions: np.ndarray, block: int = 1 << 15) -> dict:
    """Per set (and `all`): clips, label counts [527], summed teachers' probabilities [527]; one pass over the store."""
    sets = {"all": np.sort(all_positions), **{k: np.sort(v) for k, v in positions_sets.items()}}
    n = store["ensemble"].shape[0]
    c = store["ensemble"].shape[1]
    out = {k: {"clips": len(v), "labels": np.zeros(c), "prob": np.zeros(c)} for k, v in sets.items()}
    has_labels = "labels" in store
    member = {k: np.zeros(n, bool) for k in sets}
    for k, v in sets.items():
        member[k][v] = True
    for a in range(0, n, block):
        b = min(n, a + block)
        if not any(m[a:b].any() for m in member.values()):
            continue
        prob = 1.0 / (1.0 + np.exp(-store["ensemble"][a:b].astype(np.float64)))
        lab = store["labels"][a:b] if has_labels else None
        for k, m in member.items():
            sel = m[a:b]
            if sel.any():
                out[k]["prob"] += prob[sel].sum(0)
                if lab is not None:
                    out[k]["labels"] += lab[sel].sum(0)
    return out


def shares(sums: dict) -> dict:
    return {
        "labels": sums["labels"] / max(1, sums["clips"]),
        "prob": sums["prob"] / max(1, sums["clips"]),
    }


def class_mix_distance(a: dict, b: dict) -> float:
    """Total variation distance between two sets' label distributions (0: the same mix, 1: disjoint classes)."""
    p, q = a["labels"] / max(EPS, a["labels"].sum()), b["labels"] / max(EPS, b["labels"].sum())
    return float(0.5 * np.abs(p - q).sum())


def enrichment_table(kept: dict, every: dict, names: list[str], weights: np.ndarray | None = None) -> pd.DataFrame:
    sk, sa = shares(kept), shares(every)
    df = pd.DataFrame(
        {
            "index": np.arange(len(names)),
            "class": names,
            "training_clips_labelled": every["labels"].astype(int),
            "kept_clips_labelled": kept["labels"].astype(int),
            "share_all_labels": sa["labels"],
            "share_kept_labels": sk["labels"],
            "log2_enrichment_labels": np.log2((sk["labels"] + EPS) / (sa["labels"] + EPS)),
            "share_all_teachers": sa["prob"],
            "share_kept_teachers": sk["prob"],
            "log2_enrichment_teachers": np.log2((sk["prob"] + EPS) / (sa["prob"] + EPS)),
        }
    )
    df.loc[df["training_clips_labelled"] < MIN_CLIPS, "log2_enrichment_labels"] = np.nan
    if weights is not None:
        df["classifier_weight"] = weights
    return df


def top_classes(df: pd.DataFrame, column: str, k: int = TOP) -> dict:
    ranked = df.dropna(subset=[column]).sort_values(column)
    pick = lambda part: [  # noqa: E731
        {"class": r["class"], "index": int(r["index"]), column: round(float(r[column]), 4)} for _, r in part.iterrows()
    ]
    return {"over": pick(ranked.iloc[::-1].head(k)), "under": pick(ranked.head(k))}


def write_enrichment(
    audioset_store,
    audioset_manifest,
    kept,
    classifier,
    out_table,
    out_json,
    key: dict,
    random=None,
    class_labels=None,
    log=print,
) -> dict:
    """`prunekd enrichment`: the class table (TSV) and its summary (JSON) of one pruned set."""
    from prunekd.atomic import write_json, write_table
    from prunekd.selection.domain import load_classifier
    from prunekd.teachers.logit_store import training_rows

    store, train_pos = training_rows(audioset_store, audioset_manifest)
    sets = {"kept": pd.read_csv(kept, sep="\t")["position"].to_numpy()}
    if random:
        sets["random"] = pd.read_csv(random, sep="\t")["position"].to_numpy()
    sums = class_sums(store, sets, train_pos)
    n = store["ensemble"].shape[1]
    names = class_names(class_labels, n)
    weights = load_classifier(classifier).weight.detach().numpy()[0].astype(float)
    table = enrichment_table(sums["kept"], sums["all"], names, weights)
    write_table(out_table, table, float_format="%.6g")
    order = np.argsort(weights)
    summary = {
        **key,
        "kept_clips": int(sums["kept"]["clips"]),
        "training_clips": int(sums["all"]["clips"]),
        "labels_in_store": "labels" in store,
        "top_by_labels": top_classes(table, "log2_enrichment_labels"),
        "top_by_teachers": top_classes(table, "log2_enrichment_teachers"),
        "classifier_weights": {
            "towards_target": [{"class": names[i], "weight": round(float(weights[i]), 4)} for i in order[::-1][:10]],
            "away_from_target": [{"class": names[i], "weight": round(float(weights[i]), 4)} for i in order[:10]],
        },
        "class_mix_distance": {"pruned_vs_all": class_mix_distance(sums["kept"], sums["all"])},
    }
    if "random" in sums:
        summary["class_mix_distance"]["random_vs_pruned"] = class_mix_distance(sums["random"], sums["kept"])
        summary["class_mix_distance"]["random_vs_all"] = class_mix_distance(sums["random"], sums["all"])
    write_json(out_json, summary)
    over = ", ".join(c["class"] for c in summary["top_by_teachers"]["over"][:5])
    log(f"{json.dumps(key)}: {summary['kept_clips']} clips; most over-represented (teachers): {over}")
    return summary


def enrichment_step(
    audioset_store, audioset_manifest, kept, classifier, key: str, out_table, out_json, random=None,
    class_labels=None, log=print,
) -> None:  # fmt: skip
    """`prunekd enrichment` (`key`: JSON of the pruned set)."""
    import json

    write_enrichment(
        audioset_store, audioset_manifest, kept, classifier, out_table, out_json, json.loads(key), random,
        class_labels, log,
    )  # fmt: skip
