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
        priority: FIRST
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


if RELEASED is not None:

    rule released_index:
        # Which AudioSet training clips the released files cover; the members compute the rest (compute.tsv).
        input:
            manifest=f"{R}/manifests/audioset.tsv",
            logits=RELEASED["logits"],
            index=RELEASED["index"],
        output:
            released=f"{RELEASED_DIR}/released.tsv",
            compute=f"{RELEASED_DIR}/compute.tsv",
            uncovered=f"{RELEASED_DIR}/uncovered.tsv",
            counts=report(
                f"{RELEASED_DIR}/released.json",
                caption="../report/released.rst",
                category="Data",
                labels={"figure": "released logits: coverage"},
            ),
        log:
            f"{R}/logs/released_index.log",
        benchmark:
            f"{R}/benchmarks/released_index.tsv"
        resources:
            mem_mb=16000,
            runtime=30,
        params:
            code=code_version("released-index"),
            planned=lambda w: len(teacher_shards("audioset")),
            out_dir=lambda w, output: os.path.dirname(output.counts),
            settings=lambda w: released_settings(),
        shell:
            "prunekd released-index --manifest {input.manifest:q} --planned-shards {params.planned} "
            "--out-dir {params.out_dir:q} --settings {params.settings:q} 2> {log:q}"

    rule released_agreement:
        # The members on a sample of covered clips against the released rows, and what the difference does to
        # every domain classifier's kept set (docs/usage-extensions.md says what agreement is needed).
        input:
            manifest=f"{R}/manifests/audioset.tsv",
            released=f"{RELEASED_DIR}/released.tsv",
            logits=RELEASED["logits"],
            weights=weight_files(),
            classifiers=lambda w: list(GRID.agreement_classifiers().values()),
        output:
            report(
                f"{RELEASED_DIR}/agreement.json",
                caption="../report/agreement.rst",
                category="Data",
                labels={"figure": "released logits: agreement"},
            ),
        log:
            f"{R}/logs/released_agreement.log",
        benchmark:
            f"{R}/benchmarks/released_agreement.tsv"
        threads: 8
        resources:
            mem_mb=32000,
            runtime=60,
            gpu=1,
            workers=config["teachers"]["num_workers"],
        params:
            code=code_version("released-agreement"),
            released_dir=lambda w, input: os.path.dirname(input.released),
            weights_dir=lambda w, input: os.path.dirname(input.weights[0]),
            classifiers=lambda w: shlex.join(f"{n}={p}" for n, p in GRID.agreement_classifiers().items()),
            settings=lambda w: agreement_settings(),
        shell:
            "prunekd released-agreement --manifest {input.manifest:q} --released-dir {params.released_dir:q} "
            "--weights-dir {params.weights_dir:q} --classifiers {params.classifiers} --out {output:q} "
            "--num-workers {resources.workers} --settings {params.settings:q} 2> {log:q}"


rule teacher_logits:
    input:
        manifest=f"{R}/manifests/{{dataset}}.tsv",
        weights=weight_files(),
        compute=compute_table,
    output:
        directory(f"{R}/logits/{{dataset}}/shards/{{shard}}.zarr"),
    log:
        f"{R}/logs/teacher_logits/{{dataset}}/{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/teacher_logits/{{dataset}}/{{shard}}.tsv"
    priority: FIRST
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
        compute=lambda w, input: shlex.join(["--compute-table", input.compute[0]]) if input.compute else "",
    shell:
        "prunekd teacher-logits --dataset {wildcards.dataset} --manifest {input.manifest:q} "
        "--shard {params.shard} --weights-dir {params.weights_dir:q} --out {output:q} {params.compute} "
        "--num-workers {resources.workers} --settings {params.settings:q} 2> {log:q}"


rule gather_logits:
    input:
        manifest=f"{R}/manifests/{{dataset}}.tsv",
        rejected=f"{R}/manifests/{{dataset}}.rejected.tsv",
        shards=lambda w: expand(f"{R}/logits/{w.dataset}/shards/{{shard}}.zarr", shard=teacher_shards(w.dataset)),
        weights=weight_files(),
        released=released_coverage,
    output:
        store=directory(f"{R}/logits/{{dataset}}.zarr"),
        rejected=f"{R}/logits/{{dataset}}.rejected.tsv",
    log:
        f"{R}/logs/gather_logits/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/gather_logits/{{dataset}}.tsv"
    priority: FIRST
    resources:
        mem_mb=mem_mb(16000),
        runtime=runtime(240),
    params:
        code=code_version("gather"),
        settings=lambda w: teacher_settings(w.dataset),
        bad_audio=config["data"]["bad_audio"],
        weights_dir=lambda w, input: os.path.dirname(input.weights[0]),
        released=lambda w, input: (
            shlex.join(["--released-dir", os.path.dirname(input.released[0])]) if input.released else ""
        ),
    shell:
        "prunekd gather --dataset {wildcards.dataset} --manifest {input.manifest:q} --rejected {input.rejected:q} "
        "--shards {input.shards:q} --weights-dir {params.weights_dir:q} --out {output.store:q} {params.released} "
        "--rejected-out {output.rejected:q} --bad-audio {params.bad_audio:q} --settings {params.settings:q} 2> {log:q}"
