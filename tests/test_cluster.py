"""Running as a cluster user does: paths with spaces, the user's own profile, retried jobs' requests."""

import re

import yaml
from conftest import LOCAL_ENV, REPO, TINY_CONFIGS, demo_threads, snakemake

SLURM_GRID = REPO / "tests/slurm_grid.yaml"  # split 100 at one threshold: every rule of the method, few jobs


def test_paths_with_spaces_run_the_dag_and_write_nothing_outside(tmp_path):
    """Results folder and data roots whose names hold spaces: every job runs, nothing lands beside them."""
    top = tmp_path / "top"
    work, results, data = top / "work dir", top / "my results" / "results", top / "my data"
    work.mkdir(parents=True)
    cfg = tmp_path / "spaces.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "paths": {
                    "results": str(results),
                    "audioset": str(data / "audio set"),
                    "teacher_weights": str(data / "passt weights"),
                },
                "teachers": {"members": ["passt_s_swa_p16_128_ap476"], "shard_size": 300},  # fewer jobs
                "targets": {
                    "tau": {"root": str(data / "tau 2022")},
                    "sounds": {"csv": str(data / "sound set/labels.csv"), "audio_root": str(data / "sound set")},
                },
            }
        )
    )
    snakemake(work, extra_config=[str(SLURM_GRID), str(cfg)])
    assert (results / "summary/tau/table1.csv").exists()
    assert (data / "audio set/eval_segments.csv").exists() and (data / "tau 2022/meta.csv").exists()
    # Nothing beside the three folders, nothing in the working directory but Snakemake's own.
    assert sorted(p.name for p in top.iterdir()) == ["my data", "my results", "work dir"]
    assert sorted(p.name for p in work.iterdir()) == [".snakemake"]
    assert sorted(p.name for p in (top / "my results").iterdir()) == ["results"]
    assert sorted(p.name for p in data.iterdir()) == ["audio set", "passt weights", "sound set", "tau 2022"]


GPU_RULES = {"teacher_logits", "distill", "finetune", "baseline"}


def planned_resources(workdir, *args, extra_config=()):
    """Rule -> list of each planned job's resources (name -> value as printed) from a dry run."""
    p = snakemake(workdir, "-n", *args, extra_config=[str(c) for c in extra_config])
    jobs, rule = {}, None
    for line in p.stdout.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            rule = m.group(1)
        elif rule and line.strip().startswith("resources:"):
            res = dict(kv.split("=", 1) for kv in line.split("resources:", 1)[1].strip().split(", "))
            jobs.setdefault(rule, []).append(res)
            rule = None
    return jobs


def test_user_profile_set_resources_reach_the_gpu_rules_with_their_gpu(tmp_path):
    """A user's own profile sets per-rule resources; nothing in the workflow replaces them, and gpu=1 stays."""
    prof = tmp_path / "myprofile"
    prof.mkdir()
    (prof / "config.yaml").write_text(
        "set-resources:\n"
        "  distill: {runtime: 7, slurm_partition: gpu-long, slurm_extra: \"'--qos=long'\"}\n"
        "  finetune: {gpu_model: a100, constraint: ib}\n"
        "  evaluate: {runtime: 11}\n"
    )
    jobs = planned_resources(tmp_path, "--profile", str(prof))
    assert GPU_RULES <= set(jobs)
    for rule in GPU_RULES:
        assert all(r["gpu"] == "1" for r in jobs[rule]), rule
    for r in jobs["distill"]:
        assert (r["runtime"], r["slurm_partition"], r["slurm_extra"]) == ("7", "gpu-long", "--qos=long")
    assert all((r["gpu_model"], r["constraint"]) == ("a100", "ib") for r in jobs["finetune"])
    assert all(r["runtime"] == "11" and "gpu" not in r for r in jobs["evaluate"])
    # The other rules keep their own requests: the baseline is not the distillation.
    assert all(r["runtime"] == "600" and "slurm_extra" not in r for r in jobs["baseline"])
    assert not any("gpu" in r for rule, rs in jobs.items() if rule not in GPU_RULES for r in rs)


def test_retried_jobs_ask_for_more_memory_and_time_within_the_users_limits(tmp_path):
    first = planned_resources(tmp_path)
    third = planned_resources(tmp_path, "--attempt", "3")
    # memory x1.5 per attempt; the runtime of a job that cannot resume x2, of a training job unchanged
    for rule in ("prune", "evaluate", "distill", "finetune"):
        for a, c in zip(first[rule], third[rule]):
            assert int(c["mem_mb"]) == round(int(a["mem_mb"]) * 2.25), rule
    assert {int(c["runtime"]) for c in third["prune"]} == {15 * 4}
    assert [c["runtime"] for c in third["distill"]] == [a["runtime"] for a in first["distill"]]
    limits = tmp_path / "limits.yaml"
    limits.write_text("retry: {memory_factor: 4, max_mem_mb: 10000, runtime_factor: 3, max_runtime: 100}\n")
    capped = planned_resources(tmp_path, "--attempt", "3", extra_config=[limits])
    assert {c["mem_mb"] for c in capped["evaluate"]} == {"10000"}  # 8000 x 16, at most 10000
    assert {c["runtime"] for c in capped["evaluate"]} == {"100"}  # 60 x 9, at most 100
    assert {c["mem_mb"] for c in capped["manifest_audioset"]} == {"16000"}  # above the ceiling: its own request


def test_grown_request_rounds_and_refuses_attempt_zero():
    import pytest

    from prunekd.dag.requests import grown

    assert [grown(4000, k, 1.5, 10**6) for k in (1, 2, 3)] == [4000, 6000, 9000]
    assert grown(4000, 5, 2, 20000) == 20000 and grown(30000, 2, 2, 20000) == 30000
    with pytest.raises(ValueError, match="attempt 0"):
        grown(1, 0, 2, 10)


def _status(workdir):
    from prunekd.cluster.progress import status_step

    args = ["-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--configfiles", *TINY_CONFIGS]
    return status_step(REPO, [*args, *demo_threads()], env=LOCAL_ENV)


def test_status_of_a_finished_run_counts_every_job_done(demo_run):
    st, text = _status(demo_run)
    jobs = planned_resources(demo_run, "--forceall")
    assert {r: c["done"] for r, c in st.counts.items()} == {r: len(v) for r, v in jobs.items() if r != "all"}
    assert not st.running and not st.failed
    assert all(c["left"] == c["failed"] == c["running"] == 0 for c in st.counts.values())
    from prunekd.cluster.rates import wall_seconds

    gpu = [p for r in GPU_RULES for p in (demo_run / "results/benchmarks" / r).rglob("*.tsv")]
    assert st.gpu_hours_spent > 0
    assert abs(st.gpu_hours_spent - sum(wall_seconds(p) for p in gpu) / 3600) < 1e-9
    assert text.splitlines()[0].startswith("grid: snakemake -s ") and "tests/tiny.yaml" in text.splitlines()[0]
    assert text.splitlines()[1].split() == ["rule", "done", "running", "failed", "left", "total"]


def test_status_of_a_half_finished_run(demo_run, tmp_path):
    """As Snakemake leaves a grid midway: one distillation running (its marker, its log's progress), one
    fine-tuning failed (its log, no outputs), what follows them left."""
    import base64
    import shutil

    wd = tmp_path / "run"
    shutil.copytree(demo_run, wd, symlinks=True)
    res = wd / "results"
    run = "tau/all/split100/pruned/thr0.2"
    for d in (f"distill/{run}", f"finetune/{run}", f"eval/finetune/{run}", "summary"):
        shutil.rmtree(res / d)
    for d in (f"logs/finetune/{run}", f"logs/evaluate/finetune/{run}", f"benchmarks/finetune/{run}"):
        shutil.rmtree(res / d)  # never started: no log
    (res / "logs/summarise/tau.log").unlink()
    (res / f"logs/distill/{run}.log").write_text(
        "resuming from x at step 2\ndistill step 3/4 loss 0.5000 lr 1.00e-03 0.50 steps/s, 2 s left\n"
    )
    marker = wd / ".snakemake/incomplete"
    key = base64.urlsafe_b64encode(f"results/distill/{run}/student.pt".encode()).decode()
    (marker / key).write_text('{"external_jobid": "4242"}')
    failed = "baseline/tau/split5/seed0"
    (res / f"{failed}/model.pt").unlink()
    st, text = _status(wd)
    assert st.counts["distill"]["running"] == 1 and st.counts["distill"]["done"] == 6
    assert st.counts["finetune"]["left"] == 1  # the distillation's one fine-tuning (split 100)
    assert (st.counts["baseline"]["failed"], st.counts["baseline"]["done"]) == (1, 1)
    assert st.counts["evaluate"]["left"] == 1 and st.counts["summarise"]["left"] == 1
    [(rule, name, ext, prog, _)] = st.running
    assert (rule, name, ext) == ("distill", run, "4242")
    assert prog == {"step": 3, "total": 4, "steps_per_s": 0.5, "seconds_left": 2}
    assert f"distill {run} (job 4242): step 3/4, 0.50 steps/s" in text
    assert f"logs/{failed}.log" in text


def test_the_slurm_profile_groups_the_short_steps_and_a_profile_without_groups_is_warned():
    # The groups live in the shipped profile only (docs/cluster.md, "Few submissions"): every rule it names exists,
    # each training's evaluation shares its job, and a SLURM run whose profile has none is told so at its start.
    from prunekd.dag.checks import ungrouped_warning

    prof = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    groups = dict(g.split("=") for g in prof["groups"])
    rules = set(re.findall(r"^\s*(?:local)?rule (\w+)", "".join(
        p.read_text() for p in (REPO / "workflow/rules").glob("*.smk")), re.M))  # fmt: skip
    rules |= set(re.findall(r"^use rule \w+ as (\w+)", "".join(
        p.read_text() for p in (REPO / "workflow/rules").glob("*.smk")), re.M))  # fmt: skip
    assert set(groups) <= rules, set(groups) - rules
    assert groups["evaluate"] == groups["finetune"] == groups["baseline"]
    assert not re.search(r"^\s+group:", "".join(p.read_text() for p in (REPO / "workflow/rules").glob("*.smk")), re.M)
    said = ungrouped_warning("slurm", {})
    assert "groups:" in said and "profiles/slurm/config.yaml" in said
    assert ungrouped_warning("slurm", groups) is None and ungrouped_warning("local", {}) is None
