# The challenge's evaluation set (targets.<name>.evaluation): predictions of the chosen fine-tuned model in the
# submission format, with its parameters and MACs (src/prunekd/student/submission.py); then the DCASE package of
# every split with its meta file (src/prunekd/student/package.py).


rule submission:
    input:
        models=lambda w: [f"{R}/{r}/model.pt" for r in GRID.submission_candidates(w.target, w.split, w.pick)],
        metrics=lambda w: [f"{R}/eval/{r}/metrics.json" for r in GRID.submission_candidates(w.target, w.split, w.pick)],
        manifest=f"{R}/manifests/{{target}}.tsv",
        meta=lambda w: raw_inputs(
            [f"{TARGETS[w.target]['evaluation']['root']}/meta.csv"], w.target in PLAN.demo_evaluations()
        ),
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
        runtime=runtime(120),  # the whole evaluation set through a float16 student (docs/performance.md)
        # how the clips are read, not what is computed: a resource, so that a change reruns nothing (IO_KEYS)
        workers=config["training"]["num_workers"],
    params:
        code=code_version("submission"),
        eval_root=lambda w: TARGETS[w.target]["evaluation"]["root"],  # not from input: absent data is left out of the DAG
        settings=lambda w: settings(
            frontend=config["frontend"],
            clip_seconds=TARGETS[w.target]["clip_seconds"],
            models=TARGETS[w.target]["evaluation"]["models"],
            undecodable=config["submission"]["undecodable"],
        ),
    shell:
        "prunekd submission --models {input.models:q} --metrics {input.metrics:q} --manifest {input.manifest:q} "
        "--eval-root {params.eval_root:q} --out {output.predictions:q} --info {output.info:q} "
        "--num-workers {resources.workers} --settings {params.settings:q} 2> {log:q}"


# Seconds of zipping and checking: on the machine that runs Snakemake.
localrules:
    submission_package,


rule submission_package:
    input:
        outputs=lambda w: [f"{R}/submission/{t}/split{s}/{p}/output.csv" for t, s, p in package_parts()],
        infos=lambda w: [f"{R}/submission/{t}/split{s}/{p}/info.json" for t, s, p in package_parts()],
        audioset_manifest=f"{R}/manifests/audioset.tsv",
    output:
        outputs=[f"{R}/submission/task1/{{label}}/{{label}}.output.split_{s}.csv" for s in package_splits()],
        meta=report(
            f"{R}/submission/task1/{{label}}/{{label}}.meta.yaml",
            caption="../report/submission_package.rst",
            category="Submission",
            subcategory="package",
        ),
        zip=f"{R}/submission/{{label}}.zip",
    log:
        f"{R}/logs/submission_package/{{label}}.log",
    benchmark:
        f"{R}/benchmarks/submission_package/{{label}}.tsv"
    wildcard_constraints:
        label=re.escape(config["submission"]["label"] or "-"),
    resources:
        mem_mb=mem_mb(2000),
        runtime=runtime(10),
    params:
        code=code_version("submission-package"),
        outputs=lambda w: [f"{s}={R}/submission/{t}/split{s}/{p}/output.csv" for t, s, p in package_parts()],
        infos=lambda w: [f"{s}={R}/submission/{t}/split{s}/{p}/info.json" for t, s, p in package_parts()],
        eval_root=lambda w: TARGETS[config["submission"]["target"]]["evaluation"]["root"],
        out_dir=lambda w, output: os.path.dirname(output.meta),
        settings=lambda w: package_settings(),
    shell:
        "prunekd submission-package --outputs {params.outputs:q} --infos {params.infos:q} "
        "--eval-root {params.eval_root:q} --audioset-manifest {input.audioset_manifest:q} "
        "--out-dir {params.out_dir:q} --out-zip {output.zip:q} --settings {params.settings:q} 2> {log:q}"
