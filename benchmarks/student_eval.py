"""Benchmark: the CP-Mobile student's inference with float16 parameters (as submitted) against float32.

The evaluation step predicts the test split with both (the figures as submitted, and float32 beside them), the
submission step with float16 only. The baseline-sized student (61,148 parameters) on batches of 1 s log-mel
inputs (256 x 65), random weights with running statistics away from the identity; `torch.set_num_threads` as
the evaluate rule's threads. Three ways: float32; PyTorch's own float16 model (`model.half()`, as the baseline
runs it on a GPU); the pipeline's float16 (`evaluate.load_model`: float16 values, float32 accumulation). Reports
clips/s of each at steady state (after warm-up batches) and the largest probability difference of the
pipeline's float16 and of float32 against PyTorch's float16. On CPU unless CUDA is present.

    python benchmarks/student_eval.py [--quick] [--threads N]     # last line: one JSON object
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from prunekd.student.cpmobile import build_student
from prunekd.student.evaluate import load_model

STUDENT = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())["student"]


def rate(model, x: torch.Tensor, reps: int, device) -> tuple[float, torch.Tensor]:
    dtype = next(model.parameters()).dtype
    if getattr(model, "precision", "") == "float16":
        x = x.half().float()
    with torch.no_grad():
        for _ in range(2):  # warm-up: kernel choice, allocations
            model(x.to(device, dtype))
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            out = model(x.to(device, dtype))
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    return reps * len(x) / dt, torch.softmax(out.float(), dim=1).cpu()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer batches: ends within a minute")
    ap.add_argument("--threads", type=int, default=4, help="CPU threads (the evaluate rule's)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch, reps = (64, 2) if a.quick else (256, 5)
    torch.manual_seed(0)
    model = build_student(STUDENT, 10)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.2, 2.0)
    x = torch.randn(batch, 1, 256, 65) * 3
    with tempfile.TemporaryDirectory() as d:
        torch.save({"state_dict": model.state_dict(), "student": STUDENT, "n_classes": 10}, f"{d}/m.pt")
        r32, p32 = rate(load_model(f"{d}/m.pt", "float32")[0].to(device), x, reps, device)
        r16, p16 = rate(load_model(f"{d}/m.pt", "float16")[0].to(device), x, reps, device)
        rh, ph = rate(load_model(f"{d}/m.pt", "float32")[0].to(device).half(), x, reps, device)
    res = {
        "benchmark": "student_eval",
        "quick": a.quick,
        "device": str(device),
        "threads": a.threads,
        "batch": batch,
        "clips_per_s_float32": round(r32, 1),
        "clips_per_s_float16": round(r16, 1),
        "clips_per_s_torch_half": round(rh, 1),
        "max_prob_diff_float16_vs_torch_half": float((p16 - ph).abs().max()),
        "max_prob_diff_float32_vs_torch_half": float((p32 - ph).abs().max()),
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
