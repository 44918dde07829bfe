"""The known-answer verdict over several world seeds, each run once (docs/known-answer.md, "Over world seeds").

`make known-answer-seeds` runs the profile's whole pipeline once per world seed (`demo.seed`), each in its own
folders, keeps the verdict and removes the seed's data and intermediate results, then writes one table: per
claim, at how many of the seeds it held, beside every seed's difference and p-value.

    python -m prunekd.demo.seeds --profile profiles/demo --seeds 101 102 103 104 105 --out results/seeds
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

# What a seed's run leaves behind: the verdict and what it was made from, its logs and benchmarks.
KEEP = ("known_answer", "logs", "benchmarks", "metrics")


def run_seed(profile: Path, seed: int, out: Path, snakemake: str = "snakemake", keep_all: bool = False) -> dict:
    """One world seed through the profile's pipeline in out/seed<k>/ (data in out/seed<k>/data/); returns its
    verdict.json, with the run's wall and CPU seconds."""
    prof = yaml.safe_load((profile / "config.yaml").read_text())
    files = prof.get("configfiles") or []
    root = out / f"seed{seed}"
    overlay = out / f"seed{seed}.yaml"
    overlay.parent.mkdir(parents=True, exist_ok=True)
    cfg = {
        "paths": {
            "audioset": str(root / "data/audioset"),
            "teacher_weights": str(root / "weights"),
            "results": str(root),
        },
        "demo": {"seed": int(seed)},
        "targets": {"tau": {"root": str(root / "data/tau")}},
    }
    overlay.write_text(yaml.safe_dump(cfg))
    cmd = [snakemake, "--profile", str(profile), "--configfiles", *files, str(overlay)]
    t0, c0 = time.time(), _children_cpu()
    with open(out / f"seed{seed}.log", "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    wall, cpu = time.time() - t0, _children_cpu() - c0
    if rc != 0:
        raise SystemExit(f"world seed {seed}: snakemake failed ({rc}), see {out / f'seed{seed}.log'}")
    verdict = json.loads((root / "known_answer/verdict.json").read_text())
    verdict["run"] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
    (root / "known_answer/run.json").write_text(json.dumps(verdict["run"]) + "\n")
    if not keep_all:
        for p in root.iterdir():
            if p.is_dir() and p.name not in KEEP:
                shutil.rmtree(p)
    return verdict


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def record(verdicts: list[dict]) -> str:
    """Markdown: per claim, at how many world seeds it held, and each seed's difference and p."""
    seeds = [v["world_seed"] for v in verdicts]
    claims = [c["claim"] for c in verdicts[0]["claims"]]
    conf = verdicts[0].get("confidence", 0.95)
    lines = [
        f"Each claim at {len(seeds)} world seeds, each run once (one-sided exact permutation test over the seeds "
        f"of distillation and fine-tuning, confidence {100 * conf:g} %); per seed the difference of mean macro "
        "accuracies (points) and p:",
        "",
        "| claim | held at | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|---|" + "---|" * len(seeds),
    ]
    for i, name in enumerate(claims):
        cells = [v["claims"][i] for v in verdicts]
        held = sum(c["holds"] for c in cells)
        lines.append(
            f"| {name} | **{held} of {len(seeds)}** | "
            + " | ".join(f"{c['difference']:+.1f}, p {c['p']:.3f}{'' if c['holds'] else ' (no)'}" for c in cells)
            + " |"
        )
    lines += ["", "| world seed | " + " | ".join(c for c, _ in _conditions(verdicts[0])) + " | wall | CPU |"]
    lines.append("|---|" + "---|" * (len(_conditions(verdicts[0])) + 2))
    for v in verdicts:
        run = v.get("run", {})
        lines.append(
            f"| {v['world_seed']} | "
            + " | ".join(f"{m:.1f} +- {s:.1f}" for _, (m, s) in _conditions(v))
            + f" | {_mmss(run.get('wall_s'))} | {_mmss(run.get('cpu_s'))} |"
        )
    return "\n".join(lines) + "\n"


def _conditions(v: dict) -> list:
    return [(c["method"], (c["mean"], c["std"])) for c in v["conditions"]]


def _mmss(s) -> str:
    return "" if s is None else f"{int(s // 60)} min {int(s % 60)} s"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", type=Path, default=Path("profiles/demo"))
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    ap.add_argument("--out", type=Path, default=Path("results/seeds"))
    ap.add_argument("--snakemake", default="snakemake")
    ap.add_argument("--keep-all", action="store_true", help="keep each seed's data and intermediate results")
    args = ap.parse_args(argv)
    verdicts = []
    for seed in args.seeds:
        done = args.out / f"seed{seed}/known_answer/run.json"
        if done.exists():  # a seed already run (the loop was stopped): its verdict, not a second run
            v = json.loads((done.parent / "verdict.json").read_text())
            v["run"] = json.loads(done.read_text())
        else:
            v = run_seed(args.profile, seed, args.out, args.snakemake, args.keep_all)
        verdicts.append(v)
        print(
            f"world seed {seed}: " + ", ".join(f"{c['claim']} {'holds' if c['holds'] else 'NO'}" for c in v["claims"])
        )
    md = record(verdicts)
    (args.out / "record.md").write_text(md)
    sys.stdout.write(md)
    print(f"Record: {args.out / 'record.md'}")


if __name__ == "__main__":
    main()
