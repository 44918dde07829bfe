"""How the DAG's build time grows with its jobs: the paper grid's dry run against a researcher's sweep.

The sweep: grid mode `full` (every split with every threshold), 20 thresholds, 5 seeds, each distilling its own
student. Both dry runs use the repository's config on no data (the nominal AudioSet rows, as `prunekd cost`),
measured in this one run so that the ratio holds on a VM whose speed changes from day to day, once as
`snakemake -n` and once under the SLURM profile (`--profile profiles/slurm -n`), which adds the job groups
(Snakemake checks each group job's whole upstream). Goal: the sweep's dry run within 3x the paper grid's.
Prints one JSON object on its last line.

    python benchmarks/dag.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SWEEP = {
    "grid": {
        "mode": "full",
        "thresholds": [round(0.04 * i, 2) for i in range(1, 21)],
        "seeds": [0, 1, 2, 3, 4],
        "seeded_distillation": True,
    }
}


def dry_run(extra: list[str], no_slurm: Path) -> tuple[float, int]:
    """Seconds of `snakemake -n` and the jobs it planned."""
    snakemake = Path(sys.executable).parent / "snakemake"
    # The SLURM plugin asks `scontrol` for a setting at every start; a stand-in that fails at once keeps a
    # controller's answer time (or its absence: seconds) out of the figure.
    env = {**os.environ, "PATH": os.pathsep.join([str(snakemake.parent), str(no_slurm), os.environ["PATH"]])}
    t0 = time.perf_counter()
    p = subprocess.run(
        [str(snakemake), "-n", "--quiet", "rules", *extra], cwd=REPO, capture_output=True, text=True, env=env
    )
    seconds = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"snakemake -n failed:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    total = re.search(r"^total\s+(\d+)", p.stdout, re.M)
    return seconds, int(total[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one dry run of each (else the best of --repeats)")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    repeats = 1 if a.quick else a.repeats
    out = {"goal_time_ratio": 3.0}
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep.yaml"
        sweep.write_text(json.dumps(SWEEP))  # JSON is YAML
        (Path(tmp) / "scontrol").write_text("#!/bin/sh\nexit 1\n")
        (Path(tmp) / "scontrol").chmod(0o755)
        for name, profile in (("local", []), ("slurm", ["--profile", str(REPO / "profiles/slurm")])):
            dry_run(profile, Path(tmp))  # warm-up: Python's and Snakemake's caches
            paper, sweep_runs = [], []
            for _ in range(repeats):  # interleaved: a slower moment of the VM hits both
                paper.append(dry_run(profile, Path(tmp)))
                sweep_runs.append(
                    dry_run([*profile, "--configfiles", str(REPO / "config.yaml"), str(sweep)], Path(tmp))
                )
            (p_s, p_jobs), (s_s, s_jobs) = min(paper), min(sweep_runs)
            out[name] = {
                "paper_jobs": p_jobs,
                "paper_seconds": round(p_s, 2),
                "sweep_jobs": s_jobs,
                "sweep_seconds": round(s_s, 2),
                "jobs_ratio": round(s_jobs / p_jobs, 2),
                "time_ratio": round(s_s / p_s, 2),
            }
            print(
                f"{name}: paper grid {p_jobs} jobs in {p_s:.1f} s; sweep {s_jobs} jobs in {s_s:.1f} s", file=sys.stderr
            )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
