"""What the workflow reads when it builds the DAG: the grid, the plan of raw inputs and shards, the checks of a
user's config and data, the code versions. Standard library (and numpy) only: no torch at DAG time; no import of
a stage."""
