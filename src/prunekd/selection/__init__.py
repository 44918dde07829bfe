"""Stage 3, which AudioSet clips a student is distilled on: the domain classifier, its scores and pruned sets, the
random and full-set controls, what a pruned set contains."""
