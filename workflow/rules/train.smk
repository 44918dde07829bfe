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
    # One rule for every AudioSet subset a student is distilled on: a pruned set, its random control
    # ({target}/{ens}/split{split}/random_thr{thr}) or all of AudioSet (full/{ens}).
    input:
        store=f"{R}/logits/audioset.zarr",
        manifest=f"{R}/manifests/audioset.tsv",
        kept=selection_list,
        packed=packed_stores,
    output:
        model=f"{R}/distill/{{trainset}}/student.pt",
        curve=report(
            f"{R}/distill/{{trainset}}/curve.tsv",
            caption="../report/curve.rst",
            category="Training curves",
            labels={"step": "distillation", "training set": "{trainset}"},
        ),
    wildcard_constraints:
        trainset=r"full/\w+|\w+/\w+/split\w+/(?:pruned|random)_thr0\.\d+",
    params:
        code=code_version("distill"),
        settings=lambda w: settings(
            distillation=config["distillation"],
            student=config["student"],
            frontend=config["frontend"],
            clip_seconds=config["data"]["audioset_clip_seconds"],
            members=trainset_members(w),
        ),
        ckpt=lambda w: f"{R}/distill/{w.trainset}/checkpoints",
        packed=lambda w, input: f"--packed {' '.join(input.packed)}" if input.packed else "",
    log:
        f"{R}/logs/distill/{{trainset}}.log",
    benchmark:
        f"{R}/benchmarks/distill/{{trainset}}.tsv"
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
        manifest=f"{R}/manifests/{{target}}.tsv",
        student=student_for,
    output:
        model=f"{R}/finetune/{{target}}/{{ens}}/split{{split}}/{{method}}/seed{{seed}}/model.pt",
        curve=f"{R}/finetune/{{target}}/{{ens}}/split{{split}}/{{method}}/seed{{seed}}/curve.tsv",
    params:
        code=code_version("finetune"),
        settings=lambda w: settings(
            training=training_settings("epochs_finetune", w.target),
            student=config["student"],
            frontend=config["frontend"],
        ),
        ckpt=lambda w, output: os.path.join(os.path.dirname(output.model), "checkpoints"),
    log:
        f"{R}/logs/finetune/{{target}}/{{ens}}/split{{split}}/{{method}}_seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/finetune/{{target}}/{{ens}}/split{{split}}/{{method}}_seed{{seed}}.tsv"
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
        manifest=f"{R}/manifests/{{target}}.tsv",
    output:
        model=f"{R}/baseline/{{target}}/split{{split}}/seed{{seed}}/model.pt",
        curve=f"{R}/baseline/{{target}}/split{{split}}/seed{{seed}}/curve.tsv",
    params:
        code=code_version("finetune"),
        settings=lambda w: settings(
            training=training_settings("epochs_baseline", w.target),
            student=config["student"],
            frontend=config["frontend"],
        ),
        ckpt=lambda w, output: os.path.join(os.path.dirname(output.model), "checkpoints"),
    log:
        f"{R}/logs/baseline/{{target}}/split{{split}}_seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/baseline/{{target}}/split{{split}}_seed{{seed}}.tsv"
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
