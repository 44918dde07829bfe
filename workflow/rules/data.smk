if DEMO:

    rule demo_data:
        output:
            audioset=[f"{AUDIOSET}/{SUBSET_FILES[s]}" for s in SUBSET_FILES]
            + [f"{AUDIOSET}/class_labels_indices.csv"],
            tau=tau_lists(),
        params:
            settings=lambda w: settings(
                **{
                    k: v
                    for k, v in config["demo"].items()
                    if k not in ("enabled", "teacher_train_steps")
                },
                audioset_clip_seconds=config["data"]["audioset_clip_seconds"],
            ),
        log:
            f"{R}/logs/demo_data.log",
        benchmark:
            f"{R}/benchmarks/demo_data.tsv"
        shell:
            "{PY} demo-data --audioset-root {AUDIOSET} --tau-root {TAU} "
            "--settings {params.settings:q} 2> {log}"


rule manifest_audioset:
    input:
        raw_inputs(audioset_lists() + [f"{AUDIOSET}/class_labels_indices.csv"]),
    output:
        manifest=f"{R}/manifests/audioset.tsv",
        rejected=f"{R}/manifests/audioset.rejected.tsv",
    params:
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
        mem_mb=16000,
        runtime=60,
    shell:
        "{PY} manifest --dataset audioset --root {AUDIOSET} --out {output.manifest} "
        "--rejected {output.rejected} --settings {params.settings:q} 2> {log}"


rule manifest_tau:
    input:
        raw_inputs(tau_lists()),
    output:
        manifest=f"{R}/manifests/tau.tsv",
        rejected=f"{R}/manifests/tau.rejected.tsv",
    params:
        settings=lambda w: settings(bad_audio=config["data"]["bad_audio"]),
    log:
        f"{R}/logs/manifest/tau.log",
    benchmark:
        f"{R}/benchmarks/manifest/tau.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "{PY} manifest --dataset tau --root {TAU} --out {output.manifest} "
        "--rejected {output.rejected} --settings {params.settings:q} 2> {log}"
