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
    """paths: config key -> path that must exist. One line per absent path."""
    return [f"{key}: {p} does not exist" for key, p in paths.items() if not os.path.exists(p)]


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


def file_setting(key: str, files) -> str | None:
    """The last of the config files that sets this dotted key (the one to edit), if any."""
    import yaml

    found = None
    for f in files:
        try:
            node = yaml.safe_load(Path(f).read_text())
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


def unknown_key_message(config, schema: dict, files) -> str | None:
    bad = unknown_keys(config, schema)
    if not bad:
        return None
    key, near = bad[0]
    where = file_setting(key, files) or "--config"
    hint = f"; did you mean {near!r}?" if near else ""
    more = f" ({len(bad) - 1} more unknown keys)" if len(bad) > 1 else ""
    return f"{where}: unknown config key {key!r}{hint}{more}"


def _innermost(error):
    """For a `oneOf` (the target adapters): the error of the branch whose `adapter` matched."""
    while error.context:
        branches = {}
        for e in error.context:
            branches.setdefault(e.relative_schema_path[0], []).append(e)
        fitting = [errs for errs in branches.values() if not any(list(e.relative_path) == ["adapter"] for e in errs)]
        if len(fitting) != 1:
            break
        error = fitting[0][0] if len(fitting[0]) == 1 else _Joined(fitting[0])
    return error


class _Joined:
    """Several errors of one schema branch (e.g. two missing keys), as one."""

    def __init__(self, errors):
        self.context = None
        self.absolute_path = errors[0].absolute_path
        self.message = "; ".join(e.message for e in errors)


def validation_message(error, files) -> str:
    """One line from a jsonschema ValidationError: the key, the value's problem and the file that sets it."""
    error = _innermost(error)
    key = ".".join(str(p) for p in error.absolute_path)
    where = file_setting(key, files) if key else None
    return f"ValidationError: {where + ': ' if where else ''}config key {key or '(top level)'!r}: {error.message}"


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
