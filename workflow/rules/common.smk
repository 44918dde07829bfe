# The configuration: loaded, checked (one line per mistake), and the constants every rule file reads.
import importlib
import inspect
import json
import os
import re
import shlex
import sys
from pathlib import Path

import yaml
from snakemake.utils import min_version, validate

min_version("9.0")


# The package this workflow ships with (not whatever prunekd is installed): hashes of its code go into
# each rule's params, so that editing a step's code reruns that step and what follows.
PACKAGE_DIR = Path(workflow.basedir) / "src" / "prunekd"
sys.path.insert(0, str(PACKAGE_DIR.parent))


def _load(name):
    """A torch-free module of the shipped package (the workflow reads its facts and checks from there)."""
    mod = importlib.import_module(f"prunekd.{name}")
    if not Path(mod.__file__).resolve().is_relative_to(PACKAGE_DIR.resolve()):
        raise ImportError(f"prunekd is imported from {Path(mod.__file__).parent}, not this workflow's {PACKAGE_DIR}")
    return mod


_codehash = _load("dag.codehash")
_checks = _load("dag.checks")  # config, profile and data-path checks: one line each (src/prunekd/dag/checks.py)
_layouts = _load("dag.layouts")  # where the data lies in the layouts users hold (src/prunekd/dag/layouts.py)
_members = _load("dag.members")  # the PaSST members: name -> (stride, release tag, checkpoint file)
_requests = _load("dag.requests")  # a retried job's grown requests (src/prunekd/dag/requests.py)
_released = _load("dag.released_index")  # released ensemble logits: the restricted index reader
# The config files in the order their values apply (the Snakefile's `configfile:`, then the command line's or the
# profile's), each once: an error names the last file that sets the key, the one to edit.
_GIVEN_FILES = list(workflow.overwrite_configfiles or [])
CONFIG_FILES = _checks.config_files(
    [os.path.abspath(f) for f in workflow.configfiles[len(_GIVEN_FILES) :]], _GIVEN_FILES, workflow.workdir_init
)
_CLI_CONFIG = dict(workflow.config_settings.config or {})  # --config key=value: over every file


def refuse(message):
    """Stop before any job with one line (a bare exception: Snakemake prints its message only)."""
    raise _checks.CheckError(message)


def refuse_key(key, problem):
    """Stop with one line naming the config key, and the file that sets it."""
    where = _checks.file_setting(key, CONFIG_FILES, _CLI_CONFIG, workflow.workdir_init)
    refuse(f"ValidationError: {f'{where}: ' if where else ''}{key}: {problem}")


if workflow.is_main_process:
    _msg = _checks.dropped_profile_configfiles(
        sys.argv[1:],
        os.environ,
        [os.path.join(workflow.workdir_init, f) for f in CONFIG_FILES],
        [os.environ.get("PWD", "."), workflow.workdir_init, workflow.basedir],
    )
    if _msg:
        refuse(_msg)
with open(Path(workflow.basedir) / "workflow/schemas/config.schema.yaml") as _fh:
    _schema = yaml.safe_load(_fh)
_msg = _checks.unknown_key_message(config, _schema, CONFIG_FILES, _CLI_CONFIG, workflow.workdir_init)
if _msg:
    refuse(_msg)
try:
    validate(config, schema="../schemas/config.schema.yaml")
except Exception as e:  # Snakemake's own message appends the whole schema and config
    cause = e.__context__  # the jsonschema ValidationError
    if not hasattr(cause, "absolute_path"):
        raise
    import jsonschema

    _all = list(jsonschema.validators.validator_for(_schema)(_schema).iter_errors(config))
    refuse(_checks.validation_message(cause, CONFIG_FILES, _CLI_CONFIG, workflow.workdir_init, _all))


def code_version(command):
    """Hash of the code that `prunekd <command>` runs (see src/prunekd/dag/codehash.py)."""
    return _codehash.code_version(command, PACKAGE_DIR)


def settings(**parts):
    """One JSON object with exactly the config a step reads; a `params` so that a change reruns the step."""
    return json.dumps(parts, sort_keys=True)


# The priority of the rules on the way to the distillations (the teachers, their logits, the domain classifier, the
# pruned sets and other selections, the packed audio) and of the distillations themselves: the longest jobs, on
# which everything after them waits, start as early as they can, and jobs that wait on none of them (the
# baselines) fill the cores around them instead of delaying them.
FIRST = 1


def per_job(fn):
    """`fn` (an input, params or resources function) with its signature worked out once: Snakemake inspects it
    (inspect.signature) twice at each call, and a sweep calls the grid rules' functions for thousands of jobs."""
    fn.__signature__ = inspect.signature(fn)
    return fn


def mem_mb(mb, per_thread=False):
    """A rule's memory request (MB; per thread: the demo's one-thread jobs ask for little), grown with the attempt
    so that a job killed for memory is not retried with the same request (config `retry`)."""

    @per_job
    def request(wildcards, threads, attempt):
        base = mb * threads if per_thread else mb
        return _requests.grown(base, attempt, config["retry"]["memory_factor"], config["retry"]["max_mem_mb"])

    return request


def runtime(minutes):
    """The runtime (minutes) of a rule that cannot resume, grown with the attempt (config `retry`)."""

    @per_job
    def request(wildcards, attempt):
        return _requests.grown(minutes, attempt, config["retry"]["runtime_factor"], config["retry"]["max_runtime"])

    return request


def _alternatives(names):
    """A wildcard constraint matching exactly these names (src/prunekd/dag/grid.py, alternatives)."""
    return _load("dag.grid").alternatives(names)


R = config["paths"]["results"]
DEMO = config["demo"]["enabled"]
AUDIOSET = config["paths"]["audioset"]
WEIGHTS = config["paths"]["teacher_weights"]


def _checked_members(key, names):
    unknown = [m for m in names if m not in _members.MEMBERS]
    if unknown:
        refuse_key(key, f"{unknown[0]!r} is not a PaSST member (one of {', '.join(_members.MEMBERS)})")
    return list(names)


# teachers.members: `all` (the nine members, in the table's order) or a subset; resolved here, so that a
# step's settings hold the list either way.
MEMBERS = _checked_members(
    "teachers.members",
    list(_members.MEMBERS) if config["teachers"]["members"] == "all" else config["teachers"]["members"],
)
CKPT_FILES = {m: _members.MEMBERS[m][2] for m in _members.MEMBERS}


def _checked_targets():
    """The targets that run (grid.targets), each defined under `targets`."""
    out = {}
    for t in config["grid"]["targets"]:
        if t not in config["targets"]:
            refuse_key("grid.targets", f"{t!r} is not defined under `targets` (defined: {sorted(config['targets'])})")
        out[t] = config["targets"][t]
        s = out[t]["sweep_split"]
        if s is not None and s not in out[t]["splits"]:
            refuse_key(f"targets.{t}.sweep_split", f"{s!r} is not one of targets.{t}.splits {out[t]['splits']}")
    return out


def _checked_ensembles():
    """Ensemble name -> member subset (None: every member, the report's ensemble)."""
    out = {"all": None}
    for name, members in config["ensembles"].items():
        _checked_members(f"ensembles.{name}", members)
        outside = [m for m in members if m not in MEMBERS]
        if outside:
            refuse_key(f"ensembles.{name}", f"{outside} not in teachers.members (the stored logits hold {MEMBERS})")
        out[name] = list(members)
    return out


TARGETS = _checked_targets()
ENSEMBLES = _checked_ensembles()

# teachers.released_logits with its defaults filled in (None: the members compute every clip).
RELEASED = (
    None
    if config["teachers"].get("released_logits") is None
    else {"uncovered": "compute", "check_clips": 1000, "check_seed": 0, **config["teachers"]["released_logits"]}
)
for _key in ("logits", "index") if RELEASED is not None else ():
    if not Path(RELEASED[_key]).is_file():
        refuse_key(f"teachers.released_logits.{_key}", f"{RELEASED[_key]} is not a file")
if RELEASED is not None and len(ENSEMBLES) > 1:
    refuse_key(
        "ensembles",
        f"{sorted(n for n in ENSEMBLES if n != 'all')}: member ablations need per-member logits of the AudioSet "
        "training clips; with teachers.released_logits those hold only the released ensemble mean",
    )


wildcard_constraints:
    dataset=f"audioset|{_alternatives(TARGETS)}",
    target=_alternatives(TARGETS),
    ensemble=_alternatives(ENSEMBLES),
    shard=r"\d+",
    split=r"[A-Za-z0-9_]+",
    threshold=r"0\.\d+",
    seed=r"\d+",
    ckpt=_alternatives(CKPT_FILES.values()),
