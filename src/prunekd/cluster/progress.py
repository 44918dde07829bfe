"""`prunekd status`: how far a grid is, from what Snakemake and the jobs already write.

One dry run with --forceall lists every job of the grid with its outputs, log and benchmark (the same command
line as the run, so the same grid). Each job's state then comes from files alone, nothing is asked of SLURM:

  running  Snakemake's own marker of a started job (.snakemake/incomplete/<output, base64>; on SLURM it holds
           the job id). A controller that was killed leaves its markers: such jobs show as running until the
           next run takes them over.
  done     every output there and the benchmark file (written after a job succeeds) not older than its log
  failed   a log but neither of the above: the last attempt ended without success
  left     none of these

A running training job's step, speed and time left are its log's last progress line (training.Progress);
GPU-hours spent are the finished GPU jobs' benchmark wall times, beside `prunekd cost`'s plan of the whole grid.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from prunekd.cluster.cost import GPU_RULES, Job, dry_run, estimate, load_rates, parse_dry_run, planned_with

STATES = ("done", "running", "failed", "left")
TRAINING_RULES = ("distill", "finetune", "baseline")
# Progress.update's line: "<name> step 120/4000 loss 0.1234 lr 1.00e-03 42.00 steps/s, 92 s left"
_PROGRESS = re.compile(r"\b(\w+) step (\d+)/(\d+) loss \S+ lr \S+ ([\d.]+) steps/s, (\d+) s left")


def incomplete_outputs(workdir: Path) -> dict[str, str | None]:
    """Output path (as the rules name it) -> external job id, of every job Snakemake marked as started."""
    root = Path(workdir) / ".snakemake" / "incomplete"
    out = {}
    if not root.is_dir():
        return out
    for dirpath, _, files in os.walk(root):
        rel = Path(dirpath).relative_to(root).parts
        if any(not p.startswith("@") for p in rel):  # Snakemake's own folders (migration markers)
            continue
        for name in files:
            if name.startswith("@") or name == "migration_underway":
                continue
            b64 = "".join(p[1:] for p in rel) + name  # a long key is split into @-prefixed folders
            try:
                key = base64.urlsafe_b64decode(b64).decode()
            except (ValueError, UnicodeDecodeError):
                continue
            try:
                jobid = json.loads((Path(dirpath) / name).read_text() or "{}").get("external_jobid")
            except (OSError, json.JSONDecodeError, AttributeError):
                jobid = None
            out[key] = jobid
    return out


def _path(p: str, base: Path) -> Path:
    return Path(p) if os.path.isabs(p) else base / p


def job_state(job: Job, base: Path, started: dict) -> str:
    outputs = job.fields.get("output", [])
    if any(o in started for o in outputs):
        return "running"
    log = job.fields.get("log", [])
    bench = job.fields.get("benchmark", [])
    log_p = _path(log[0], base) if log else None
    bench_p = _path(bench[0], base) if bench else None
    has_log = bool(log_p and log_p.exists())
    if outputs and all(_path(o, base).exists() for o in outputs):
        if bench_p is None or not has_log:
            return "done"
        if bench_p.exists() and bench_p.stat().st_mtime >= log_p.stat().st_mtime:
            return "done"
    return "failed" if has_log else "left"


def last_progress(log: Path) -> dict | None:
    """The last progress line of a training job's log: step, total, steps/s, seconds left."""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            tail = fh.read().decode(errors="replace")
    except OSError:
        return None
    found = _PROGRESS.findall(tail)
    if not found:
        return None
    _, step, total, rate, left = found[-1]
    return {"step": int(step), "total": int(total), "steps_per_s": float(rate), "seconds_left": int(left)}


def _wall_seconds(bench: Path) -> float:
    from prunekd.cluster.rates import RatesError, wall_seconds

    try:
        return wall_seconds(bench)
    except (OSError, RatesError):
        return 0.0


@dataclass
class Status:
    counts: dict  # rule -> {state: jobs}
    running: list  # [(rule, job name, external id, progress or None, seconds since the log last changed)]
    failed: list  # [(rule, log path)]
    gpu_hours_spent: float
    plan: dict  # prunekd cost's estimate of the whole grid


def job_name(job: Job) -> str:
    w = job.wildcards
    return "/".join(str(v) for v in w.values()) if w else job.rule


def status(jobs: list[Job], base: Path, rates: dict, rates_path, now: float | None = None) -> Status:
    """States of `jobs` (every job of the grid, a --forceall dry run) under workdir `base`."""
    now = time.time() if now is None else now
    started = incomplete_outputs(base)
    counts, running, failed, spent = {}, [], [], 0.0
    for job in jobs:
        if job.rule == "all":
            continue
        state = job_state(job, base, started)
        counts.setdefault(job.rule, dict.fromkeys(STATES, 0))[state] += 1
        log = _path(job.fields["log"][0], base) if job.fields.get("log") else None
        if state == "running":
            ext = next((started[o] for o in job.fields.get("output", []) if o in started), None)
            prog = last_progress(log) if log and job.rule in TRAINING_RULES else None
            quiet = now - log.stat().st_mtime if log and log.exists() else None
            running.append((job.rule, job_name(job), ext, prog, quiet))
        elif state == "failed":
            failed.append((job.rule, str(log)))
        elif state == "done" and job.rule in GPU_RULES and job.fields.get("benchmark"):
            spent += _wall_seconds(_path(job.fields["benchmark"][0], base)) / 3600
    plan = estimate(jobs, rates, rates_path, base)
    return Status(counts, running, failed, spent, plan)


def report(st: Status) -> str:
    lines = [f"{'rule':<20}" + "".join(f"{s:>9}" for s in (*STATES, "total"))]
    for rule, c in st.counts.items():
        lines.append(f"{rule:<20}" + "".join(f"{c[s]:>9}" for s in STATES) + f"{sum(c.values()):>9}")
    tot = {s: sum(c[s] for c in st.counts.values()) for s in STATES}
    lines.append(f"{'all jobs':<20}" + "".join(f"{tot[s]:>9}" for s in STATES) + f"{sum(tot.values()):>9}")
    if st.running:
        lines.append("\nrunning:")
        for rule, name, ext, prog, quiet in st.running:
            where = f" (job {ext})" if ext else ""
            if prog:
                what = (
                    f"step {prog['step']}/{prog['total']}, {prog['steps_per_s']:.2f} steps/s, "
                    f"{prog['seconds_left'] / 60:.0f} min left"
                )
            else:
                what = "started"
            if quiet is not None and quiet > 600:
                what += f"; log unchanged for {quiet / 60:.0f} min"
            lines.append(f"  {rule} {name}{where}: {what}")
    if st.failed:
        lines.append("\nfailed (last attempt; its log):")
        lines += [f"  {rule}: {log}" for rule, log in st.failed]
    plan = st.plan["total"]
    planned = ", ".join(f"{v:.1f} at the {k} rates" for k, v in plan.items()) or "no rates"
    lines.append(f"\nGPU-hours: {st.gpu_hours_spent:.2f} spent (finished GPU jobs' benchmarks); plan {planned}")
    return "\n".join(lines)


def status_step(workdir=".", snakemake_args=(), rates_path=None, env=None) -> tuple[Status, str]:
    """(status, printed report) of the grid a run with these arguments builds."""
    from prunekd.cluster.cost import DEFAULT_RATES, _workdir

    rates_path = rates_path or os.path.relpath(DEFAULT_RATES)
    args = [a for a in snakemake_args if a != "--"]
    # --rerun-incomplete: a dry run beside a running Snakemake otherwise stops at the started jobs' outputs
    jobs = parse_dry_run(dry_run(workdir, [*args, "--forceall", "--rerun-incomplete"], env))
    st = status(jobs, _workdir(workdir, args), load_rates(rates_path), rates_path)
    return st, planned_with(args) + "\n" + report(st)
