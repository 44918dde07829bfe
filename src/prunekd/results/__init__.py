"""Stage 5, what a person reads: the tables, plots and training curves of a run, the rejected clips."""
