rule distill:
    input:
        store=f"{R}/logits/audioset.zarr",
        manifest=f"{R}/manifests/audioset.tsv",
        kept=f"{R}/prune/split{{split}}/thr{{thr}}/kept.tsv",
    output:
        model=f"{R}/distill/split{{split}}/thr{{thr}}/student.pt",
        curve=report(
            f"{R}/distill/split{{split}}/thr{{thr}}/curve.tsv",
            caption="../report/curve.rst",
            category="Training curves",
            labels={"step": "distillation", "split": "{split}", "threshold": "{thr}"},
        ),
    params:
        settings=lambda w: settings(
            distillation=config["distillation"],
            student=config["student"],
            frontend=config["frontend"],
            clip_seconds=config["data"]["audioset_clip_seconds"],
        ),
        ckpt=lambda w: f"{R}/distill/split{w.split}/thr{w.thr}/checkpoints",
    log:
        f"{R}/logs/distill/split{{split}}_thr{{thr}}.log",
    benchmark:
        f"{R}/benchmarks/distill/split{{split}}_thr{{thr}}.tsv"
    threads: 1 if DEMO else 8
    resources:
        mem_mb=32000,
        runtime=720,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd distill --store {input.store} --manifest {input.manifest} --kept {input.kept} "
        "--out {output.model} --curve {output.curve} --checkpoint-dir {params.ckpt} "
        "--settings {params.settings:q} 2> {log}"


rule finetune:
    input:
        manifest=f"{R}/manifests/tau.tsv",
        student=f"{R}/distill/split{{split}}/thr{{thr}}/student.pt",
    output:
        model=f"{R}/finetune/split{{split}}/thr{{thr}}/seed{{seed}}/model.pt",
        curve=f"{R}/finetune/split{{split}}/thr{{thr}}/seed{{seed}}/curve.tsv",
    params:
        settings=lambda w: settings(
            training=training_settings("epochs_finetune"),
            student=config["student"],
            frontend=config["frontend"],
        ),
        ckpt=lambda w: f"{R}/finetune/split{w.split}/thr{w.thr}/seed{w.seed}/checkpoints",
    log:
        f"{R}/logs/finetune/split{{split}}_thr{{thr}}_seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/finetune/split{{split}}_thr{{thr}}_seed{{seed}}.tsv"
    threads: 1 if DEMO else 8
    resources:
        mem_mb=16000,
        runtime=480,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd finetune --manifest {input.manifest} --split {wildcards.split} --seed {wildcards.seed} "
        "--init {input.student} --out {output.model} --curve {output.curve} --checkpoint-dir {params.ckpt} "
        "--settings {params.settings:q} 2> {log}"


rule baseline:
    input:
        manifest=f"{R}/manifests/tau.tsv",
    output:
        model=f"{R}/baseline/split{{split}}/seed{{seed}}/model.pt",
        curve=f"{R}/baseline/split{{split}}/seed{{seed}}/curve.tsv",
    params:
        settings=lambda w: settings(
            training=training_settings("epochs_baseline"),
            student=config["student"],
            frontend=config["frontend"],
        ),
        ckpt=lambda w: f"{R}/baseline/split{w.split}/seed{w.seed}/checkpoints",
    log:
        f"{R}/logs/baseline/split{{split}}_seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/baseline/split{{split}}_seed{{seed}}.tsv"
    threads: 1 if DEMO else 8
    resources:
        mem_mb=16000,
        runtime=600,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd finetune --manifest {input.manifest} --split {wildcards.split} --seed {wildcards.seed} "
        "--out {output.model} --curve {output.curve} --checkpoint-dir {params.ckpt} "
        "--settings {params.settings:q} 2> {log}"
