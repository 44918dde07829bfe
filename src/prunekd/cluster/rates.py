"""`prunekd rates`: a rates file for `prunekd cost` from the GPU jobs a run has finished, on its own GPUs.

A GPU job holds its GPU for its whole wall time, start-up included, so the rate that prices the rest of a
grid is work / wall time: the wall time from the job's Snakemake benchmark file (`s`), the work from its
log, in the units `prunekd cost` counts:

  teacher_logits  clips of the shard ("wrote N clips, M rejected"), and their length ("clips of S s"), which
                  `cost` scales other lengths by; AudioSet's shards only: a GPU runs short target clips
                  less efficiently, so they would price AudioSet's too cheaply
  distill         optimiser steps ("step S/T" and, for a resumed job, "resuming from ... at step R": T - R)
  finetune        the same for fine-tuning and the baseline
  baseline

Start-up (imports, CUDA, checkpoint loading, reading the split) is inside the wall time. Where a rule's finished
jobs differ enough in size (3 or more, the largest at least twice the smallest), wall = start + work / rate is
fitted to them by least squares, so that the rate prices a grid of other job sizes too: the start as
`load_s` (teacher shards) or `start_s` (training jobs). Otherwise the rate is total work over total wall time
and the start is inside it. A rule with no finished job keeps the figure of the fallback rates file, named in
the output; the baseline first takes the fine-tuning rate measured in the same run (the same loop and batch).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import yaml

from prunekd.cluster.cost import DEFAULT_RATES, GPU_RULES, load_rates
from prunekd.errors import PrunekdError

_SHARD_DONE = re.compile(r"shard \d+: wrote (\d+) clips, (\d+) rejected")
_STEP = re.compile(r"\b(?:distill|finetune) step (\d+)/(\d+) ")
_RESUMED = re.compile(r"resuming from .* at step (\d+)")
_CLIP_SECONDS = re.compile(r"shard \d+: \d+ clips of (\S+) s, batches of")  # logits.compute_shard's start
_BATCH = re.compile(r" clips (?:of \S+ )?\(batch (\d+)\)")  # distill.py and finetune.py log it as they start


class RatesError(PrunekdError):
    """A finished job whose record cannot be read: names the file."""


def wall_seconds(benchmark: Path) -> float:
    """The job's wall time: column `s` of a Snakemake benchmark file (the mean over repeats, if any)."""
    lines = [line.split("\t") for line in benchmark.read_text().splitlines() if line.strip()]
    if len(lines) < 2 or "s" not in lines[0]:
        raise RatesError(f"{benchmark}: not a Snakemake benchmark file (no `s` column)")
    col = lines[0].index("s")
    try:
        values = [float(row[col]) for row in lines[1:]]
    except (ValueError, IndexError):
        raise RatesError(f"{benchmark}: unreadable `s` value") from None
    return sum(values) / len(values)


def job_record(rule: str, log: Path) -> tuple[float, int | None] | None:
    """(clips or steps the job's last attempt did, its batch size; for a teacher shard the seconds per clip)
    from its log, which every attempt rewrites; None if the attempt did not finish."""
    text = log.read_text(errors="replace")
    if rule == "teacher_logits":
        m, secs = _SHARD_DONE.findall(text), _CLIP_SECONDS.findall(text)
        return (float(int(m[-1][0]) + int(m[-1][1])), float(secs[-1]) if secs else None) if m else None
    steps = _STEP.findall(text)
    if not steps or steps[-1][0] != steps[-1][1]:
        return None
    resumed = _RESUMED.findall(text)
    batch = _BATCH.findall(text)
    return float(int(steps[-1][1]) - (int(resumed[-1]) if resumed else 0)), (int(batch[-1]) if batch else None)


def finished_jobs(results: Path, rule: str, stale: list | None = None) -> list[tuple[str, float, float, int | None]]:
    """[(job, work, wall seconds, batch)] of every job of `rule` whose last attempt finished and succeeded.

    The rules' own paths (workflow/rules/teachers.smk, train.smk): benchmarks/<rule>/<job>.tsv beside
    logs/<rule>/<job>.log (a fine-tuned or baseline model's name begins with its rule). Snakemake writes the
    benchmark file after a job succeeds and never removes it: one older than the log is an earlier success's,
    and the attempt that rewrote the log failed (such jobs are appended to `stale`)."""
    jobs = []
    for bench in sorted((results / "benchmarks" / rule).rglob("*.tsv")):
        job = bench.relative_to(results / "benchmarks").as_posix().removesuffix(".tsv")  # names like thr0.3
        log = results / "logs" / f"{job}.log"
        if not log.exists():
            continue
        if bench.stat().st_mtime < log.stat().st_mtime:
            if stale is not None:
                stale.append(job)
            continue
        record = job_record(rule, log)
        if record is not None:
            jobs.append((job, record[0], wall_seconds(bench), record[1]))
    return jobs


def fit_start(work: list[float], seconds: list[float]) -> tuple[float, float] | None:
    """(start seconds, work per second) of wall = start + work / rate, least squares over the jobs; None where the
    jobs are too few or too alike in size to tell the two apart, or the fit is not physical."""
    n = len(work)
    if n < 3 or min(work) <= 0 or max(work) < 2 * min(work):
        return None
    mw, ms = sum(work) / n, sum(seconds) / n
    sxx = sum((w - mw) ** 2 for w in work)
    slope = sum((w - mw) * (t - ms) for w, t in zip(work, seconds)) / sxx  # seconds per unit of work
    start = ms - slope * mw
    if slope <= 0 or start < 0:
        return None
    return start, 1 / slope


def _fallback(base: dict, rule: str):
    m = base["measured"]
    return m.get(rule) or (m.get("finetune") if rule == "baseline" else None)  # as `prunekd cost` reads them


def rates(results, fallback=None) -> dict:
    """A rates file (the layout of src/prunekd/cluster/rates_h100.yaml) measured from the finished jobs in `results`.

    One rate per rule: the total work of its finished jobs over their total wall time, so start-up weighs
    as much as it did in the jobs that ran (short jobs make it heavier than in long ones)."""
    results, fallback = Path(results), Path(fallback or DEFAULT_RATES)
    if not (results / "benchmarks").is_dir():
        raise RatesError(f"{results}: no benchmarks/ folder: not a results folder of this workflow (--results)")
    base = load_rates(fallback)
    measured, counted, notes, stale = {}, {}, [], []
    for rule in GPU_RULES:
        done = finished_jobs(results, rule, stale)
        if rule == "teacher_logits":  # priced at the 10 s AudioSet rate (`prunekd cost`)
            audioset = [j for j in done if j[0].split("/")[1] == "audioset"]
            if done and not audioset:
                notes.append("teacher_logits: only target shards finished; their short clips would price AudioSet's")
            done = audioset
        work, seconds = sum(j[1] for j in done), sum(j[2] for j in done)
        if not done or seconds <= 0:
            if rule == "baseline" and "finetune" in counted:  # the same loop and batch, on this run's GPUs
                measured[rule] = dict(measured["finetune"])
                notes.append(f"baseline: no finished job measured in {results}; the fine-tuning rate measured there")
            elif (figure := _fallback(base, rule)) is not None:
                measured[rule] = figure
                notes.append(f"{rule}: no finished job measured in {results}; the figure of {fallback}")
            else:
                notes.append(f"{rule}: no finished job measured in {results} and no figure in {fallback}")
            continue
        unit = "clips_per_s" if rule == "teacher_logits" else "steps_per_s"
        fixed = "load_s" if rule == "teacher_logits" else "start_s"
        fit = fit_start([j[1] for j in done], [j[2] for j in done])
        if fit is None:  # the start inside the rate, as it weighed in these jobs
            measured[rule] = {unit: float(f"{work / seconds:.4g}")}  # 4 significant digits, also for slow CPU rates
            if rule == "teacher_logits":
                measured[rule]["load_s"] = 0
        else:
            measured[rule] = {unit: float(f"{fit[1]:.4g}"), fixed: round(fit[0], 2)}
        if rule == "teacher_logits":
            lengths = {j[3] for j in done}
            if len(lengths) == 1 and None not in lengths:  # else `cost` takes 10 s, AudioSet's
                measured[rule]["clip_seconds"] = lengths.pop()
            elif len(lengths) > 1:
                notes.append(f"teacher_logits: the finished AudioSet shards had clips of {sorted(lengths, key=str)} s")
        batches = {j[3] for j in done}
        if rule != "teacher_logits" and len(batches) == 1 and None not in batches:
            measured[rule]["batch_size"] = batches.pop()  # `prunekd cost` warns if the planned jobs differ
        elif rule != "teacher_logits":
            notes.append(f"{rule}: the finished jobs ran batch sizes {sorted(batches, key=str)}")
        counted[rule] = {"jobs": len(done), "work": work, "seconds": round(seconds, 1)}
    if stale:
        notes.append(
            f"not counted: {len(stale)} jobs whose benchmark file is older than their log (a later attempt failed, "
            f"or {results} was copied without its timestamps): {', '.join(stale[:3])}"
            + (" ..." if len(stale) > 3 else "")
        )
    out = {
        "source": f"wall time of the finished GPU jobs in {results} (Snakemake benchmark files), start-up included",
        "date": time.strftime("%Y-%m-%d"),
        "gpu": "the GPUs that ran them",
        "measured": measured,
        "jobs_measured": counted,
        "notes": notes,
    }
    for key in ("target",):  # faster rates to aim for, printed beside the measured figures
        if key in base:
            out[key] = base[key]
    return out


def rates_step(results, out=None, fallback=None, log=print) -> dict:
    """`prunekd rates`: the rates YAML to `out` (or stdout)."""
    r = rates(results, fallback)
    text = yaml.safe_dump(r, sort_keys=False)
    if out:
        from prunekd.atomic import atomic_path

        with atomic_path(out) as tmp:
            Path(tmp).write_text(text)
        for rule, c in r["jobs_measured"].items():
            log(f"{rule}: {c['jobs']} jobs, {c['work']:,.0f} units in {c['seconds']:,.0f} s")
        for n in r["notes"]:
            log(f"note: {n}")
    else:
        print(text, end="")
    return r
