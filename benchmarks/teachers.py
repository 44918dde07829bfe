"""Benchmark: teacher ensemble throughput, the shard job's way against a naive loop.

CPU (default): nine small PaSST members (the real strides, shrunk width and depth), clips written as
WAV files and read through `compute_shard` exactly as a teacher job does (decoding workers, batches,
mel once per batch for all members), against a naive loop: one member and one clip at a time, the mel
recomputed for every member, hear21passt's model as it comes (its own attention, where the shard job
uses torch's fused scaled_dot_product_attention). Both produce the same logits (checked).

GPU (when CUDA is present, or --gpu): the full nine-member PaSST-S ensemble on 10 s clips, forward alone,
in fp16 and bf16 autocast and with fp16 weights: clips/s, FLOPs per clip (counted with torch's
FlopCounterMode), the measured bf16 matmul rate of the device, and the share of it the ensemble reaches.

    python benchmarks/teachers.py [--quick] [--gpu]     # last line: one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings

import numpy as np
import pandas as pd
import soundfile as sf
import torch
from common import matmul_rate

from prunekd.teachers.logit_store import N_CLASSES
from prunekd.teachers.passt import MEMBERS, Ensemble, build_mel, build_member, n_frames

SMALL = {"n_mels": 128, "embed_dim": 96, "depth": 2, "num_heads": 4}
PASST_S = {"n_mels": 128, "embed_dim": 768, "depth": 12, "num_heads": 12}


def members(arch: dict, frames: int) -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return [build_member(MEMBERS[m][0], arch, frames).eval() for m in MEMBERS]


@torch.no_grad()
def naive(models, wavs: torch.Tensor) -> np.ndarray:
    out = np.empty((len(wavs), len(models), N_CLASSES), np.float32)
    mel = build_mel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(len(wavs)):
            for j, m in enumerate(models):
                spec = mel(wavs[i : i + 1]).unsqueeze(1)  # the mel recomputed for every member
                out[i, j] = m(spec)[0][0].numpy()
    return out


def cpu(quick: bool) -> dict:
    import zarr

    from prunekd.teachers.logits import compute_shard
    from prunekd.teachers.passt import checkpoint_file

    seconds, n_clips, workers = (2.0, 16, 1) if quick else (10.0, 48, 2)
    frames = n_frames(seconds)
    models = members(SMALL, frames)
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal((n_clips, int(seconds * 32000)))).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        wdir = os.path.join(tmp, "weights")
        os.makedirs(wdir)
        for name, m in zip(MEMBERS, models):
            torch.save(m.state_dict(), os.path.join(wdir, checkpoint_file(name)))
        paths = []
        for i, x in enumerate(wav):
            paths.append(os.path.join(tmp, f"clip{i}.wav"))
            sf.write(paths[-1], x, 32000, subtype="PCM_16")
        man = pd.DataFrame(
            {
                "row": range(n_clips),
                "id": [f"c{i}" for i in range(n_clips)],
                "subset": "eval",
                "path": paths,
                "labels": "0",
                "duration": seconds,
                "status": "ok",
            }
        )
        man.to_csv(os.path.join(tmp, "m.tsv"), sep="\t", index=False)
        teachers = {
            "members": list(MEMBERS),
            "architecture": SMALL,
            "batch_size": 8,
            "num_workers": workers,
            "precision": "fp32",
        }
        data = {"clip_seconds": seconds, "tile_to_10s": False}
        out = os.path.join(tmp, "shard.zarr")
        t0 = time.perf_counter()
        compute_shard(
            os.path.join(tmp, "m.tsv"), "audioset", 0, n_clips, wdir, teachers, data, out, log=lambda *_: None
        )
        t_shard = time.perf_counter() - t0
        fast = zarr.open_group(out, mode="r")["member_logits"][:].astype(np.float32)
    # The naive loop gets the decoded audio for free (PCM-16 round trip as in the files).
    wav16 = torch.from_numpy(np.round(wav * 32767).clip(-32768, 32767).astype(np.float32) / 32768)
    k = max(2, n_clips // 8)  # a slice of the clips: the naive loop is slow
    plain = []  # hear21passt out of the box: its own attention
    for name, m in zip(MEMBERS, models):
        plain.append(build_member(MEMBERS[name][0], SMALL, frames, fused_attention=False).eval())
        plain[-1].load_state_dict(m.state_dict())
    t0 = time.perf_counter()
    slow = naive(plain, wav16[:k])
    t_naive = (time.perf_counter() - t0) * n_clips / k
    err = float(np.abs(slow - fast[:k]).max())
    return {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "members": len(models),
        "arch": SMALL,
        "clip_seconds": seconds,
        "clips": n_clips,
        "decode_workers": workers,
        "shard_clips_per_s": round(n_clips / t_shard, 2),
        "naive_clips_per_s": round(n_clips / t_naive, 3),
        "speedup": round(t_naive / t_shard, 1),
        "max_abs_logit_diff_fp16_store": round(err, 4),
    }


def member_load(repeats: int = 2) -> dict:
    """Seconds to load one release-shaped PaSST-S checkpoint (768 dims, depth 12, 998 frames) the way a shard
    job does, against building the member (hear21passt's random init) and then loading the state dict."""
    from prunekd.teachers.passt import load_member

    stride = MEMBERS[next(iter(MEMBERS))][0]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "member.pt")
        torch.save(build_member(stride, PASST_S, 998).state_dict(), path)
        times = {"load_member_s": [], "build_then_load_s": []}
        for _ in range(repeats):  # the first of each warms the file cache and the imports
            t0 = time.perf_counter()
            load_member(path, stride, PASST_S)
            times["load_member_s"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            build_member(stride, PASST_S, 998).load_state_dict(torch.load(path, weights_only=True))
            times["build_then_load_s"].append(time.perf_counter() - t0)
    out = {k: round(v[-1], 2) for k, v in times.items()}
    out["nine_members_s"] = round(9 * out["load_member_s"], 1)
    return out


def flops_per_clip(models, frames: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    spec = torch.zeros(1, 1, 128, frames)
    with FlopCounterMode(display=False) as fc, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in models:
            m.cpu()(spec)
    return float(fc.get_total_flops())


def _clips_per_s(fn, batch: int, iters: int) -> float:
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return batch * iters / (time.perf_counter() - t0)


@torch.no_grad()
def gpu(quick: bool) -> dict:
    """The ensemble forward alone on a batch already on the GPU, per precision: fp16 and bf16 autocast (the
    configured way: float32 weights, the residual stream float32) and fp16 weights (everything fp16)."""
    frames = n_frames(10.0)
    models = members(PASST_S, frames)
    flops = flops_per_clip(models, frames)
    ens = Ensemble(models).cuda().eval()
    batch, iters = (16, 3) if quick else (64, 10)
    wav = torch.randn(batch, 320000, device="cuda") * 0.1
    rates = {
        "fp16_autocast": _clips_per_s(lambda: ens(wav, torch.float16), batch, iters),
        "bf16_autocast": _clips_per_s(lambda: ens(wav, torch.bfloat16), batch, iters),
    }
    ref = ens(wav[:4]).mean(1)
    auto = ens(wav[:4], torch.float16).mean(1)
    ens.members.half()  # teachers.precision fp16_weights: the Ensemble casts the fp32 mel to each member's dtype
    rates["fp16_weights"] = _clips_per_s(lambda: ens(wav), batch, iters)
    half = ens(wav[:4]).mean(1)
    peak = matmul_rate(torch.bfloat16)
    return {
        "device": torch.cuda.get_device_name(),
        "members": len(models),
        "arch": PASST_S,
        "clip_seconds": 10,
        "batch": batch,
        "gpu_clips_per_s": {k: round(v, 1) for k, v in rates.items()},
        "max_abs_logit_vs_fp32": {
            "fp16_autocast": round(float((auto - ref).abs().max()), 5),
            "fp16_weights": round(float((half - ref).abs().max()), 5),
        },
        "tflop_per_clip": round(flops / 1e12, 3),
        "bf16_matmul_tflops": round(peak / 1e12, 1),
        "share_of_matmul_rate": {k: round(v * flops / peak, 3) for k, v in rates.items()},
        "hours_for_2M_clips": round(2.08e6 / rates["fp16_autocast"] / 3600, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short clips, few of them: ends within a minute")
    ap.add_argument("--gpu", action="store_true", help="only the GPU measurement (needs CUDA)")
    a = ap.parse_args()
    res = {"benchmark": "teachers", "quick": a.quick}
    if not a.gpu:
        res.update(cpu(a.quick))
        res["checkpoint_load"] = member_load()
    if torch.cuda.is_available():
        res["gpu"] = gpu(a.quick)
    elif a.gpu:
        raise SystemExit("--gpu: no CUDA device here")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
