"""`prunekd <step>`: one subcommand per pipeline step; each Snakemake rule calls one of them.

Settings come as one JSON object (`--settings`), the slice of config.yaml the step depends on, so a
changed setting reruns exactly the steps that read it. How a step reads its input (`--num-workers`,
`--threads`, `--staging`) comes as flags outside it: changing those reruns nothing. Each `cmd_*` parses its
settings and calls one function of the step's module; codehash.py hashes that function's code for the
rule's rerun trigger.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _flags(a) -> dict:
    """The command's flags by name: a step function's parameters are named as its command's flags."""
    return {k: v for k, v in vars(a).items() if k not in ("fn", "cmd", "settings")}


def _settings(s: str) -> dict:
    try:
        return json.loads(s)
    except json.JSONDecodeError as e:
        raise SystemExit(f"--settings is not valid JSON: {e}") from None


def cmd_demo_data(a):
    from .checks import CheckError
    from .demo_data import make_demo_data

    try:
        make_demo_data(a.audioset_root, a.tau_roots, _settings(a.settings), a.csv_targets)
    except CheckError as e:
        raise SystemExit(f"prunekd demo-data: {e}") from None
    log(f"demo data written to {', '.join([a.audioset_root, *a.tau_roots, *a.csv_targets])}")


def cmd_manifest(a):
    from .manifest import BadAudioError, MetadataError, build_manifest

    try:
        build_manifest(_settings(a.settings), a.root, a.out, a.rejected, log)
    except MetadataError as e:  # one line naming the file (and line), not a traceback
        raise SystemExit(f"prunekd manifest: {e}") from None
    except BadAudioError as e:  # data.bad_audio: fail; the message names the clip's list and line
        raise SystemExit(str(e)) from None


def cmd_demo_teacher(a):
    from .teachers import demo_teacher_step

    demo_teacher_step(**_flags(a), settings=_settings(a.settings), log=log)


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
    t = {**s["teachers"], "num_workers": a.num_workers}
    compute_shard(a.manifest, a.dataset, a.shard, s["shard_size"], a.weights_dir, t, s["data"], a.out, log)


def cmd_gather(a):
    from .logits import gather

    t = _settings(a.settings)["teachers"]
    gather(a.manifest, a.rejected, a.shards, a.dataset, t, a.weights_dir, a.out, a.rejected_out, log, a.bad_audio)


def cmd_domain_classifier(a):
    from .domain import NoClipsError, train_and_validate

    try:
        train_and_validate(**_flags(a), cfg=_settings(a.settings), log=log)
    except NoClipsError as e:
        raise SystemExit(str(e)) from None


def cmd_score(a):
    from .domain import score_training_clips

    s = _settings(a.settings) if a.settings else {}
    score_training_clips(a.audioset_store, a.audioset_manifest, a.classifier, s.get("members"), a.out, log)


def cmd_histogram(a):
    from .plots import training_score_histogram

    training_score_histogram(a.audioset_store, a.audioset_manifest, a.scores, a.thresholds, a.title, a.out)


def cmd_prune(a):
    from .domain import prune_training_clips

    prune_training_clips(
        a.audioset_store, a.audioset_manifest, a.scores, a.threshold, json.loads(a.key), a.out, a.stats, log
    )


def cmd_random_subset(a):
    from .controls import write_random_subset

    write_random_subset(a.audioset_store, a.audioset_manifest, a.like, a.seed, a.name, a.out, log)


def cmd_full_set(a):
    from .controls import write_full_set

    write_full_set(a.audioset_store, a.audioset_manifest, a.out, log)


def cmd_pack_audio(a):
    from .packed import pack_step

    pack_step(**_flags(a), settings=_settings(a.settings), log=log)


def cmd_decode_target(a):
    from .decoded import decode_target_step

    decode_target_step(**_flags(a), settings=_settings(a.settings), log=log)


def cmd_distill(a):
    from .distill import distill_step

    distill_step(**_flags(a), settings=_settings(a.settings), log=log)


def cmd_finetune(a):
    from .finetune import finetune_step

    finetune_step(**_flags(a), settings=_settings(a.settings), log=log)


def cmd_evaluate(a):
    from .evaluate import write_evaluation

    s = {**_settings(a.settings), "num_workers": a.num_workers, "decoded": a.decoded}
    write_evaluation(a.model, a.manifest, s, json.loads(a.key), a.out, a.predictions, log)


def cmd_submission(a):
    from .submission import SubmissionError, submission_step

    try:
        submission_step(**_flags(a), settings=_settings(a.settings), log=log)
    except SubmissionError as e:
        raise SystemExit(f"prunekd submission: {e}") from None


def cmd_summarise(a):
    from .summarise import write_summary

    write_summary(a.metrics, a.prune_stats, a.outdir, _settings(a.settings), a.manifest, log)


def cmd_known_answer(a):
    from .known_answer import known_answer_report

    known_answer_report(**_flags(a), settings=_settings(a.settings), log=log)


def cmd_rejected(a):
    from .quality import rejected_step

    rejected_step(a.tables, a.outdir, log)


def cmd_clip_jobs(a):
    """Outputs to pass to `snakemake --forcerun` so that replaced clips are read again (README, Reruns)."""
    from .clipjobs import UnknownClipError, clip_jobs

    try:
        print(" ".join(clip_jobs(a.manifest, a.clips, a.shard_size)))
    except UnknownClipError as e:
        raise SystemExit(str(e)) from None


def cmd_cost(a):
    from .cost import cost

    print(cost(a.workdir, a.snakemake_args, a.rates)[1], flush=True)


def cmd_rates(a):
    from .rates import RatesError, rates_step

    try:
        rates_step(**_flags(a), log=log)
    except RatesError as e:
        raise SystemExit(f"prunekd rates: {e}") from None


def cmd_submit(a):
    from .submit import submit_step

    submit_step(**_flags(a), log=log)


SETTINGS_HELP = "JSON object: the config slice this step reads"
WORKERS_HELP = "loading processes or reading threads (config: {}.num_workers); 0 reads in the main process"


def parser() -> argparse.ArgumentParser:
    """The `prunekd` argument parser: one subcommand per step, its function in `fn`."""
    top = argparse.ArgumentParser(prog="prunekd", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="cmd", required=True)

    def command(name, fn, help_):
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p

    p = command("demo-data", cmd_demo_data, "Write the synthetic AudioSet-format pool and TAU-format scene set.")
    p.add_argument("--audioset-root", required=True, help="output folder for the AudioSet-format pool")
    p.add_argument("--tau-roots", nargs="*", default=[], help="output folders for TAU-format scene sets")
    p.add_argument(
        "--csv-targets", nargs="*", default=[], help="CSV paths of generic targets to write (audio beside the CSV)"
    )
    p.add_argument("--settings", required=True, help=SETTINGS_HELP)

    p = command("manifest", cmd_manifest, "Build a dataset manifest (and its rejected table) from on-disk metadata.")
    p.add_argument("--root", help="AudioSet folder (the adapter audioset); targets name theirs in --settings")
    p.add_argument("--out", required=True, help="manifest TSV")
    p.add_argument("--rejected", required=True, help="rejected-clips TSV")
    p.add_argument("--settings", required=True, help=SETTINGS_HELP)

    p = command("demo-teacher", cmd_demo_teacher, "Demo only: train one shrunk PaSST member on the pool's labels.")
    p.add_argument("--member", required=True, help="ensemble member name")
    p.add_argument("--manifest", required=True, help="AudioSet manifest TSV")
    p.add_argument("--out", required=True, help="checkpoint path")
    p.add_argument("--settings", required=True, help=SETTINGS_HELP)

    p = command("download-teachers", cmd_download_teachers, "Fetch the PaSST checkpoints (needs network).")
    p.add_argument("--weights-dir", required=True, help="folder for the checkpoints")
    p.add_argument("--members", nargs="+", required=True)

    p = command(
        "check-teachers",
        cmd_check_teachers,
        "Load each PaSST checkpoint as the teacher jobs do; run a 1 s and a 10 s clip.",
    )
    p.add_argument("--weights-dir", required=True, help="folder with the checkpoints")
    p.add_argument("--members", nargs="+", required=True)
    p.add_argument(
        "--architecture",
        default='{"n_mels": 128, "embed_dim": 768, "depth": 12, "num_heads": 12}',
        help="JSON: teachers.architecture (default PaSST-S)",
    )

    p = command("teacher-logits", cmd_teacher_logits, "Teacher ensemble logits for one shard of a manifest into Zarr.")
    p.add_argument("--dataset", required=True, help="audioset or tau")
    p.add_argument("--manifest", required=True, help="manifest TSV")
    p.add_argument("--shard", required=True, type=int, help="shard index")
    p.add_argument("--weights-dir", required=True, help="teacher checkpoints")
    p.add_argument("--out", required=True, help="shard Zarr store")
    p.add_argument("--num-workers", type=int, default=0, help=WORKERS_HELP.format("teachers"))
    p.add_argument("--settings", required=True, help=SETTINGS_HELP)

    p = command("gather", cmd_gather, "Check and concatenate the shards of a dataset into one Zarr store.")
    p.add_argument("--dataset", required=True, help="audioset or tau")
    p.add_argument("--manifest", required=True, help="manifest TSV")
    p.add_argument("--rejected", required=True, help="manifest's rejected TSV")
    p.add_argument("--shards", nargs="+", required=True)
    p.add_argument("--weights-dir", required=True, help="teacher checkpoints (hashed into the provenance)")
    p.add_argument("--out", required=True, help="Zarr store")
    p.add_argument("--rejected-out", required=True, help="all rejected clips TSV")
    p.add_argument(
        "--bad-audio",
        choices=["skip", "fail"],
        default="skip",
        help="fail: stop at the first clip that failed to decode, naming it",
    )
    p.add_argument("--settings", required=True, help=SETTINGS_HELP)

    p = command("domain-classifier", cmd_domain_classifier, "Train the linear domain classifier for one split.")
    p.add_argument("--audioset-store", required=True, help="AudioSet logits Zarr")
    p.add_argument("--audioset-manifest", required=True, help="AudioSet manifest")
    p.add_argument("--target-store", required=True, help="target logits Zarr")
    p.add_argument("--target-manifest", required=True, help="target manifest")
    p.add_argument("--split", required=True, help="training split of the target (5, 10, 25, 50, 100 for TAU)")
    p.add_argument("--out", required=True, help="classifier weights")
    p.add_argument("--report", required=True, help="validation report JSON")
    p.add_argument("--settings", required=True, help=SETTINGS_HELP)

    p = command("score", cmd_score, "Score every AudioSet training clip with a split's domain classifier.")
    p.add_argument("--audioset-store", required=True, help="AudioSet logits Zarr")
    p.add_argument("--audioset-manifest", required=True, help="AudioSet manifest")
    p.add_argument("--classifier", required=True, help="classifier weights")
    p.add_argument("--out", required=True, help="scores .npy")
    p.add_argument("--settings", help='JSON: {"members": [...]} to score on a member subset')

    p = command("histogram", cmd_histogram, "Histogram of a split's scores with the thresholds marked.")
    p.add_argument("--audioset-store", required=True, help="AudioSet logits Zarr")
    p.add_argument("--audioset-manifest", required=True, help="AudioSet manifest")
    p.add_argument("--scores", required=True, help="scores .npy")
    p.add_argument("--title", required=True, help="what the scores are of")
    p.add_argument("--thresholds", nargs="+", type=float, required=True)
    p.add_argument("--out", required=True, help="PNG")

    p = command("prune", cmd_prune, "Keep the AudioSet training clips whose score exceeds a threshold.")
    p.add_argument("--audioset-store", required=True, help="AudioSet logits Zarr")
    p.add_argument("--audioset-manifest", required=True, help="AudioSet manifest")
    p.add_argument("--scores", required=True, help="scores .npy")
    p.add_argument("--key", required=True, help="JSON: target, ensemble, split (copied into the stats)")
    p.add_argument("--threshold", required=True, type=float, help="threshold")
    p.add_argument("--out", required=True, help="kept clips TSV")
    p.add_argument("--stats", required=True, help="kept share JSON")

    p = command(
        "random-subset", cmd_random_subset, "Control: a random AudioSet training subset as large as a pruned set."
    )
    p.add_argument("--audioset-store", required=True, help="AudioSet logits Zarr")
    p.add_argument("--audioset-manifest", required=True, help="AudioSet manifest")
    p.add_argument("--like", required=True, help="the pruned set (kept clips TSV) whose size to match")
    p.add_argument("--seed", required=True, type=int, help="seed")
    p.add_argument("--name", required=True, help="the pruned set's name; with the seed it fixes the draw")
    p.add_argument("--out", required=True, help="clips TSV")

    p = command(
        "full-set", cmd_full_set, "Control: every AudioSet training clip with logits (distillation without pruning)."
    )
    p.add_argument("--audioset-store", required=True, help="AudioSet logits Zarr")
    p.add_argument("--audioset-manifest", required=True, help="AudioSet manifest")
    p.add_argument("--out", required=True, help="clips TSV")

    p = command(
        "pack-audio", cmd_pack_audio, "Decode one manifest row block of AudioSet training clips into packed int16 Zarr."
    )
    p.add_argument("--manifest", required=True, help="AudioSet manifest")
    p.add_argument("--shard", required=True, type=int, help="row block index")
    p.add_argument("--out", required=True, help="packed store")
    p.add_argument("--threads", type=int, default=1, help="the job's threads: that many decoding processes (1: none)")
    p.add_argument("--settings", required=True, help=SETTINGS_HELP)

    p = command("distill", cmd_distill, "Distil CP-Mobile from the stored teacher logits on a pruned set.")
    p.add_argument("--store", required=True, help="AudioSet logits Zarr")
    p.add_argument("--manifest", required=True, help="AudioSet manifest")
    p.add_argument("--kept", required=True, help="kept clips TSV")
    p.add_argument("--out", required=True, help="student weights")
    p.add_argument("--curve", required=True, help="training curve TSV")
    p.add_argument("--checkpoint-dir", required=True, help="folder for resumable checkpoints")
    p.add_argument(
        "--packed",
        nargs="*",
        default=None,
        help="packed audio stores to read the clips from (else the source files are decoded)",
    )
    p.add_argument(
        "--stage-dir",
        default=None,
        help="node-local folder to copy the packed clips of the set to first (distillation.staging: auto)",
    )
    p.add_argument("--num-workers", type=int, default=0, help=WORKERS_HELP.format("distillation"))
    p.add_argument(
        "--staging",
        choices=["auto", "never"],
        default="never",
        help="auto: copy the set's packed clips to --stage-dir first where that pays (distillation.staging)",
    )
    p.add_argument("--settings", required=True, help=SETTINGS_HELP)

    p = command(
        "decode-target",
        cmd_decode_target,
        "Decode a target's training and test clips once into a float32 store that its training and evaluation read.",
    )
    p.add_argument("--manifest", required=True, help="the target's manifest")
    p.add_argument("--out", required=True, help="decoded store (a folder)")
    p.add_argument("--threads", type=int, default=1, help="the job's threads: that many decoding processes (1: none)")
    p.add_argument("--settings", required=True, help=SETTINGS_HELP)

    p = command("finetune", cmd_finetune, "Fine-tune (or train from scratch: the baseline) on a challenge split.")
    p.add_argument("--manifest", required=True, help="TAU manifest")
    p.add_argument("--split", required=True, help="split")
    p.add_argument("--seed", required=True, type=int, help="seed")
    p.add_argument("--init", help="distilled student to start from; omit for the baseline")
    p.add_argument("--out", required=True, help="model weights")
    p.add_argument("--curve", required=True, help="training curve TSV")
    p.add_argument("--checkpoint-dir", required=True, help="folder for resumable checkpoints")
    p.add_argument("--decoded", help="the target's decoded store (decode-target); else the clips are decoded here")
    p.add_argument("--num-workers", type=int, default=0, help=WORKERS_HELP.format("training"))
    p.add_argument("--settings", required=True, help=SETTINGS_HELP)

    p = command("evaluate", cmd_evaluate, "Evaluate a model on the test split: macro, per device, per class.")
    p.add_argument("--model", required=True, help="model weights")
    p.add_argument("--manifest", required=True, help="TAU manifest")
    p.add_argument("--key", required=True, help="JSON run key")
    p.add_argument("--out", required=True, help="metrics JSON")
    p.add_argument("--predictions", required=True, help="predictions CSV (submission layout)")
    p.add_argument("--decoded", help="the target's decoded store (decode-target); else the clips are decoded here")
    p.add_argument("--num-workers", type=int, default=0, help=WORKERS_HELP.format("training"))
    p.add_argument("--settings", required=True, help=SETTINGS_HELP)

    p = command(
        "submission",
        cmd_submission,
        "Predict the challenge evaluation set with the chosen fine-tuned model "
        "(submission format, with parameters and MACs).",
    )
    p.add_argument("--models", nargs="+", required=True, help="candidate fine-tuned models")
    p.add_argument("--metrics", nargs="+", required=True, help="their development-test metrics.json, same order")
    p.add_argument("--manifest", required=True, help="target manifest (class names)")
    p.add_argument("--eval-root", required=True, help="evaluation set folder (meta.csv with filename, the audio)")
    p.add_argument("--out", required=True, help="output.csv (submission format)")
    p.add_argument("--info", required=True, help="info.json (MACs, Params, test results)")
    p.add_argument("--num-workers", type=int, default=0, help=WORKERS_HELP.format("training"))
    p.add_argument("--settings", required=True, help=SETTINGS_HELP)

    p = command("summarise", cmd_summarise, "Tables 1 and 2 (CSV, Markdown, HTML) and plots.")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--prune-stats", nargs="+", required=True)
    p.add_argument("--manifest", help="target manifest: warns above the tables about classes a split lacks")
    p.add_argument("--outdir", required=True, help="summary folder")
    p.add_argument("--settings", required=True, help=SETTINGS_HELP)

    p = command(
        "known-answer", cmd_known_answer, "The known-answer report: pruned sets vs the world's truth, and the gains."
    )
    p.add_argument("--audioset-store", required=True)
    p.add_argument("--audioset-manifest", required=True)
    p.add_argument("--scores", required=True, help="the split's scores.npy")
    p.add_argument("--truth", required=True, help="the world's truth.tsv (written by demo-data)")
    p.add_argument("--metrics", nargs="+", required=True, help="metrics.json of the split's trained models")
    p.add_argument("--outdir", required=True)
    p.add_argument("--settings", required=True, help=SETTINGS_HELP)

    p = command("rejected", cmd_rejected, "Count the rejected clips of every dataset by reason, for the report.")
    p.add_argument("--tables", nargs="+", required=True, help="DATASET=rejected.tsv ...")
    p.add_argument("--outdir", required=True, help="summary folder")

    p = command(
        "clip-jobs",
        cmd_clip_jobs,
        "The shard outputs that read given clips: snakemake --forcerun $(prunekd clip-jobs ...).",
    )
    p.add_argument("--manifest", required=True, help="the dataset's manifest (results/manifests/<dataset>.tsv)")
    p.add_argument("--shard-size", type=int, default=10000, help="teachers.shard_size (default 10000)")
    p.add_argument("clips", nargs="+", help="clip ids (the YTID), paths or file names")

    p = command(
        "cost",
        cmd_cost,
        "GPU-hours of the planned jobs per rule and in total (snakemake --dry-run "
        "and the measured rates), before anyone submits.",
    )
    p.add_argument("--rates", help="YAML of per-step GPU rates (default: benchmarks/rates_h100.yaml)")
    p.add_argument("--workdir", default=".", help="workflow directory (holds the Snakefile)")
    p.add_argument(
        "snakemake_args",
        nargs=argparse.REMAINDER,
        help="snakemake arguments after --, e.g. -- --profile profiles/slurm --configfile my.yaml",
    )

    p = command(
        "rates",
        cmd_rates,
        "Rates for `prunekd cost` from the wall time of the GPU jobs a run has finished (its own GPUs).",
    )
    p.add_argument("--results", default="results", help="the run's results folder (paths.results)")
    p.add_argument("--out", help="rates YAML to write (default: print it); then `prunekd cost --rates FILE`")
    p.add_argument("--fallback", help="rates for rules with no finished job (default: benchmarks/rates_h100.yaml)")

    p = command("submit", cmd_submit, "Run the Snakemake controller as a SLURM job (submitit), requeued on time-out.")
    p.add_argument("--profile", default="profiles/slurm", help="Snakemake profile for the workflow's jobs")
    p.add_argument("--workdir", default=".", help="workflow directory (holds the Snakefile)")
    p.add_argument("--time-min", type=int, default=2880, help="controller time limit per run, minutes")
    p.add_argument("--mem-gb", type=float, default=4.0)
    p.add_argument("--partition", default=os.environ.get("SBATCH_PARTITION"), help="default: $SBATCH_PARTITION")
    p.add_argument("--account", default=os.environ.get("SBATCH_ACCOUNT"), help="default: $SBATCH_ACCOUNT")
    p.add_argument("--log-dir", default="results/logs/controller", help="controller logs (submitit)")
    p.add_argument("--wait", action="store_true", help="wait for the controller job and fail if it fails")
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="more snakemake arguments, after --")
    return top


def main(argv=None):
    from .atomic import sigterm_as_exit

    a = parser().parse_args(argv)
    with sigterm_as_exit():  # a job SLURM stops (time limit, scancel) cleans up its half-written outputs
        a.fn(a)


if __name__ == "__main__":
    main()
