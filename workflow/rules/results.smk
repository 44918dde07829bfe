rule evaluate_kd:
    input:
        model=f"{R}/finetune/split{{split}}/thr{{thr}}/seed{{seed}}/model.pt",
        manifest=f"{R}/manifests/tau.tsv",
    output:
        metrics=f"{R}/eval/kd/split{{split}}/thr{{thr}}/seed{{seed}}/metrics.json",
        predictions=f"{R}/eval/kd/split{{split}}/thr{{thr}}/seed{{seed}}/output.csv",
    params:
        code=code_version("evaluate"),
        settings=lambda w: eval_settings(),
        key=lambda w: json.dumps(
            {"method": "kd", "split": int(w.split), "threshold": float(w.thr), "seed": int(w.seed)}
        ),
    log:
        f"{R}/logs/evaluate/kd_split{{split}}_thr{{thr}}_seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/kd_split{{split}}_thr{{thr}}_seed{{seed}}.tsv"
    resources:
        mem_mb=mem(8000),
        runtime=60,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd evaluate --model {input.model} --manifest {input.manifest} --key {params.key:q} "
        "--out {output.metrics} --predictions {output.predictions} --settings {params.settings:q} 2> {log}"


rule evaluate_baseline:
    input:
        model=f"{R}/baseline/split{{split}}/seed{{seed}}/model.pt",
        manifest=f"{R}/manifests/tau.tsv",
    output:
        metrics=f"{R}/eval/baseline/split{{split}}/seed{{seed}}/metrics.json",
        predictions=f"{R}/eval/baseline/split{{split}}/seed{{seed}}/output.csv",
    params:
        code=code_version("evaluate"),
        settings=lambda w: eval_settings(),
        key=lambda w: json.dumps(
            {"method": "baseline", "split": int(w.split), "threshold": None, "seed": int(w.seed)}
        ),
    log:
        f"{R}/logs/evaluate/baseline_split{{split}}_seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/baseline_split{{split}}_seed{{seed}}.tsv"
    resources:
        mem_mb=mem(8000),
        runtime=60,
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd evaluate --model {input.model} --manifest {input.manifest} --key {params.key:q} "
        "--out {output.metrics} --predictions {output.predictions} --settings {params.settings:q} 2> {log}"


rule summarise:
    input:
        metrics=kd_metrics() + baseline_metrics(),
        prune_stats=prune_stats(),
    output:
        tables=expand(f"{R}/summary/{{name}}.{{ext}}", name=["table1", "table2"], ext=["csv", "md"]),
        table1=report(
            f"{R}/summary/table1.html",
            caption="../report/table1.rst",
            category="Results",
            labels={"figure": "Table 1"},
        ),
        table2=report(
            f"{R}/summary/table2.html",
            caption="../report/table2.rst",
            category="Results",
            labels={"figure": "Table 2"},
        ),
        plot_table1=report(
            f"{R}/summary/table1.png",
            caption="../report/plots.rst",
            category="Results",
            labels={"figure": "table1 plot"},
        ),
        plot_table2=report(
            f"{R}/summary/table2.png",
            caption="../report/plots.rst",
            category="Results",
            labels={"figure": "table2 plot"},
        ),
        plot_devices=report(
            f"{R}/summary/devices.png",
            caption="../report/plots.rst",
            category="Results",
            labels={"figure": "devices plot"},
        ),
    params:
        code=code_version("summarise"),
        outdir=lambda w, output: os.path.dirname(output.table1),
        settings=lambda w: settings(
            sweep_split=config["grid"]["sweep_split"], threshold=config["grid"]["threshold"]
        ),
    log:
        f"{R}/logs/summarise.log",
    benchmark:
        f"{R}/benchmarks/summarise.tsv"
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd summarise --metrics {input.metrics} --prune-stats {input.prune_stats} "
        "--outdir {params.outdir} --settings {params.settings:q} 2> {log}"


rule rejected_clips:
    # Every clip skipped anywhere (missing, unreadable, empty, silent, non-finite), counted by reason.
    input:
        audioset=f"{R}/logits/audioset.rejected.tsv",
        tau=f"{R}/logits/tau.rejected.tsv",
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
    params:
        code=code_version("rejected"),
        outdir=lambda w, output: os.path.dirname(output.html),
    log:
        f"{R}/logs/rejected_clips.log",
    benchmark:
        f"{R}/benchmarks/rejected_clips.tsv"
    conda:
        "../../envs/prunekd.yaml"
    shell:
        "prunekd rejected --tables audioset={input.audioset} tau={input.tau} --outdir {params.outdir} 2> {log}"
