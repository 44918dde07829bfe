rule domain_classifier:
    input:
        audioset_store=f"{R}/logits/audioset.zarr",
        audioset_manifest=f"{R}/manifests/audioset.tsv",
        tau_store=f"{R}/logits/tau.zarr",
        tau_manifest=f"{R}/manifests/tau.tsv",
    output:
        classifier=f"{R}/domain/split{{split}}/classifier.pt",
        report=report(
            f"{R}/domain/split{{split}}/validation.json",
            caption="../report/validation.rst",
            category="Domain classifier",
            labels={"split": "{split}", "figure": "validation"},
        ),
    params:
        code=code_version("domain-classifier"),
        settings=lambda w: settings(**config["domain_classifier"]),
    log:
        f"{R}/logs/domain_classifier/split{{split}}.log",
    benchmark:
        f"{R}/benchmarks/domain_classifier/split{{split}}.tsv"
    threads: 2
    resources:
        mem_mb=mem(8000),
        runtime=60,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd domain-classifier --audioset-store {input.audioset_store} "
        "--audioset-manifest {input.audioset_manifest} --tau-store {input.tau_store} "
        "--tau-manifest {input.tau_manifest} --split {wildcards.split} --out {output.classifier} "
        "--report {output.report} --settings {params.settings:q} 2> {log}"


rule score:
    input:
        audioset_store=f"{R}/logits/audioset.zarr",
        audioset_manifest=f"{R}/manifests/audioset.tsv",
        classifier=f"{R}/domain/split{{split}}/classifier.pt",
    output:
        f"{R}/domain/split{{split}}/scores.npy",
    params:
        code=code_version("score"),
    log:
        f"{R}/logs/score/split{{split}}.log",
    benchmark:
        f"{R}/benchmarks/score/split{{split}}.tsv"
    threads: 2
    resources:
        mem_mb=mem(4000),
        runtime=30,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd score --audioset-store {input.audioset_store} --audioset-manifest {input.audioset_manifest} "
        "--classifier {input.classifier} --out {output} 2> {log}"


rule score_histogram:
    # Its own rule: adding a threshold redraws the plot but never rescores (and so never reprunes).
    input:
        audioset_store=f"{R}/logits/audioset.zarr",
        audioset_manifest=f"{R}/manifests/audioset.tsv",
        scores=f"{R}/domain/split{{split}}/scores.npy",
    output:
        report(
            f"{R}/domain/split{{split}}/score_histogram.png",
            caption="../report/histogram.rst",
            category="Domain classifier",
            labels={"split": "{split}", "figure": "score histogram"},
        ),
    params:
        code=code_version("histogram"),
        thresholds=lambda w: " ".join(fmt_thr(t) for t in config["grid"]["thresholds"]),
    log:
        f"{R}/logs/score_histogram/split{{split}}.log",
    benchmark:
        f"{R}/benchmarks/score_histogram/split{{split}}.tsv"
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd histogram --audioset-store {input.audioset_store} --audioset-manifest {input.audioset_manifest} "
        "--scores {input.scores} --split {wildcards.split} --thresholds {params.thresholds} "
        "--out {output} 2> {log}"


rule prune:
    input:
        audioset_store=f"{R}/logits/audioset.zarr",
        audioset_manifest=f"{R}/manifests/audioset.tsv",
        scores=f"{R}/domain/split{{split}}/scores.npy",
    output:
        kept=f"{R}/prune/split{{split}}/thr{{thr}}/kept.tsv",
        stats=f"{R}/prune/split{{split}}/thr{{thr}}/stats.json",
    params:
        code=code_version("prune"),
    log:
        f"{R}/logs/prune/split{{split}}_thr{{thr}}.log",
    benchmark:
        f"{R}/benchmarks/prune/split{{split}}_thr{{thr}}.tsv"
    resources:
        mem_mb=mem(4000),
        runtime=15,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd prune --audioset-store {input.audioset_store} --audioset-manifest {input.audioset_manifest} "
        "--scores {input.scores} --split {wildcards.split} --threshold {wildcards.thr} "
        "--out {output.kept} --stats {output.stats} 2> {log}"
