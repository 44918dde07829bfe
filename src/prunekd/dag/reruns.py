"""Which settings decide a step's result, and which only how it reads its input.

Standard library only: the workflow loads this file when the DAG is built (workflow/rules/settings.smk) to
slice each step's `params.settings`, and the training steps use the same list for their checkpoints'
fingerprint, so that a change to how clips are read neither reruns a step nor stops it resuming.
"""

from __future__ import annotations

IO_KEYS = ("num_workers", "staging")  # how a step reads its input: passed as flags, never a rerun trigger


def computed(section: dict) -> dict:
    """A config section without IO_KEYS: what decides a step's result."""
    return {k: v for k, v in section.items() if k not in IO_KEYS}
