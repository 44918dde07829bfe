# Where the raw data lies, what the demo writes, and the absent-data checks (before any job).

# segments (lists + one file per clip) or hdf5 (PaSST's *_mp3.hdf); the demo writes segment lists.
AUDIOSET_LAYOUT = (
    "segments"
    if DEMO
    else _layouts.audioset_layout(AUDIOSET, config["data"]["audioset_subsets"], config["paths"]["audioset_layout"])
)

PLAN = _load("dag.plan").Plan(
    config, TARGETS, AUDIOSET_LAYOUT
)  # the raw inputs and the shards (src/prunekd/dag/plan.py)
audioset_lists, target_lists, demo_writes = PLAN.audioset_lists, PLAN.target_lists, PLAN.demo_writes


def raw_inputs(files, generated=DEMO):
    """Metadata files as inputs when they exist or a rule makes them (demo).

    Absent real data is left out of the DAG so that a dry run still plans every job; the manifest
    step then stops at once with an error naming the missing file.
    """
    if generated:
        return files
    return [f for f in files if Path(f).exists()]


def weight_files():
    return [f"{WEIGHTS}/{CKPT_FILES[m]}" for m in MEMBERS]


# A user's folder is never a demo folder: Snakemake would delete its metadata (the demo's outputs) before
# the demo job even starts, so refuse when the DAG is built.
try:
    _checks.check_demo_folders(PLAN.demo_folders())
except _checks.CheckError as e:
    refuse(str(e))

# Absent data: a dry run still plans every job (shards sized from the nominal list lengths) and names every absent
# input, when the DAG is built and once more after the job listing; a real run stops before any job (onstart) if it
# would build a manifest from them.
MISSING_DATA = {ds: _checks.missing_data(keys) for ds, keys in PLAN.data_paths()}
_MISSING_LINES = [l for lines in MISSING_DATA.values() for l in lines]
if workflow.is_main_process:
    for _line in _MISSING_LINES:
        print(f"warning: {_line}", file=sys.stderr)
    if _MISSING_LINES:
        import atexit

        def _summary():  # the executor (dry run or not) is known only once the DAG is built
            if workflow.dryrun:
                print(_checks.missing_data_summary(_MISSING_LINES, CONFIG_FILES), file=sys.stderr, flush=True)

        atexit.register(_summary)


def refuse_missing_data(dag):
    """onstart: stop a real run whose manifests would read data that is not there."""
    planned = {
        j.wildcards.get("target", "audioset")
        for j in dag.needrun_jobs()
        if j.rule.name in ("manifest_audioset", "manifest_target")
    }
    lines = [l for ds, lines in MISSING_DATA.items() if ds in planned for l in lines]
    if lines:
        refuse("\n".join(lines) + f"\n(config files: {', '.join(CONFIG_FILES)}; a dry run, -n, plans without data)")


def warn_ungrouped(workflow):
    """onstart: a cluster run whose profile sets no job groups (one copied before they moved into the profile)."""
    plugin = workflow.executor_plugin
    line = _checks.ungrouped_warning(plugin.name if plugin else None, dict(workflow.group_settings.overwrite_groups))
    if line:
        print(f"warning: {line}", file=sys.stderr, flush=True)
