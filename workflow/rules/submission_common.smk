# Which models a submission chooses from (targets.<name>.evaluation); the rule is in submission.smk.


def evaluation_set(target):
    return TARGETS[target].get("evaluation")


def submission_picks(target):
    """per_seed: one submission per seed (seed<k>); best: one per split (best)."""
    ev = evaluation_set(target)
    if not ev:
        return []
    return ["best"] if ev["models"] == "best" else [f"seed{k}" for k in config["grid"]["seeds"]]


def submission_candidates(target, split, pick):
    """Evaluated runs a submission chooses from: the method's fine-tunings (report ensemble, pruned sets)."""
    thrs = [t for s, t in grid_pairs(target) if s == split]
    method = dict(target=target, ensemble="all", split=split, selection="pruned")
    if pick == "best":
        return [model_name({**method, "threshold": t, "seed": k}) for t in thrs for k in config["grid"]["seeds"]]
    thr = threshold_label(config["grid"]["threshold"])
    if thr not in thrs:
        raise ValueError(
            f"targets.{target}.evaluation.models: per_seed submits the pruned set at grid.threshold {thr}, "
            f"which split {split} does not have (its thresholds: {thrs}); use models: best"
        )
    return [model_name({**method, "threshold": thr, "seed": pick.removeprefix("seed")})]


def submission_outputs():
    out = []
    for target in TARGETS:
        for s in splits(target):
            for pick in submission_picks(target):
                submission_candidates(target, s, pick)  # a grid without the submitted model fails here, at DAG time
                out += [f"{R}/submission/{target}/split{s}/{pick}/{f}" for f in ("output.csv", "info.json")]
    return out
