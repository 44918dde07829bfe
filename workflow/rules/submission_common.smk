# Which models a submission chooses from (targets.<name>.evaluation: src/prunekd/dag/grid.py); the rule is in
# submission.smk.


def submission_outputs():
    out = []
    for target in TARGETS:
        for s in splits(target):
            for pick in GRID.submission_picks(target):
                try:  # a grid without the submitted model fails here, at DAG time
                    GRID.submission_candidates(target, s, pick)
                except ValueError as e:  # "<key>: <problem>": named with the file that sets the key
                    refuse_key(*str(e).split(": ", 1))
                out += [f"{R}/submission/{target}/split{s}/{pick}/{f}" for f in ("output.csv", "info.json")]
    return out
