"""What the workflow plans from the configuration before any job runs: the raw files each manifest reads, what the
demo writes, and how many teacher and packing shards each dataset gets.

Standard library only (and `released_index` for the released logits' index): the workflow builds its DAG from this at
parse time (workflow/rules/inputs.smk, shards.smk); the real data may not be on disk yet (a dry run).
"""

from __future__ import annotations

import os
from pathlib import Path

from prunekd.dag import layouts


class Plan:
    """`config`: the validated config; `targets`: the targets that run; `layout`: AudioSet's layout (segments
    or hdf5, layouts.audioset_layout)."""

    def __init__(self, config: dict, targets: dict, layout: str):
        self.config, self.targets, self.layout = config, targets, layout
        self.demo = bool(config["demo"]["enabled"])
        self.audioset = config["paths"]["audioset"]
        self.subsets = config["data"]["audioset_subsets"]
        self._released_rows: dict = {}

    # ---- the raw inputs ----------------------------------------------------------------------

    def audioset_lists(self) -> list[str]:
        """AudioSet's metadata files: the segment lists, or the HDF5 files (names, labels and MP3 bytes)."""
        files = layouts.HDF5_FILES if self.layout == "hdf5" else layouts.SEGMENT_FILES
        return [f"{self.audioset}/{files[s]}" for s in self.subsets]

    def target_lists(self, target: str) -> list[str]:
        """The metadata files a target's manifest is built from (over every defined target)."""
        t = self.config["targets"][target]
        if t["adapter"] != "tau2022":
            return [t["csv"]]
        split_dir = layouts.tau_split_dir(t["root"], t.get("split_dir"))
        return [f"{t['root']}/meta.csv"] + [f"{split_dir}/{n}" for n in layouts.TAU_SPLIT_FILES]

    def demo_writes(self, target: str) -> bool:
        """Whether the demo generates this target's data (TAU format, or a csv target it is asked for).

        Over every defined target, not only those that run: choosing targets never reruns the demo data.
        """
        t = self.config["targets"][target]
        return self.demo and (t["adapter"] == "tau2022" or target in self.config["demo"]["csv_targets"])

    def demo_evaluations(self) -> dict[str, str]:
        """Target -> the evaluation set folder the demo writes (demo.evaluation_clips > 0, a TAU target the demo
        writes with an `evaluation`): the TAU 2024 evaluation layout, so that the demo ends with a package."""
        if not self.demo or not self.config["demo"].get("evaluation_clips"):
            return {}
        return {
            t: v["evaluation"]["root"]
            for t, v in self.config["targets"].items()
            if v["adapter"] == "tau2022" and self.demo_writes(t) and v.get("evaluation")
        }

    def demo_folders(self) -> dict[str, str]:
        """Config key -> folder the demo writes into (it may write only into folders it created)."""
        out = {"paths.audioset": self.audioset} if self.demo else {}
        for t, v in self.config["targets"].items():
            if self.demo_writes(t):
                if v["adapter"] == "tau2022":
                    out[f"targets.{t}.root"] = v["root"]
                else:
                    out[f"targets.{t}.csv"] = os.path.dirname(v["csv"]) or "."
        for t, root in self.demo_evaluations().items():
            out[f"targets.{t}.evaluation.root"] = root
        return out

    def data_paths(self) -> list[tuple[str, dict[str, str]]]:
        """(dataset, config key -> path) of the real data the manifests read; what the demo writes is left out."""
        out = []
        if not self.demo:
            keys = {"paths.audioset": self.audioset}
            if self.layout == "hdf5":  # names, labels and audio all in the three HDF5 files
                for s in self.subsets:
                    f = layouts.HDF5_FILES[s]
                    keys[f"paths.audioset ({f})"] = f"{self.audioset}/{f}"
            else:
                for f in [layouts.SEGMENT_FILES[s] for s in self.subsets] + ["class_labels_indices.csv"]:
                    keys[f"paths.audioset ({f})"] = f"{self.audioset}/{f}"
                keys["paths.audioset_audio"] = self.config["paths"]["audioset_audio"] or f"{self.audioset}/audio"
            out.append(("audioset", keys))
        for t, v in self.targets.items():
            # the challenge evaluation set a submission predicts, unless the demo writes it
            ev = None if t in self.demo_evaluations() else v.get("evaluation")
            evaluation = {} if not ev else {f"targets.{t}.evaluation.root": ev["root"]}
            evaluation |= {f"targets.{t}.evaluation.root (meta.csv)": f"{ev['root']}/meta.csv"} if ev else {}
            if self.demo_writes(t):
                if evaluation:
                    out.append((t, evaluation))
                continue
            if v["adapter"] == "tau2022":
                keys = {f"targets.{t}.root": v["root"], f"targets.{t}.root (meta.csv)": f"{v['root']}/meta.csv"}
                # meta.csv names every clip as audio/<file>.wav; the manifest reads all the challenge split files.
                keys[f"targets.{t}.root (audio/)"] = f"{v['root']}/audio"
                split_dir = layouts.tau_split_dir(v["root"], v.get("split_dir"))
                where = f"targets.{t}.split_dir" if v.get("split_dir") else f"targets.{t}.root"
                if v.get("split_dir"):
                    keys[where] = split_dir
                for f in layouts.TAU_SPLIT_FILES:
                    keys[f"{where} ({f})"] = f"{split_dir}/{f}"
            else:
                keys = {f"targets.{t}.csv": v["csv"], f"targets.{t}.audio_root": v["audio_root"]}
            out.append((t, keys | evaluation))
        return out

    # ---- the shards --------------------------------------------------------------------------

    def listed_rows(self, dataset: str) -> int:
        """Rows of a dataset's manifest (= listed clips), known before the manifest is built: counted from the
        lists when they are on disk, else what the demo will write, else the real data's nominal count."""
        if dataset == "audioset":
            total = 0
            for s in self.subsets:
                h = Path(self.audioset) / layouts.HDF5_FILES[s]
                f = Path(self.audioset) / layouts.SEGMENT_FILES[s]
                if self.layout == "hdf5" and h.exists():
                    total += layouts.hdf5_rows(h)
                elif f.exists():
                    total += layouts.count_listed(f, 3)
                elif self.demo:
                    total += self.config["demo"]["audioset_clips"][s]
                else:
                    total += layouts.NOMINAL_ROWS[s]
            return total
        t = self.targets[dataset]
        f = Path(self.target_lists(dataset)[0])
        if f.exists():
            return layouts.count_listed(f, 1)
        if self.demo_writes(dataset):
            if t["adapter"] == "tau2022":
                return self.config["demo"]["tau_train_clips"] + self.config["demo"]["tau_test_clips"]
            return sum(self.config["demo"]["csv_target_clips"].values())
        return layouts.NOMINAL_ROWS["tau2022"] if t["adapter"] == "tau2022" else 1

    def blocks(self, n: int) -> list[str]:
        """Shard names for n rows: blocks of teachers.shard_size, at least one."""
        size = self.config["teachers"]["shard_size"]
        return [f"{i:05d}" for i in range(max(1, -(-n // size)))]

    def shards(self, dataset: str) -> list[str]:
        """Blocks of a dataset's manifest rows (the packed-audio shards; the teacher shards without released
        logits)."""
        return self.blocks(self.listed_rows(dataset))

    def released_rows_to_compute(self, released: dict) -> int | None:
        """With teachers.released_logits: AudioSet rows the members compute (eval, and the training clips the
        index lacks unless `uncovered: list`), counted from the lists and the index. None when either is not on
        disk yet: every row is planned then, and the shards past what is left to compute run empty. Raises
        released.ReleasedLogitsError for an index it refuses."""
        if "audioset" not in self._released_rows:
            from prunekd.dag import released_index as _released

            files = {s: Path(f) for s, f in zip(self.subsets, self.audioset_lists())}
            n = None
            if all(f.exists() for f in files.values()) and Path(released["index"]).exists():
                ids = {s: layouts.listed_ids(f, self.layout) for s, f in files.items()}
                n = _released.planned_rows(ids, released["index"], layouts.ytid_of_audio_name, released["uncovered"])
            self._released_rows["audioset"] = n
        return self._released_rows["audioset"]

    def teacher_shards(self, dataset: str, released: dict | None) -> list[str]:
        """The teacher jobs of a dataset: with released logits, AudioSet's cover only what is left to compute."""
        if dataset == "audioset" and released is not None:
            n = self.released_rows_to_compute(released)
            return self.blocks(self.listed_rows(dataset) if n is None else n)
        return self.shards(dataset)
