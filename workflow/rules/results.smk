rule evaluate:
    # Every trained model, distilled-and-fine-tuned or baseline (MODELS, workflow/rules/grid.smk).
    input:
        unpack(target_data),  # decoded (the manifest beside it: target_manifest)
        model=f"{R}/{{model}}/model.pt",
    output:
        metrics=f"{R}/eval/{{model}}/metrics.json",
        predictions=f"{R}/eval/{{model}}/output.csv",
    log:
        f"{R}/logs/evaluate/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{model}}.tsv"
    threads: 4  # the model's CPU inference (torch's threads): the clips come decoded from decode_target
    resources:
        mem_mb=mem_mb(8000),
        runtime=runtime(60),
        # how the clips are read, not what is computed: a resource, so that a change reruns nothing (IO_KEYS)
        workers=config["training"]["num_workers"],
    params:
        code=code_version("evaluate"),
        settings=lambda w: eval_settings(MODELS[w.model]["target"]),
        run=lambda w: eval_args(w.model),  # --manifest and --key
    shell:
        "prunekd evaluate --model {input.model:q} {params.run} "
        "--out {output.metrics:q} --predictions {output.predictions:q} --decoded {input.decoded:q} "
        "--num-workers {resources.workers} --settings {params.settings:q} 2> {log:q}"


# Seconds of reading tables and drawing: on the machine that runs Snakemake, not one SLURM job each.
localrules:
    summarise,
    enrichment_summary,
    rejected_clips,


rule summarise:
    # It reads every run's curve.tsv too (GRID.training_curves), not listed: each is written by the job that writes
    # the model behind one of the metrics, so those order and rerun this job already.
    input:
        metrics=lambda w: GRID.eval_metrics(w.target),
        prune_stats=lambda w: GRID.prune_files(w.target, "stats.json"),
        validation=lambda w: GRID.validation_reports(w.target),
        enrichment=lambda w: GRID.prune_files(w.target, "enrichment.json"),
        manifest=f"{R}/manifests/{{target}}.tsv",
    output:
        tables=expand(f"{R}/summary/{{{{target}}}}/{{name}}.{{ext}}", name=SUMMARY_NAMES, ext=["csv", "md"]),
        table1=summary_report("table1.html", "table1", "Table 1"),
        table2=summary_report("table2.html", "table2", "Table 2"),
        controls=summary_report("controls.html", "controls", "Controls and ablations"),
        validation=summary_report("validation.html", "validation_table", "Domain classifier validation"),
        plot_table1=summary_report("table1.png", "plots", "table1 plot"),
        plot_table2=summary_report("table2.png", "plots", "table2 plot"),
        plot_controls=summary_report("controls.png", "controls", "controls plot"),
        plot_devices=summary_report("devices.png", "plots", "devices plot"),
        curves=report(
            directory(f"{R}/summary/{{target}}/curves"),
            patterns=["{kind}/{run}.png"],
            caption="../report/curve.rst",
            category="Training curves",
            subcategory="{target}: {kind}",
            labels={"step": "{kind}", "run": "{run}"},
        ),
    log:
        f"{R}/logs/summarise/{{target}}.log",
    benchmark:
        f"{R}/benchmarks/summarise/{{target}}.tsv"
    params:
        code=code_version("summarise"),
        outdir=lambda w, output: os.path.dirname(output.table1),
        settings=lambda w: settings(
            target=w.target,
            adapter=TARGETS[w.target]["adapter"],
            sweep_split=TARGETS[w.target]["sweep_split"],
            threshold=config["grid"]["threshold"],
            grid=GRID.spec(w.target),
        ),
    shell:
        # the inputs above come from the grid in the settings (GRID.spec): the command lists them the same way
        "prunekd summarise --manifest {input.manifest:q} --outdir {params.outdir:q} "
        "--settings {params.settings:q} 2> {log:q}"


rule enrichment_summary:
    # A target's pruned sets side by side: top classes of every set, classifier weights, change with threshold.
    input:
        json=lambda w: GRID.prune_files(w.target, "enrichment.json"),
        tables=lambda w: GRID.prune_files(w.target, "enrichment.tsv"),
    output:
        tables=expand(f"{R}/summary/{{{{target}}}}/{{name}}.{{ext}}", name=ENRICHMENT_NAMES, ext=["csv", "md"]),
        enrichment=pruned_sets_report("enrichment.html", "enrichment", "class enrichment"),
        weights=pruned_sets_report("classifier_weights.html", "classifier_weights", "classifier weights"),
        plot=pruned_sets_report("enrichment.png", "enrichment", "enrichment against threshold"),
    log:
        f"{R}/logs/enrichment_summary/{{target}}.log",
    benchmark:
        f"{R}/benchmarks/enrichment_summary/{{target}}.tsv"
    params:
        code=code_version("enrichment-summary"),
        outdir=lambda w, output: os.path.dirname(output.plot),
        settings=lambda w: settings(target=w.target, threshold=config["grid"]["threshold"], grid=GRID.spec(w.target)),
    shell:
        # the inputs above come from the grid in the settings (GRID.spec): the command lists them the same way
        "prunekd enrichment-summary --outdir {params.outdir:q} --settings {params.settings:q} 2> {log:q}"


rule rejected_clips:
    # Every clip skipped anywhere (missing, unreadable, empty, silent, non-finite), counted by reason.
    input:
        tables=expand(f"{R}/logits/{{dataset}}.rejected.tsv", dataset=["audioset", *TARGETS]),
    output:
        listing=f"{R}/summary/rejected.tsv",
        counts=f"{R}/summary/rejected_counts.csv",
        md=f"{R}/summary/rejected_counts.md",
        html=report(
            f"{R}/summary/rejected_counts.html",
            caption="../report/rejected.rst",
            category="Data",
            labels={"figure": "rejected clips"},
        ),
    log:
        f"{R}/logs/rejected_clips.log",
    benchmark:
        f"{R}/benchmarks/rejected_clips.tsv"
    params:
        code=code_version("rejected"),
        outdir=lambda w, output: os.path.dirname(output.html),
        tables=lambda w, input: shlex.join(f"{d}={t}" for d, t in zip(["audioset", *TARGETS], input.tables)),
    shell:
        "prunekd rejected --tables {params.tables} --outdir {params.outdir:q} 2> {log:q}"


if KNOWN_ANSWER:

    rule known_answer:
        # The synthetic world's answer (docs/known-answer.md): the pruned set against the truth its generator
        # wrote, and the split's accuracies per condition over the seeds. The only reader of the truth.
        input:
            truth=f"{AUDIOSET}/truth.tsv",
            audioset_store=f"{R}/logits/audioset.zarr",
            audioset_manifest=f"{R}/manifests/audioset.tsv",
            scores=f"{R}/domain/{KNOWN_ANSWER['target']}/all/split{KNOWN_ANSWER['split']}/scores.npy",
            metrics=known_answer_metrics(),
            zero_shot=f"{R}/known_answer/zero_shot.json",
        output:
            tables=[f"{R}/known_answer/table.{e}" for e in ("md", "csv")],
            verdict=f"{R}/known_answer/verdict.json",
            verdict_rst=f"{R}/known_answer/verdict.rst",  # the report's first page (workflow/report/workflow.rst)
            report_metadata=f"{R}/known_answer/report_metadata.yaml",  # --report-metadata: open on that page
            table=report(
                f"{R}/known_answer/table.html",
                caption="../report/known_answer.rst",
                category="Known answer",
                labels={"figure": "table"},
            ),
            plot=report(
                f"{R}/known_answer/plot.png",
                caption="../report/known_answer.rst",
                category="Known answer",
                labels={"figure": "plot"},
            ),
        log:
            f"{R}/logs/known_answer.log",
        benchmark:
            f"{R}/benchmarks/known_answer.tsv"
        params:
            code=code_version("known-answer"),
            outdir=lambda w, output: os.path.dirname(output.verdict),
            settings=lambda w: settings(
                **KNOWN_ANSWER,
                threshold=float(config["grid"]["threshold"]),
                world_seed=config["demo"]["seed"],
            ),
        shell:
            "prunekd known-answer --audioset-store {input.audioset_store:q} "
            "--audioset-manifest {input.audioset_manifest:q} --scores {input.scores:q} --truth {input.truth:q} "
            "--metrics {input.metrics:q} --zero-shot {input.zero_shot:q} --outdir {params.outdir:q} "
            "--settings {params.settings:q} 2> {log:q}"

    rule known_answer_zero_shot:
        # What the teachers and the distilled students know of the scenes before fine-tuning (src/prunekd/demo/zero_shot.py).
        input:
            target_store=f"{R}/logits/{KNOWN_ANSWER['target']}.zarr",
            manifest=f"{R}/manifests/{KNOWN_ANSWER['target']}.tsv",
            decoded=f"{R}/decoded/{KNOWN_ANSWER['target']}",
            students=list(known_answer_students().values()),
        output:
            f"{R}/known_answer/zero_shot.json",
        log:
            f"{R}/logs/known_answer_zero_shot.log",
        benchmark:
            f"{R}/benchmarks/known_answer_zero_shot.tsv"
        params:
            code=code_version("known-answer-zero-shot"),
            students=shlex.join(f"{n}={p}" for n, p in known_answer_students().items()),
            settings=settings(frontend=config["frontend"], clip_seconds=TARGETS[KNOWN_ANSWER["target"]]["clip_seconds"]),
        shell:
            "prunekd known-answer-zero-shot --target-store {input.target_store:q} --manifest {input.manifest:q} "
            "--decoded {input.decoded:q} --students {params.students} --out {output:q} "
            "--settings {params.settings:q} 2> {log:q}"


if GRID.selection_specs:

    rule summarise_selections:
        # The selection methods side by side (docs/selections.md): only when grid.selections lists any.
        input:
            audioset_store=f"{R}/logits/audioset.zarr",
            audioset_manifest=f"{R}/manifests/audioset.tsv",
            target_store=f"{R}/logits/{{target}}.zarr",
            target_manifest=f"{R}/manifests/{{target}}.tsv",
            metrics=lambda w: GRID.eval_metrics(w.target),
            sets=lambda w: list(GRID.selection_sets(w.target).values()),
            truth=lambda w: [f"{AUDIOSET}/truth.tsv"] if config["demo"]["enabled"] else [],
        output:
            tables=[f"{R}/summary/{{target}}/selections.{e}" for e in ("csv", "md")],
            table=report(
                f"{R}/summary/{{target}}/selections.html",
                caption="../report/selections.rst",
                category="Selections",
                subcategory="{target}",
                labels={"figure": "table"},
            ),
            plot=report(
                f"{R}/summary/{{target}}/selections.png",
                caption="../report/selections.rst",
                category="Selections",
                subcategory="{target}",
                labels={"figure": "plot"},
            ),
        log:
            f"{R}/logs/summarise_selections/{{target}}.log",
        benchmark:
            f"{R}/benchmarks/summarise_selections/{{target}}.tsv"
        threads: 2
        resources:
            mem_mb=mem_mb(12000),
            runtime=runtime(30),
        params:
            code=code_version("summarise-selections"),
            outdir=lambda w, output: os.path.dirname(output.table),
            truth=lambda w, input: f"--truth {input.truth[0]!r}" if input.truth else "",
            settings=lambda w: settings(
                target=w.target, members=ENSEMBLES["all"], proxy=config["selection"]["proxy"], grid=GRID.spec(w.target)
            ),
        shell:
            # metrics and sets above come from the grid in the settings (GRID.spec): the command lists them the same way
            "prunekd summarise-selections --audioset-store {input.audioset_store:q} "
            "--audioset-manifest {input.audioset_manifest:q} --target-store {input.target_store:q} "
            "--target-manifest {input.target_manifest:q} "
            "--outdir {params.outdir:q} {params.truth} --settings {params.settings:q} 2> {log:q}"
