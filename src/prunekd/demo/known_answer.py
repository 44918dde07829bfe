"""The known-answer report (docs/known-answer.md): on the synthetic world, whose generator wrote down which
AudioSet-format clips are target-like (demo_data.TRUTH_FILE), what the pipeline found and what it gained.

1. The pruned sets against that truth: precision and recall per threshold, pruned by the same rule as the prune
   step (domain.prune on the split's scores).
2. Macro accuracy on the split after distilling on the pruned set, on a random subset of its size, on the pruned
   set with its teacher targets shuffled across its clips, and with no distillation (the baseline): mean and
   spread over the seeds, and whether each difference the method claims holds by a one-sided exact permutation
   test at the stated confidence (known_answer.confidence).

Only this report reads the truth; no step of the pipeline does.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from prunekd.demo.worlds import SCENES
from prunekd.results.significance import permutation_p
from prunekd.selection.domain import prune

CONDITIONS = [  # (method in metrics.json, what it is)
    ("baseline", "no distillation (baseline)"),
    ("shuffled", "pruned set, teacher targets shuffled"),
    ("random", "random subset, same size"),
    ("pruned", "pruned set (the method)"),
]
# The claims: (better, worse) pairs whose difference the test must show, and the control whose gain it must not.
CLAIMS = [("pruned", "random"), ("random", "baseline"), ("pruned", "baseline")]
CONTROL = ("shuffled", "baseline")


class TruthError(ValueError):
    """The world's truth does not cover the clips the pipeline scored."""


def read_truth(path) -> pd.Series:
    """id -> target_like (bool) from the generator's truth file: the clips whose value is 1 (the graded world's
    partly useful clips, 0.5, are not target-like)."""
    t = pd.read_csv(path, sep="\t", dtype={"id": str})
    missing = {"id", "target_like"} - set(t.columns)
    if missing:
        raise TruthError(f"{path}: no column {sorted(missing)[0]!r} (written by prunekd demo-data)")
    if t["id"].duplicated().any():
        raise TruthError(f"{path}: clip {t['id'][t['id'].duplicated()].iloc[0]!r} listed twice")
    return t.set_index("id")["target_like"].astype(float) >= 1


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


def claims(acc: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Each claimed difference of mean accuracies (better > worse over the seeds' runs) with its one-sided exact
    permutation p-value: it holds when p <= 1 - confidence. The control holds when its gain over the baseline is
    not shown at that level (p > 1 - confidence: no gain; a control below the baseline passes, and the table
    shows by how much)."""
    alpha = 1.0 - confidence
    rows = []
    for a, b in [*CLAIMS, CONTROL]:
        va = acc.loc[acc["method"] == a, "macro_acc"].to_numpy()
        vb = acc.loc[acc["method"] == b, "macro_acc"].to_numpy()
        diff = va.mean() - vb.mean() if len(va) and len(vb) else float("nan")
        p = permutation_p(va, vb)
        control = (a, b) == CONTROL
        # p is a share of dealings: at p = 1/20 and confidence 0.95 the two are one number, not 0.05 and 0.0500...04.
        holds = bool(p > alpha + 1e-12) if control else bool(p <= alpha + 1e-12)
        claim = f"{a} - {b}: no gain" if control else f"{a} > {b}"
        rows.append({"claim": claim, "difference": diff, "p": p, "runs": f"{len(va)} vs {len(vb)}", "holds": holds})
    out = pd.DataFrame(rows)
    out.attrs = {"confidence": confidence}
    return out


def _verdict_line(cl: pd.DataFrame) -> str:
    held = int(cl["holds"].sum())
    if held == len(cl):
        return "pruned > random > baseline, and the shuffled control shows no gain: every claim holds"
    return f"{held} of {len(cl)} claims hold (not: " + "; ".join(r.claim for r in cl.itertuples() if not r.holds) + ")"


def _sections(pr: pd.DataFrame, cond: pd.DataFrame, cl: pd.DataFrame, info: dict) -> list:
    """The report's parts in the order a person reads them, the verdict first: (text, header, rows) each."""
    conf = cl.attrs.get("confidence", 0.95)
    verdict = (
        f"**Verdict: {_verdict_line(cl)}.** One-sided exact permutation test over the seeds' runs, confidence "
        f"{100 * conf:g} % (a claim holds at p <= {1 - conf:.2g}; the control holds when its gain over the "
        "baseline is not shown at that level):",
        ["claim", "difference (points)", "p", "runs", "holds"],
        [[r.claim, f"{r.difference:+.1f}", f"{r.p:.3f}", r.runs, "yes" if r.holds else "NO"] for r in cl.itertuples()],
    )
    accuracy = (
        f"Macro accuracy (%) on the test split after fine-tuning on split {info['split']} (distillation at "
        f"threshold {info['threshold']:g}); mean and standard deviation over the seeds of distillation and "
        "fine-tuning:",
        ["condition", "runs", "mean", "std", "runs' values", "its students before fine-tuning (zero-shot)"],
        [
            [r.condition, str(r.runs), f"{r.mean:.1f}", f"{r.std:.1f}", r.values]
            + ["" if np.isnan(r.zero_shot) else f"{r.zero_shot:.1f}"]
            for r in cond.itertuples()
        ],
    )
    out = [verdict, accuracy]
    if "teachers" in info:
        out.append(
            (
                f"Zero-shot (a scene = the sum of its two events' outputs, no training on the target; chance "
                f"{100 / len(SCENES):.0f} %): the teachers' ensemble {100 * info['teachers']:.1f} % on the test "
                "clips.",
                None,
                None,
            )
        )
    out.append(
        (
            f"Pruned sets against the world's truth ({pr.attrs['target_like']} of {pr.attrs['clips']} "
            "AudioSet-format training clips are target-like; one domain classifier, so one value per threshold):",
            ["threshold", "kept", "target-like kept", "precision", "recall"],
            [
                [f"{r.threshold:g}", str(r.kept), str(r.target_like_kept), f"{r.precision:.3f}", f"{r.recall:.3f}"]
                for r in pr.itertuples()
            ],
        )
    )
    return out


def _title(info: dict) -> str:
    return f"Known-answer run: world seed {info['world_seed']}, {info['target']} split {info['split']}"


def _markdown(pr: pd.DataFrame, cond: pd.DataFrame, cl: pd.DataFrame, info: dict) -> str:
    lines = [f"# {_title(info)}"]
    for text, header, rows in _sections(pr, cond, cl, info):
        lines += ["", text]
        if header:
            lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _rst(pr: pd.DataFrame, cond: pd.DataFrame, cl: pd.DataFrame, info: dict) -> str:
    """The same parts in reStructuredText, for the first page of the Snakemake report (workflow/report/
    workflow.rst reads it). The plot stays under "Known answer": an inline image would be one line longer than
    docutils accepts, and the page would show the error instead."""
    lines = [_title(info), "=" * len(_title(info))]
    for text, header, rows in _sections(pr, cond, cl, info):
        lines += ["", text]
        if header:
            lines += ["", ".. list-table::", "   :header-rows: 1", ""]
            for row in [header, *rows]:
                lines += [f"   * - {row[0] or '..'}"] + [f"     - {c or '..'}" for c in row[1:]]
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
    cl = claims(acc, float(s.get("confidence", 0.95)))
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
    with atomic_path(outdir / "verdict.rst") as tmp:  # the report's first page (workflow/report/workflow.rst)
        Path(tmp).write_text(_rst(pr, cond, cl, s))
    verdict = {
        "world_seed": s["world_seed"],
        "split": s["split"],
        "precision_recall": pr.to_dict("records"),
        "conditions": cond.to_dict("records"),
        "claims": cl.to_dict("records"),
        "confidence": cl.attrs["confidence"],
        "all_hold": bool(cl["holds"].all()),
        "zero_shot": zs,
    }
    write_json(outdir / "verdict.json", verdict)
    # The report's landing page (--report-metadata): Snakemake opens on it, where the verdict stands, only when
    # it is given metadata; numbers, which it shows as they are.
    meta = {
        "world seed": int(s["world_seed"]),
        "runs per condition": int(cond["runs"].min()),
        "confidence level": float(cl.attrs["confidence"]),
        f"claims that hold, of {len(cl)}": int(cl["holds"].sum()),
    }
    with atomic_path(outdir / "report_metadata.yaml") as tmp:
        Path(tmp).write_text("".join(f'"{k}": {v}\n' for k, v in meta.items()))
    for r in cl.itertuples():
        log(f"{r.claim}: {r.difference:+.1f} points, p = {r.p:.3f}: {'holds' if r.holds else 'does NOT hold'}")
    return verdict


def _html(md: str) -> str:
    """The markdown table as HTML for the report (the same figures)."""
    import html
    import re

    def text(t: str) -> str:
        return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(t, quote=False))

    out, in_table = ["<html><body>"], False
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if not in_table:
                out.append("<table border='1'>")
                in_table = True
            out.append("<tr>" + "".join(f"<td>{text(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("# "):
            out.append(f"<h2>{text(line[2:])}</h2>")
        elif line:
            out.append(f"<p>{text(line)}</p>")
    if in_table:
        out.append("</table>")
    return "\n".join(out + ["</body></html>"]) + "\n"
