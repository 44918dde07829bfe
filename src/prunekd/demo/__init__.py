"""Synthetic worlds: the demo's AudioSet- and TAU-format data, and the known-answer world with its report."""
