if DEMO:

    rule demo_data:
        output:
            audioset=[f"{AUDIOSET}/{SUBSET_FILES[s]}" for s in SUBSET_FILES]
            + [f"{AUDIOSET}/class_labels_indices.csv"],
            tau=tau_lists(),
        params:
            code=code_version("demo-data"),
            audioset=lambda w, output: os.path.dirname(output.audioset[0]),
            tau=lambda w, output: os.path.dirname(output.tau[0]),
            settings=lambda w: settings(
                **{
                    k: v
                    for k, v in config["demo"].items()
                    if k not in ("enabled", "teacher_train_steps", "teacher_train_lr")
                },
                audioset_clip_seconds=config["data"]["audioset_clip_seconds"],
            ),
        log:
            f"{R}/logs/demo_data.log",
        benchmark:
            f"{R}/benchmarks/demo_data.tsv"
        conda:
            "../../envs/prunekd.yaml"
        shell:
            "prunekd demo-data --audioset-root {params.audioset} --tau-root {params.tau} "
            "--settings {params.settings:q} 2> {log}"


rule manifest_audioset:
    input:
        raw_inputs(audioset_lists() + [f"{AUDIOSET}/class_labels_indices.csv"]),
    output:
        manifest=f"{R}/manifests/audioset.tsv",
        rejected=f"{R}/manifests/audioset.rejected.tsv",
    params:
        code=code_version("manifest"),
        root=lambda w: AUDIOSET,  # not from input: absent real data is left out of the DAG
        settings=lambda w: settings(
            audioset_subsets=config["data"]["audioset_subsets"],
            audioset_audio_dir=config["paths"]["audioset_audio"],
            bad_audio=config["data"]["bad_audio"],
        ),
    log:
        f"{R}/logs/manifest/audioset.log",
    benchmark:
        f"{R}/benchmarks/manifest/audioset.tsv"
    resources:
        mem_mb=mem(16000),
        runtime=60,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd manifest --dataset audioset --root {params.root} --out {output.manifest} "
        "--rejected {output.rejected} --settings {params.settings:q} 2> {log}"


rule manifest_tau:
    input:
        raw_inputs(tau_lists()),
    output:
        manifest=f"{R}/manifests/tau.tsv",
        rejected=f"{R}/manifests/tau.rejected.tsv",
    params:
        code=code_version("manifest"),
        root=lambda w: TAU,
        settings=lambda w: settings(bad_audio=config["data"]["bad_audio"]),
    log:
        f"{R}/logs/manifest/tau.log",
    benchmark:
        f"{R}/benchmarks/manifest/tau.tsv"
    resources:
        mem_mb=mem(4000),
        runtime=30,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd manifest --dataset tau --root {params.root} --out {output.manifest} "
        "--rejected {output.rejected} --settings {params.settings:q} 2> {log}"
