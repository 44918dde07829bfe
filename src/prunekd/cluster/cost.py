"""`prunekd cost`: the GPU-hours of the planned jobs, per rule and in total, before anyone submits.

The jobs come from Snakemake itself: `snakemake --dry-run --printshellcmds` with the user's own arguments
(--profile, --configfile, --config, targets, ...), so the job list is exactly what a run would start. Each
GPU job's work is read from its shell command (the `prunekd` step and its `--settings`, the config slice
Snakemake resolved), not from the rule files' wildcards, so renamed wildcards or paths change nothing:

  teacher_logits  clips of the shard (ok rows of the manifest if it exists, else the nominal list lengths; with
                  released logits its block of the rows left to compute, `--compute-table`)
                  x their seconds / the rate's clip_seconds (10: the work of a forward grows with the
                  tokens, i.e. the seconds; 1 s TAU clips are a tenth of a 10 s clip)
                  / clips_per_s + load_s (checkpoint loading, once per shard job)
  distill         distillation.iterations / steps_per_s
  finetune        epochs x ceil(split clips / batch) / steps_per_s (split clips: the manifest if it exists,
  baseline        else the nominal TAU22 split sizes)

A rule's `start_s` (a training job's start-up: imports, CUDA, reading its split), where the rates file has one,
is added once per job, as a teacher shard's load_s.

Rates: a YAML file (src/prunekd/cluster/rates_h100.yaml: the measured H100 figures; a `target` section is printed
beside them; `prunekd rates` writes one from a run's finished jobs, rates.py). A dry run only lists jobs that
still have to run: finished outputs cost nothing.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from prunekd.dag.layouts import NOMINAL_ROWS, TRAIN_SUBSETS

GPU_RULES = ("teacher_logits", "distill", "finetune", "baseline")
DEFAULT_RATES = Path(__file__).resolve().parent / "rates_h100.yaml"  # package data: found by `pip install .`
# TAU22 challenge splits (1 s clips): split100 = 139,620 clips = 13,962 recordings of 10 s; a subset of p %
# holds floor(p % of the recordings) whole recordings (docs/method.md: split5 6,980 .. split100 139,620).
TAU_SPLIT_CLIPS = {s: (13962 * s // 100) * 10 for s in (5, 10, 25, 50, 100)}


@dataclass
class Job:
    rule: str
    wildcards: dict = field(default_factory=dict)
    shell: str = ""
    fields: dict = field(default_factory=dict)  # output, log, benchmark: the paths the dry run lists

    def arg(self, flag: str):
        """Value of `--flag` in the job's shell command (None when absent or unparsable)."""
        try:
            toks = shlex.split(self.shell)
        except ValueError:
            return None
        return toks[toks.index(flag) + 1] if flag in toks[:-1] else None

    def settings(self) -> dict:
        s = self.arg("--settings")
        try:
            return json.loads(s) if s else {}
        except json.JSONDecodeError:
            return {}


_JOB_START = re.compile(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):\s*$")  # indented: a member of a group job


def parse_dry_run(text: str) -> list[Job]:
    """Jobs of `snakemake --dry-run --printshellcmds` output: `rule NAME:`, `    wildcards: a=b, ...`,
    `Shell command: ...` (continued up to the next blank line or job)."""
    jobs, cur, in_shell = [], None, False
    for line in text.splitlines():
        m = _JOB_START.match(line)
        if m:
            cur, in_shell = Job(m.group(1)), False
            jobs.append(cur)
            continue
        if cur is None:
            continue
        if not line.strip() or line.lstrip().startswith("["):  # blank line or the next job's timestamp
            in_shell = False
            if not line.strip():
                cur = None
            continue
        if line.startswith("Shell command:"):
            cur.shell, in_shell = line[len("Shell command:") :].strip(), True
        elif in_shell:
            cur.shell += "\n" + line
        elif line.strip().startswith(("output:", "log:", "benchmark:")):
            key, _, value = line.strip().partition(":")
            cur.fields[key] = [p.strip() for p in value.split(", ") if p.strip()]
        elif line.strip().startswith("wildcards:"):
            for part in line.split(":", 1)[1].split(","):
                k, _, v = part.strip().partition("=")
                if k:
                    cur.wildcards[k] = v
    return jobs


def snakemake_exe() -> str:
    here = Path(sys.executable).parent / "snakemake"
    return str(here) if here.exists() else (shutil.which("snakemake") or "snakemake")


_SNAKEFILES = ("Snakefile", "snakefile", "workflow/Snakefile", "workflow/snakefile")


def dry_run_error(workdir, snakemake_args, stdout: str, stderr: str) -> str:
    """What a failed dry run says, with what to do: the run's own error lines, not Snakemake's chatter."""
    args = list(snakemake_args)
    given_snakefile = any(a in ("-s", "--snakefile") or a.startswith("--snakefile=") for a in args)
    if not given_snakefile and not any((Path(workdir) / f).is_file() for f in _SNAKEFILES):
        return (
            f"no Snakefile in {os.path.abspath(workdir)}: run this in the prunekd folder (where you run snakemake), "
            "or give it with --workdir"
        )
    text = "\n".join(x for x in (stderr, stdout) if x.strip())
    if "no profile.yaml (or config.yaml) found" in text:
        prof = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--profile"), "?")
        return (
            f"snakemake found no profile {prof!r}: install the SLURM profile once with `make install-profile` "
            "(in the prunekd folder), or give its path: --profile profiles/slurm"
        )
    noise = ("Using profile", "Building DAG", "Assuming unrestricted", "host:", "Config file ", "Job stats", "Select")
    lines = [x for x in text.splitlines() if x.strip() and not x.startswith(noise)]
    errors = [x for x in lines if "Error" in x or x.startswith(("error", "ValidationError"))]
    said = "\n".join(errors[-5:] or lines[-15:]) or "(no message)"
    return f"the run's dry run (snakemake -n {shlex.join(args)}) failed:\n{said}"


def planned_with(snakemake_args) -> str:
    """The line that says whose grid this is: the run's arguments, or a reminder to give them."""
    args = [a for a in snakemake_args if a != "--"]
    if not any(a.startswith(("--configfile", "--profile", "--config")) for a in args):
        return (
            "grid: config.yaml alone (no --configfiles given); yours: prunekd <command> -- --profile slurm "
            "--configfiles config.yaml mine.yaml, the arguments of your snakemake run"
        )
    return f"grid: snakemake {shlex.join(args)}"


def dry_run(workdir=".", snakemake_args=(), env=None) -> str:
    """stdout of a dry run with the user's arguments (profile, config files, targets)."""
    cmd = [snakemake_exe(), "--dry-run", "--printshellcmds", "--nocolor", *snakemake_args]
    if not Path(workdir).is_dir():
        raise SystemExit(f"--workdir {workdir}: no such folder")
    p = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(dry_run_error(workdir, snakemake_args, p.stdout, p.stderr))
    return p.stdout


def _resolve(path, base: Path) -> Path | None:
    return None if not path else (Path(path) if os.path.isabs(path) else base / path)


def _manifest(path: Path | None, cache: dict):
    """A manifest's `status` and split columns (None when it is not there yet)."""
    if path is None or not path.exists():
        return None
    if path not in cache:
        import pandas as pd

        cache[path] = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    return cache[path]


def split_clips(job: Job, base: Path, cache: dict) -> tuple[int | None, str]:
    """(clips of the job's training split, where the figure comes from)."""
    split = job.arg("--split") or job.wildcards.get("split")
    man = _manifest(_resolve(job.arg("--manifest"), base), cache)
    if man is not None and f"split{split}" in man.columns:
        ok = man["status"] == "ok" if "status" in man.columns else True
        return int(((man[f"split{split}"] == "True") & ok).sum()), "manifest"
    if split is not None and split.isdigit() and int(split) in TAU_SPLIT_CLIPS:
        return TAU_SPLIT_CLIPS[int(split)], "nominal"
    return None, f"split {split!r}: size unknown until its manifest exists"


def shard_clips(jobs: list[Job], base: Path, cache: dict) -> tuple[list[int], list[str]]:
    """Clips per teacher shard job (the ok rows of its block of the manifest); without a manifest the
    nominal list length if it gives exactly the planned number of shards, else every shard counted full."""
    notes, out, top = [], [], {}
    for j in jobs:
        ds, sh = j.arg("--dataset") or j.wildcards.get("dataset"), j.arg("--shard") or j.wildcards.get("shard")
        top[ds] = max(top.get(ds, -1), int(sh) if sh and sh.isdigit() else -1)
    for j in jobs:
        s = j.settings()
        size = s.get("shard_size") or s.get("teachers", {}).get("shard_size")
        ds, sh = j.arg("--dataset") or j.wildcards.get("dataset"), j.arg("--shard") or j.wildcards.get("shard")
        if not size or not (sh and sh.isdigit()):
            raise SystemExit(f"teacher_logits job {j.wildcards}: no shard size or index in its shell command")
        size, i = int(size), int(sh)
        man = _manifest(_resolve(j.arg("--manifest"), base), cache)
        compute = j.arg("--compute-table")
        if compute:  # released logits: the job computes block i of the rows left to compute
            table = _manifest(_resolve(compute, base), cache)
            if man is not None and table is not None:
                rows = table["row"].astype(int).to_numpy()[i * size : (i + 1) * size]
                out.append(int((man["status"].to_numpy()[rows] == "ok").sum()))
                continue
            out.append(size)
            note = f"teacher shards of {ds}: the rows left to compute are known once released_index ran; counted full"
            notes += [note] if note not in notes else []
            continue
        if man is not None:
            part = man.iloc[i * size : (i + 1) * size]
            out.append(int((part["status"] == "ok").sum()) if "status" in part.columns else len(part))
            continue
        rows = sum(NOMINAL_ROWS[s] for s in ("eval", *TRAIN_SUBSETS)) if ds == "audioset" else NOMINAL_ROWS["tau2022"]
        if math.ceil(rows / size) == top[ds] + 1:
            out.append(max(0, min(size, rows - i * size)))
        else:
            out.append(size)
            note = (
                f"teacher shards of {ds}: no manifest yet and the planned shards are not the nominal count; "
                "counted full"
            )
            notes += [note] if note not in notes else []
    return out, notes


def load_rates(path) -> dict:
    try:
        with open(path) as fh:
            r = yaml.safe_load(fh) or {}
    except OSError as e:
        raise SystemExit(f"{path}: cannot read the rates file ({e.strerror})") from None
    if "measured" not in r:
        raise SystemExit(f"{path}: no `measured` section (see src/prunekd/cluster/rates_h100.yaml)")
    return r


def _figures(rates: dict, rule: str) -> dict:
    """A rule's figures in one section of a rates file; the baseline falls back to fine-tuning's (same loop)."""
    return rates.get(rule) or (rates.get("finetune") if rule == "baseline" else None) or {}


def _rate(rates: dict, rule: str, key: str, path) -> float:
    r = _figures(rates, rule)
    if not r.get(key):
        raise SystemExit(f"{path}: no {key} for {rule}")
    return float(r[key])


def job_work(rule: str, jobs: list[Job], base: Path, cache: dict) -> tuple[list[float], str, list[str]]:
    """Per job the rate-bound work units; the unit; notes."""
    notes = []
    if rule == "teacher_logits":
        work, notes = shard_clips(jobs, base, cache)
        return [float(w) for w in work], "clips", notes
    work = []
    for j in jobs:
        s = j.settings()
        if rule == "distill":
            it = s.get("distillation", {}).get("iterations")
            if it is None:
                raise SystemExit(f"distill job {j.wildcards}: no distillation.iterations in its --settings")
            work.append(float(it))
            continue
        t = s.get("training", {})
        if "epochs" not in t or "batch_size" not in t:
            raise SystemExit(f"{rule} job {j.wildcards}: no training.epochs/batch_size in its --settings")
        n, src = split_clips(j, base, cache)
        if n is None:
            notes += [src] if src not in notes else []
            work.append(0.0)
            continue
        bs = min(int(t["batch_size"]), max(n, 1))
        work.append(float(int(t["epochs"]) * math.ceil(n / bs)))
        if src == "nominal":
            note = "split sizes: nominal TAU22 (split5 6,980 .. split100 139,620 clips) until the manifest exists"
            notes += [note] if note not in notes else []
    return work, "steps", notes


def clip_seconds(job: Job) -> float:
    """Seconds of audio a teacher shard job gives the teachers per clip (10 when its short clips are tiled)."""
    d = job.settings().get("data", {})
    return 10.0 if d.get("tile_to_10s") else float(d.get("clip_seconds", 10))


def store_bytes(jobs: list[Job], clips: list[float]) -> dict:
    """Bytes the teacher jobs add to the gathered stores: member logits (float16) and ensemble (float32), and the
    member embeddings (float16) where teachers.embeddings is on."""
    logits = embeddings = 0.0
    for job, n in zip(jobs, clips):
        t = job.settings().get("teachers", {})
        m = len(t.get("members") or [])
        logits += n * (m * 527 * 2 + 527 * 4)
        if t.get("embeddings", False):
            embeddings += n * m * int(t.get("architecture", {}).get("embed_dim", 768)) * 2
    return {"logits": logits, "embeddings": embeddings}


def estimate(jobs: list[Job], rates: dict, rates_path, base: Path) -> dict:
    cache, rules, notes, storage = {}, {}, [], None
    sections = [s for s in ("measured", "target") if s in rates]
    for rule in GPU_RULES:
        mine = [j for j in jobs if j.rule == rule]
        if not mine:
            continue
        work, unit, n = job_work(rule, mine, base, cache)
        notes += n
        row = {"jobs": len(mine), "unit": unit, "work_min": min(work), "work_max": max(work)}
        for sec in sections:
            rate = _rate(rates[sec], rule, f"{unit}_per_s", rates_path)
            figures = _figures(rates[sec], rule)
            load = float(figures.get("load_s" if unit == "clips" else "start_s", 0.0))  # once per job
            scale = [1.0] * len(mine)
            if unit == "clips":  # a clip of other length than the rate's is that much more or less work
                scale = [clip_seconds(j) / float(figures.get("clip_seconds", 10)) for j in mine]
            hours = [(w * k / rate + load) / 3600 for w, k in zip(work, scale)]
            row[sec] = {"rate": rate, "load_s": load, "gpu_hours": sum(hours), "min": min(hours), "max": max(hours)}
        rules[rule] = row
        if rule == "teacher_logits":
            storage = store_bytes(mine, work)
    for sec in sections:  # a rate measured at another batch size does not carry over
        for rule in rules:
            bs_rate = (rates[sec].get(rule) or {}).get("batch_size")
            bs_job = _job_batch(rule, [j for j in jobs if j.rule == rule])
            if bs_rate and bs_job and int(bs_rate) != bs_job:
                notes.append(f"{rule}: {sec} rate is for batch {bs_rate}, the jobs run batch {bs_job}")
    total = {sec: sum(r[sec]["gpu_hours"] for r in rules.values()) for sec in sections}
    return {
        "rules": rules,
        "total": total,
        "notes": list(dict.fromkeys(notes)),
        "jobs_planned": len(jobs),
        "gpu_jobs": sum(r["jobs"] for r in rules.values()),
        "storage": storage,
    }


def _job_batch(rule: str, jobs: list[Job]) -> int | None:
    if not jobs or rule == "teacher_logits":
        return None
    s = jobs[0].settings()
    b = s.get("distillation" if rule == "distill" else "training", {}).get("batch_size")
    return int(b) if b else None


def _num(x: float) -> str:
    return f"{x:,.0f}"


def report(est: dict, rates: dict, rates_path) -> str:
    sections = [s for s in ("measured", "target") if s in rates]
    lines = [
        f"GPU-hours of the {est['gpu_jobs']} GPU jobs among the {est['jobs_planned']} jobs snakemake plans "
        f"(dry run); rates: {rates_path}",
        f"  rates from: {rates.get('source', '?')}, {rates.get('date', '?')}",
    ]
    head = f"{'rule':<15} {'jobs':>5}  {'work per job':<26} {'GPU-h each':>12} {'GPU-h':>8}"
    head += f"  {'at target':>9}" if "target" in sections else ""
    lines += ["", head]
    for rule, r in est["rules"].items():
        m = r["measured"]
        work = _num(r["work_min"]) if r["work_min"] == r["work_max"] else f"{_num(r['work_min'])}-{_num(r['work_max'])}"
        work += f" {r['unit']}"
        each = f"{m['min']:.2f}" if round(m["min"], 2) == round(m["max"], 2) else f"{m['min']:.2f}-{m['max']:.2f}"
        line = f"{rule:<15} {r['jobs']:>5}  {work:<26} {each:>12} {m['gpu_hours']:>8.1f}"
        line += f"  {r['target']['gpu_hours']:>9.1f}" if "target" in sections else ""
        lines.append(line)
    total = f"{'total':<15} {est['gpu_jobs']:>5}  {'':<26} {'':>12} {est['total']['measured']:>8.1f}"
    total += f"  {est['total']['target']:>9.1f}" if "target" in sections else ""
    lines += [total, ""]
    rate_txt = lambda sec: ", ".join(  # noqa: E731
        f"{rule} {r[sec]['rate']:g} {r['unit']}/s"
        + (f" + {r[sec]['load_s']:g} s {'load' if r['unit'] == 'clips' else 'start'}" if r[sec]["load_s"] else "")
        for rule, r in est["rules"].items()
    )
    for sec in sections:
        lines.append(f"{sec} rates: {rate_txt(sec)}")
    lines.append(
        f"total: {est['total']['measured']:.1f} GPU-hours"
        + (f" ({est['total']['target']:.1f} at the target rates)" if "target" in sections else "")
    )
    st = est.get("storage")
    if st:
        lines.append(
            f"teacher stores: {st['logits'] / 1e9:.1f} GB of logits"
            + (
                f" and {st['embeddings'] / 1e9:.1f} GB of member embeddings (teachers.embeddings: false: none)"
                if st["embeddings"]
                else ", no member embeddings (teachers.embeddings is off)"
            )
        )
    lines += [f"note: {n}" for n in est["notes"]]
    summary = {
        "rates": str(rates_path),
        "jobs_planned": est["jobs_planned"],
        "gpu_jobs": est["gpu_jobs"],
        "gpu_hours": {rule: round(r["measured"]["gpu_hours"], 3) for rule, r in est["rules"].items()},
        "jobs": {rule: r["jobs"] for rule, r in est["rules"].items()},
        "total_gpu_hours": round(est["total"]["measured"], 3),
    }
    if st:
        summary["store_gb"] = {k: round(v / 1e9, 3) for k, v in st.items()}
    if "target" in sections:
        summary["target_gpu_hours"] = {rule: round(r["target"]["gpu_hours"], 3) for rule, r in est["rules"].items()}
        summary["target_total_gpu_hours"] = round(est["total"]["target"], 3)
    lines.append(json.dumps(summary))
    return "\n".join(lines)


def _workdir(workdir, snakemake_args) -> Path:
    """Where the jobs' relative paths start: --directory/-d if given, else the workflow folder."""
    args = list(snakemake_args)
    for flag in ("--directory", "-d"):
        if flag in args[:-1]:
            return _resolve(args[args.index(flag) + 1], Path(workdir))
    return Path(workdir)


def cost(workdir=".", snakemake_args=(), rates_path=None, env=None) -> tuple[dict, str]:
    """(estimate, printed report) of the jobs a run with these arguments would start."""
    rates_path = rates_path or os.path.relpath(DEFAULT_RATES)
    rates = load_rates(rates_path)
    jobs = parse_dry_run(dry_run(workdir, [a for a in snakemake_args if a != "--"], env))
    est = estimate(jobs, rates, rates_path, _workdir(workdir, snakemake_args))
    return est, planned_with(snakemake_args) + "\n" + report(est, rates, rates_path)
