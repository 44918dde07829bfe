# Distillation on a pruned set (or a control), fine-tuning of the student on a split, and the baseline
# trained from scratch. Memory requests grow with the threads, so that the demo's one-thread jobs ask for little.


rule pack_audio:
    # AudioSet training clips decoded once into int16 Zarr, per row block: every pruned set, any split or
    # threshold, reads from the same packed stores (distillation.audio_input: packed).
    input:
        manifest=f"{R}/manifests/audioset.tsv",
    output:
        directory(f"{R}/packed/audioset/{{shard}}.zarr"),
    log:
        f"{R}/logs/pack_audio/{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/pack_audio/{{shard}}.tsv"
    priority: FIRST
    threads: 8
    resources:
        mem_mb=mem_mb(1000, per_thread=True),
        runtime=runtime(240),
    params:
        code=code_version("pack-audio"),
        settings=lambda w: settings(
            shard_size=config["teachers"]["shard_size"],
            subsets=_layouts.TRAIN_SUBSETS,
            sample_rate=config["frontend"]["sample_rate"],
            clip_seconds=config["data"]["audioset_clip_seconds"],
        ),
    shell:
        "prunekd pack-audio --manifest {input.manifest:q} --shard {wildcards.shard} --out {output:q} "
        "--threads {threads} --settings {params.settings:q} 2> {log:q}"


rule packed_list:
    # The packed stores, one per line: the one input by which a distillation waits for all of them.
    input:
        PACKED_STORES,
    output:
        PACKED_LIST,
    log:
        f"{R}/logs/packed_list.log",
    benchmark:
        f"{R}/benchmarks/packed_list.tsv"
    priority: FIRST
    localrule: True
    shell:
        "prunekd packed-list {input:q} --out {output:q} 2> {log:q}"


rule distill:
    # One rule for every AudioSet subset a student is distilled on (TRAINSETS, workflow/rules/grid.smk):
    # a pruned set, its random control ({target}/{ensemble}/split{split}/random/thr{threshold}), the pruned set
    # with shuffled teacher targets (.../shuffled/thr{threshold}) or all of AudioSet (full/{ensemble}); with
    # grid.seeded_distillation each of these once per seed (.../seed{seed}).
    input:
        store=f"{R}/logits/audioset.zarr",
        manifest=f"{R}/manifests/audioset.tsv",
        kept=selection_list,
        packed=PACKED_INPUT,
    output:
        model=f"{R}/distill/{{trainset}}/student.pt",
        curve=f"{R}/distill/{{trainset}}/curve.tsv",  # plotted for the report by summarise
    log:
        f"{R}/logs/distill/{{trainset}}.log",
    benchmark:
        f"{R}/benchmarks/distill/{{trainset}}.tsv"
    priority: FIRST
    threads: 8
    resources:
        mem_mb=mem_mb(4000, per_thread=True),
        runtime=720,  # resumes from its checkpoint: a retry needs no more time (config `retry`)
        gpu=1,
        # how the clips are read, not what is computed: a resource, so that a change reruns nothing (IO_KEYS)
        workers=config["distillation"]["num_workers"],
        staging=config["distillation"]["staging"],
    params:
        code=code_version("distill"),
        settings=lambda w: settings(
            distillation=distill_settings(w.trainset),
            student=config["student"],
            frontend=config["frontend"],
            clip_seconds=config["data"]["audioset_clip_seconds"],
            members=ENSEMBLES[TRAINSETS[w.trainset]["ensemble"]],
        ),
        ckpt=f"{R}/distill/{{trainset}}/checkpoints",
        packed=PACKED_ARGS,
    shell:
        "prunekd distill --store {input.store:q} --manifest {input.manifest:q} --kept {input.kept:q} "
        "--out {output.model:q} --curve {output.curve:q} --checkpoint-dir {params.ckpt:q} {params.packed} "
        "--num-workers {resources.workers} --staging {resources.staging} "
        "--stage-dir {resources.tmpdir:q} --settings {params.settings:q} 2> {log:q}"


rule decode_target:
    # A target's training and test clips decoded and resampled once into float32 (src/prunekd/data/decoded.py):
    # every fine-tuning, baseline and evaluation of the target reads them from there.
    input:
        manifest=f"{R}/manifests/{{target}}.tsv",
    output:
        directory(f"{R}/decoded/{{target}}"),
    log:
        f"{R}/logs/decode_target/{{target}}.log",
    benchmark:
        f"{R}/benchmarks/decode_target/{{target}}.tsv"
    threads: 8
    resources:
        mem_mb=mem_mb(1000, per_thread=True),
        runtime=runtime(240),
    params:
        code=code_version("decode-target"),
        settings=lambda w: settings(
            sample_rate=config["frontend"]["sample_rate"], clip_seconds=TARGETS[w.target]["clip_seconds"]
        ),
    shell:
        "prunekd decode-target --manifest {input.manifest:q} --out {output:q} --threads {threads} "
        "--settings {params.settings:q} 2> {log:q}"


rule finetune:
    # A distilled student fine-tuned on a split: model = finetune/{target}/{ensemble}/split{split}/
    # {selection}/thr{threshold} or full/seed{seed} (MODELS, workflow/rules/grid.smk).
    input:
        unpack(finetune_inputs),  # decoded, student: one function, one call per job (the manifest: target_manifest)
    output:
        model=f"{R}/{{model}}/model.pt",
        curve=f"{R}/{{model}}/curve.tsv",
    log:
        f"{R}/logs/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/{{model}}.tsv"
    wildcard_constraints:
        model=_alternatives(FINETUNED),
    threads: 4  # the host thread launching the steps and torch's intra-op threads: the clips are decoded already
    resources:
        # the split read from the decoded store: 17.9 GB at float32 for split 100, in host memory where the GPU
        # lacks room; per thread so that the demo's one-thread jobs ask for little
        mem_mb=mem_mb(6000, per_thread=True),
        runtime=480,
        gpu=1,
        # how the clips are read, not what is computed: a resource, so that a change reruns nothing (IO_KEYS)
        workers=config["training"]["num_workers"],
    params:
        code=code_version("finetune"),
        settings=lambda w: settings(
            training=training_settings(
                "epochs_baseline" if MODELS[w.model]["selection"] == "baseline" else "epochs_finetune",
                MODELS[w.model]["target"],
            ),
            student=config["student"],
            frontend=config["frontend"],
        ),
        run=lambda w: finetune_args(w.model),  # --manifest, --split, --seed and --init (a distilled student)
        ckpt=f"{R}/{{model}}/checkpoints",
    shell:
        "prunekd finetune {params.run} "
        "--out {output.model:q} --curve {output.curve:q} --checkpoint-dir {params.ckpt:q} --decoded {input.decoded:q} "
        "--num-workers {resources.workers} --settings {params.settings:q} 2> {log:q}"


use rule finetune as baseline with:
    # The same recipe from scratch: model = baseline/{target}/split{split}/seed{seed}.
    input:
        unpack(finetune_inputs),  # decoded
    wildcard_constraints:
        model=_alternatives(BASELINES),
    resources:
        mem_mb=mem_mb(6000, per_thread=True),
        runtime=600,
        gpu=1,
        workers=config["training"]["num_workers"],
