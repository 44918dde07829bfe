# Per target, ensemble and split: the linear domain classifier (AudioSet eval vs the split), scores for all
# of AudioSet, and per threshold the pruned set with its random control.

DOMAIN = f"{R}/domain/{{target}}/{{ensemble}}/split{{split}}"  # classifier, scores, histogram
PRUNED = f"{R}/prune/{{target}}/{{ensemble}}/split{{split}}/thr{{threshold}}"  # a pruned set and its random control


rule domain_classifier:
    input:
        audioset_store=f"{R}/logits/audioset.zarr",
        audioset_manifest=f"{R}/manifests/audioset.tsv",
        target_store=f"{R}/logits/{{target}}.zarr",
        target_manifest=f"{R}/manifests/{{target}}.tsv",
    output:
        classifier=f"{DOMAIN}/classifier.pt",
        report=report(
            f"{DOMAIN}/validation.json",
            caption="../report/validation.rst",
            category="Domain classifier",
            subcategory="{target}",
            labels={"ensemble": "{ensemble}", "split": "{split}", "figure": "validation"},
        ),
    log:
        f"{R}/logs/domain_classifier/{{target}}/{{ensemble}}/split{{split}}.log",
    benchmark:
        f"{R}/benchmarks/domain_classifier/{{target}}/{{ensemble}}/split{{split}}.tsv"
    priority: FIRST
    threads: 2
    resources:
        mem_mb=mem_mb(8000),
        runtime=runtime(60),
    params:
        code=code_version("domain-classifier"),
        settings=lambda w: settings(**config["domain_classifier"], members=ENSEMBLES[w.ensemble]),
    shell:
        "prunekd domain-classifier --audioset-store {input.audioset_store:q} "
        "--audioset-manifest {input.audioset_manifest:q} --target-store {input.target_store:q} "
        "--target-manifest {input.target_manifest:q} --split {wildcards.split} --out {output.classifier:q} "
        "--report {output.report:q} --settings {params.settings:q} 2> {log:q}"


rule score:
    input:
        audioset_store=f"{R}/logits/audioset.zarr",
        audioset_manifest=f"{R}/manifests/audioset.tsv",
        classifier=f"{DOMAIN}/classifier.pt",
    output:
        f"{DOMAIN}/scores.npy",
    log:
        f"{R}/logs/score/{{target}}/{{ensemble}}/split{{split}}.log",
    benchmark:
        f"{R}/benchmarks/score/{{target}}/{{ensemble}}/split{{split}}.tsv"
    priority: FIRST
    threads: 2
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime(30),
    params:
        code=code_version("score"),
        settings=lambda w: settings(members=ENSEMBLES[w.ensemble]),
    shell:
        "prunekd score --audioset-store {input.audioset_store:q} --audioset-manifest {input.audioset_manifest:q} "
        "--classifier {input.classifier:q} --out {output:q} --settings {params.settings:q} 2> {log:q}"


rule score_histogram:
    # Its own rule: adding a threshold redraws the plot but never rescores (and so never reprunes).
    input:
        audioset_store=f"{R}/logits/audioset.zarr",
        audioset_manifest=f"{R}/manifests/audioset.tsv",
        scores=f"{DOMAIN}/scores.npy",
    output:
        report(
            f"{DOMAIN}/score_histogram.png",
            caption="../report/histogram.rst",
            category="Domain classifier",
            subcategory="{target}",
            labels={"ensemble": "{ensemble}", "split": "{split}", "figure": "score histogram"},
        ),
    log:
        f"{R}/logs/score_histogram/{{target}}/{{ensemble}}/split{{split}}.log",
    benchmark:
        f"{R}/benchmarks/score_histogram/{{target}}/{{ensemble}}/split{{split}}.tsv"
    params:
        code=code_version("histogram"),
        thresholds=lambda w: " ".join(threshold_label(t) for t in config["grid"]["thresholds"]),
        title=lambda w: f"{w.target} split {w.split}, ensemble {w.ensemble}",
    shell:
        "prunekd histogram --audioset-store {input.audioset_store:q} --audioset-manifest {input.audioset_manifest:q} "
        "--scores {input.scores:q} --title {params.title:q} --thresholds {params.thresholds} "
        "--out {output:q} 2> {log:q}"


rule prune:
    input:
        audioset_store=f"{R}/logits/audioset.zarr",
        audioset_manifest=f"{R}/manifests/audioset.tsv",
        scores=f"{DOMAIN}/scores.npy",
    output:
        kept=f"{PRUNED}/kept.tsv",
        stats=f"{PRUNED}/stats.json",
    log:
        f"{R}/logs/prune/{{target}}/{{ensemble}}/split{{split}}_thr{{threshold}}.log",
    benchmark:
        f"{R}/benchmarks/prune/{{target}}/{{ensemble}}/split{{split}}_thr{{threshold}}.tsv"
    priority: FIRST
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime(15),
    params:
        code=code_version("prune"),
        key=lambda w: json.dumps({"target": w.target, "ensemble": w.ensemble, "split": w.split}),
    shell:
        "prunekd prune --audioset-store {input.audioset_store:q} --audioset-manifest {input.audioset_manifest:q} "
        "--scores {input.scores:q} --key {params.key:q} --threshold {wildcards.threshold} "
        "--out {output.kept:q} --stats {output.stats:q} 2> {log:q}"


rule random_subset:
    # The control: as many AudioSet training clips as the pruned set holds, drawn at random (seeded by
    # controls.seed and the pruned set's name, so every pruned set gets its own reproducible draw).
    input:
        audioset_store=f"{R}/logits/audioset.zarr",
        audioset_manifest=f"{R}/manifests/audioset.tsv",
        kept=f"{PRUNED}/kept.tsv",
    output:
        f"{PRUNED}/random.tsv",
    log:
        f"{R}/logs/random_subset/{{target}}/{{ensemble}}/split{{split}}_thr{{threshold}}.log",
    benchmark:
        f"{R}/benchmarks/random_subset/{{target}}/{{ensemble}}/split{{split}}_thr{{threshold}}.tsv"
    priority: FIRST
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime(15),
    params:
        code=code_version("random-subset"),
        seed=config["controls"]["seed"],
        name=lambda w: f"{w.target}/{w.ensemble}/split{w.split}/thr{w.threshold}",
    shell:
        "prunekd random-subset --audioset-store {input.audioset_store:q} --audioset-manifest {input.audioset_manifest:q} "
        "--like {input.kept:q} --seed {params.seed} --name {params.name:q} --out {output:q} 2> {log:q}"


rule full_set:
    # The other control: every AudioSet training clip with logits, for a distillation without pruning.
    input:
        audioset_store=f"{R}/logits/audioset.zarr",
        audioset_manifest=f"{R}/manifests/audioset.tsv",
    output:
        f"{R}/prune/full.tsv",
    log:
        f"{R}/logs/full_set.log",
    benchmark:
        f"{R}/benchmarks/full_set.tsv"
    priority: FIRST
    resources:
        mem_mb=mem_mb(4000),
        runtime=runtime(15),
    params:
        code=code_version("full-set"),
    shell:
        "prunekd full-set --audioset-store {input.audioset_store:q} --audioset-manifest {input.audioset_manifest:q} "
        "--out {output:q} 2> {log:q}"


rule enrichment:
    # What a pruned set contains: every AudioSet class's share in it against all training clips (labels and
    # teachers), the classifier's weights by class, the random control's distance in class mix.
    input:
        audioset_store=f"{R}/logits/audioset.zarr",
        audioset_manifest=f"{R}/manifests/audioset.tsv",
        kept=f"{PRUNED}/kept.tsv",
        random=lambda w: (
            [f"{R}/prune/{w.target}/{w.ensemble}/split{w.split}/thr{w.threshold}/random.tsv"]
            if "random" in selections(w.ensemble)
            else []
        ),
        classifier=f"{DOMAIN}/classifier.pt",
        class_labels=raw_inputs([f"{AUDIOSET}/class_labels_indices.csv"]),
    output:
        table=f"{PRUNED}/enrichment.tsv",
        summary=f"{PRUNED}/enrichment.json",
    log:
        f"{R}/logs/enrichment/{{target}}/{{ensemble}}/split{{split}}_thr{{threshold}}.log",
    benchmark:
        f"{R}/benchmarks/enrichment/{{target}}/{{ensemble}}/split{{split}}_thr{{threshold}}.tsv"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        code=code_version("enrichment"),
        key=lambda w: json.dumps(
            {"target": w.target, "ensemble": w.ensemble, "split": w.split, "threshold": float(w.threshold)}
        ),
        random=lambda w, input: shlex.join(["--random", input.random[0]]) if input.random else "",
        labels=lambda w, input: shlex.join(["--class-labels", input.class_labels[0]]) if input.class_labels else "",
    shell:
        "prunekd enrichment --audioset-store {input.audioset_store:q} --audioset-manifest {input.audioset_manifest:q} "
        "--kept {input.kept:q} {params.random} --classifier {input.classifier:q} {params.labels} --key {params.key:q} "
        "--out-table {output.table:q} --out-json {output.summary:q} 2> {log:q}"


rule select:
    # A grid.selections entry at a pruned set: another method (or feature, or budget) choosing the AudioSet clips,
    # by default as many as the pruned set keeps (docs/selections.md).
    input:
        audioset_store=f"{R}/logits/audioset.zarr",
        audioset_manifest=f"{R}/manifests/audioset.tsv",
        target_store=f"{R}/logits/{{target}}.zarr",
        target_manifest=f"{R}/manifests/{{target}}.tsv",
        like=f"{PRUNED}/kept.tsv",
    output:
        kept=f"{R}/select/{{target}}/{{ensemble}}/split{{split}}/thr{{threshold}}/{{sel}}/kept.tsv",
        stats=f"{R}/select/{{target}}/{{ensemble}}/split{{split}}/thr{{threshold}}/{{sel}}/stats.json",
    log:
        f"{R}/logs/select/{{target}}/{{ensemble}}/split{{split}}_thr{{threshold}}/{{sel}}.log",
    benchmark:
        f"{R}/benchmarks/select/{{target}}/{{ensemble}}/split{{split}}_thr{{threshold}}/{{sel}}.tsv"
    priority: FIRST
    threads: 2
    resources:
        mem_mb=mem_mb(16000),
        runtime=runtime(120),  # knn on a CPU: about 35 min for 2 M clips (docs/performance.md)
    params:
        code=code_version("select"),
        settings=lambda w: selection_settings(w.sel, w.ensemble),
        method=lambda w: GRID.selection_specs[w.sel]["method"],
        feature=lambda w: GRID.selection_specs[w.sel]["feature"],
        budget=lambda w: json.dumps(_grid.selection_budget(GRID.selection_specs[w.sel], w.threshold)),
        name=lambda w: f"{w.target}/{w.ensemble}/split{w.split}/thr{w.threshold}/{w.sel}",
    shell:
        "prunekd select --audioset-store {input.audioset_store:q} --audioset-manifest {input.audioset_manifest:q} "
        "--target-store {input.target_store:q} --target-manifest {input.target_manifest:q} --split {wildcards.split} "
        "--method {params.method:q} --feature {params.feature:q} --budget {params.budget:q} --name {params.name:q} "
        "--like {input.like:q} --out {output.kept:q} --stats {output.stats:q} --settings {params.settings:q} "
        "2> {log:q}"
