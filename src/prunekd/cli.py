"""`prunekd <step>`: one subcommand per pipeline step; each Snakemake rule calls one of them.

Settings come as one JSON object (`--settings`), the slice of config.yaml the step depends on, so a
changed setting reruns exactly the steps that read it. How a step reads its input (`--num-workers`,
`--threads`, `--staging`) comes as flags outside it: changing those reruns nothing. Each command calls one
function of the step's module: a `cmd_*` below where the flags need glue, else `_step` calls `module:function`
with the flags by name (COMMANDS); codehash.py hashes the code it reaches for the rule's rerun trigger.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _flags(a) -> dict:
    """The command's flags by name: a step function's parameters are named as its command's flags."""
    return {k: v for k, v in vars(a).items() if k not in ("fn", "cmd", "step", "settings")}


def _settings(s: str) -> dict:
    try:
        return json.loads(s)
    except json.JSONDecodeError as e:
        raise SystemExit(f"--settings is not valid JSON: {e}") from None


def _step(a):
    """The usual command: `module:function` called with the flags by name, the settings parsed, and the log."""
    module, name = a.step.split(":")
    kw = _flags(a)
    if "settings" in vars(a):  # optional for some commands (score)
        kw["settings"] = None if a.settings is None else _settings(a.settings)
    getattr(importlib.import_module(f".{module}", __package__), name)(**kw, log=log)


def cmd_clip_jobs(a):
    """Outputs to pass to `snakemake --forcerun` so that replaced clips are read again (docs/cluster.md, "Reruns")."""
    from prunekd.cluster.clipjobs import clip_jobs

    print(" ".join(clip_jobs(a.manifest, a.clips, a.shard_size)))


def cmd_cost(a):
    from prunekd.cluster.cost import cost

    print(cost(a.workdir, a.snakemake_args, a.rates)[1], flush=True)


def cmd_status(a):
    from prunekd.cluster.progress import status_step

    print(status_step(a.workdir, a.snakemake_args, a.rates)[1], flush=True)


def _required(flag, help_=None, **kw):
    return flag, {"required": True, "help": help_, **kw}


def _optional(flag, help_=None, **kw):
    return flag, {"help": help_, **kw}


def _positional(name, help_, **kw):
    return name, {"help": help_, **kw}


def _workers(section):
    """How the step reads its clips: a flag outside --settings, so that changing it reruns nothing."""
    help_ = f"loading processes or reading threads (config: {section}.num_workers); 0 reads in the main process"
    return _optional("--num-workers", help_, type=int, default=0)


# Arguments that several commands share.
SETTINGS = _required("--settings", "JSON object: the config slice this step reads")
AUDIOSET = [
    _required("--audioset-store", "AudioSet logits Zarr"),
    _required("--audioset-manifest", "AudioSet manifest"),
]
THREADS = _optional("--threads", "the job's threads: that many decoding processes (1: none)", type=int, default=1)
TRAINED = [
    _required("--out", "model weights"),
    _required("--curve", "training curve TSV"),
    _required("--checkpoint-dir", "folder for resumable checkpoints"),
]
DECODED = _optional("--decoded", "the target's decoded store (decode-target); else the clips are decoded here")
MEMBERS = _required("--members", nargs="+")
DEFAULT_RATES = "default: the package's cluster/rates_h100.yaml"
# The run `prunekd cost` and `prunekd status` plan: its rates, its folder and its snakemake arguments.
PLANNED_RUN = [
    _optional("--rates", f"YAML of per-step GPU rates ({DEFAULT_RATES})"),
    _optional("--workdir", "workflow directory (holds the Snakefile)", default="."),
    _positional(
        "snakemake_args",
        "the run's snakemake arguments after --, e.g. -- --profile slurm --configfile my.yaml",
        nargs=argparse.REMAINDER,
    ),
]
PASST_S = '{"n_mels": 128, "embed_dim": 768, "depth": 12, "num_heads": 12}'

# name: (its function: a cmd_* above or `module:function` for _step, what it does, its arguments)
COMMANDS = {
    "demo-data": ("demo.worlds:demo_data_step", "Write the synthetic AudioSet-format pool and TAU-format scene set.", [
        _required("--audioset-root", "output folder for the AudioSet-format pool"),
        _optional("--tau-roots", "output folders for TAU-format scene sets", nargs="*", default=[]),
        _optional("--csv-targets", "CSV paths of generic targets (audio beside the CSV)", nargs="*", default=[]),
        _optional("--eval-roots", "output folders for evaluation sets (TAU 2024 evaluation layout)", nargs="*",
                  default=[]), SETTINGS]),
    "manifest": ("data.manifest:manifest_step",
                 "Build a dataset manifest (and its rejected table) from on-disk metadata.", [
        _optional("--root", "AudioSet folder (the adapter audioset); targets name theirs in --settings"),
        _required("--out", "manifest TSV"), _required("--rejected", "rejected-clips TSV"), SETTINGS]),
    "demo-teacher": ("teachers.passt:demo_teacher_step",
                     "Demo only: train one shrunk PaSST member on the pool's labels.", [
        _required("--member", "ensemble member name"), _required("--manifest", "AudioSet manifest TSV"),
        _required("--out", "checkpoint path"), SETTINGS]),
    "download-teachers": ("teachers.passt:download_step", "Fetch the PaSST checkpoints (needs network).", [
        _required("--weights-dir", "folder for the checkpoints"), MEMBERS]),
    "check-teachers": ("teachers.passt:check_step",
                       "Load each PaSST checkpoint as the teacher jobs do; run a 1 s and a 10 s clip.", [
        _required("--weights-dir", "folder with the checkpoints"), MEMBERS,
        _optional("--architecture", "JSON: teachers.architecture (default PaSST-S)", default=PASST_S)]),
    "teacher-logits": ("teachers.logits:teacher_logits_step",
                       "Teacher ensemble logits for one shard of a manifest into Zarr.", [
        _required("--dataset", "audioset or tau"), _required("--manifest", "manifest TSV"),
        _required("--shard", "shard index", type=int), _required("--weights-dir", "teacher checkpoints"),
        _required("--out", "shard Zarr store"), _workers("teachers"), SETTINGS,
        _optional("--compute-table", "with released logits: the rows the members compute (shard i is its block i)")]),
    "gather": ("teachers.logits:gather_step", "Check and concatenate the shards of a dataset into one Zarr store.", [
        _required("--dataset", "audioset or tau"), _required("--manifest", "manifest TSV"),
        _required("--rejected", "manifest's rejected TSV"), _required("--shards", nargs="+"),
        _required("--weights-dir", "teacher checkpoints (hashed into the provenance)"),
        _required("--out", "Zarr store"), _required("--rejected-out", "all rejected clips TSV"),
        _optional("--bad-audio", "fail: stop at the first clip that failed to decode, naming it",
                  choices=["skip", "fail"], default="skip"),
        _optional("--released-dir", "released-index's folder: covered clips take the released logits"), SETTINGS]),
    "released-index": ("teachers.released:released_index_step", "Which AudioSet training clips the released logits "
                       "(teachers.released_logits) cover, and what is computed.", [
        _required("--manifest", "AudioSet manifest"),
        _required("--planned-shards", "teacher shards the workflow planned", type=int),
        _required("--out-dir", "folder of released.tsv, compute.tsv, uncovered.tsv, .json"), SETTINGS]),
    "released-agreement": ("selection.agreement:agreement_step",
                           "Run the members on a sample of covered clips and compare with "
                           "the released logits (JSON).", [
        _required("--manifest", "AudioSet manifest"), _required("--released-dir", "released-index's folder"),
        _required("--weights-dir", "teacher checkpoints"),
        _optional("--classifiers", "NAME=PATH of domain classifiers whose kept sets are compared", nargs="*"),
        _workers("teachers"), _required("--out", "agreement JSON"), SETTINGS]),
    "domain-classifier": ("selection.domain:domain_classifier_step",
                          "Train the linear domain classifier for one split.", [
        *AUDIOSET, _required("--target-store", "target logits Zarr"), _required("--target-manifest", "target manifest"),
        _required("--split", "training split of the target (5, 10, 25, 50, 100 for TAU)"),
        _required("--out", "classifier weights"), _required("--report", "validation report JSON"), SETTINGS]),
    "score": ("selection.domain:score_step", "Score every AudioSet training clip with a split's domain classifier.", [
        *AUDIOSET, _required("--classifier", "classifier weights"), _required("--out", "scores .npy"),
        _optional("--settings", 'JSON: {"members": [...]} to score on a member subset')]),
    "histogram": ("selection.histogram:histogram_step", "Histogram of a split's scores with the thresholds marked.", [
        *AUDIOSET, _required("--scores", "scores .npy"), _required("--title", "what the scores are of"),
        _required("--thresholds", nargs="+", type=float), _required("--out", "PNG")]),
    "prune": ("selection.domain:prune_step", "Keep the AudioSet training clips whose score exceeds a threshold.", [
        *AUDIOSET, _required("--scores", "scores .npy"),
        _required("--key", "JSON: target, ensemble, split (copied into the stats)"),
        _required("--threshold", "threshold", type=float), _required("--out", "kept clips TSV"),
        _required("--stats", "kept share JSON")]),
    "random-subset": ("selection.controls:random_subset_step",
                      "Control: a random AudioSet training subset as large as a pruned set.", [
        *AUDIOSET, _required("--like", "the pruned set (kept clips TSV) whose size to match"),
        _required("--seed", "seed", type=int),
        _required("--name", "the pruned set's name; with the seed it fixes the draw"),
        _required("--out", "clips TSV")]),
    "select": ("selection.compare:select_step",
               "One selection method on one feature at one budget: the AudioSet training clips it keeps.", [
        *AUDIOSET, _required("--target-store", "target logits Zarr"), _required("--target-manifest", "target manifest"),
        _required("--split", "training split of the target"),
        _required("--method", "selection method (prunekd.selection.methods.METHODS)"),
        _required("--feature", "logits or embeddings"),
        _required("--budget", 'JSON: {"equal": t}, {"fraction": f} or {"threshold": t}'),
        _required("--name", "the selection's name; with the seed it fixes a seeded draw"),
        _optional("--like", "the report's pruned set (kept.tsv) whose size an equal budget takes"),
        _required("--out", "kept clips TSV"), _required("--stats", "stats JSON (kept, proxy)"), SETTINGS]),
    "summarise-selections": ("results.selections:selections_step",
                             "The selection methods side by side: kept, proxy, overlap, accuracy, gain over random "
                             "(the grid's files, from the settings).", [
        *AUDIOSET, _required("--target-store", "target logits Zarr"), _required("--target-manifest", "target manifest"),
        _required("--outdir", "summary folder of the target"),
        _optional("--truth", "the known-answer world's truth.tsv (precision and recall)"), SETTINGS]),
    "full-set": ("selection.controls:full_set_step",
                 "Control: every AudioSet training clip with logits (distillation without pruning).", [
        *AUDIOSET, _required("--out", "clips TSV")]),
    "enrichment": ("selection.enrichment:enrichment_step",
                   "What a pruned set contains: AudioSet class shares against all clips.", [
        *AUDIOSET, _required("--kept", "the pruned set (kept.tsv)"), _optional("--random", "its random control"),
        _required("--classifier", "the split's domain classifier"),
        _optional("--class-labels", "class_labels_indices.csv (class names)"),
        _required("--key", "JSON key of the pruned set"), _required("--out-table", "enrichment TSV"),
        _required("--out-json", "enrichment JSON")]),
    "enrichment-summary": ("results.enrichment_summary:enrichment_summary_step",
                           "A target's pruned sets' class enrichment: tables, plot (the grid's files, from the "
                           "settings).", [
        _required("--outdir"), SETTINGS]),
    "known-answer": ("demo.known_answer:known_answer_report", "The known-answer report: pruned sets vs the world's "
                     "truth, and the gains.", [
        *AUDIOSET, _required("--scores", "the split's scores.npy"),
        _required("--truth", "the world's truth.tsv (written by demo-data)"),
        _required("--metrics", "metrics.json of the split's trained models", nargs="+"), _required("--outdir"),
        _optional("--zero-shot", "known-answer-zero-shot's JSON: what the models know before fine-tuning"),
        SETTINGS]),
    "known-answer-zero-shot": ("demo.zero_shot:zero_shot_step", "Known-answer world: zero-shot scene accuracy of the "
                               "teachers and of the distilled students, before any fine-tuning.", [
        _required("--target-store", "the target's logits Zarr"), _required("--manifest", "the target's manifest"),
        _required("--decoded", "the target's decoded store"),
        _required("--students", "NAME=student.pt of the distilled students", nargs="+"),
        _required("--out", "zero_shot.json"), SETTINGS]),
    "pack-audio": ("data.packed:pack_step",
                   "Decode one manifest row block of AudioSet training clips into packed int16 Zarr.", [
        _required("--manifest", "AudioSet manifest"), _required("--shard", "row block index", type=int),
        _required("--out", "packed store"), THREADS, SETTINGS]),
    "packed-list": ("data.packed_list:packed_list_step",
                    "List the packed stores (the file a distillation waits for).", [
        _positional("stores", "packed stores", nargs="*"), _required("--out", "list file")]),
    "distill": ("student.distill:distill_step", "Distil CP-Mobile from the stored teacher logits on a pruned set.", [
        _required("--store", "AudioSet logits Zarr"), _required("--manifest", "AudioSet manifest"),
        _required("--kept", "kept clips TSV"), *TRAINED,
        _optional("--packed", "packed audio stores to read the clips from (else the source files are decoded)",
                  nargs="*", default=None),
        _optional("--stage-dir", "node-local folder to copy the packed clips of the set to first (staging: auto)"),
        _workers("distillation"),
        _optional("--staging", "auto: copy the set's packed clips to --stage-dir first where that pays",
                  choices=["auto", "never"], default="never"),
        SETTINGS]),
    "decode-target": ("data.decoded:decode_target_step",
                      "Decode a target's training and test clips once into a float32 "
                      "store that its training and evaluation read.", [
        _required("--manifest", "the target's manifest"), _required("--out", "decoded store (a folder)"),
        THREADS, SETTINGS]),
    "finetune": ("student.finetune:finetune_step",
                 "Fine-tune (or train from scratch: the baseline) on a challenge split.", [
        _required("--manifest", "TAU manifest"), _required("--split", "split"), _required("--seed", "seed", type=int),
        _optional("--init", "distilled student to start from; omit for the baseline"), *TRAINED, DECODED,
        _workers("training"), SETTINGS]),
    "evaluate": ("student.evaluate:evaluate_step",
                 "Evaluate a model on the test split: macro, per device, per class.", [
        _required("--model", "model weights"), _required("--manifest", "TAU manifest"),
        _required("--key", "JSON run key"), _required("--out", "metrics JSON"),
        _required("--predictions", "predictions CSV (submission layout)"), DECODED, _workers("training"), SETTINGS]),
    "submission": ("student.submission:submission_step",
                   "Predict the challenge evaluation set with the chosen fine-tuned "
                   "model (submission format, with parameters and MACs).", [
        _required("--models", "candidate fine-tuned models", nargs="+"),
        _required("--metrics", "their development-test metrics.json, same order", nargs="+"),
        _required("--manifest", "target manifest (class names)"),
        _required("--eval-root", "evaluation set folder (meta.csv with filename, the audio)"),
        _required("--out", "output.csv (submission format)"),
        _required("--info", "info.json (MACs, Params, test results)"), _workers("training"), SETTINGS]),
    "submission-package": ("student.package:package_step",
                           "The DCASE package: every split's evaluation-set predictions and the meta file, zipped "
                           "and checked as the challenge's validator does.", [
        _required("--outputs", "SPLIT=output.csv of each split", nargs="+"),
        _required("--infos", "SPLIT=info.json of each split", nargs="+"),
        _required("--eval-root", "evaluation set folder (meta.csv with filename, the audio)"),
        _required("--audioset-manifest", "AudioSet manifest (its hours, for the meta file)"),
        _required("--out-dir", "task1/<LABEL> folder"), _required("--out-zip", "<LABEL>.zip"), SETTINGS]),
    "summarise": ("results.summarise:summarise_step", "Tables 1 and 2 (CSV, Markdown, HTML), plots and training "
                  "curves (the grid's files, from the settings).", [
        _optional("--manifest", "target manifest: warns above the tables about classes a split lacks"),
        _required("--outdir", "summary folder"), SETTINGS]),
    "rejected": ("results.rejected:rejected_step",
                 "Count the rejected clips of every dataset by reason, for the report.", [
        _required("--tables", "DATASET=rejected.tsv ...", nargs="+"), _required("--outdir", "summary folder")]),
    "clip-jobs": (cmd_clip_jobs,
                  "The shard outputs that read given clips: snakemake --forcerun $(prunekd clip-jobs ...).", [
        _required("--manifest", "the dataset's manifest (results/manifests/<dataset>.tsv)"),
        _optional("--shard-size", "teachers.shard_size (default 10000)", type=int, default=10000),
        _positional("clips", "clip ids (the YTID), paths or file names", nargs="+")]),
    "cost": (cmd_cost, "GPU-hours of the planned jobs per rule and in total (snakemake --dry-run and the measured "
             "rates), before anyone submits.", [
        *PLANNED_RUN]),
    "status": (cmd_status, "How far a grid is, per rule (done, running, failed, left), the running training jobs' "
               "step and time left, GPU-hours spent against the plan: from the files Snakemake and the jobs write.", [
        *PLANNED_RUN]),
    "rates": ("cluster.rates:rates_step",
              "Rates for `prunekd cost` from the wall time of the GPU jobs a run has finished (its own GPUs).", [
        _optional("--results", "the run's results folder (paths.results)", default="results"),
        _optional("--out", "rates YAML to write (default: print it); then `prunekd cost --rates FILE`"),
        _optional("--fallback", f"rates for rules with no finished job ({DEFAULT_RATES})")]),
    "submit": ("cluster.controller:submit_step",
               "Run the Snakemake controller as a SLURM job (submitit), requeued on time-out.", [
        _optional("--profile", "Snakemake profile for the workflow's jobs", default="profiles/slurm"),
        _optional("--workdir", "workflow directory (holds the Snakefile)", default="."),
        _optional("--time-min", "controller time limit per run, minutes", type=int, default=2880),
        _optional("--mem-gb", type=float, default=4.0),
        _optional("--partition", "default: $SBATCH_PARTITION", default=os.environ.get("SBATCH_PARTITION")),
        _optional("--account", "default: $SBATCH_ACCOUNT", default=os.environ.get("SBATCH_ACCOUNT")),
        _optional("--log-dir", "controller logs (submitit)", default="results/logs/controller"),
        _optional("--wait", "wait for the controller job and fail if it fails", action="store_true"),
        _positional("snakemake_args", "more snakemake arguments, after --", nargs=argparse.REMAINDER)]),
}  # fmt: skip


def parser() -> argparse.ArgumentParser:
    """The `prunekd` argument parser: one subcommand per step, its function in `fn`."""
    top = argparse.ArgumentParser(prog="prunekd", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="cmd", required=True)
    for name, (fn, help_, arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(**({"fn": _step, "step": fn} if isinstance(fn, str) else {"fn": fn}))
        for flag, options in arguments:
            p.add_argument(flag, **options)
    return top


def main(argv=None):
    from prunekd.atomic import sigterm_as_exit
    from prunekd.errors import PrunekdError

    a = parser().parse_args(argv)
    with sigterm_as_exit():  # a job SLURM stops (time limit, scancel) cleans up its half-written outputs
        try:
            a.fn(a)
        except PrunekdError as e:  # one line naming the file, line or key to fix, not a traceback
            raise SystemExit(f"prunekd {a.cmd}: {e}") from None


if __name__ == "__main__":
    main()
