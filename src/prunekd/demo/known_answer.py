"""The known-answer report (docs/known-answer.md): on the synthetic world, whose generator wrote down which
AudioSet-format clips are target-like (demo_data.TRUTH_FILE), what the pipeline found and what it gained.

1. The pruned sets against that truth: precision and recall per threshold, pruned by the same rule as the prune
   step (domain.prune on the split's scores).
2. Macro accuracy on the split after distilling on the pruned set, on a random subset of its size, on the pruned
   set with its teacher targets shuffled across its clips, and with no distillation (the baseline): mean and
   spread over the seeds, and whether each difference the method claims exceeds that spread.

Only this report reads the truth; no step of the pipeline does.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from prunekd.demo.worlds import SCENES
from prunekd.selection.domain import prune

CONDITIONS = [  # (method in metrics.json, what it is)
    ("baseline", "no distillation (baseline)"),
    ("shuffled", "pruned set, teacher targets shuffled"),
    ("random", "random subset, same size"),
    ("pruned", "pruned set (the method)"),
]
# The claims: (better, worse) pairs whose difference must exceed the spread, and the control whose gain must not.
CLAIMS = [("pruned", "random"), ("random", "baseline"), ("pruned", "baseline")]
CONTROL = ("shuffled", "baseline")


class TruthError(ValueError):
    """The world's truth does not cover the clips the pipeline scored."""


def read_truth(path) -> pd.Series:
    """id -> target_like (bool) from the generator's truth file."""
    t = pd.read_csv(path, sep="\t", dtype={"id": str})
    missing = {"id", "target_like"} - set(t.columns)
    if missing:
        raise TruthError(f"{path}: no column {sorted(missing)[0]!r} (written by prunekd demo-data)")
    if t["id"].duplicated().any():
        raise TruthError(f"{path}: clip {t['id'][t['id'].duplicated()].iloc[0]!r} listed twice")
    return t.set_index("id")["target_like"].astype(bool)


def pruned_vs_truth(audioset_store, audioset_manifest, scores_path, truth_path, thresholds) -> pd.DataFrame:
    """Per threshold: the pruned set's size, precision and recall against the truth, over the scored training clips."""
    from prunekd.teachers.logit_store import ids as store_ids
    from prunekd.teachers.logit_store import training_rows

    store, train_pos = training_rows(audioset_store, audioset_manifest)
    ids = store_ids(store)[train_pos]
    scores = np.load(scores_path)[train_pos]
    truth = read_truth(truth_path)
    unknown = ~pd.Index(ids).isin(truth.index)
    if unknown.any():
        raise TruthError(f"{truth_path}: clip {str(ids[unknown][0])!r} of the store is not in the truth")
    target_like = truth.loc[ids].to_numpy()
    rows = []
    for t in thresholds:
        kept = np.zeros(len(ids), bool)
        kept[prune(scores, float(t))] = True
        tp = int((kept & target_like).sum())
        rows.append(
            {
                "threshold": float(t),
                "kept": int(kept.sum()),
                "target_like_kept": tp,
                "precision": tp / kept.sum() if kept.any() else float("nan"),
                "recall": tp / target_like.sum() if target_like.any() else float("nan"),
            }
        )
    out = pd.DataFrame(rows)
    out.attrs = {"clips": int(len(ids)), "target_like": int(target_like.sum())}
    return out


def accuracies(metrics_paths, split: str, threshold: float) -> pd.DataFrame:
    """One row per trained model of the split: method, seed, macro accuracy in %."""
    rows = []
    for p in metrics_paths:
        m = json.loads(Path(p).read_text())
        k = m["key"]
        if str(k["split"]) != str(split) or k["ensemble"] not in (None, "all"):
            continue
        if k["method"] != "baseline" and not np.isclose(float(k["threshold"]), threshold):
            continue
        rows.append({"method": k["method"], "seed": int(k["seed"]), "macro_acc": 100 * m["macro_accuracy"]})
    return pd.DataFrame(rows, columns=["method", "seed", "macro_acc"])


def condition_table(acc: pd.DataFrame, zero_shot: dict | None = None) -> pd.DataFrame:
    """Per condition: mean, spread and values of the macro accuracy; with `zero_shot` (zero_shot.py's result)
    also the mean zero-shot accuracy (%) of its distilled students before fine-tuning."""
    rows = []
    students = (zero_shot or {}).get("students", {})
    for method, what in CONDITIONS:
        v = acc.loc[acc["method"] == method, "macro_acc"].to_numpy()
        zs = [100 * a for name, a in students.items() if name.split("/")[0] == method]
        rows.append(
            {
                "condition": what,
                "method": method,
                "runs": len(v),
                "mean": float(v.mean()) if len(v) else float("nan"),
                "std": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
                "values": " ".join(f"{x:.1f}" for x in v),
                "zero_shot": float(np.mean(zs)) if zs else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def claims(cond: pd.DataFrame) -> pd.DataFrame:
    """Each claimed difference of means against the spread over seeds (the sum of the two standard deviations:
    their +-1 std bands do not touch); the control's gain over the baseline must not exceed it (no gain: a
    control below the baseline passes, and the table shows by how much)."""
    c = cond.set_index("method")
    rows = []
    for a, b in [*CLAIMS, CONTROL]:
        diff = c.loc[a, "mean"] - c.loc[b, "mean"]
        spread = c.loc[a, "std"] + c.loc[b, "std"]
        control = (a, b) == CONTROL
        holds = bool(diff <= spread) if control else bool(diff > spread)
        claim = f"{a} - {b} <= spread (no gain)" if control else f"{a} - {b} > spread"
        rows.append({"claim": claim, "difference": diff, "spread": spread, "holds": holds})
    return pd.DataFrame(rows)


def _markdown(pr: pd.DataFrame, cond: pd.DataFrame, cl: pd.DataFrame, info: dict) -> str:
    lines = [
        f"# Known-answer run: world seed {info['world_seed']}, {info['target']} split {info['split']}",
        "",
        f"Pruned sets against the world's truth ({pr.attrs['target_like']} of {pr.attrs['clips']} AudioSet-format "
        f"training clips are target-like; one domain classifier, so one value per threshold):",
        "",
        "| threshold | kept | target-like kept | precision | recall |",
        "|---|---|---|---|---|",
    ]
    for r in pr.itertuples():
        lines.append(f"| {r.threshold:g} | {r.kept} | {r.target_like_kept} | {r.precision:.3f} | {r.recall:.3f} |")
    lines += [
        "",
        f"Macro accuracy (%) on the test split after fine-tuning on split {info['split']} (distillation at "
        f"threshold {info['threshold']:g}); mean and standard deviation over the seeds of distillation and "
        "fine-tuning:",
        "",
        "| condition | runs | mean | std | runs' values | its students before fine-tuning (zero-shot) |",
        "|---|---|---|---|---|---|",
    ]
    for r in cond.itertuples():
        zs = "" if np.isnan(r.zero_shot) else f"{r.zero_shot:.1f}"
        lines.append(f"| {r.condition} | {r.runs} | {r.mean:.1f} | {r.std:.1f} | {r.values} | {zs} |")
    if "teachers" in info:
        lines += [
            "",
            f"Zero-shot (a scene = the sum of its two events' outputs, no training on the target; chance "
            f"{100 / len(SCENES):.0f} %): the teachers' ensemble {100 * info['teachers']:.1f} % on the test clips.",
        ]
    lines += ["", "| claim | difference | spread (sum of stds) | holds |", "|---|---|---|---|"]
    for r in cl.itertuples():
        lines.append(f"| {r.claim} | {r.difference:+.1f} | {r.spread:.1f} | {'yes' if r.holds else 'NO'} |")
    return "\n".join(lines) + "\n"


def _plot(pr: pd.DataFrame, cond: pd.DataFrame, info: dict, out) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from prunekd.atomic import atomic_path

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(pr["threshold"], pr["precision"], "o-", label="precision")
    a1.plot(pr["threshold"], pr["recall"], "s-", label="recall")
    a1.set_xlabel("threshold")
    a1.set_ylim(0, 1.05)
    a1.set_title("pruned set vs the world's truth")
    a1.legend()
    x = np.arange(len(cond))
    a2.bar(
        x, cond["mean"], yerr=cond["std"].fillna(0), capsize=4, color=["grey", "tab:orange", "tab:blue", "tab:green"]
    )
    for i, r in enumerate(cond.itertuples()):
        vals = [float(v) for v in r.values.split()]
        a2.plot([i] * len(vals), vals, "k.", ms=4)
    if cond["zero_shot"].notna().any():  # what distillation gave, before fine-tuning
        a2.plot(x, cond["zero_shot"], "D", mfc="none", mec="black", label="its students, zero-shot")
    if "teachers" in info:
        a2.axhline(100 * info["teachers"], ls="--", c="black", lw=1, label="teachers, zero-shot")
    if cond["zero_shot"].notna().any() or "teachers" in info:
        a2.legend(fontsize=7, loc="upper left")
    a2.set_xticks(x, [textwrap.fill(c, 16) for c in cond["condition"]], fontsize=8)
    a2.set_ylabel("macro accuracy (%)")
    a2.set_title(f"split {info['split']}, mean +- std over seeds")
    fig.suptitle(f"Known-answer run, world seed {info['world_seed']}")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def known_answer_report(
    audioset_store, audioset_manifest, scores, truth, metrics, outdir, settings: dict, zero_shot=None, log=print
) -> dict:
    """`prunekd known-answer`: table (.md .csv .html, the verdicts in .json) and plot into `outdir`; `zero_shot`:
    what the teachers and the students know before fine-tuning (zero_shot.json of known-answer-zero-shot)."""
    from prunekd.atomic import atomic_path, write_json, write_table

    zs = json.loads(Path(zero_shot).read_text()) if zero_shot else None
    s = {**settings, **({"teachers": zs["teachers"]} if zs else {})}
    outdir = Path(outdir)
    pr = pruned_vs_truth(audioset_store, audioset_manifest, scores, truth, s["thresholds"])
    acc = accuracies(metrics, s["split"], s["threshold"])
    cond = condition_table(acc, zs)
    cl = claims(cond)
    md = _markdown(pr, cond, cl, s)
    with atomic_path(outdir / "table.md") as tmp:
        Path(tmp).write_text(md)
    table = pd.concat(
        [
            pr.assign(part="pruned set vs truth"),
            cond.assign(part="macro accuracy"),
            cl.assign(part="claims"),
        ],
        ignore_index=True,
    )
    write_table(outdir / "table.csv", table, sep=",")
    with atomic_path(outdir / "table.html") as tmp:
        Path(tmp).write_text(_html(md))
    _plot(pr, cond, s, outdir / "plot.png")
    verdict = {
        "world_seed": s["world_seed"],
        "split": s["split"],
        "precision_recall": pr.to_dict("records"),
        "conditions": cond.to_dict("records"),
        "claims": cl.to_dict("records"),
        "all_hold": bool(cl["holds"].all()),
        "zero_shot": zs,
    }
    write_json(outdir / "verdict.json", verdict)
    for r in cl.itertuples():
        log(f"{r.claim}: {r.difference:+.1f} points, spread {r.spread:.1f}: {'holds' if r.holds else 'does NOT hold'}")
    return verdict


def _html(md: str) -> str:
    """The markdown table as HTML for the report (the same figures)."""
    out, in_table = ["<html><body>"], False
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if not in_table:
                out.append("<table border='1'>")
                in_table = True
            out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("# "):
            out.append(f"<h2>{line[2:]}</h2>")
        elif line:
            out.append(f"<p>{line}</p>")
    if in_table:
        out.append("</table>")
    return "\n".join(out + ["</body></html>"]) + "\n"
