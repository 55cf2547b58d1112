#!/usr/bin/env bash
# The GPU machine check: bash benchmarks/gpu/run.sh OUT_DIR [--cpu-dry-run]
#
# Sized for one H100/H200 with 16 CPU cores: every part has its own timeout, and the
# timeouts add up to 470 s, so the whole check ends within 8 minutes; a part that fails or
# times out loses only its own results. Writes OUT_DIR/results.json and OUT_DIR/results.md
# (plus OUT_DIR/gpu_tests.xml, the JUnit report, and OUT_DIR/logs/: each part's output).
#
# Needs (all on the lent H200's python3; nothing to carry as wheels): torch >= 2.3 with
# CUDA, torchvision, numpy, pillow, pyyaml, scikit-learn, safetensors, tqdm, pytest;
# tensorboard optional. varcon itself runs from src/ (PYTHONPATH), not installed.
#
# Parts, in order (timeout, s):
#   tests                 pytest tests/gpu (150; 75 per test with pytest-timeout)
#   loss                  VarCon loss, ours vs the authors' algorithm, N <= 65,536,
#                         C <= 10,000, fp32 and bf16 (40)
#   e2e_resnet18          ours (bf16 + channels_last) and the authors' loop, batch 512 (45)
#   e2e_resnet18_compile  ours + model.compile=true: inductor's compile is most of it (70)
#   e2e_resnet50          as e2e_resnet18 (55)
#   e2e_resnet50_compile  (85)
#   breakdown             fractions of our step: data wait / forward / loss / backward /
#                         optimizer, ResNet-18 and -50 (25)
#
# --cpu-dry-run: every part at toy size on the CPU (small_cnn stands in for the ResNets,
# compile uses dynamo's eager backend), all Python parts in one process; under a minute.
set -u
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
    echo "usage: bash benchmarks/gpu/run.sh OUT_DIR [--cpu-dry-run]" >&2
    exit 2
fi
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
DRY=""
[ "${2:-}" = "--cpu-dry-run" ] && DRY="--cpu-dry-run"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2
PY=${PYTHON:-python3}
export PYTHONPATH="$ROOT/src:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
rm -rf "$OUT/logs" "$OUT/results.json" "$OUT/results.md" "$OUT/gpu_tests.xml"
mkdir -p "$OUT/logs"

# part NAME TIMEOUT_S COMMAND...: output to logs/NAME.log, "exit-status seconds" to NAME.rc
part() {
    local name=$1 limit=$2 start rc ms
    shift 2
    start=$(date +%s%N)
    echo "== $name (timeout ${limit} s)"
    timeout -k 5 "$limit" "$@" >"$OUT/logs/$name.log" 2>&1
    rc=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    printf '%s %d.%03d\n' "$rc" $((ms / 1000)) $((ms % 1000)) >"$OUT/logs/$name.rc"
    echo "   exit status $rc; $(tail -n 1 "$OUT/logs/$name.log")"
}

# pyproject's addopts ask for pytest-xdist workers (-n 2): the GPU tests run in one process
# (one GPU), and the GPU machine may not have pytest-xdist at all
ONE_PROCESS="-o addopts=-ra"

if [ -n "$DRY" ]; then
    part tests 40 "$PY" -m pytest -q -p no:cacheprovider tests/gpu $ONE_PROCESS \
        --junitxml="$OUT/gpu_tests.xml" -o junit_family=xunit1
    PARTS="loss e2e_resnet18 e2e_resnet18_compile e2e_resnet50 e2e_resnet50_compile breakdown"
    # one process for all parts (rc recorded for each from the same run)
    part python_parts 90 "$PY" -m benchmarks.gpu.suite "$OUT" $PARTS $DRY
    for p in $PARTS; do cp "$OUT/logs/python_parts.rc" "$OUT/logs/$p.rc"; done
else
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/logs/nvidia-smi.txt" 2>&1
    # one hanging test fails alone (pytest-timeout, where installed) instead of losing the report
    PER_TEST=""
    "$PY" -c "import pytest_timeout" 2>/dev/null && PER_TEST="--timeout=75"
    part tests 150 "$PY" -m pytest -q -p no:cacheprovider tests/gpu $ONE_PROCESS $PER_TEST \
        --junitxml="$OUT/gpu_tests.xml" -o junit_family=xunit1
    part loss 40 "$PY" -m benchmarks.gpu.suite "$OUT" loss
    part e2e_resnet18 45 "$PY" -m benchmarks.gpu.suite "$OUT" e2e_resnet18
    part e2e_resnet18_compile 70 "$PY" -m benchmarks.gpu.suite "$OUT" e2e_resnet18_compile
    part e2e_resnet50 55 "$PY" -m benchmarks.gpu.suite "$OUT" e2e_resnet50
    part e2e_resnet50_compile 85 "$PY" -m benchmarks.gpu.suite "$OUT" e2e_resnet50_compile
    part breakdown 25 "$PY" -m benchmarks.gpu.suite "$OUT" breakdown
fi
"$PY" -m benchmarks.gpu.report "$OUT" $DRY
