"""What a job asks the scheduler for on its k-th attempt: the rule's request, grown for a retry.

Loaded by the rules when the DAG is built (workflow/rules/common.smk), so standard library only.
"""

from __future__ import annotations


def grown(base: float, attempt: int, factor: float, ceiling: float) -> int:
    """base x factor^(attempt-1), at most `ceiling` but never less than base (a rule asking for more than the
    ceiling keeps its own request)."""
    if attempt < 1:
        raise ValueError(f"attempt {attempt}: attempts count from 1")
    return int(round(min(base * factor ** (attempt - 1), max(base, ceiling))))
