rule pack_audio:
    # AudioSet training clips decoded once into int16 Zarr, per row block: every pruned set, any split or
    # threshold, reads from the same packed stores (distillation.audio_input: packed).
    input:
        manifest=f"{R}/manifests/audioset.tsv",
    output:
        directory(f"{R}/packed/audioset/{{shard}}.zarr"),
    params:
        code=code_version("pack-audio"),
        settings=lambda w, threads: settings(
            shard_size=config["teachers"]["shard_size"],
            subsets=["balanced_train", "unbalanced_train"],
            sample_rate=config["frontend"]["sample_rate"],
            clip_seconds=config["data"]["audioset_clip_seconds"],
            num_workers=0 if threads < 2 else threads,
        ),
    log:
        f"{R}/logs/pack_audio/{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/pack_audio/{{shard}}.tsv"
    threads: 1 if DEMO else 8
    resources:
        mem_mb=mem(8000),
        runtime=240,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd pack-audio --manifest {input.manifest} --shard {wildcards.shard} --out {output} "
        "--settings {params.settings:q} 2> {log}"


rule distill:
    input:
        store=f"{R}/logits/audioset.zarr",
        manifest=f"{R}/manifests/audioset.tsv",
        kept=f"{R}/prune/split{{split}}/thr{{thr}}/kept.tsv",
        packed=packed_stores,
    output:
        model=f"{R}/distill/split{{split}}/thr{{thr}}/student.pt",
        curve=report(
            f"{R}/distill/split{{split}}/thr{{thr}}/curve.tsv",
            caption="../report/curve.rst",
            category="Training curves",
            labels={"step": "distillation", "split": "{split}", "threshold": "{thr}"},
        ),
    params:
        code=code_version("distill"),
        settings=lambda w: settings(
            distillation=config["distillation"],
            student=config["student"],
            frontend=config["frontend"],
            clip_seconds=config["data"]["audioset_clip_seconds"],
        ),
        ckpt=lambda w: f"{R}/distill/split{w.split}/thr{w.thr}/checkpoints",
        packed=lambda w, input: f"--packed {' '.join(input.packed)}" if input.packed else "",
    log:
        f"{R}/logs/distill/split{{split}}_thr{{thr}}.log",
    benchmark:
        f"{R}/benchmarks/distill/split{{split}}_thr{{thr}}.tsv"
    threads: 1 if DEMO else 8
    resources:
        mem_mb=mem(32000),
        runtime=720,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd distill --store {input.store} --manifest {input.manifest} --kept {input.kept} "
        "--out {output.model} --curve {output.curve} --checkpoint-dir {params.ckpt} {params.packed} "
        "--settings {params.settings:q} 2> {log}"


rule finetune:
    input:
        manifest=f"{R}/manifests/tau.tsv",
        student=f"{R}/distill/split{{split}}/thr{{thr}}/student.pt",
    output:
        model=f"{R}/finetune/split{{split}}/thr{{thr}}/seed{{seed}}/model.pt",
        curve=f"{R}/finetune/split{{split}}/thr{{thr}}/seed{{seed}}/curve.tsv",
    params:
        code=code_version("finetune"),
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
        mem_mb=mem(16000),
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
        code=code_version("finetune"),
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
        mem_mb=mem(16000),
        runtime=600,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd finetune --manifest {input.manifest} --split {wildcards.split} --seed {wildcards.seed} "
        "--out {output.model} --curve {output.curve} --checkpoint-dir {params.ckpt} "
        "--settings {params.settings:q} 2> {log}"
