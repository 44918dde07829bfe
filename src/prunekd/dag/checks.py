"""Checks run when the DAG is built (workflow/rules/common.smk loads this file by path) and by the demo.

Standard library only: the workflow imports it before any job runs. Each check gives one short line
naming the config key, the file and the path, never a dump of the schema or the config.
"""

from __future__ import annotations

import difflib
import os
import shlex
from pathlib import Path

from prunekd.errors import PrunekdError

DEMO_MARKER = ".prunekd-demo"


class CheckError(PrunekdError):
    """A refused configuration or data path; the message is the whole story."""


# ---- the demo writes only into folders it created ---------------------------------------------------


def demo_may_write(folder) -> bool:
    """True for an absent or empty folder, or one the demo created (it holds the marker)."""
    folder = Path(folder)
    if not folder.exists():
        return True
    if not folder.is_dir():
        return False
    return (folder / DEMO_MARKER).exists() or not any(folder.iterdir())


def check_demo_folders(folders) -> None:
    """folders: config key -> folder the demo would write into (a dict or pairs). Refuses any folder with
    someone else's files."""
    for key, folder in folders.items() if isinstance(folders, dict) else folders:
        if not demo_may_write(folder):
            raise CheckError(
                f"{key}: {folder} holds files the demo did not write (no {DEMO_MARKER} marker); "
                f"demo.enabled: true writes only into new folders. Point {key} at a new folder, "
                "or set demo.enabled: false to use the data there."
            )


def claim_demo_folder(folder, key: str) -> Path:
    """Create (or reuse) a folder for demo data and mark it as the demo's own."""
    check_demo_folders([(key, folder)])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DEMO_MARKER).write_text("written by `prunekd demo-data`; the demo may overwrite this folder\n")
    return folder


# ---- data paths of a real run ----------------------------------------------------------------------


def missing_data(paths: dict) -> list[str]:
    """paths: config key -> path that must exist. One line per absent path; the paths inside an absent folder
    are counted on its line rather than listed (one wrong root is one mistake)."""
    absent = [(k, str(p)) for k, p in paths.items() if not os.path.exists(p)]
    out = []
    for key, p in absent:
        if any(p != q and p.startswith(q.rstrip("/") + "/") for _, q in absent):
            continue  # inside an absent folder: that folder's line counts it
        inside = sum(q != p and q.startswith(p.rstrip("/") + "/") for _, q in absent)
        more = f" (nor the {inside} files and folders read inside it)" if inside else ""
        out.append(f"{key}: {p} does not exist{more}")
    return out


def missing_data_summary(lines: list[str], files) -> str:
    """The absent inputs once more, after a dry run's job listing (they would scroll away above it)."""
    return "\n".join(
        [f"Absent inputs ({len(lines)}); the dry run planned without them, a real run stops before any job:"]
        + [f"  {line}" for line in lines]
        + [f"(config files: {', '.join(files) or 'none'})"]
    )


# ---- configuration ---------------------------------------------------------------------------------


def _resolve(schema: dict, root: dict) -> dict:
    while isinstance(schema, dict) and "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def unknown_keys(config, schema: dict, root: dict | None = None, prefix: str = "") -> list[tuple[str, str | None]]:
    """(dotted key, nearest valid key or None) for every key the schema does not allow."""
    root = root if root is not None else schema
    schema = _resolve(schema, root)
    out = []
    if not isinstance(config, dict) or not isinstance(schema, dict):
        return out
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for k, v in config.items():
        key = f"{prefix}{k}"
        if k in props:
            out += unknown_keys(v, props[k], root, key + ".")
        elif extra is False:
            near = difflib.get_close_matches(str(k), list(props), n=1, cutoff=0.6)
            out.append((key, f"{prefix}{near[0]}" if near else None))
        elif isinstance(extra, dict):
            out += unknown_keys(v, extra, root, key + ".")
    return out


def config_files(declared, given, start=".") -> list[str]:
    """The config files in the order their values apply, each once, the last one winning.

    declared: the workflow's `configfile:` files (loaded first); given: --configfile(s) of the command line or
    the profile, which Snakemake lays over them, in order. A file named both ways (`--configfiles config.yaml
    mine.yaml`) counts where it applies last, so `mine.yaml` keeps the blame for a key both set. Shown as the
    user would type them: relative to the folder Snakemake was started in when inside it.
    """
    start = os.path.abspath(start)
    order: dict[str, str] = {}
    for f in [*declared, *given]:
        full = os.path.abspath(os.path.join(start, str(f)))
        order.pop(full, None)
        order[full] = full
    return [os.path.relpath(f, start) if Path(f).is_relative_to(start) else f for f in order]


def file_setting(key: str, files, cli_config=None, start=".") -> str | None:
    """The last of the config files that sets this dotted key (the one to edit), if any; `--config` when the
    command line's --config sets it (it applies over every file). start: where relative files start."""
    import yaml

    if cli_config and key.split(".")[0] in cli_config:
        return "--config"
    found = None
    for f in files:
        try:
            node = yaml.safe_load((Path(start) / f).read_text())
        except (OSError, yaml.YAMLError):
            continue
        for part in key.split("."):
            if isinstance(node, list) and part.isdigit():
                break  # an item of a list this file sets
            if not isinstance(node, dict) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None:
            found = str(f)
    return found


def unknown_key_message(config, schema: dict, files, cli_config=None, start=".") -> str | None:
    bad = unknown_keys(config, schema)
    if not bad:
        return None
    key, near = bad[0]
    where = file_setting(key, files, cli_config, start) or "--config"
    hint = f"; did you mean {near!r}?" if near else ""
    more = f" ({len(bad) - 1} more unknown keys)" if len(bad) > 1 else ""
    return f"{where}: unknown config key {key!r}{hint}{more}"


def _misfit(errors) -> bool:
    """A `oneOf` branch meant for another kind of value: the value's type, or a target's adapter, is not its."""
    return any(e.validator in ("type", "const", "enum") and list(e.relative_path) in ([], ["adapter"]) for e in errors)


def _innermost(error):
    """For a `oneOf` (the target adapters, null-or-block settings): the error of the branch meant for the value;
    where no branch is, what the value may be."""
    while error.context:
        branches = {}
        for e in error.context:
            branches.setdefault(e.relative_schema_path[0], []).append(e)
        fitting = [errs for errs in branches.values() if not _misfit(errs)]
        if len(fitting) == 1:
            error = fitting[0][0] if len(fitting[0]) == 1 else _Joined(fitting[0])
            continue
        adapters = [e.validator_value for e in error.context if list(e.relative_path) == ["adapter"]]
        if not fitting and adapters and isinstance(error.instance, dict):
            got = error.instance.get("adapter")
            return _Joined([error], path=[*error.absolute_path, "adapter"], message=f"{got!r} is not one of {adapters}")
        if not fitting:
            said = dict.fromkeys(errs[0].message for errs in branches.values())
            return _Joined([error], message=" or ".join(said))
        break
    return error


class _Joined:
    """Several errors of one schema branch (e.g. two missing keys), as one."""

    def __init__(self, errors, path=None, message=None):
        self.context = None
        self.validator = "joined"
        self.absolute_path = list(errors[0].absolute_path if path is None else path)
        self.message = message or "; ".join(dict.fromkeys(_said(e) for e in errors))


def _said(error) -> str:
    """An error's message; a missing key as `missing 'key'`, and every missing key of the block at once."""
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance]
        return "missing " + ", ".join(repr(k) for k in missing)
    return error.message


def validation_message(error, files, cli_config=None, start=".", others=()) -> str:
    """One line from a jsonschema ValidationError: the key, the value's problem and the file that sets it.
    others: every error of the config (the validator's iter_errors): the problems of the same key go on the
    same line (a CSV target's missing keys at once, not one per dry run)."""
    error = _innermost(error)
    key = ".".join(str(p) for p in error.absolute_path)
    said = [_said(error)]
    below = []
    for other in others:
        other = _innermost(other)
        at = ".".join(str(p) for p in other.absolute_path)
        if at == key:
            said.append(_said(other))
        elif key and at.startswith(key + "."):  # e.g. the block's adapter, beside its missing keys
            below.append(f"{at[len(key) + 1 :]}: {_said(other)}")
    if len(said) > 1 and all(x.startswith("missing ") for x in said):
        keys = dict.fromkeys(k.strip() for x in said for k in x.removeprefix("missing ").split(","))
        said = ["missing " + ", ".join(keys)]
    said += below
    where = file_setting(key, files, cli_config, start) if key else None
    problem = "; ".join(dict.fromkeys(said))
    return f"ValidationError: {where + ': ' if where else ''}config key {key or '(top level)'!r}: {problem}"


# ---- profiles ----------------------------------------------------------------------------------------


def _flag_values(argv: list[str], flags: tuple[str, ...]) -> list[str] | None:
    """Values of the last of these flags on a command line (argparse's nargs='+': later ones replace)."""
    vals = None
    for i, a in enumerate(argv):
        name, eq, val = a.partition("=")
        if name in flags:
            vals = [val] if eq else []
            for b in argv[i + 1 :] if not eq else []:
                if b.startswith("-"):
                    break
                vals.append(b)
    return vals


def dropped_profile_configfiles(argv: list[str], env: dict, loaded, bases=(".",)) -> str | None:
    """A message when --configfile on the command line replaced the configfiles of a profile, else None.

    Snakemake's command line replaces a profile's `configfiles` instead of adding to them: with
    `--profile profiles/tour --configfile mine.yaml` the tour's sizes would silently go.
    bases: where a relative profile path may start (the folder Snakemake was started in, the workflow's);
    --directory has already moved the process elsewhere.
    """
    if _flag_values(argv, ("--configfile", "--configfiles")) is None:
        return None
    profiles = _flag_values(argv, ("--profile",)) or (
        [env["SNAKEMAKE_PROFILE"]] if env.get("SNAKEMAKE_PROFILE") else []
    )
    loaded = {os.path.abspath(f) for f in loaded}
    import yaml

    for prof in profiles:
        base = next((b for b in bases if (Path(b) / prof).exists()), None)
        if base is None:
            continue
        where = Path(base) / prof
        cfg = where / "config.yaml" if where.is_dir() else where
        if not cfg.is_file():
            continue
        try:
            settings = yaml.safe_load(cfg.read_text()) or {}
        except yaml.YAMLError:
            continue
        wanted = settings.get("configfiles") or settings.get("configfile") or []
        wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        lost = [f for f in wanted if os.path.abspath(Path(base) / f) not in loaded]
        if lost:
            given = _flag_values(argv, ("--configfile", "--configfiles"))
            layered = " ".join(shlex.quote(f) for f in [*wanted, *[g for g in given if g not in wanted]])
            return (
                f"--configfile replaces the configfiles of profile {prof} instead of adding to them, so "
                f"{', '.join(lost)} would be dropped. Layer yours on top: --configfiles {layered}"
            )
    return None


# The job groups of a cluster run (docs/cluster.md, "Few submissions") are set by the shipped SLURM profile's
# `groups:` list, not by the rules; a profile copied before they moved there has none.
UNGROUPED_EXECUTORS = ("slurm",)


def ungrouped_warning(executor: str | None, groups) -> str | None:
    """The warning for a cluster run without job groups, or None: every short step would be its own submission."""
    if executor not in UNGROUPED_EXECUTORS or groups:
        return None
    return (
        f"the {executor} run has no job groups, so every short step is its own submission: add the shipped "
        'profile\'s `groups:` list (profiles/slurm/config.yaml) to your profile (docs/cluster.md, "Few submissions")'
    )
