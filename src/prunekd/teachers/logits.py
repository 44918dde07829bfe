"""Teacher ensemble logits: one shard of a manifest at a time, then a gather into one Zarr store.

Shard store (one per job, written to a temporary name and renamed when complete):
  row [n] int64 (manifest row), member_logits [n, M, 527] float16, member_embeddings [n, M, D] float16 (unless
  teachers.embeddings is off), attrs.rejected (decode failures).
Gathered store per dataset:
  id_utf8 [N, W] uint8 (store.write_ids), row [N] int64, member_logits [N, M, 527] float16, ensemble [N, 527]
  float32 (mean of the members in logit space), member_embeddings [N, M, D] float16 (the members' pre-head
  features, NaN on released rows), labels [N, 527] bool (AudioSet), attrs with provenance.
Chunks are whole rows, so a distillation batch of rows reads few chunks.
"""

from __future__ import annotations

import datetime
import time

import numpy as np
import pandas as pd
import torch
import zarr

from prunekd import __version__
from prunekd.atomic import atomic_path, write_table
from prunekd.data.datasets import ClipDataset, clip_collate
from prunekd.data.tables import labels_multi_hot, ok_rows
from prunekd.teachers.logit_store import ENSEMBLE_CHUNK, N_CLASSES, ROW_CHUNK, create_ensemble_array, write_ids
from prunekd.teachers.passt import MEMBERS, Ensemble, load_member, sha256


def clip_samples(data_cfg: dict, sample_rate: int = 32000) -> tuple[int, int | None]:
    """(samples per clip, tiled length) for the teacher pass: clips are cut to `clip_seconds`, and short target
    clips optionally repeated up to the teachers' 10 s."""
    n = int(data_cfg["clip_seconds"] * sample_rate)
    return n, (int(10 * sample_rate) if data_cfg.get("tile_to_10s") else None)


# Host threads of a GPU shard job: the GPU computes, the host decodes in the loader workers and launches
# kernels; a full set of intra-op threads only competes with the workers for the job's cores.
GPU_HOST_THREADS = 4


def teacher_batch(batch_size: int, seconds: float) -> int:
    """Clips per teacher batch. `teachers.batch_size` counts 10 s clips; shorter clips fill a batch with the same
    seconds of audio, so the GPU gets as many tokens per launch (32 one-second clips are 1/10 of the work for the
    same ~2,000 kernel launches of nine members). A clip's logits do not depend on its batch."""
    return max(1, int(round(batch_size * 10 / seconds)))


def embedding_dim(teacher_cfg: dict) -> int | None:
    """Width of the stored member embeddings (PaSST-S: 768), None where teachers.embeddings is off."""
    return teacher_cfg["architecture"]["embed_dim"] if teacher_cfg.get("embeddings", False) else None


def run_members(part: pd.DataFrame, teacher_cfg: dict, data_cfg: dict, weights_dir, log=print, what: str = "shard"):
    """The members on the clips of `part` (manifest rows): (rows, member logits [n, M, 527] float16, rejected,
    member embeddings [n, M, D] float16 or None where teachers.embeddings is off)."""
    from prunekd.teachers.passt import locate_weights

    members = teacher_cfg["members"]
    dim = embedding_dim(teacher_cfg)
    no_emb = None if dim is None else np.zeros((0, len(members), dim), np.float16)
    if part.empty:  # nothing to compute (e.g. a shard past the rows the released logits leave): no member loaded
        log(f"{what}: no clips to compute")
        return [], np.zeros((0, len(members), N_CLASSES), np.float16), [], no_emb
    n, tile = clip_samples(data_cfg)
    paths = locate_weights(members, weights_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.set_num_threads(min(torch.get_num_threads(), GPU_HOST_THREADS))
    t_load = time.time()
    ens = Ensemble([load_member(paths[m], MEMBERS[m][0], teacher_cfg["architecture"]) for m in members])
    ens.to(device)
    log(f"{what}: {len(members)} teachers loaded in {time.time() - t_load:.1f} s")
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None, "fp16_weights": None}[teacher_cfg["precision"]]
    amp = amp if device.type == "cuda" else None
    if teacher_cfg["precision"] == "fp16_weights" and device.type == "cuda":
        ens.members.half()  # everything in fp16, the mel in fp32: faster than autocast (benchmarks/teachers.py)
    ds = ClipDataset(part["path"], part["row"], 32000, n, tile)
    workers = teacher_cfg["num_workers"]
    batch = teacher_batch(teacher_cfg["batch_size"], (tile or n) / 32000)
    log(f"{what}: {len(ds)} clips of {(tile or n) / 32000:g} s, batches of {batch}")
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=batch,
        num_workers=workers,
        collate_fn=clip_collate,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    rows, logits, feats, rejected = [], [], [], []
    t0, done = time.time(), 0
    for r, wav, bad in loader:
        rejected += bad
        done += len(r) + len(bad)
        if wav is not None:
            # Kept on the device (a shard's logits at fp16 are small): a copy to the host every batch would
            # wait for the GPU and stall the next batch's launch.
            out = ens(wav.to(device, non_blocking=True), amp, embeddings=dim is not None)
            if dim is not None:  # the same forward pass: hear21passt returns the features beside the logits
                out, emb = out
                feats.append(emb.half())
            logits.append(out.half())
            rows += r
        rate = done / max(time.time() - t0, 1e-9)
        log(f"{what}: {done}/{len(ds)} clips, {rate:.1f} clips/s, eta {(len(ds) - done) / max(rate, 1e-9):.0f} s")
    member_logits = torch.cat(logits).cpu().numpy() if logits else np.zeros((0, len(members), N_CLASSES), np.float16)
    member_embeddings = torch.cat(feats).cpu().numpy() if feats else no_emb
    return rows, member_logits, rejected, member_embeddings


def shard_rows(manifest: pd.DataFrame, shard: int, shard_size: int, compute_table=None) -> pd.DataFrame:
    """The usable manifest rows of a shard: block `shard` of the manifest, or, with released logits, block
    `shard` of the rows the members compute (released.write_coverage's compute.tsv)."""
    if compute_table is None:
        return ok_rows(manifest, shard * shard_size, (shard + 1) * shard_size)
    rows = pd.read_csv(compute_table, sep="\t")["row"].to_numpy()[shard * shard_size : (shard + 1) * shard_size]
    part = manifest.iloc[rows]
    return part[part["status"] == "ok"]


def compute_shard(
    manifest_path,
    dataset: str,
    shard: int,
    shard_size: int,
    weights_dir,
    teacher_cfg: dict,
    data_cfg: dict,
    out,
    log=print,
    compute_table=None,
) -> dict:
    manifest = pd.read_csv(manifest_path, sep="\t", dtype={"labels": str}, keep_default_na=False)
    part = shard_rows(manifest, shard, shard_size, compute_table)
    members = teacher_cfg["members"]
    t0 = time.time()
    rows, member_logits, rejected, member_emb = run_members(
        part, teacher_cfg, data_cfg, weights_dir, log, f"shard {shard}"
    )
    with atomic_path(out) as tmp:
        g = zarr.open_group(str(tmp), mode="w")
        g.create_array("row", data=np.asarray(rows, dtype=np.int64))
        g.create_array("member_logits", data=member_logits, chunks=(ROW_CHUNK, len(members), N_CLASSES))
        if member_emb is not None:
            g.create_array("member_embeddings", data=member_emb, chunks=(ROW_CHUNK, len(members), member_emb.shape[2]))
        g.attrs.update(
            {"dataset": dataset, "shard": shard, "members": members, "rejected": [[int(r), why] for r, why in rejected]}
        )
    stats = {"shard": shard, "clips": len(rows), "rejected": len(rejected), "seconds": time.time() - t0}
    log(f"shard {shard}: wrote {len(rows)} clips, {len(rejected)} rejected")
    return stats


class _ShardStream:
    """The shards' member logits (or another per-row array) as one stream in row order (each shard covers
    increasing rows, after the last)."""

    def __init__(self, shards, dataset, array: str = "member_logits"):
        self.shards = sorted(shards, key=lambda s: s.attrs["shard"])
        self.dataset, self.array, self.i, self.block, self.at = dataset, array, 0, None, 0

    def take(self, k: int) -> np.ndarray:
        out = []
        while k > 0:
            if self.block is None or self.at == len(self.block):
                s = self.shards[self.i]
                self.i += 1
                self.block, self.at = s[self.array][:], 0
                if not np.isfinite(self.block).all():
                    bad = int(s["row"][:][~np.isfinite(self.block).all(axis=(1, 2))][0])
                    what = "logits" if self.array == "member_logits" else "embeddings"
                    raise RuntimeError(
                        f"{self.dataset}: NaN or Inf {what} for manifest row {bad} (shard {s.attrs['shard']})"
                    )
                continue
            n = min(k, len(self.block) - self.at)
            out.append(self.block[self.at : self.at + n])
            self.at += n
            k -= n
        return np.concatenate(out) if out else None


def gather(
    manifest_path,
    rejected_path,
    shard_paths,
    dataset: str,
    teacher_cfg: dict,
    weights_dir,
    out,
    rejected_out,
    log=print,
    bad_audio: str = "skip",
    released_dir=None,
) -> dict:
    """Check that every usable manifest row was written exactly once and is finite, then concatenate.

    bad_audio "fail": clips that failed to decode stop the run here, named, before anything downstream.
    released_dir (AudioSet with teachers.released_logits: released.write_coverage's folder): the covered
    training clips take their released row as ensemble logits (member logits NaN, `released` True); training
    clips left out by `uncovered: list` are listed as rejected.
    """
    from prunekd.teachers.passt import locate_weights

    manifest = pd.read_csv(manifest_path, sep="\t", dtype={"labels": str}, keep_default_na=False)
    shards = [zarr.open_group(str(p), mode="r") for p in shard_paths]
    members = teacher_cfg["members"]
    decode_rejected = [(r, why) for g in shards for r, why in g.attrs["rejected"]]
    if decode_rejected and bad_audio == "fail":
        r, why = decode_rejected[0]
        raise RuntimeError(
            f"{manifest['path'][r]}: {why} (manifest row {r}; data.bad_audio: fail); "
            f"{len(decode_rejected)} clips of {dataset} failed to decode"
        )
    ok = (manifest["status"] == "ok").to_numpy()
    released_rows, left_out, rel_cfg = {}, [], None
    if released_dir is not None:
        from pathlib import Path

        from prunekd.teachers.released import open_logits

        rel_cfg = teacher_cfg["released_logits"]
        rel = pd.read_csv(Path(released_dir) / "released.tsv", sep="\t", dtype={"id": str})
        rel = rel[ok[rel["row"].to_numpy()]]
        released_rows = dict(zip(rel["row"].tolist(), rel["released_row"].tolist()))
        unc = pd.read_csv(Path(released_dir) / "uncovered.tsv", sep="\t", dtype={"id": str})
        if rel_cfg.get("uncovered", "compute") == "list":
            left_out = [int(r) for r in unc["row"] if ok[r]]
    shard_rows_ = np.concatenate([g["row"][:] for g in shards]) if shards else np.zeros(0, np.int64)
    from_file = np.fromiter(released_rows, np.int64, len(released_rows))
    rows = np.concatenate([shard_rows_, from_file])
    counts = np.bincount(rows, minlength=len(manifest))
    expected = ok.copy()
    expected[[r for r, _ in decode_rejected]] = False
    expected[left_out] = False
    if (counts > 1).any():
        raise RuntimeError(f"{dataset}: manifest rows written more than once: {np.flatnonzero(counts > 1)[:10]}")
    missing = np.flatnonzero(expected & (counts == 0))
    if len(missing):
        raise RuntimeError(f"{dataset}: {len(missing)} manifest rows have no logits, e.g. rows {missing[:10]}")
    extra = np.flatnonzero(~expected & (counts > 0))
    if len(extra):
        raise RuntimeError(f"{dataset}: logits for rows that are not usable: {extra[:10]}")
    for g in shards:
        if g.attrs["members"] != members:
            raise RuntimeError(f"{dataset}: shard {g.attrs['shard']} was computed with other members")
    dim = embedding_dim(teacher_cfg)
    for g in shards if dim is not None else []:
        if "member_embeddings" not in g or g["member_embeddings"].shape[2] != dim:
            raise RuntimeError(
                f"{dataset}: shard {g.attrs['shard']} holds no member embeddings of width {dim} "
                "(teachers.embeddings is on: rerun its teacher job)"
            )
    sorted_rows = np.sort(rows)
    is_released = np.isin(sorted_rows, from_file)
    n = len(rows)
    weights = locate_weights(members, weights_dir)
    released_array = open_logits(rel_cfg["logits"]) if released_rows else None
    with atomic_path(out) as tmp:
        g = zarr.open_group(str(tmp), mode="w")
        g.create_array("row", data=sorted_rows, chunks=(max(1, min(n, 1 << 16)),))
        write_ids(g, manifest["id"].astype(str).to_numpy()[sorted_rows])
        g.create_array("released", data=is_released, chunks=(max(1, min(n, 1 << 16)),))
        ml = g.create_array(
            "member_logits",
            shape=(n, len(members), N_CLASSES),
            dtype="float16",
            chunks=(ROW_CHUNK, len(members), N_CLASSES),
            fill_value=np.nan,
        )
        en = create_ensemble_array(g, n)
        me = None
        if dim is not None:
            me = g.create_array(
                "member_embeddings",
                shape=(n, len(members), dim),
                dtype="float16",
                chunks=(ROW_CHUNK, len(members), dim),
                fill_value=np.nan,  # released rows: EfficientAT released logits only
            )
            me.attrs["what"] = "each member's pre-head features (mean of the class and distillation tokens)"
            emb_stream = _ShardStream(shards, dataset, "member_embeddings")
        # Output blocks of whole chunks; computed rows stream from the shards in row order, released rows are
        # read from the memory-mapped file.
        stream = _ShardStream(shards, dataset)
        block = ENSEMBLE_CHUNK
        for a in range(0, n, block):
            b = min(n, a + block)
            rel_here = is_released[a:b]
            ens = np.empty((b - a, N_CLASSES), np.float32)
            k = int((~rel_here).sum())
            if k:
                computed = stream.take(k)
                ens[~rel_here] = computed.astype(np.float32).mean(axis=1)
                if rel_here.any():
                    full = np.full((b - a, len(members), N_CLASSES), np.nan, np.float16)
                    full[~rel_here] = computed
                    ml[a:b] = full
                else:
                    ml[a:b] = computed
                if me is not None:
                    emb = emb_stream.take(k)
                    if rel_here.any():
                        full = np.full((b - a, len(members), dim), np.nan, np.float16)
                        full[~rel_here] = emb
                        emb = full
                    me[a:b] = emb
            if rel_here.any():
                src = np.array([released_rows[r] for r in sorted_rows[a:b][rel_here]], np.int64)
                order = np.argsort(src)
                vals = np.empty((len(src), N_CLASSES), np.float32)
                vals[order] = np.asarray(released_array[src[order]], np.float32)
                if not np.isfinite(vals).all():
                    bad = int(np.flatnonzero(~np.isfinite(vals).all(axis=1))[0])
                    raise RuntimeError(
                        f"{rel_cfg['logits']}: NaN or Inf in row {src[bad]} "
                        f"(clip {manifest['id'][sorted_rows[a:b][rel_here][bad]]})"
                    )
                ens[rel_here] = vals
            en[a:b] = ens
        if "labels" in manifest.columns:
            g.create_array(
                "labels",
                data=labels_multi_hot(manifest["labels"].to_numpy()[sorted_rows], N_CLASSES),
                chunks=(ROW_CHUNK, N_CLASSES),
            )
        attrs = {
            "dataset": dataset,
            "members": members,
            "strides": {m: MEMBERS[m][0] for m in members},
            "architecture": teacher_cfg["architecture"],
            "checkpoints": {m: {"file": str(weights[m]), "sha256": sha256(weights[m])} for m in members},
            "prunekd_version": __version__,
            "torch_version": torch.__version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "n_clips": int(n),
            "n_rejected": int(len(manifest) - n),
            "embeddings": dim is not None,
        }
        if rel_cfg is not None:
            attrs["released_logits"] = {
                "logits": str(rel_cfg["logits"]),
                "index": str(rel_cfg["index"]),
                "index_sha256": sha256(rel_cfg["index"]),
                "rows_from_file": int(is_released.sum()),
                "uncovered": rel_cfg.get("uncovered", "compute"),
            }
        g.attrs.update(attrs)
    earlier = pd.read_csv(rejected_path, sep="\t", dtype=str, keep_default_na=False)
    lost = decode_rejected + [(r, "not in the released logits") for r in left_out]
    dec = pd.DataFrame(
        {
            "row": [r for r, _ in lost],
            "id": manifest["id"].astype(str).to_numpy()[[r for r, _ in lost]] if lost else [],
            "reason": [w for _, w in lost],
        }
    )
    all_rej = pd.concat([earlier[["row", "id", "reason"]], dec.astype(str)], ignore_index=True)
    write_table(rejected_out, all_rej)
    msg = f"{dataset}: gathered {n} clips from {len(shards)} shards"
    if rel_cfg is not None:
        msg += f" and {int(is_released.sum())} from {rel_cfg['logits']}; {len(left_out)} uncovered clips left out"
    log(f"{msg}; {len(all_rej)} rejected")
    return {"clips": int(n), "rejected": int(len(all_rej)), "released": int(is_released.sum())}


def teacher_logits_step(
    manifest, dataset, shard, weights_dir, out, settings: dict, num_workers=0, compute_table=None, log=print
) -> None:
    """`prunekd teacher-logits`: how many loader processes is a flag beside the settings, not one of them."""
    s = settings
    teachers = {**s["teachers"], "num_workers": num_workers}
    compute_shard(manifest, dataset, shard, s["shard_size"], weights_dir, teachers, s["data"], out, log, compute_table)


def gather_step(
    manifest, rejected, shards, dataset, weights_dir, out, rejected_out, settings: dict, bad_audio="skip",
    released_dir=None, log=print,
) -> None:  # fmt: skip
    """`prunekd gather`."""
    gather(
        manifest, rejected, shards, dataset, settings["teachers"], weights_dir, out, rejected_out, log, bad_audio,
        released_dir,
    )  # fmt: skip
