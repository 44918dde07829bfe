if DEMO:

    rule demo_data:
        output:
            audioset=[f"{AUDIOSET}/{f}" for f in _layouts.SEGMENT_FILES.values()]
            + [f"{AUDIOSET}/class_labels_indices.csv"],
            truth=f"{AUDIOSET}/truth.tsv",  # which clips are target-like: read by the known-answer report only
            targets=[f for t in config["targets"] if demo_writes(t) for f in target_lists(t)],
            evaluations=[f"{root}/meta.csv" for root in PLAN.demo_evaluations().values()],
        log:
            f"{R}/logs/demo_data.log",
        benchmark:
            f"{R}/benchmarks/demo_data.tsv"
        params:
            code=code_version("demo-data"),
            audioset=lambda w, output: os.path.dirname(output.audioset[0]),
            tau=[v["root"] for t, v in config["targets"].items() if demo_writes(t) and v["adapter"] == "tau2022"],
            csv=[v["csv"] for t, v in config["targets"].items() if demo_writes(t) and v["adapter"] == "csv"],
            evaluations=list(PLAN.demo_evaluations().values()),
            settings=lambda w: settings(
                **{
                    k: v
                    for k, v in config["demo"].items()
                    if k not in ("enabled", "teacher_train_steps", "teacher_train_lr", "csv_targets")
                    and (k != "evaluation_clips" or v)  # none: the settings of the demo data before it existed
                },
                audioset_clip_seconds=config["data"]["audioset_clip_seconds"],
            ),
        shell:
            "prunekd demo-data --audioset-root {params.audioset:q} --tau-roots {params.tau:q} "
            "--csv-targets {params.csv:q} --eval-roots {params.evaluations:q} --settings {params.settings:q} 2> {log:q}"


rule manifest_audioset:
    input:
        raw_inputs(audioset_lists() + [f"{AUDIOSET}/class_labels_indices.csv"]),
    output:
        manifest=f"{R}/manifests/audioset.tsv",
        rejected=f"{R}/manifests/audioset.rejected.tsv",
    log:
        f"{R}/logs/manifest/audioset.log",
    benchmark:
        f"{R}/benchmarks/manifest/audioset.tsv"
    resources:
        mem_mb=mem_mb(16000),
        runtime=runtime(60),
    params:
        code=code_version("manifest"),
        root=lambda w: AUDIOSET,  # not from input: absent real data is left out of the DAG
        settings=lambda w: settings(
            adapter="audioset",
            audioset_subsets=config["data"]["audioset_subsets"],
            audioset_audio_dir=config["paths"]["audioset_audio"],
            bad_audio=config["data"]["bad_audio"],
            # only when set, so that existing segment-list runs keep their params (and are not rerun)
            **({"layout": "hdf5"} if AUDIOSET_LAYOUT == "hdf5" else {}),
        ),
    shell:
        "prunekd manifest --root {params.root:q} --out {output.manifest:q} "
        "--rejected {output.rejected:q} --settings {params.settings:q} 2> {log:q}"


rule manifest_target:
    # Any target: the TAU 2022 adapter or the generic CSV adapter, one manifest layout for every step after.
    input:
        lambda w: raw_inputs(target_lists(w.target), demo_writes(w.target)),
    output:
        manifest=f"{R}/manifests/{{target}}.tsv",
        rejected=f"{R}/manifests/{{target}}.rejected.tsv",
    log:
        f"{R}/logs/manifest/{{target}}.log",
    benchmark:
        f"{R}/benchmarks/manifest/{{target}}.tsv"
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime(30),
    params:
        code=code_version("manifest"),
        settings=lambda w: target_settings(w.target),
    shell:
        "prunekd manifest --out {output.manifest:q} --rejected {output.rejected:q} --settings {params.settings:q} 2> {log:q}"
