"""The documentation a user reads: every command is documented, the front door stays short."""

import argparse
import re
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
