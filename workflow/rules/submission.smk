# The challenge's evaluation set (targets.<name>.evaluation): predictions of the chosen fine-tuned model in the
# submission format, with its parameters and MACs (src/prunekd/submission.py).


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
    if pick == "best":
        return [f"finetune/{target}/all/split{split}/pruned_thr{t}/seed{k}" for t in thrs for k in config["grid"]["seeds"]]
    thr = fmt_thr(config["grid"]["threshold"])
    if thr not in thrs:
        raise ValueError(f"targets.{target}.evaluation.models: per_seed submits the pruned set at grid.threshold {thr}, "
                         f"which split {split} does not have (its thresholds: {thrs}); use models: best")
    return [f"finetune/{target}/all/split{split}/pruned_thr{thr}/{pick}"]


def submission_outputs():
    out = []
    for target in TARGETS:
        for s in splits(target):
            for pick in submission_picks(target):
                submission_candidates(target, s, pick)  # a grid without the submitted model fails here, at DAG time
                out += [f"{R}/submission/{target}/split{s}/{pick}/{f}" for f in ("output.csv", "info.json")]
    return out


rule submission:
    input:
        models=lambda w: [f"{R}/{r}/model.pt" for r in submission_candidates(w.target, w.split, w.pick)],
        metrics=lambda w: [f"{R}/eval/{r}/metrics.json" for r in submission_candidates(w.target, w.split, w.pick)],
        manifest=f"{R}/manifests/{{target}}.tsv",
        meta=lambda w: raw_inputs([f"{evaluation_set(w.target)['root']}/meta.csv"], False),
    output:
        predictions=report(
            f"{R}/submission/{{target}}/split{{split}}/{{pick}}/output.csv",
            caption="../report/submission.rst",
            category="Submission",
            subcategory="{target}",
            labels={"split": "{split}", "model": "{pick}"},
        ),
        info=f"{R}/submission/{{target}}/split{{split}}/{{pick}}/info.json",
    wildcard_constraints:
        pick=r"seed\d+|best",
    params:
        code=code_version("submission"),
        eval_root=lambda w: evaluation_set(w.target)["root"],  # not from input: absent data is left out of the DAG
        settings=lambda w: settings(
            frontend=config["frontend"],
            clip_seconds=TARGETS[w.target]["clip_seconds"],
            models=evaluation_set(w.target)["models"],
            num_workers=0 if DEMO else 4,
        ),
    log:
        f"{R}/logs/submission/{{target}}/split{{split}}_{{pick}}.log",
    benchmark:
        f"{R}/benchmarks/submission/{{target}}/split{{split}}_{{pick}}.tsv"
    resources:
        mem_mb=mem(8000),
        runtime=60,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd submission --models {input.models} --metrics {input.metrics} --manifest {input.manifest} "
        "--eval-root {params.eval_root} --out {output.predictions} --info {output.info} "
        "--settings {params.settings:q} 2> {log}"
