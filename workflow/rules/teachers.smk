if DEMO:

    rule demo_teacher:
        # Demo only: a shrunk PaSST trained briefly on the pool's labels, saved like a release checkpoint.
        input:
            manifest=f"{R}/manifests/audioset.tsv",
        output:
            f"{WEIGHTS}/{{ckpt}}",
        log:
            f"{R}/logs/demo_teacher/{{ckpt}}.log",
        benchmark:
            f"{R}/benchmarks/demo_teacher/{{ckpt}}.tsv"
        params:
            code=code_version("demo-teacher"),
            member=lambda w: {f: m for m, f in CKPT_FILES.items()}[w.ckpt],
            settings=lambda w: settings(
                architecture=config["teachers"]["architecture"],
                demo_train_steps=config["demo"]["teacher_train_steps"],
                demo_train_lr=config["demo"]["teacher_train_lr"],
                seed=config["demo"]["seed"],
                audioset_clip_seconds=config["data"]["audioset_clip_seconds"],
            ),
        shell:
            "prunekd demo-teacher --member {params.member:q} --manifest {input.manifest:q} --out {output:q} "
            "--settings {params.settings:q} 2> {log:q}"

else:

    localrules:
        download_teachers,

    rule download_teachers:
        # Runs where there is network (a login node); compute jobs then load from the local folder.
        output:
            weight_files(),
        log:
            f"{R}/logs/download_teachers.log",
        benchmark:
            f"{R}/benchmarks/download_teachers.tsv"
        params:
            code=code_version("download-teachers"),
            weights_dir=lambda w, output: os.path.dirname(output[0]),
            members=MEMBERS,
        shell:
            "prunekd download-teachers --weights-dir {params.weights_dir:q} --members {params.members:q} 2> {log:q}"


rule teacher_logits:
    input:
        manifest=f"{R}/manifests/{{dataset}}.tsv",
        weights=weight_files(),
    output:
        directory(f"{R}/logits/{{dataset}}/shards/{{shard}}.zarr"),
    log:
        f"{R}/logs/teacher_logits/{{dataset}}/{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/teacher_logits/{{dataset}}/{{shard}}.tsv"
    threads: 8
    resources:
        mem_mb=mem_mb(4000, per_thread=True),  # mostly the decoding workers
        runtime=runtime(240),
        gpu=1,
        # how the clips are read, not what is computed: a resource, so that a change reruns nothing (IO_KEYS)
        workers=config["teachers"]["num_workers"],
    params:
        code=code_version("teacher-logits"),
        settings=lambda w: teacher_settings(w.dataset),
        shard=lambda w: int(w.shard),
        weights_dir=lambda w, input: os.path.dirname(input.weights[0]),
    shell:
        "prunekd teacher-logits --dataset {wildcards.dataset} --manifest {input.manifest:q} "
        "--shard {params.shard} --weights-dir {params.weights_dir:q} --out {output:q} "
        "--num-workers {resources.workers} --settings {params.settings:q} 2> {log:q}"


rule gather_logits:
    input:
        manifest=f"{R}/manifests/{{dataset}}.tsv",
        rejected=f"{R}/manifests/{{dataset}}.rejected.tsv",
        shards=lambda w: expand(f"{R}/logits/{w.dataset}/shards/{{shard}}.zarr", shard=shards(w.dataset)),
        weights=weight_files(),
    output:
        store=directory(f"{R}/logits/{{dataset}}.zarr"),
        rejected=f"{R}/logits/{{dataset}}.rejected.tsv",
    log:
        f"{R}/logs/gather_logits/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/gather_logits/{{dataset}}.tsv"
    resources:
        mem_mb=mem_mb(16000),
        runtime=runtime(240),
    params:
        code=code_version("gather"),
        settings=lambda w: teacher_settings(w.dataset),
        bad_audio=config["data"]["bad_audio"],
        weights_dir=lambda w, input: os.path.dirname(input.weights[0]),
    shell:
        "prunekd gather --dataset {wildcards.dataset} --manifest {input.manifest:q} --rejected {input.rejected:q} "
        "--shards {input.shards:q} --weights-dir {params.weights_dir:q} --out {output.store:q} "
        "--rejected-out {output.rejected:q} --bad-audio {params.bad_audio:q} --settings {params.settings:q} 2> {log:q}"
