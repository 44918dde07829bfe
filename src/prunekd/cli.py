"""`prunekd <step>`: one subcommand per pipeline step; each Snakemake rule calls one of them.

Settings come as one JSON object (`--settings`), the slice of config.yaml the step depends on, so a
changed setting reruns exactly the steps that read it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _settings(s: str) -> dict:
    try:
        return json.loads(s)
    except json.JSONDecodeError as e:
        raise SystemExit(f"--settings is not valid JSON: {e}")


def cmd_demo_data(a):
    from .checks import CheckError
    from .demo_data import make_demo_data
    try:
        make_demo_data(a.audioset_root, a.tau_roots, _settings(a.settings), a.csv_targets)
    except CheckError as e:
        raise SystemExit(f"prunekd demo-data: {e}") from None
    log(f"demo data written to {', '.join([a.audioset_root, *a.tau_roots, *a.csv_targets])}")


def cmd_manifest(a):
    from .atomic import write_table
    from .manifest import MetadataError, audioset_manifest, class_coverage_warnings, target_manifest
    s = _settings(a.settings)
    t0 = time.time()
    try:
        if s["adapter"] == "audioset":
            if not a.root:
                raise SystemExit("prunekd manifest: --root (the AudioSet folder) is needed for the audioset adapter")
            if s.get("layout") == "hdf5":  # PaSST's *_mp3.hdf files: names, labels and MP3 bytes in one file per subset
                from .audioset_hdf5 import audioset_hdf5_manifest
                man, rej = audioset_hdf5_manifest(a.root, s["audioset_subsets"])
            else:
                man, rej = audioset_manifest(a.root, s["audioset_subsets"], s.get("audioset_audio_dir") or None,
                                             bad_labels=s["bad_audio"])
        else:
            man, rej = target_manifest(s)
    except MetadataError as e:  # one line naming the file (and line), not a traceback
        raise SystemExit(f"prunekd manifest: {e}") from None
    if s["adapter"] != "audioset":
        for w in class_coverage_warnings(man):
            log(f"warning: {a.out}: {w}")
    if len(rej) and s["bad_audio"] == "fail":
        r = rej.iloc[0]
        where = f"{r['list']} line {r['line']}" if "list" in r else str(man.loc[man["row"] == r["row"], "path"].iloc[0])
        raise SystemExit(f"{where}: clip {r['id']} is {r['reason']} ({a.out}; data.bad_audio: fail); "
                         f"{len(rej)} such clips")
    write_table(a.rejected, rej)
    write_table(a.out, man)
    log(f"{a.out}: {len(man)} rows, {len(rej)} rejected, {time.time() - t0:.1f} s")


def cmd_demo_teacher(a):
    import numpy as np
    import pandas as pd
    import torch
    from .audio import AudioError, load_clip
    from .manifest import labels_multi_hot
    from .teachers import MEMBERS, train_demo_member
    s = _settings(a.settings)
    man = pd.read_csv(a.manifest, sep="\t", dtype={"labels": str}, keep_default_na=False)
    man = man[(man["status"] == "ok") & man["subset"].isin(["balanced_train", "unbalanced_train"])]
    n = int(s["audioset_clip_seconds"] * 32000)
    clips, usable = [], []
    for p in man["path"]:
        try:
            clips.append(load_clip(p, 32000, n))
            usable.append(True)
        except AudioError as e:  # the teacher pass lists these; here they are only left out
            log(f"skipped {e}")
            usable.append(False)
    wav = torch.from_numpy(np.stack(clips))
    labels = torch.from_numpy(labels_multi_hot(man["labels"][usable], 527))
    train_demo_member(a.member, MEMBERS[a.member][0], s["architecture"], wav, labels, s["demo_train_steps"],
                      s["seed"] + list(MEMBERS).index(a.member), a.out, log, lr=s["demo_train_lr"])


def cmd_download_teachers(a):
    from .teachers import download_weights
    for p in download_weights(a.members, a.weights_dir):
        log(f"have {p}")


def cmd_check_teachers(a):
    from .teachers import WeightsError, check_weights
    try:
        check_weights(a.members, a.weights_dir, json.loads(a.architecture), log)
    except WeightsError as e:
        raise SystemExit(f"prunekd check-teachers: {e}") from None


def cmd_teacher_logits(a):
    from .logits import compute_shard
    s = _settings(a.settings)
    compute_shard(a.manifest, a.dataset, a.shard, s["shard_size"], a.weights_dir, s["teachers"], s["data"], a.out, log)


def cmd_gather(a):
    from .logits import gather
    s = _settings(a.settings)
    gather(a.manifest, a.rejected, a.shards, a.dataset, s["teachers"], a.weights_dir, a.out, a.rejected_out, log,
           bad_audio=a.bad_audio)


def _split_rows(store_path, manifest_path, column, values):
    import numpy as np
    import pandas as pd
    from .store import open_store
    store = open_store(store_path)
    man = pd.read_csv(manifest_path, sep="\t", dtype=str, keep_default_na=False)
    rows = store["row"][:]
    col = man[column].to_numpy()[rows]
    return store, np.flatnonzero(np.isin(col, values))


def _training_rows(a):
    """(AudioSet store, its positions of the training clips): what is scored, pruned and drawn from."""
    return _split_rows(a.audioset_store, a.audioset_manifest, "subset", ["balanced_train", "unbalanced_train"])


def cmd_domain_classifier(a):
    import numpy as np
    from .atomic import write_json
    from .domain import precision_recall, roc_auc, save_classifier, score, split_holdout, train_classifier
    from .store import embeddings
    s = _settings(a.settings)
    members = s.get("members")
    as_store, neg_pos = _split_rows(a.audioset_store, a.audioset_manifest, "subset", ["eval"])
    target_store, pos_pos = _split_rows(a.target_store, a.target_manifest, f"split{a.split}", ["True"])
    if len(pos_pos) == 0:
        raise SystemExit(f"{a.target_manifest}: split{a.split} has no clips with logits")
    if len(neg_pos) == 0:
        raise SystemExit(f"{a.audioset_manifest}: no AudioSet eval clips with logits")
    # As the authors: the classifier trains on every clip of the split and on 4/5 of AudioSet eval; it is
    # validated on the held-out fifth of eval against the target's test split (docs/method.md).
    _, test_pos = _split_rows(a.target_store, a.target_manifest, "test", ["True"])
    rng = np.random.default_rng(s["seed"])
    neg_tr, neg_va = split_holdout(len(neg_pos), s["holdout_fraction"], rng)
    neg = embeddings(as_store, neg_pos, members)
    pos = embeddings(target_store, pos_pos, members)
    log(f"split{a.split}: {len(pos)} positives (every clip of the split), {len(neg_tr)} negatives for training")
    model, stats = train_classifier(pos, neg[neg_tr], s, log)
    save_classifier(model, a.out)
    sv = score(model, np.concatenate([embeddings(target_store, test_pos, members), neg[neg_va]]))
    yv = np.r_[np.ones(len(test_pos)), np.zeros(len(neg_va))]
    report = {"split": a.split, "members": members or list(as_store.attrs["members"]), "auc": roc_auc(sv, yv),
              "validation": "held-out AudioSet eval (negatives) vs the target's test split (positives)",
              "n_val_pos": int(len(test_pos)), "n_val_neg": int(len(neg_va)), "n_split_clips": int(len(pos_pos)),
              "n_train_pos": int(len(pos)), "n_train_neg": int(len(neg_tr)),
              "at_threshold": precision_recall(sv, yv, s["report_thresholds"]), **stats}
    write_json(a.report, report)
    log(f"split{a.split}: held-out ROC AUC {report['auc']:.3f}")


def cmd_score(a):
    import numpy as np
    from .atomic import atomic_path
    from .domain import load_classifier, score_store
    s = _settings(a.settings) if a.settings else {}
    store, train_pos = _training_rows(a)
    model = load_classifier(a.classifier)
    scores = score_store(model, store, train_pos, s.get("members"), log=log)
    with atomic_path(a.out) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, scores)
    log(f"scored {len(train_pos)} AudioSet training clips")


def cmd_histogram(a):
    import numpy as np
    _, train_pos = _training_rows(a)
    _histogram(np.load(a.scores)[train_pos], a.thresholds, a.title, a.out)


def _histogram(scores, thresholds, title, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .atomic import atomic_path
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(scores, bins=50, range=(0, 1), color="steelblue")
    ax.set_yscale("log")
    for t in thresholds:
        ax.axvline(t, color="crimson", ls="--", lw=1)
        ax.text(t, ax.get_ylim()[1] * 0.5, f" {t:g}: {100 * (scores > t).mean():.1f} %", rotation=90, fontsize=7)
    ax.set_xlabel("domain classifier score")
    ax.set_ylabel("AudioSet training clips")
    ax.set_title(f"Domain classifier scores: {title}")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def cmd_prune(a):
    import numpy as np
    import pandas as pd
    from .atomic import write_json, write_table
    from .domain import prune
    store, train_pos = _training_rows(a)
    scores = np.load(a.scores)
    kept = train_pos[prune(scores[train_pos], a.threshold)]
    rows = store["row"][:]
    ids = store["id"][:]
    write_table(a.out, pd.DataFrame({"position": kept, "row": rows[kept], "id": ids[kept],
                                     "score": scores[kept]}))
    stats = {**json.loads(a.key), "threshold": a.threshold, "train_clips": int(len(train_pos)),
             "kept": int(len(kept)), "kept_share": float(len(kept) / max(1, len(train_pos)))}
    write_json(a.stats, stats)
    log(f"{a.key} threshold {a.threshold}: kept {len(kept)} of {len(train_pos)} ({100 * stats['kept_share']:.1f} %)")


def cmd_random_subset(a):
    import pandas as pd
    from .atomic import write_table
    from .controls import random_subset
    store, train_pos = _training_rows(a)
    like = pd.read_csv(a.like, sep="\t")
    out = random_subset(store, train_pos, len(like), a.seed, a.name)
    write_table(a.out, out)
    overlap = len(set(out["position"]) & set(like["position"]))
    log(f"random subset of {len(out)} of {len(train_pos)} clips (seed {a.seed}, {a.name}); "
        f"{overlap} also in the pruned set")


def cmd_full_set(a):
    from .atomic import write_table
    from .controls import full_set
    store, train_pos = _training_rows(a)
    write_table(a.out, full_set(store, train_pos))
    log(f"all {len(train_pos)} AudioSet training clips with logits")


def cmd_pack_audio(a):
    from .packed import pack_shard
    s = _settings(a.settings)
    pack_shard(a.manifest, a.shard, s["shard_size"], s["subsets"], s["sample_rate"], s["clip_seconds"], a.out,
               s["num_workers"], log)


def cmd_distill(a):
    from .distill import distill
    s = _settings(a.settings)
    distill(a.store, a.manifest, a.kept, s["distillation"], s["student"], s["frontend"], s["clip_seconds"],
            a.out, a.curve, a.checkpoint_dir, log, s.get("members"), packed=a.packed)


def cmd_finetune(a):
    from .finetune import finetune
    s = _settings(a.settings)
    finetune(a.manifest, f"split{a.split}", s["training"], s["student"], s["frontend"], a.seed, a.out, a.curve,
             a.checkpoint_dir, a.init, log)


def cmd_evaluate(a):
    from .atomic import write_json, write_table
    from .evaluate import evaluate
    s = _settings(a.settings)
    m, pred = evaluate(a.model, a.manifest, s["frontend"], s["student"], s.get("clip_seconds", 1.0),
                       s.get("num_workers", 0))
    m["key"] = json.loads(a.key)
    write_table(a.predictions, pred, sep="\t", float_format="%.4f")  # challenge layout: tab-separated
    write_json(a.out, m)
    log(f"{a.key}: macro accuracy {100 * m['macro_accuracy']:.2f} % on {m['n']} test clips")


def cmd_submission(a):
    from .submission import submission
    s = _settings(a.settings)
    if len(a.models) != len(a.metrics):
        raise SystemExit("prunekd submission: --models and --metrics must pair up (one metrics.json per model)")
    submission(a.models, a.metrics, a.manifest, a.eval_root, s["frontend"], s["clip_seconds"], s["models"],
               a.out, a.info, s.get("num_workers", 0), log)


def cmd_summarise(a):
    import pandas as pd
    from .manifest import class_coverage_warnings
    from .summarise import summarise
    s = _settings(a.settings)
    warnings = []
    if a.manifest:
        warnings = class_coverage_warnings(pd.read_csv(a.manifest, sep="\t", dtype=str, keep_default_na=False))
        for w in warnings:
            log(f"warning: {a.manifest}: {w}")
    summarise(a.metrics, a.prune_stats, a.outdir, s["sweep_split"], s["threshold"], s.get("target", ""),
              s.get("adapter", "tau2022"), warnings)
    log(f"summary written to {a.outdir}")


def cmd_rejected(a):
    from .quality import rejected_report
    tables = dict(t.split("=", 1) for t in a.tables)
    counts = rejected_report(tables, a.outdir)
    log(f"rejected clips: {int(counts['clips'].sum())} ({', '.join(f'{k}: {v}' for k, v in tables.items())})")


def cmd_clip_jobs(a):
    """Outputs to pass to `snakemake --forcerun` so that replaced clips are read again (README, Reruns)."""
    import pandas as pd
    man_path = Path(a.manifest)
    dataset, results = man_path.stem, man_path.parent.parent
    man = pd.read_csv(man_path, sep="\t", dtype=str, keep_default_na=False)
    out = []
    for clip in a.clips:
        hit = man[(man["id"] == clip) | (man["path"] == clip) | (man["path"].map(lambda p: Path(p).name) == clip)]
        if hit.empty:
            raise SystemExit(f"{man_path}: no clip {clip!r} (give an id, a path or a file name)")
        for row in hit["row"].astype(int):
            shard = f"{row // a.shard_size:05d}"
            out.append(f"{results}/logits/{dataset}/shards/{shard}.zarr")
            if dataset == "audioset":
                out.append(f"{results}/packed/audioset/{shard}.zarr")
    print(" ".join(dict.fromkeys(out)))


def cmd_submit(a):
    from .submit import submit, wait
    args = [x for x in a.snakemake_args if x != "--"]
    job = submit(a.workdir, ["--profile", a.profile, *args], Path(a.workdir) / a.log_dir, a.time_min, a.mem_gb,
                 a.partition, a.account)
    print(f"submitted controller job {job.job_id}; logs in {Path(a.workdir) / a.log_dir}", flush=True)
    if a.wait:
        wait(job, log=log)
        log(f"controller job {job.job_id} finished")


def main(argv=None):
    p = argparse.ArgumentParser(prog="prunekd", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name, fn, help_, *args):
        sp = sub.add_parser(name, help=help_, description=help_)
        for flags, kw in args:
            sp.add_argument(*flags, **kw)
        sp.set_defaults(fn=fn)

    S = (["--settings"], {"required": True, "help": "JSON object: the config slice this step reads"})

    def req(flag, h, **kw):
        return ([flag], {"required": True, "help": h, **kw})

    add("demo-data", cmd_demo_data, "Write the synthetic AudioSet-format pool and TAU-format scene set.",
        req("--audioset-root", "output folder for the AudioSet-format pool"),
        (["--tau-roots"], {"nargs": "*", "default": [], "help": "output folders for TAU-format scene sets"}),
        (["--csv-targets"], {"nargs": "*", "default": [],
                             "help": "CSV paths of generic targets to write (audio beside the CSV)"}), S)
    add("manifest", cmd_manifest, "Build a dataset manifest (and its rejected table) from on-disk metadata.",
        (["--root"], {"help": "AudioSet folder (the adapter audioset); targets name theirs in --settings"}),
        req("--out", "manifest TSV"), req("--rejected", "rejected-clips TSV"), S)
    add("demo-teacher", cmd_demo_teacher, "Demo only: train one shrunk PaSST member on the pool's labels.",
        req("--member", "ensemble member name"), req("--manifest", "AudioSet manifest TSV"),
        req("--out", "checkpoint path"), S)
    add("download-teachers", cmd_download_teachers, "Fetch the PaSST checkpoints (needs network).",
        req("--weights-dir", "folder for the checkpoints"), (["--members"], {"nargs": "+", "required": True}))
    add("check-teachers", cmd_check_teachers, "Load each PaSST checkpoint as the teacher jobs do; run a 1 s and a 10 s clip.",
        req("--weights-dir", "folder with the checkpoints"), (["--members"], {"nargs": "+", "required": True}),
        (["--architecture"], {"default": '{"n_mels": 128, "embed_dim": 768, "depth": 12, "num_heads": 12}',
                              "help": "JSON: teachers.architecture (default PaSST-S)"}))
    add("teacher-logits", cmd_teacher_logits, "Teacher ensemble logits for one shard of a manifest into Zarr.",
        req("--dataset", "audioset or tau"), req("--manifest", "manifest TSV"),
        req("--shard", "shard index", type=int), req("--weights-dir", "teacher checkpoints"),
        req("--out", "shard Zarr store"), S)
    add("gather", cmd_gather, "Check and concatenate the shards of a dataset into one Zarr store.",
        req("--dataset", "audioset or tau"), req("--manifest", "manifest TSV"),
        req("--rejected", "manifest's rejected TSV"), (["--shards"], {"nargs": "+", "required": True}),
        req("--weights-dir", "teacher checkpoints (hashed into the provenance)"), req("--out", "Zarr store"),
        req("--rejected-out", "all rejected clips TSV"),
        (["--bad-audio"], {"choices": ["skip", "fail"], "default": "skip",
                           "help": "fail: stop at the first clip that failed to decode, naming it"}), S)
    add("domain-classifier", cmd_domain_classifier, "Train the linear domain classifier for one split.",
        req("--audioset-store", "AudioSet logits Zarr"), req("--audioset-manifest", "AudioSet manifest"),
        req("--target-store", "target logits Zarr"), req("--target-manifest", "target manifest"),
        req("--split", "training split of the target (5, 10, 25, 50, 100 for TAU)"), req("--out", "classifier weights"),
        req("--report", "validation report JSON"), S)
    add("score", cmd_score, "Score every AudioSet training clip with a split's domain classifier.",
        req("--audioset-store", "AudioSet logits Zarr"), req("--audioset-manifest", "AudioSet manifest"),
        req("--classifier", "classifier weights"), req("--out", "scores .npy"),
        (["--settings"], {"help": "JSON: {\"members\": [...]} to score on a member subset"}))
    add("histogram", cmd_histogram, "Histogram of a split's scores with the thresholds marked.",
        req("--audioset-store", "AudioSet logits Zarr"), req("--audioset-manifest", "AudioSet manifest"),
        req("--scores", "scores .npy"), req("--title", "what the scores are of"),
        (["--thresholds"], {"nargs": "+", "type": float, "required": True}), req("--out", "PNG"))
    add("prune", cmd_prune, "Keep the AudioSet training clips whose score exceeds a threshold.",
        req("--audioset-store", "AudioSet logits Zarr"), req("--audioset-manifest", "AudioSet manifest"),
        req("--scores", "scores .npy"), req("--key", "JSON: target, ensemble, split (copied into the stats)"),
        req("--threshold", "threshold", type=float),
        req("--out", "kept clips TSV"), req("--stats", "kept share JSON"))
    add("random-subset", cmd_random_subset, "Control: a random AudioSet training subset as large as a pruned set.",
        req("--audioset-store", "AudioSet logits Zarr"), req("--audioset-manifest", "AudioSet manifest"),
        req("--like", "the pruned set (kept clips TSV) whose size to match"), req("--seed", "seed", type=int),
        req("--name", "the pruned set's name; with the seed it fixes the draw"), req("--out", "clips TSV"))
    add("full-set", cmd_full_set, "Control: every AudioSet training clip with logits (distillation without pruning).",
        req("--audioset-store", "AudioSet logits Zarr"), req("--audioset-manifest", "AudioSet manifest"),
        req("--out", "clips TSV"))
    add("pack-audio", cmd_pack_audio, "Decode one manifest row block of AudioSet training clips into packed int16 Zarr.",
        req("--manifest", "AudioSet manifest"), req("--shard", "row block index", type=int),
        req("--out", "packed store"), S)
    add("distill", cmd_distill, "Distil CP-Mobile from the stored teacher logits on a pruned set.",
        req("--store", "AudioSet logits Zarr"), req("--manifest", "AudioSet manifest"),
        req("--kept", "kept clips TSV"), req("--out", "student weights"), req("--curve", "training curve TSV"),
        req("--checkpoint-dir", "folder for resumable checkpoints"),
        (["--packed"], {"nargs": "*", "default": None,
                        "help": "packed audio stores to read the clips from (else the source files are decoded)"}), S)
    add("finetune", cmd_finetune, "Fine-tune (or train from scratch: the baseline) on a challenge split.",
        req("--manifest", "TAU manifest"), req("--split", "split"), req("--seed", "seed", type=int),
        (["--init"], {"help": "distilled student to start from; omit for the baseline"}),
        req("--out", "model weights"), req("--curve", "training curve TSV"),
        req("--checkpoint-dir", "folder for resumable checkpoints"), S)
    add("evaluate", cmd_evaluate, "Evaluate a model on the test split: macro, per device, per class.",
        req("--model", "model weights"), req("--manifest", "TAU manifest"), req("--key", "JSON run key"),
        req("--out", "metrics JSON"), req("--predictions", "predictions CSV (submission layout)"), S)
    add("submission", cmd_submission, "Predict the challenge evaluation set with the chosen fine-tuned model "
        "(submission format, with parameters and MACs).",
        (["--models"], {"nargs": "+", "required": True, "help": "candidate fine-tuned models"}),
        (["--metrics"], {"nargs": "+", "required": True, "help": "their development-test metrics.json, same order"}),
        req("--manifest", "target manifest (class names)"),
        req("--eval-root", "evaluation set folder (meta.csv with filename, the audio)"),
        req("--out", "output.csv (submission format)"), req("--info", "info.json (MACs, Params, test results)"), S)
    add("summarise", cmd_summarise, "Tables 1 and 2 (CSV, Markdown, HTML) and plots.",
        (["--metrics"], {"nargs": "+", "required": True}), (["--prune-stats"], {"nargs": "+", "required": True}),
        (["--manifest"], {"help": "target manifest: warns above the tables about classes a split lacks"}),
        req("--outdir", "summary folder"), S)
    add("rejected", cmd_rejected, "Count the rejected clips of every dataset by reason, for the report.",
        (["--tables"], {"nargs": "+", "required": True, "help": "DATASET=rejected.tsv ..."}),
        req("--outdir", "summary folder"))
    add("clip-jobs", cmd_clip_jobs, "The shard outputs that read given clips: snakemake --forcerun $(prunekd clip-jobs ...).",
        req("--manifest", "the dataset's manifest (results/manifests/<dataset>.tsv)"),
        (["--shard-size"], {"type": int, "default": 10000, "help": "teachers.shard_size (default 10000)"}),
        (["clips"], {"nargs": "+", "help": "clip ids (the YTID), paths or file names"}))
    add("submit", cmd_submit, "Run the Snakemake controller as a SLURM job (submitit), requeued on time-out.",
        (["--profile"], {"default": "profiles/slurm", "help": "Snakemake profile for the workflow's jobs"}),
        (["--workdir"], {"default": ".", "help": "workflow directory (holds the Snakefile)"}),
        (["--time-min"], {"type": int, "default": 2880, "help": "controller time limit per run, minutes"}),
        (["--mem-gb"], {"type": float, "default": 4.0}),
        (["--partition"], {"default": os.environ.get("SBATCH_PARTITION"), "help": "default: $SBATCH_PARTITION"}),
        (["--account"], {"default": os.environ.get("SBATCH_ACCOUNT"), "help": "default: $SBATCH_ACCOUNT"}),
        (["--log-dir"], {"default": "results/logs/controller", "help": "controller logs (submitit)"}),
        (["--wait"], {"action": "store_true", "help": "wait for the controller job and fail if it fails"}),
        (["snakemake_args"], {"nargs": argparse.REMAINDER, "help": "more snakemake arguments, after --"}))
    a = p.parse_args(argv)
    a.fn(a)


if __name__ == "__main__":
    main()
