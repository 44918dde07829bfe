# The challenge's evaluation set (targets.<name>.evaluation): predictions of the chosen fine-tuned model in the
# submission format, with its parameters and MACs (src/prunekd/student/submission.py).


rule submission:
    input:
        models=lambda w: [f"{R}/{r}/model.pt" for r in GRID.submission_candidates(w.target, w.split, w.pick)],
        metrics=lambda w: [f"{R}/eval/{r}/metrics.json" for r in GRID.submission_candidates(w.target, w.split, w.pick)],
        manifest=f"{R}/manifests/{{target}}.tsv",
        meta=lambda w: raw_inputs([f"{TARGETS[w.target]['evaluation']['root']}/meta.csv"], False),
    output:
        predictions=report(
            f"{R}/submission/{{target}}/split{{split}}/{{pick}}/output.csv",
            caption="../report/submission.rst",
            category="Submission",
            subcategory="{target}",
            labels={"split": "{split}", "model": "{pick}"},
        ),
        info=f"{R}/submission/{{target}}/split{{split}}/{{pick}}/info.json",
    log:
        f"{R}/logs/submission/{{target}}/split{{split}}_{{pick}}.log",
    benchmark:
        f"{R}/benchmarks/submission/{{target}}/split{{split}}_{{pick}}.tsv"
    wildcard_constraints:
        pick=r"seed\d+|best",
    threads: max(1, config["training"]["num_workers"])  # the loader processes, each on a CPU of its own
    resources:
        mem_mb=mem_mb(8000),
        runtime=runtime(60),
        # how the clips are read, not what is computed: a resource, so that a change reruns nothing (IO_KEYS)
        workers=config["training"]["num_workers"],
    params:
        code=code_version("submission"),
        eval_root=lambda w: TARGETS[w.target]["evaluation"]["root"],  # not from input: absent data is left out of the DAG
        settings=lambda w: settings(
            frontend=config["frontend"],
            clip_seconds=TARGETS[w.target]["clip_seconds"],
            models=TARGETS[w.target]["evaluation"]["models"],
        ),
    shell:
        "prunekd submission --models {input.models:q} --metrics {input.metrics:q} --manifest {input.manifest:q} "
        "--eval-root {params.eval_root:q} --out {output.predictions:q} --info {output.info:q} "
        "--num-workers {resources.workers} --settings {params.settings:q} 2> {log:q}"
