"""The documentation a user reads: every command is documented, the front door stays short."""

import argparse
import re
import shlex
from pathlib import Path

from prunekd.cli import parser

REPO = Path(__file__).resolve().parents[1]


def _subcommands():
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def test_every_prunekd_subcommand_is_documented():
    docs = "\n".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    named = set(re.findall(r"`(?:prunekd )?([a-z][a-z0-9-]*)`", docs)) | set(
        re.findall(r"prunekd ([a-z][a-z-]*)", docs)
    )
    missing = [c for c in _subcommands() if c not in named]
    assert not missing, f"prunekd subcommands no page in docs/ (or README.md) names: {missing}"


def test_readme_is_a_front_door_whose_links_exist():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    for page in re.findall(r"`((?:docs/[a-z-]+|CHANGELOG)\.md)`", text):
        assert (REPO / page).is_file(), f"README.md names {page}, which does not exist"


def _command_lines():
    """(page, command line) for every `prunekd` and `snakemake` line of README.md and docs/*.md: fenced lines
    (continuations joined, `# ...` comments dropped) and inline code spans that start with either."""
    out = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        fenced, held = False, ""
        for line in page.read_text().splitlines():
            if line.strip().startswith("```"):
                fenced, held = not fenced, ""
                continue
            if fenced:
                text = (held + " " + line.strip().removeprefix("$ ")).strip()
                held = text[:-1] if text.endswith("\\") else ""
                if not held and re.match(r"(prunekd|snakemake)(\s|$)", text):
                    out.append((page.name, text))
            else:
                out += [(page.name, m) for m in re.findall(r"`((?:prunekd|snakemake) [^`]+)`", line)]
    return out


def _words(command: str) -> list[str]:
    command = re.sub(r"\$\((?:[^()]|\([^()]*\))*\)", "WORDS", command)  # $(...): its output, some words
    command = command.replace("[", "").replace("]", "")  # a synopsis's optional parts
    return shlex.split(command, comments=True)


def _snakemake_problem(args: list[str]) -> str | None:
    from snakemake.cli import get_argument_parser

    try:
        a = get_argument_parser().parse_args(args)
    except SystemExit:
        return "snakemake's parser refuses it"
    files = [str(f) for f in (a.configfile or [])]
    not_config = [f for f in files if not f.endswith((".yaml", ".yml", ".json"))]
    if not_config:
        return f"--configfile(s) would read {not_config} as config files (name targets before the flag)"
    for prof in a.profile or []:
        if "/" in prof and not (REPO / prof).exists():
            return f"profile {prof} does not exist"
    return None


def test_every_command_line_of_the_readme_and_docs_parses_as_written():
    from snakemake.cli import get_argument_parser  # noqa: F401  (fails here, not per line, if snakemake is absent)

    lines = _command_lines()
    assert len(lines) > 20 and any(p == "README.md" for p, _ in lines)
    subcommands = set(_subcommands())
    bad = []
    for page, command in lines:
        words = _words(command)
        if words[0] == "snakemake":
            problem = _snakemake_problem(words[1:])
        elif len(words) > 1 and words[1].startswith("<"):
            continue  # `prunekd <command> --help`
        elif words[-1] in ("--help", "-h"):  # the parser exits printing the command's help
            problem = None if len(words) == 2 or words[1] in subcommands else "no such prunekd command"
        elif len(words) == 2:  # a command named in the text
            problem = None if words[1] in subcommands else "no such prunekd command"
        else:
            try:
                args = parser().parse_args(words[1:])
                after = [w for w in getattr(args, "snakemake_args", []) or [] if w != "--"]
                problem = _snakemake_problem(after) if after else None
            except SystemExit:
                problem = "prunekd's parser refuses it"
        if problem:
            bad.append(f"{page}: {command}: {problem}")
    assert not bad, "\n".join(bad)


def test_the_doc_check_catches_a_target_read_as_a_config_file():
    assert "as config files" in _snakemake_problem(_words("snakemake -n --configfiles a.yaml b.yaml results/x.md")[1:])
    assert _snakemake_problem(_words("snakemake results/x.md -n --configfiles a.yaml b.yaml")[1:]) is None
    assert _snakemake_problem(_words("snakemake -n --configfiles a.yaml b.yaml -- results/x.md")[1:]) is None
    assert _snakemake_problem(["--profile", "profiles/absent"]) == "profile profiles/absent does not exist"


def _is_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a name inside a module, not a submodule
        return False


def test_every_repository_path_and_prunekd_module_the_docs_name_exists():
    """A page that names a file or module that is not there sends its reader nowhere."""
    import importlib.util

    missing = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = page.read_text()
        for path in re.findall(r"`((?:src|benchmarks|tests|workflow|profiles|envs|\.ci)/[\w.-]+(?:/[\w.-]+)*)`", text):
            if not (REPO / path.rstrip(".")).exists():
                missing.append(f"{page.name}: {path}")
        for dotted in re.findall(r"`(prunekd(?:\.\w+)+)", text):
            parts = dotted.split(".")
            # the longest importable module, then the names inside it (a function, a class)
            n = (
                next(i for i in range(1, len(parts) + 1) if not _is_module(".".join(parts[: i + 1])))
                if len(parts) > 1
                else 1
            )
            source = Path(importlib.util.find_spec(".".join(parts[:n])).origin).read_text()
            if parts[n:] and not re.search(rf"^(?:def|class) {parts[n]}\b|^{parts[n]}\s*=", source, re.M):
                missing.append(f"{page.name}: {dotted}")
    assert not missing, missing
