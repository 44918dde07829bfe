"""Benchmark: a CPU training step with glibc's default malloc against the one `prunekd` sets (cli.keep_freed_memory:
freed blocks up to 32 MB stay in the heap instead of going back to the kernel).

The known-answer world's distillation step (batch 32 of 0.5 s clips, the report's front end and CP-Mobile, BCE,
AdamW) and its fine-tuning step (the split's 50 clips, cross-entropy), one thread, as the demo's jobs run them. Each
variant runs in its own process (malloc's settings hold for a process's life); the processes take turns, so that a
slower moment of the VM hits both. Per process: the median step time over timed loops after warm-up steps, and the
page faults and system CPU seconds per step (getrusage).

    python benchmarks/allocator.py [--quick] [--rounds N]     # last line: one JSON object
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, statistics, sys, time
from pathlib import Path
import torch, torch.nn.functional as F, yaml
from prunekd import cli
from prunekd.student.cpmobile import build_student
from prunekd.student.frontend import MelFrontEnd

variant, shape, steps, loops = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
held = cli.keep_freed_memory() if variant == "prunekd" else False
torch.set_num_threads(1)
torch.manual_seed(0)
cfg = yaml.safe_load((Path(sys.argv[5]) / "config.yaml").read_text())
batch, classes = {"distill": (32, 527), "finetune": (50, 10)}[shape]
fe = MelFrontEnd(cfg["frontend"])
model = build_student(cfg["student"], n_classes=classes).to(memory_format=torch.channels_last)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
wav = torch.randn(batch, cfg["frontend"]["sample_rate"] // 2)
target = torch.sigmoid(torch.randn(batch, classes)) if shape == "distill" else torch.randint(0, classes, (batch,))
loss = F.binary_cross_entropy_with_logits if shape == "distill" else F.cross_entropy

def step():
    loss(model(fe(wav).contiguous(memory_format=torch.channels_last)), target).backward()
    opt.step()
    opt.zero_grad()

for _ in range(5):
    step()
ms, r0 = [], resource.getrusage(resource.RUSAGE_SELF)
for _ in range(loops):
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    ms.append((time.perf_counter() - t0) / steps * 1000)
r1 = resource.getrusage(resource.RUSAGE_SELF)
n = steps * loops
print(json.dumps({"set": held, "step_ms": statistics.median(ms), "faults_per_step": (r1.ru_minflt - r0.ru_minflt) / n,
                  "sys_ms_per_step": (r1.ru_stime - r0.ru_stime) / n * 1000, "max_rss_mb": r1.ru_maxrss / 1024}))
"""


def run(variant: str, shape: str, steps: int, loops: int) -> dict:
    p = subprocess.run(
        [sys.executable, "-c", CHILD, variant, shape, str(steps), str(loops), str(REPO)],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    if p.returncode:
        raise SystemExit(f"{variant} {shape} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps: ends within a minute")
    ap.add_argument("--rounds", type=int, default=3, help="processes per variant (they take turns)")
    a = ap.parse_args()
    steps, loops, rounds = (5, 3, 1) if a.quick else (10, 5, a.rounds)
    out = {"threads": 1, "quick": a.quick, "rounds": rounds}
    for shape in ("distill", "finetune"):
        runs = {"default": [], "prunekd": []}
        for _ in range(rounds):
            for variant in runs:
                runs[variant].append(run(variant, shape, steps, loops))
        res = {}
        for variant, rs in runs.items():
            res[variant] = {k: round(statistics.median(r[k] for r in rs), 2) for k in rs[0] if k != "set"}
            res[variant]["set"] = rs[0]["set"]
        res["speedup"] = round(res["default"]["step_ms"] / res["prunekd"]["step_ms"], 3)
        out[shape] = res
        print(f"{shape}: {res}", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
