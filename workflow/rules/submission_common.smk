# Which models a submission chooses from (targets.<name>.evaluation: src/prunekd/dag/grid.py), and what the DCASE
# package (config `submission`) holds; the rules are in submission.smk.


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


def package_target():
    """The target whose evaluation set is packaged, or None: no package (submission.target without an
    evaluation, or not among grid.targets). Refuses at DAG time what would fail after the training."""
    sub = config["submission"]
    t = sub["target"]
    if t not in TARGETS or not TARGETS[t].get("evaluation"):
        return None
    if TARGETS[t]["adapter"] != "tau2022":
        refuse_key("submission.target", f"{t} is not a TAU target (adapter tau2022): the DCASE package is for TAU")
    for key in ("label", "name", "abbreviation", "source_code"):
        if not sub[key]:
            refuse_key(
                f"submission.{key}",
                f'targets.{t}.evaluation asks for a submission: set it (docs/usage.md, "The challenge submission")',
            )
    if sum(bool(a.get("corresponding")) for a in sub["authors"]) != 1:
        refuse_key("submission.authors", "list the authors, exactly one of them with corresponding: true")
    picks = GRID.submission_picks(t)
    if len(picks) != 1:
        refuse_key(
            f"targets.{t}.evaluation.models",
            f"per_seed gives {len(picks)} models per split (grid.seeds); a package holds one: use best, or one seed",
        )
    return t


def package_splits():
    t = package_target()
    return [str(s) for s in splits(t)] if t else []


def package_parts():
    """(target, split, pick) of every per-split submission the package gathers."""
    t = package_target()
    return [(t, s, GRID.submission_picks(t)[0]) for s in package_splits()]


def package_settings():
    return settings(
        submission={k: config["submission"][k] for k in ("label", "name", "abbreviation", "authors", "source_code")},
        frontend=config["frontend"],
        distillation={k: config["distillation"][k] for k in ("iterations", "kd_lambda")},
        training={k: config["training"][k] for k in ("epochs_finetune",)},
        audioset_clip_seconds=config["data"]["audioset_clip_seconds"],
    )


def package_outputs():
    if not package_target():
        return []
    label = config["submission"]["label"]
    return [f"{R}/submission/{label}.zip"]
