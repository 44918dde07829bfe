"""Do the released logits agree with the members? (`prunekd released-agreement`, docs/usage-extensions.md)

The members run on a sample of covered AudioSet training clips (the balanced set first); their ensemble mean is
compared with the released rows of the same clips: per-class correlation over the sample, the largest and mean
absolute difference (logits and probabilities), and, for every domain classifier given, how far the scores move
and how many sampled clips change sides at each threshold (kept by one source, dropped by the other).

Needed before a run trusts the released file (AGREEMENT_NEEDED): a median per-class correlation of at least
0.99 and, at every threshold of every classifier, at most 1 % of the sampled clips changing sides. The pruned
set is what the method depends on; logits that differ but keep the same clips change nothing downstream except
the distillation targets, which the correlation bounds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

AGREEMENT_NEEDED = {"median_class_correlation": 0.99, "max_flip_share": 0.01}


def sample_clips(manifest: pd.DataFrame, released: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Up to n covered, usable training clips: the balanced set first (drawn at random), then the unbalanced."""
    rel = released.merge(manifest[["row", "subset", "path", "status"]], on="row")
    rel = rel[rel["status"] == "ok"]
    rng = np.random.default_rng(seed)
    parts = []
    for subset in ("balanced_train", "unbalanced_train"):
        pool = rel[rel["subset"] == subset]
        k = min(len(pool), n - sum(len(p) for p in parts))
        if k > 0:
            parts.append(pool.iloc[np.sort(rng.choice(len(pool), size=k, replace=False))])
    return pd.concat(parts).sort_values("row") if parts else rel.iloc[:0]


def class_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation per class (column) over the clips; NaN where a column is constant."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(0) / den, np.nan)


def compare(computed: np.ndarray, released: np.ndarray, classifiers: dict, thresholds) -> dict:
    """The figures of the module doc; classifiers: name -> nn.Linear (domain.load_classifier)."""
    from prunekd.selection.domain import score

    corr = class_correlations(computed.astype(np.float64), released.astype(np.float64))
    diff = np.abs(computed - released)
    pdiff = np.abs(1 / (1 + np.exp(-computed)) - 1 / (1 + np.exp(-released)))
    out = {
        "clips": int(len(computed)),
        "class_correlation": {
            "median": float(np.nanmedian(corr)) if np.isfinite(corr).any() else float("nan"),
            "min": float(np.nanmin(corr)) if np.isfinite(corr).any() else float("nan"),
            "p05": float(np.nanpercentile(corr, 5)) if np.isfinite(corr).any() else float("nan"),
            "classes_constant": int(np.isnan(corr).sum()),
        },
        "logit_abs_diff": {"max": float(diff.max()), "mean": float(diff.mean())},
        "probability_abs_diff": {"max": float(pdiff.max()), "mean": float(pdiff.mean())},
        "classifiers": {},
    }
    worst_flip = 0.0
    for name, model in classifiers.items():
        sc, sr = score(model, computed), score(model, released)
        per = []
        for t in thresholds:
            kc, kr = sc > t, sr > t
            flips = int((kc != kr).sum())
            worst_flip = max(worst_flip, flips / max(1, len(sc)))
            per.append(
                {
                    "threshold": float(t),
                    "kept_members": int(kc.sum()),
                    "kept_released": int(kr.sum()),
                    "changed_sides": flips,
                    "changed_share": flips / max(1, len(sc)),
                }
            )
        out["classifiers"][name] = {
            "score_abs_diff": {"max": float(np.abs(sc - sr).max()), "mean": float(np.abs(sc - sr).mean())},
            "at_threshold": per,
        }
    med = out["class_correlation"]["median"]
    out["needed"] = AGREEMENT_NEEDED
    out["agree"] = bool(
        np.isfinite(med)
        and med >= AGREEMENT_NEEDED["median_class_correlation"]
        and worst_flip <= AGREEMENT_NEEDED["max_flip_share"]
    )
    out["worst_changed_share"] = worst_flip
    return out


def check_agreement(manifest, released_dir, weights_dir, classifiers, cfg: dict, out, log=print) -> dict:
    """`prunekd released-agreement`: classifiers as NAME=PATH (domain classifier.pt files); writes JSON."""
    from pathlib import Path

    from prunekd.atomic import write_json
    from prunekd.selection.domain import load_classifier
    from prunekd.teachers.logits import run_members
    from prunekd.teachers.released import open_logits

    rel_cfg = cfg["teachers"]["released_logits"]
    man = pd.read_csv(manifest, sep="\t", dtype={"id": str, "labels": str}, keep_default_na=False)
    released = pd.read_csv(Path(released_dir) / "released.tsv", sep="\t", dtype={"id": str})
    sample = sample_clips(man, released, int(rel_cfg["check_clips"]), int(rel_cfg.get("check_seed", 0)))
    if sample.empty:
        raise ValueError(f"{Path(released_dir) / 'released.tsv'}: no usable covered training clip to compare")
    log(f"agreement: the members on {len(sample)} covered training clips ({sample['subset'].value_counts().to_dict()})")
    teachers = {**cfg["teachers"], "embeddings": False}  # the logits are compared; no features needed
    rows, member_logits, rejected, _ = run_members(sample, teachers, cfg["data"], weights_dir, log, "agreement")
    by_row = dict(zip(sample["row"], sample["released_row"]))
    logits = open_logits(rel_cfg["logits"])
    src = np.array([by_row[r] for r in rows], np.int64)
    order = np.argsort(src)
    rel = np.empty((len(src), logits.shape[1]), np.float32)
    rel[order] = np.asarray(logits[src[order]], np.float32)
    computed = member_logits.astype(np.float32).mean(axis=1)
    models = {}
    for spec in classifiers or []:
        name, _, path = spec.partition("=")
        models[name] = load_classifier(path)
    result = compare(computed, rel, models, cfg["thresholds"])
    result.update(
        {
            "logits": str(rel_cfg["logits"]),
            "index": str(rel_cfg["index"]),
            "members": list(cfg["teachers"]["members"]),
            "rejected": [[int(r), why] for r, why in rejected],
        }
    )
    write_json(out, result)
    log(
        f"agreement on {result['clips']} clips: median per-class correlation "
        f"{result['class_correlation']['median']:.4f}, max |logit difference| {result['logit_abs_diff']['max']:.3f}, "
        f"at most {100 * result['worst_changed_share']:.2f} % of the clips change sides: "
        + ("agree" if result["agree"] else "DO NOT agree (docs/usage-extensions.md, 'Released logits')")
    )
    return result


def agreement_step(
    manifest, released_dir, weights_dir, classifiers, out, settings: dict, num_workers=0, log=print
) -> dict:
    """`prunekd released-agreement`."""
    s = {**settings, "teachers": {**settings["teachers"], "num_workers": num_workers}}
    return check_agreement(manifest, released_dir, weights_dir, classifiers, s, out, log)
