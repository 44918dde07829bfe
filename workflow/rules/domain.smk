# Per target, ensemble and split: the linear domain classifier (AudioSet eval vs the split), scores for all
# of AudioSet, and per threshold the pruned set with its random control.


rule domain_classifier:
    input:
        audioset_store=f"{R}/logits/audioset.zarr",
        audioset_manifest=f"{R}/manifests/audioset.tsv",
        target_store=f"{R}/logits/{{target}}.zarr",
        target_manifest=f"{R}/manifests/{{target}}.tsv",
    output:
        classifier=f"{R}/domain/{{target}}/{{ens}}/split{{split}}/classifier.pt",
        report=report(
            f"{R}/domain/{{target}}/{{ens}}/split{{split}}/validation.json",
            caption="../report/validation.rst",
            category="Domain classifier",
            subcategory="{target}",
            labels={"ensemble": "{ens}", "split": "{split}", "figure": "validation"},
        ),
    params:
        code=code_version("domain-classifier"),
        settings=lambda w: settings(**config["domain_classifier"], members=ENSEMBLES[w.ens]),
    log:
        f"{R}/logs/domain_classifier/{{target}}/{{ens}}/split{{split}}.log",
    benchmark:
        f"{R}/benchmarks/domain_classifier/{{target}}/{{ens}}/split{{split}}.tsv"
    threads: 2
    resources:
        mem_mb=mem(8000),
        runtime=60,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd domain-classifier --audioset-store {input.audioset_store} "
        "--audioset-manifest {input.audioset_manifest} --target-store {input.target_store} "
        "--target-manifest {input.target_manifest} --split {wildcards.split} --out {output.classifier} "
        "--report {output.report} --settings {params.settings:q} 2> {log}"


rule score:
    input:
        audioset_store=f"{R}/logits/audioset.zarr",
        audioset_manifest=f"{R}/manifests/audioset.tsv",
        classifier=f"{R}/domain/{{target}}/{{ens}}/split{{split}}/classifier.pt",
    output:
        f"{R}/domain/{{target}}/{{ens}}/split{{split}}/scores.npy",
    params:
        code=code_version("score"),
        settings=lambda w: settings(members=ENSEMBLES[w.ens]),
    log:
        f"{R}/logs/score/{{target}}/{{ens}}/split{{split}}.log",
    benchmark:
        f"{R}/benchmarks/score/{{target}}/{{ens}}/split{{split}}.tsv"
    threads: 2
    resources:
        mem_mb=mem(4000),
        runtime=30,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd score --audioset-store {input.audioset_store} --audioset-manifest {input.audioset_manifest} "
        "--classifier {input.classifier} --out {output} --settings {params.settings:q} 2> {log}"


rule score_histogram:
    # Its own rule: adding a threshold redraws the plot but never rescores (and so never reprunes).
    input:
        audioset_store=f"{R}/logits/audioset.zarr",
        audioset_manifest=f"{R}/manifests/audioset.tsv",
        scores=f"{R}/domain/{{target}}/{{ens}}/split{{split}}/scores.npy",
    output:
        report(
            f"{R}/domain/{{target}}/{{ens}}/split{{split}}/score_histogram.png",
            caption="../report/histogram.rst",
            category="Domain classifier",
            subcategory="{target}",
            labels={"ensemble": "{ens}", "split": "{split}", "figure": "score histogram"},
        ),
    params:
        code=code_version("histogram"),
        thresholds=lambda w: " ".join(fmt_thr(t) for t in config["grid"]["thresholds"]),
        title=lambda w: f"{w.target} split {w.split}, ensemble {w.ens}",
    log:
        f"{R}/logs/score_histogram/{{target}}/{{ens}}/split{{split}}.log",
    benchmark:
        f"{R}/benchmarks/score_histogram/{{target}}/{{ens}}/split{{split}}.tsv"
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd histogram --audioset-store {input.audioset_store} --audioset-manifest {input.audioset_manifest} "
        "--scores {input.scores} --title {params.title:q} --thresholds {params.thresholds} "
        "--out {output} 2> {log}"


rule prune:
    input:
        audioset_store=f"{R}/logits/audioset.zarr",
        audioset_manifest=f"{R}/manifests/audioset.tsv",
        scores=f"{R}/domain/{{target}}/{{ens}}/split{{split}}/scores.npy",
    output:
        kept=f"{R}/prune/{{target}}/{{ens}}/split{{split}}/thr{{thr}}/kept.tsv",
        stats=f"{R}/prune/{{target}}/{{ens}}/split{{split}}/thr{{thr}}/stats.json",
    params:
        code=code_version("prune"),
        key=lambda w: json.dumps({"target": w.target, "ensemble": w.ens, "split": w.split}),
    log:
        f"{R}/logs/prune/{{target}}/{{ens}}/split{{split}}_thr{{thr}}.log",
    benchmark:
        f"{R}/benchmarks/prune/{{target}}/{{ens}}/split{{split}}_thr{{thr}}.tsv"
    resources:
        mem_mb=mem(4000),
        runtime=15,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd prune --audioset-store {input.audioset_store} --audioset-manifest {input.audioset_manifest} "
        "--scores {input.scores} --key {params.key:q} --threshold {wildcards.thr} "
        "--out {output.kept} --stats {output.stats} 2> {log}"


rule random_subset:
    # The control: as many AudioSet training clips as the pruned set holds, drawn at random (seeded by
    # controls.seed and the pruned set's name, so every pruned set gets its own reproducible draw).
    input:
        audioset_store=f"{R}/logits/audioset.zarr",
        audioset_manifest=f"{R}/manifests/audioset.tsv",
        kept=f"{R}/prune/{{target}}/{{ens}}/split{{split}}/thr{{thr}}/kept.tsv",
    output:
        f"{R}/prune/{{target}}/{{ens}}/split{{split}}/thr{{thr}}/random.tsv",
    params:
        code=code_version("random-subset"),
        seed=config["controls"]["seed"],
        name=lambda w: f"{w.target}/{w.ens}/split{w.split}/thr{w.thr}",
    log:
        f"{R}/logs/random_subset/{{target}}/{{ens}}/split{{split}}_thr{{thr}}.log",
    benchmark:
        f"{R}/benchmarks/random_subset/{{target}}/{{ens}}/split{{split}}_thr{{thr}}.tsv"
    resources:
        mem_mb=mem(4000),
        runtime=15,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd random-subset --audioset-store {input.audioset_store} --audioset-manifest {input.audioset_manifest} "
        "--like {input.kept} --seed {params.seed} --name {params.name} --out {output} 2> {log}"


rule full_set:
    # The other control: every AudioSet training clip with logits, for a distillation without pruning.
    input:
        audioset_store=f"{R}/logits/audioset.zarr",
        audioset_manifest=f"{R}/manifests/audioset.tsv",
    output:
        f"{R}/prune/full.tsv",
    params:
        code=code_version("full-set"),
    log:
        f"{R}/logs/full_set.log",
    benchmark:
        f"{R}/benchmarks/full_set.tsv"
    resources:
        mem_mb=mem(4000),
        runtime=15,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd full-set --audioset-store {input.audioset_store} --audioset-manifest {input.audioset_manifest} "
        "--out {output} 2> {log}"
