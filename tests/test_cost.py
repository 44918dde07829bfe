"""`prunekd cost`: the jobs Snakemake plans, and hours = work / rate per job (issue 15)."""

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import BIN, LOCAL_ENV, REPO, TINY_CONFIGS

from prunekd.cluster import cost


def planned_counts(workdir, args=()):
    """Per-rule job counts from Snakemake's own job stats (`--quiet rules`), independent of cost.py's parser."""
    p = subprocess.run(
        [str(BIN / "snakemake"), "-n", "--quiet", "rules", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=LOCAL_ENV,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    table = p.stdout.split("Job stats:")[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M) if m[1] != "total"}


def test_default_grid_counts_match_snakemake():
    est, text = cost.cost(REPO, [], env=LOCAL_ENV)
    assert text.splitlines()[0].startswith("grid: config.yaml alone") and "goal" not in text
    counts = planned_counts(REPO)
    assert {r: est["rules"][r]["jobs"] for r in est["rules"]} == {r: counts[r] for r in cost.GPU_RULES if r in counts}
    assert set(est["rules"]) == set(cost.GPU_RULES)
    assert est["jobs_planned"] == sum(counts.values())
    # The counts the docs quote are those planned today.
    docs = (REPO / "docs/cluster.md").read_text()
    shards = f"{counts['teacher_logits']} teacher shards, {counts['pack_audio']} packing jobs"
    assert f"The paper grid plans {sum(counts.values())} jobs: 2 manifests, {shards}" in " ".join(docs.split())
    assert f"| default paper grid (`config.yaml`) | {sum(counts.values())} |" in docs
    summary = json.loads(text.splitlines()[-1])  # the last line is for scripts
    assert summary["total_gpu_hours"] == pytest.approx(est["total"]["measured"], abs=1e-3)
    assert summary["target_total_gpu_hours"] < summary["total_gpu_hours"]


def _readme_step(number: int, command: str) -> list[str]:
    """The command line of the README's real-run step `number` that starts with `command`."""
    text = (REPO / "README.md").read_text().split("## The real run", 1)[1]
    step = re.search(rf"^{number}\. \*\*.*?(?=^\d\. \*\*|^## )", text, re.S | re.M)[0]
    return next(shlex.split(x) for x in step.splitlines() if x.strip().startswith(command))


def test_the_readme_steps_price_the_users_own_grid_on_a_fresh_account(tmp_path):
    """Step 1's profile install, then step 4 as written (mine.yaml: two splits), with a HOME of its own."""
    env = {k: v for k, v in LOCAL_ENV.items() if k != "XDG_CONFIG_HOME"} | {"HOME": str(tmp_path / "home")}
    mine = tmp_path / "mine.yaml"
    mine.write_text("targets:\n  tau:\n    splits: [5, 100]\n")
    step4 = [str(mine) if a == "mine.yaml" else a for a in _readme_step(4, "prunekd cost")]
    assert "--profile" in step4 and "slurm" in step4
    before = subprocess.run(step4, cwd=REPO, env=env, capture_output=True, text=True)
    assert before.returncode != 0 and "make install-profile" in before.stderr  # says what to do, in one line
    assert len(before.stderr.strip().splitlines()) == 1, before.stderr
    install = _readme_step(1, "make install-profile")
    assert subprocess.run(install, cwd=REPO, env=env, capture_output=True).returncode == 0
    p = subprocess.run(step4, cwd=REPO, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"--configfiles config.yaml {mine}" in p.stdout.splitlines()[0]  # the grid of the user's files
    assert "goal" not in p.stdout
    summary = json.loads(p.stdout.splitlines()[-1])
    seeds = yaml.safe_load((REPO / "config.yaml").read_text())["grid"]["baseline_seeds"]
    assert summary["jobs"]["baseline"] == 2 * len(seeds)  # mine.yaml's two splits, not config.yaml's five
    # Step 5's `prunekd status` carries the same arguments as the run.
    assert _readme_step(5, "prunekd status")[2:] == ["--", *_readme_step(5, "snakemake")[1:]]


def test_cost_outside_the_repository_and_with_a_bad_config_says_what_to_do(tmp_path):
    p = subprocess.run([str(BIN / "prunekd"), "status"], cwd=tmp_path, env=LOCAL_ENV, capture_output=True, text=True)
    assert p.returncode != 0 and f"no Snakefile in {tmp_path}" in p.stderr and "--workdir" in p.stderr
    bad = tmp_path / "mine.yaml"
    bad.write_text("grid:\n  thresholds: [0.1, 1.5]\n")
    args = ["--configfiles", "config.yaml", str(bad)]
    with pytest.raises(SystemExit, match=rf"ValidationError: {bad}: config key 'grid.thresholds.1'"):
        cost.cost(REPO, ["--", *args, "--directory", str(tmp_path / "wd")], env=LOCAL_ENV)


def test_hours_are_work_over_rate(tmp_path):
    """Tiny demo grid, manifests on disk (a partial shard, rejected clips), synthetic rates: exact arithmetic."""
    man = tmp_path / "results/manifests"
    man.mkdir(parents=True)
    status = ["ok"] * 170
    status[5] = "missing"
    (man / "audioset.tsv").write_text("row\tid\tstatus\n" + "".join(f"{i}\ta{i}\t{s}\n" for i, s in enumerate(status)))
    rows = ["row\tid\tsplit5\tsplit100\ttest\tstatus\n"]
    for i in range(100):
        rows.append(f"{i}\tt{i}\t{i < 5}\t{i < 60}\t{i >= 60}\t{'missing' if i == 3 else 'ok'}\n")
    (man / "tau.tsv").write_text("".join(rows))
    rates = {
        "source": "test",
        "date": "today",
        "measured": {
            "teacher_logits": {"clips_per_s": 8, "load_s": 2, "clip_seconds": 1},  # the tiny grid's 1 s clips
            "distill": {"steps_per_s": 2},
            "finetune": {"steps_per_s": 4},
            "baseline": {"steps_per_s": 5},
        },
        "target": {
            "teacher_logits": {"clips_per_s": 16, "load_s": 1},
            "distill": {"steps_per_s": 4},
            "finetune": {"steps_per_s": 8},
        },
    }  # no baseline: the fine-tuning rate stands in
    (tmp_path / "rates.yaml").write_text(yaml.safe_dump(rates))
    args = ["-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfiles", *TINY_CONFIGS]
    jobs = cost.parse_dry_run(cost.dry_run(tmp_path, args, LOCAL_ENV))
    est = cost.estimate(jobs, cost.load_rates(tmp_path / "rates.yaml"), "rates.yaml", tmp_path)
    text = cost.report(est, rates, "rates.yaml")
    counts = planned_counts(tmp_path, args)
    assert {r: est["rules"][r]["jobs"] for r in est["rules"]} == {r: counts[r] for r in cost.GPU_RULES}

    tiny = yaml.safe_load((REPO / "tests/tiny.yaml").read_text())
    size = tiny["teachers"]["shard_size"]  # 80: AudioSet 170 rows -> 79 (one rejected), 80, 10; TAU 100 -> 79, 20
    assert (counts["teacher_logits"], size) == (5, 80)
    clips = 79 + 80 + 10 + 79 + 20
    steps = {"5": 1, "100": math.ceil(59 / tiny["training"]["batch_size"])}  # 4 ok clips (batch 4) and 59 ok clips
    ft = [steps[j.arg("--split")] * tiny["training"]["epochs_finetune"] for j in jobs if j.rule == "finetune"]
    bl = [steps[j.arg("--split")] * tiny["training"]["epochs_baseline"] for j in jobs if j.rule == "baseline"]
    it = tiny["distillation"]["iterations"]
    want = {
        "teacher_logits": (clips / 8 + 5 * 2) / 3600,
        "distill": counts["distill"] * it / 2 / 3600,
        "finetune": sum(ft) / 4 / 3600,
        "baseline": sum(bl) / 5 / 3600,
    }
    want_target = {
        "teacher_logits": (clips * 1 / 10 / 16 + 5 * 1) / 3600,  # a rate without clip_seconds is for 10 s clips
        "distill": counts["distill"] * it / 4 / 3600,
        "finetune": sum(ft) / 8 / 3600,
        "baseline": sum(bl) / 8 / 3600,
    }
    for rule in cost.GPU_RULES:
        assert est["rules"][rule]["measured"]["gpu_hours"] == pytest.approx(want[rule], rel=1e-12)
        assert est["rules"][rule]["target"]["gpu_hours"] == pytest.approx(want_target[rule], rel=1e-12)
    assert est["total"]["measured"] == pytest.approx(sum(want.values()), rel=1e-12)
    assert est["rules"]["teacher_logits"]["work_min"] == 10 and est["rules"]["teacher_logits"]["work_max"] == 80
    summary = json.loads(text.splitlines()[-1])
    assert summary["jobs"] == {r: counts[r] for r in cost.GPU_RULES}
    assert re.search(r"^total\s+" + str(sum(counts[r] for r in cost.GPU_RULES)) + r"\s", text, re.M)
    # What the teacher pass adds to disk: 3 members' float16 logits and the float32 ensemble per clip, and their
    # embeddings (teachers.embeddings, on by default) at the demo's width.
    dim = yaml.safe_load((REPO / "profiles/tour/tour.yaml").read_text())["teachers"]["architecture"]["embed_dim"]
    assert est["storage"] == {"logits": clips * (3 * 527 * 2 + 527 * 4), "embeddings": clips * 3 * dim * 2}
    assert summary["store_gb"]["embeddings"] == round(clips * 3 * dim * 2 / 1e9, 3)
    assert "GB of member embeddings (teachers.embeddings: false: none)" in text


def test_parser_needs_only_rule_names_and_shell_commands():
    """Renamed wildcards (a refactor) change nothing: the work comes from the job's shell command."""
    text = """[Mon Jan  1 00:00:00 2026]
rule finetune:
    input: r/manifests/tau.tsv
    wildcards: target=tau, selection=pruned, threshold=0.3, ensemble=all, split=25, seed=0
    resources: tmpdir=/tmp
Shell command: prunekd finetune --manifest r/manifests/tau.tsv --split 25 --seed 0 --settings '{"training": {"epochs": 2, "batch_size": 256}}' 2> log

[Mon Jan  1 00:00:00 2026]
localrule all:
    input: x
"""
    jobs = cost.parse_dry_run(text)
    assert [j.rule for j in jobs] == ["finetune", "all"]
    assert jobs[0].wildcards["selection"] == "pruned" and jobs[0].arg("--split") == "25"
    rates = {"measured": {"finetune": {"steps_per_s": 1}}}
    est = cost.estimate(jobs, rates, "r.yaml", REPO / "nonexistent")
    assert est["rules"]["finetune"]["measured"]["gpu_hours"] == 2 * math.ceil(34900 / 256) / 3600


def test_teacher_shards_are_priced_by_the_seconds_of_audio_their_clips_give_the_teachers():
    """A 1 s TAU clip is a tenth of the forward of a 10 s AudioSet clip (the rate's length); tiled to 10 s, a whole one."""

    def shard(dataset, data):
        settings = json.dumps({"shard_size": 1000, "data": data})
        return (
            f"rule teacher_logits:\n    wildcards: dataset={dataset}, shard=00000\n"
            f"Shell command: prunekd teacher-logits --dataset {dataset} --shard 0 --settings '{settings}' 2> log\n\n"
        )

    text = shard("audioset", {"clip_seconds": 10, "tile_to_10s": False})
    text += shard("tau", {"clip_seconds": 1, "tile_to_10s": False})
    text += shard("tiled", {"clip_seconds": 1, "tile_to_10s": True})
    jobs = cost.parse_dry_run(text)
    est = cost.estimate(jobs, {"measured": {"teacher_logits": {"clips_per_s": 100}}}, "r.yaml", REPO / "none")
    m = est["rules"]["teacher_logits"]["measured"]
    # Without manifests every shard counts full (1,000 clips): 10 + 1 + 10 s of work per 100 clips/s of 10 s clips
    assert (m["gpu_hours"] * 3600, m["min"] * 3600, m["max"] * 3600) == pytest.approx((21, 1, 10))
    est = cost.estimate(jobs, {"measured": {"teacher_logits": {"clips_per_s": 100, "clip_seconds": 1}}}, "r", REPO)
    assert est["rules"]["teacher_logits"]["measured"]["gpu_hours"] * 3600 == pytest.approx(210)


def _job_files(results, rule, job, log_text, seconds="12.5"):
    """A job's log, then (as Snakemake writes it after a success) its benchmark file."""
    for kind, text in (("logs", log_text), ("benchmarks", f"s\th:m:s\tmax_rss\n{seconds}\t0:00:12\t100.0\n")):
        path = results / kind / rule / f"{job}.{'tsv' if kind == 'benchmarks' else 'log'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.utime(path, (1000 + (kind == "benchmarks"),) * 2)


def test_rates_count_what_the_last_attempt_did_and_fall_back_where_nothing_ran(tmp_path):
    from prunekd.cluster import rates

    res = tmp_path / "results"
    with pytest.raises(rates.RatesError, match="results: no benchmarks/ folder"):
        rates.rates(res)  # a mistyped --results
    with pytest.raises(SystemExit, match="no-such.yaml: cannot read the rates file"):
        cost.load_rates(tmp_path / "no-such.yaml")  # a mistyped --rates or --fallback
    # A distillation killed at step 40 and resumed: its log and benchmark file are the last attempt's.
    log = "[t] distilling on 9 clips (batch 32) from k.tsv\n[t] resuming from ck/last.pt at step 40\n"
    _job_files(res, "distill", "tau/all/split5/pruned/thr0.3", log + "[t] distill step 100/100 loss 0.1\n", "30")
    # A killed job that left a benchmark file but never reached its last step: not counted.
    _job_files(res, "distill", "tau/all/split5/random/thr0.3", "[t] distill step 50/100 loss 0.1\n")
    # A job that succeeded once, then was rerun and failed after its last step (saving, say): the benchmark
    # file is the old success's, older than the log: not counted.
    _job_files(res, "finetune", "tau/all/split5/pruned/thr0.3/seed0", "[t] finetune step 8/8 loss 1\n")
    os.utime(res / "logs/finetune/tau/all/split5/pruned/thr0.3/seed0.log", (2000, 2000))
    _job_files(res, "teacher_logits", "tau/00000", "[t] shard 0: wrote 99 clips, 1 rejected\n", seconds="4")
    fallback = tmp_path / "fallback.yaml"
    fallback.write_text(yaml.safe_dump({"measured": {"finetune": {"steps_per_s": 70}}}))
    r = rates.rates(res, fallback)
    assert r["measured"]["distill"] == {"steps_per_s": 2.0, "batch_size": 32}  # 60 steps in 30 s
    assert r["jobs_measured"]["distill"] == {"jobs": 1, "work": 60.0, "seconds": 30.0}
    # Only target shards: their 1 s clips would underprice AudioSet's; no figure for it in the fallback either.
    assert "teacher_logits" not in r["measured"] and any("only target shards" in n for n in r["notes"])
    assert r["measured"]["finetune"] == r["measured"]["baseline"] == {"steps_per_s": 70}  # as `cost` falls back
    assert any(n.startswith("finetune: no finished job measured") for n in r["notes"])
    assert any(n.startswith("not counted: 1 jobs") and "finetune/tau" in n for n in r["notes"])  # said, not silent
    # A fine-tuning measured on this run's GPUs prices the baseline too, not the fallback's baseline figure.
    _job_files(res, "finetune", "tau/all/split5/pruned/thr0.1/seed0", "[t] finetune step 8/8 loss 1\n", "2")
    fallback.write_text(
        yaml.safe_dump({"measured": {"finetune": {"steps_per_s": 70}, "baseline": {"steps_per_s": 70}}})
    )
    assert rates.rates(res, fallback)["measured"]["baseline"] == {"steps_per_s": 4.0}
    # AudioSet shards, once there, set the teacher rate (rejected clips were read too).
    shard_log = "[t] shard 0: 80 clips of 10 s, batches of 32\n[t] shard 0: wrote 79 clips, 1 rejected\n"
    _job_files(res, "teacher_logits", "audioset/00000", shard_log, seconds="10")
    assert rates.rates(res)["measured"]["teacher_logits"] == {"clips_per_s": 8.0, "load_s": 0, "clip_seconds": 10.0}
    (res / "benchmarks/distill/tau/all/split5/pruned/thr0.3.tsv").write_text("s\th:m:s\nabc\t0:00:00\n")
    with pytest.raises(rates.RatesError, match=r"thr0\.3\.tsv: unreadable `s` value"):
        rates.rates(res)


def test_rates_fit_the_start_of_jobs_of_different_sizes_and_cost_adds_it_once_per_job(tmp_path):
    """Short jobs carry the same start-up as long ones: their total over total time would overprice a grid of long
    jobs. wall = start + steps / rate, fitted to the finished jobs, prices any size."""
    from prunekd.cluster import rates

    res = tmp_path / "results"
    for split, steps in (("5", 40), ("25", 200), ("100", 800)):  # 6 s to start, then 4 steps/s
        log = f"[t] fine-tuning on 9 clips (batch 256)\n[t] finetune step {steps}/{steps} loss 1\n"
        _job_files(res, "finetune", f"tau/all/split{split}/pruned/thr0.3/seed0", log, str(6 + steps / 4))
    r = rates.rates(res)
    assert r["measured"]["finetune"] == {"steps_per_s": 4.0, "start_s": 6.0, "batch_size": 256}
    assert r["measured"]["baseline"] == r["measured"]["finetune"]  # the same loop, measured in this run
    shell = 'prunekd finetune --split 25 --settings \'{"training": {"epochs": 2, "batch_size": 256}}\' 2> log'
    jobs = cost.parse_dry_run(f"rule finetune:\nShell command: {shell}\n\n" * 2)
    est = cost.estimate(jobs, r, "r.yaml", REPO / "nonexistent")
    steps = 2 * math.ceil(34900 / 256)  # nominal split 25
    assert est["rules"]["finetune"]["measured"]["gpu_hours"] * 3600 == pytest.approx(2 * (6 + steps / 4))
    assert "finetune 4 steps/s + 6 s start" in cost.report(est, r, "r.yaml")
    # A rates file without a baseline entry prices the baseline as fine-tuning, its start included.
    del r["measured"]["baseline"]
    est = cost.estimate(cost.parse_dry_run(f"rule baseline:\nShell command: {shell}\n\n"), r, "r.yaml", REPO / "none")
    assert est["rules"]["baseline"]["measured"]["gpu_hours"] * 3600 == pytest.approx(6 + steps / 4)
    # Jobs alike in size cannot tell start from rate apart: total work over total wall time, start inside it.
    assert rates.fit_start([100, 110, 120], [31, 33.5, 36]) is None
    assert rates.fit_start([10, 100, 200], [50, 40, 30]) is None  # not physical (longer jobs quicker): no fit


def test_rates_of_a_finished_run_price_its_jobs_at_their_measured_wall_time(demo_run, tmp_path):
    """`prunekd rates` on the finished tiny demo, then `prunekd cost` of the same GPU jobs run again."""
    from prunekd.cluster import rates

    r = rates.rates(demo_run / "results")
    assert r["notes"] == [] and set(r["jobs_measured"]) == set(cost.GPU_RULES)  # every GPU rule measured
    (tmp_path / "rates.yaml").write_text(yaml.safe_dump(r))
    args = ["-s", str(REPO / "Snakefile"), "--configfiles", *TINY_CONFIGS, "--forcerun", *cost.GPU_RULES]
    jobs = cost.parse_dry_run(cost.dry_run(demo_run, args, LOCAL_ENV))  # what `prunekd cost` prices
    est = cost.estimate(jobs, cost.load_rates(tmp_path / "rates.yaml"), "rates.yaml", demo_run)
    for rule in ("distill", "finetune", "baseline"):  # every job measured: priced at its own wall time
        assert r["measured"][rule]["batch_size"] == cost._job_batch(rule, [j for j in jobs if j.rule == rule])
        assert est["rules"][rule]["jobs"] == r["jobs_measured"][rule]["jobs"]
        seconds = est["rules"][rule]["measured"]["gpu_hours"] * 3600
        assert seconds == pytest.approx(r["jobs_measured"][rule]["seconds"], rel=0.01)
    # Teacher shards: the clips cost counts for the AudioSet shards are those their logs report.
    shards = [j for j in jobs if j.rule == "teacher_logits" and j.arg("--dataset") == "audioset"]
    work, *_ = cost.job_work("teacher_logits", shards, demo_run, {})
    assert sum(work) == r["jobs_measured"]["teacher_logits"]["work"]
    assert len(shards) == r["jobs_measured"]["teacher_logits"]["jobs"]


@pytest.mark.slow  # a pip install and a dry run of the default grid
def test_a_plain_pip_install_prices_the_default_grid_from_a_checkout(tmp_path):
    """`pip install .` (not editable): the default rates file travels with the package."""
    site, src = tmp_path / "site", tmp_path / "source"  # built from a copy: the build leaves nothing in the checkout
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "pyproject.toml", src)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            site,
            src,
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    env = {**LOCAL_ENV, "PYTHONPATH": str(site)}
    code = "from prunekd.cluster import cost; print(cost.__file__); print(cost.DEFAULT_RATES.is_file())"
    where, ok = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout.split()
    assert where.startswith(str(site)) and ok == "True"
    p = subprocess.run([sys.executable, "-m", "prunekd.cli", "cost"], env=env, capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "teacher_logits" in p.stdout and "total" in p.stdout


def test_with_released_logits_a_teacher_shard_is_priced_by_its_block_of_the_rows_left_to_compute(tmp_path):
    import pandas as pd

    man = pd.DataFrame({"row": range(10), "status": ["ok"] * 9 + ["missing"]})
    man.to_csv(tmp_path / "audioset.tsv", sep="\t", index=False)
    pd.DataFrame({"row": [0, 1, 2, 9]}).to_csv(tmp_path / "compute.tsv", sep="\t", index=False)
    settings = json.dumps({"shard_size": 3, "data": {"clip_seconds": 10}})

    def shard(i, table):
        return (
            f"rule teacher_logits:\n    wildcards: dataset=audioset, shard={i:05d}\n"
            f"Shell command: prunekd teacher-logits --dataset audioset --manifest audioset.tsv --shard {i} "
            f"--compute-table {table} --settings '{settings}' 2> log\n\n"
        )

    rates = {"measured": {"teacher_logits": {"clips_per_s": 1}}}
    est = cost.estimate(cost.parse_dry_run(shard(0, "compute.tsv") + shard(1, "compute.tsv")), rates, "r", tmp_path)
    # Block 0 is rows 0, 1, 2 (3 clips); block 1 is row 9, which is missing: nothing to compute.
    assert est["rules"]["teacher_logits"]["measured"]["gpu_hours"] * 3600 == pytest.approx(3)
    est = cost.estimate(cost.parse_dry_run(shard(0, "absent.tsv")), rates, "r", tmp_path)
    assert est["rules"]["teacher_logits"]["work_max"] == 3 and any("released_index" in n for n in est["notes"])
