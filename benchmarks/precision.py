"""Benchmark: what a lower precision does to the teacher logits (the stored numbers everything downstream reads).

Release-shaped PaSST-S members (768 dims, depth 12, the real strides; random weights, as no release can be
downloaded here) on 10 s clips of tones in noise, run in fp32 and under fp16 and bf16 autocast, the way
`Ensemble` runs them in a shard job. Reports the largest and the mean absolute difference of the ensemble
logits and of their sigmoids against fp32, and the fp16 storage rounding for scale. On CPU unless CUDA is
present (the rounding of fp16/bf16 matmuls is the same kind on both; the GPU figure is the one that counts).

    python benchmarks/precision.py [--quick]     # last line: one JSON object
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from prunekd.teachers.passt import MEMBERS, Ensemble, build_member

PASST_S = {"n_mels": 128, "embed_dim": 768, "depth": 12, "num_heads": 12}


def clips(n: int, seconds: float = 10.0, sr: int = 32000) -> torch.Tensor:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    out = [0.2 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) + 0.02 * rng.standard_normal(len(t)) for _ in range(n)]
    return torch.tensor(np.stack(out), dtype=torch.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one member, one clip: about a minute on 2 cores")
    a = ap.parse_args()
    names = list(MEMBERS)[:1] if a.quick else [list(MEMBERS)[0], list(MEMBERS)[-1]]
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ens = Ensemble([build_member(MEMBERS[m][0], PASST_S, 998).eval() for m in names]).to(device)
    wav = clips(1 if a.quick else 3).to(device)
    t0 = time.perf_counter()
    ref = ens(wav).mean(dim=1)
    res = {"benchmark": "precision", "quick": a.quick, "device": str(device), "members": names, "clips": len(wav)}
    for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        out = ens(wav, dtype).mean(dim=1)
        d, ds = (out - ref).abs(), (torch.sigmoid(out) - torch.sigmoid(ref)).abs()
        res[name] = {
            "max_abs_logit": round(float(d.max()), 5),
            "mean_abs_logit": round(float(d.mean()), 6),
            "max_abs_prob": round(float(ds.max()), 6),
        }
    res["fp16_storage_max_abs_logit"] = round(float((ref.half().float() - ref).abs().max()), 6)
    res["logit_std"] = round(float(ref.std()), 4)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
