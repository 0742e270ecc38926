#!/usr/bin/env bash
# Bring NVIDIA DALI (nvidia-dali-cuda130, a 190 MB wheel) and what it needs onto a GPU machine of the device tool,
# whose calls carry at most 64 MiB each (working tree included) and which has no network.
#
#   bench/carry/dali.sh prepare [--refresh]   # here (CPU, network): resolve, download, split into .carry/dali/partNN/
#   bench/carry/dali.sh status                # here or there: which parts are present and verified, which are not
#   bench/carry/dali.sh join [--target DIR]   # there, in the last call: reassemble, verify, pip install into DIR
#
# prepare: pip's resolver (a metadata-only `pip install --dry-run --report`, Python 3.12 / manylinux x86_64 /
#   --only-binary=:all:) lists nvidia-dali-cuda130==$DALI_VERSION and its dependencies (nvimgcodec[all] with nvjpeg,
#   nvjpeg2k, nvtiff; nvcomp; astunparse, gast, libcst, makefun, nvtx, optree) plus $DALI_EXTRA (default PyAV, which
#   tests/io and the io suite need to write their videos and which the GPU machine lacks too). Everything the GPU image
#   already has (ON_GPU below: numpy, packaging, six, pyyaml, typing-extensions, wheel, torch, ...) is dropped. The
#   pins and sha256 go to bench/carry/dali-requirements.txt (committed, reused; --refresh re-resolves), the wheels are
#   downloaded with --require-hashes into .carry/dali/wheels/, and bench/carry/parts.py cuts them, as one stream, into
#   .carry/dali/part01/, part02/, ... of at most $PART_MIB MiB each, with manifest.json (size and sha256 of every wheel
#   and piece) in every part. Re-running keeps every wheel and piece that already verifies.
#
# On the device: call k carries [".carry/dali/partKK"] (one part per call, calls back to back: a warm machine goes
#   back after ~30 s idle, and a fresh one has none of the parts). Ignored paths left there by earlier calls stay, so
#   after the last call all parts are on the machine; `join` then checks every piece, joins the wheels into
#   $DALI_WHEELS (default /tmp/dali-wheels), checks their sha256, runs `pip install --no-deps --no-index --target
#   /tmp/site` (skipped when this manifest was installed there already) and imports nvidia.dali with /tmp/site on
#   PYTHONPATH. bench/device_check.sh puts /tmp/site on PYTHONPATH whenever it exists. The exact call sequence is in
#   bench/README.md ("DALI on the GPU machine").
#
# Environment: PYTHON (python3), DALI_VERSION (2.4.0), DALI_EXTRA ("av==18.1.0"; "" for DALI alone), PART_MIB (60),
#   DALI_WHEELS (/tmp/dali-wheels), JOIN_PIP_ARGS (extra pip install arguments for join, e.g. to test it here).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
ROOT=.carry/dali
DALI_VERSION=${DALI_VERSION:-2.4.0}
DALI_EXTRA=${DALI_EXTRA-av==18.1.0}
PART_MIB=${PART_MIB:-60}
PARTS="$PY bench/carry/parts.py"
REQ=bench/carry/dali-requirements.txt  # committed pins + sha256; prepare --refresh rewrites it

# Python packages of the GPU machines' image ('cuda'), from /work/.library/device/KINDS.md (read 2026-11-17).
ON_GPU="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl
zipp"

target_args() {  # the GPU machine: CPython 3.12, glibc 2.39 (Ubuntu 24.04), x86-64
  printf -- '--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 '
  printf -- '--platform manylinux1_x86_64 --platform manylinux2010_x86_64 --platform manylinux2014_x86_64 '
  for n in $(seq 17 39); do printf -- '--platform manylinux_2_%s_x86_64 ' "$n"; done
}

prepare() {
  local refresh=0
  [[ ${1:-} == --refresh ]] && refresh=1
  mkdir -p "$ROOT/wheels"
  if [[ $refresh == 1 || ! -s $REQ ]]; then
    echo "== resolving nvidia-dali-cuda130==$DALI_VERSION $DALI_EXTRA for CPython 3.12 manylinux x86_64"
    local tmp
    tmp=$(mktemp -d)
    # shellcheck disable=SC2046,SC2086
    "$PY" -m pip install -q --dry-run --ignore-installed --report "$ROOT/resolve.json" --target "$tmp/t" \
      $(target_args) "nvidia-dali-cuda130==$DALI_VERSION" $DALI_EXTRA 2> >(grep -v "is ignored: it is neither" >&2)
    rm -rf "$tmp"
    ON_GPU="$ON_GPU" "$PY" - "$ROOT/resolve.json" "$REQ" <<'PY'
import json, os, re, sys
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
on_gpu = {norm(n) for n in os.environ["ON_GPU"].split()}
report = json.load(open(sys.argv[1]))
keep, skip = [], []
for item in report["install"]:
    name, ver = item["metadata"]["name"], item["metadata"]["version"]
    info = item["download_info"]
    if not info["url"].endswith(".whl"):
        sys.exit(f"{name} {ver}: not a wheel ({info['url']})")
    (skip if norm(name) in on_gpu else keep).append(
        f"{norm(name)}=={ver} --hash=sha256:{info['archive_info']['hashes']['sha256']}  # {info['url'].rsplit('/', 1)[1]}")
head = ("# Written by bench/carry/dali.sh prepare --refresh: the wheels carried to the GPU machine (CPython 3.12,\n"
        "# manylinux x86_64), pinned with sha256. Not carried, already there: " + " ".join(k.split(" ")[0] for k in skip) + "\n")
open(sys.argv[2], "w").write(head + "".join(line + "\n" for line in keep))
print("carry:", *(k.split(" ")[0] for k in keep))
print("already on the GPU machine, not carried:", *(s.split(" ")[0] for s in skip))
PY
  else
    echo "== using the pins in $REQ (prepare --refresh to resolve again)"
  fi
  echo "== downloading (pip skips wheels already there with the right hash)"
  # shellcheck disable=SC2046
  "$PY" -m pip download -q --no-deps --require-hashes -r "$REQ" -d "$ROOT/wheels" $(target_args) \
    2> >(grep -v "is ignored: it is neither" >&2)
  local files=()
  while read -r f; do files+=("$ROOT/wheels/$f"); done < <(sed -n 's/.*--hash=[^ ]*  # //p' "$REQ")
  for f in "$ROOT"/wheels/*; do  # wheels of an earlier pin set
    [[ -e $f && " ${files[*]} " != *" $f "* ]] && { echo "removing stale $f"; rm -f "$f"; }
  done
  echo "== splitting into parts of <= $PART_MIB MiB"
  $PARTS split --root "$ROOT" --part-mib "$PART_MIB" "${files[@]}"
  $PARTS status --root "$ROOT"
  local n
  n=$(find "$ROOT" -maxdepth 1 -name 'part[0-9]*' -type d | wc -l)
  echo "== device calls: $n, back to back; call k carries [\"$ROOT/partKK\"] (see bench/README.md); the last one runs"
  echo "   bench/carry/dali.sh join && SUITES=io CUDA_TESTS=tests/io SUITE_TIMEOUTS=io=150 bash bench/device_check.sh"
}

join() {
  local site=/tmp/site
  [[ ${1:-} == --target ]] && site=$2
  local wheels=${DALI_WHEELS:-/tmp/dali-wheels}
  local id list files=()
  id=$($PARTS id --root "$ROOT")
  list=$(mktemp)
  if ! $PARTS join --root "$ROOT" --out "$wheels" >"$list"; then
    echo "join: not every part is here and verified (above; bench/carry/dali.sh status lists them)" >&2
    return 3
  fi
  mapfile -t files <"$list"
  rm -f "$list"
  local stamp="$site/.carry-dali-$id"
  if [[ -f $stamp ]] && PYTHONPATH="$site" "$PY" -c 'import nvidia.dali' 2>/dev/null; then
    echo "join: manifest $id already installed in $site"
  else
    echo "join: pip install ${#files[@]} wheels into $site"
    # shellcheck disable=SC2086
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
      ${JOIN_PIP_ARGS:-} "${files[@]}"
    touch "$stamp"
  fi
  PYTHONPATH="$site:${PYTHONPATH:-}" "$PY" -c '
import nvidia.dali as dali
print("nvidia.dali", dali.__version__, "from", dali.__file__)
try:
    import av
    print("av", av.__version__, "from", av.__file__)
except ImportError as e:
    print("av not importable:", e)
'
}

case ${1:-} in
  prepare) shift; prepare "$@" ;;
  join) shift; join "$@" ;;
  status) $PARTS status --root "$ROOT" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 2 ;;
esac
