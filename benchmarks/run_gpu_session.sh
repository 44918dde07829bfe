#!/usr/bin/env bash
# The GPU figures still to be measured, in one call of the device tool (about 9 minutes on an H100 or H200):
# distillation's loop with PackedReader and staging beside its parts alone (and with torch.compile), where the
# student step's and the teacher forward's time goes (and the student step's memory floor), K distillations
# sharing the GPU, with and without CUDA MPS, and fine-tuning reading its split from the decoded store
# (decode_target), teacher shard jobs without the per-batch host sync of hear21passt's mel (10 s clips, and 1 s
# clips in batches of as many seconds). Not a benchmark itself: it runs the benchmarks in order of need, each cut
# at its limit, all of them within SESSION_SECONDS (default 540).
#
#   here, once:       bash ../shared/tools/gpu-wheels.sh        # hear21passt, zarr, soundfile, ... into .whl/
#   on the device:    run(command="bash benchmarks/run_gpu_session.sh", carry=[".whl"], timeout_s=600)
#   here, to try it:  PY=.venv/bin/python bash benchmarks/run_gpu_session.sh --quick
#
# Results in $OUT: results.jsonl (each finished benchmark's JSON line) and session.log (all they printed).
set -uo pipefail
QUICK=${1:-}
PY=${PY:-python3}
OUT=${OUT:-$(mktemp -d)}
LOG=$OUT/session.log
RES=$OUT/results.jsonl
DEADLINE=$(($(date +%s) + ${SESSION_SECONDS:-540}))
export PYTHONUNBUFFERED=1

if ls .whl/*.whl >/dev/null 2>&1; then # the device's python lacks these (../shared/tools/gpu-wheels.sh)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        >>"$LOG" 2>&1 || { tail "$LOG"; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD/src
else
    export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
fi
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv 2>&1 || echo "no nvidia-smi"
    echo "cores: $(nproc)"
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} >>"$LOG" 2>&1

bench() { # bench LIMIT_S SCRIPT "ARGS" "QUICK_ARGS": one benchmark, cut at its limit or at the session's deadline
    local limit=$1 script=$2 args=$3 left rc t0
    [ "$QUICK" = --quick ] && args="--quick $4"
    left=$((DEADLINE - $(date +%s)))
    if ((left < 30)); then
        echo "=== skipped, no time left: $script $args" | tee -a "$LOG"
        return
    fi
    ((limit > left)) && limit=$left
    echo "=== $script $args (up to $limit s)" | tee -a "$LOG"
    t0=$(date +%s)
    # shellcheck disable=SC2086  # the arguments are words
    timeout -k 15 "$limit" "$PY" "$script" $args >"$OUT/last.txt" 2>&1
    rc=$?
    cat "$OUT/last.txt" >>"$LOG"
    echo "=== rc $rc after $(($(date +%s) - t0)) s" | tee -a "$LOG"
    # Its last JSON line, also from a run cut by its limit (the benchmarks print partial figures as they go).
    last=$(grep '^{' "$OUT/last.txt" | tail -n 1)
    if [ -n "$last" ]; then echo "{\"rc\": $rc, \"args\": \"$args\", \"result\": $last}" | tee -a "$RES"; fi
}

# In order of need: what the deadline cuts is the least needed. Expected on an H100 about 520 s in all, so that a
# rerun on the still-warm machine fits in a session's 15 device minutes.
bench 100 benchmarks/distill.py "--workers 14 --steps 2000" ""
bench 70 benchmarks/profile_steps.py "" ""
bench 120 benchmarks/concurrent_distill.py "--jobs 1,2,4 --steps 600 --workers-total 14" ""
bench 120 benchmarks/distill.py "--workers 14 --steps 2000 --compile" "--compile"
bench 45 benchmarks/finetune.py "--workers 14 --steps 300 --clips 16384" ""
bench 60 benchmarks/teacher_shard.py "--clips 2048" ""
bench 45 benchmarks/teacher_shard.py "--seconds 1" "--seconds 1"
bench 90 benchmarks/concurrent_distill.py "--jobs 2,4 --steps 600 --workers-total 14 --mps" "--jobs 2 --mps"
rm -f "$OUT/last.txt"
echo "results: $RES"
