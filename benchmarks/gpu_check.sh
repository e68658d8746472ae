#!/usr/bin/env bash
# GPU check of ganprint: the GPU tests and the GPU benchmark, on a lent GPU machine, no network.
#
# Two modes:
#   benchmarks/gpu_check.sh --prepare   (HERE, with network and the project's .venv)
#       downloads the PyWavelets wheel for the device's Python 3.12 into build/gpu-wheels/ and
#       writes 512x512 centre crops of shared/data/dresden/{nat,ff} (JPEG quality 100, about 25 MB)
#       into build/gpu-data/dresden/. build/ is git-ignored: both must be named in `carry`.
#   benchmarks/gpu_check.sh             (THERE, in the repository root of the copied tree)
#       picks a Python that has CuPy (GANPRINT_GPU_PYTHON, else ./.venv/bin/python, else python3),
#       installs the carried wheels into /tmp/ganprint-site (--no-index), links the carried crops
#       as ../shared/data when the real data is absent, runs tests/test_gpu.py and tests/test_backend.py,
#       benchmarks/gpu_bench.py (speed, parity, the auto break-even, and the decisions of
#       --backend cuda against the CPU's on the Dresden protocols) and `ganprint bench --pipeline
#       --backend cuda`, prints the tables, and copies logs and gpu.json into $OUT (gpu.json also
#       into benchmarks/results/gpu.json: residual_mp_per_s, residual_parity_ncc, pce_per_s_12mp,
#       device, date, decisions).
#
# The project's .venv (about 640 MB, Python 3.11) cannot travel (64 MiB limit); the device image's
# python3 (3.12) already has CuPy (cupy-cuda13x), numba + numba-cuda, scipy, h5py, Pillow, pytest and
# hypothesis (tqdm, matplotlib, jinja2, tifffile too); only PyWavelets is missing, hence the wheel.
# Budget: about 8 minutes (tests <= 240 s, benchmark <= 240 s, pipeline bench <= 90 s).
#
# Remote call:  run(command="bash benchmarks/gpu_check.sh", carry=["build/gpu-wheels", "build/gpu-data"],
#                   timeout_s=540)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [[ "${1:-}" == "--prepare" ]]; then
    PY=${GANPRINT_PY:-.venv/bin/python}
    mkdir -p build/gpu-wheels
    ver=$($PY -c 'import pywt; print(pywt.__version__)')
    $PY -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d build/gpu-wheels "PyWavelets==$ver" || exit 1
    $PY - <<'EOF' || exit 1
from pathlib import Path
import numpy as np
from PIL import Image
src = Path("..") / "shared" / "data" / "dresden"
dst = Path("build") / "gpu-data" / "dresden"
for sub in ("nat", "ff"):
    (dst / sub).mkdir(parents=True, exist_ok=True)
    for p in sorted((src / sub).glob("*.JPG")):
        img = np.asarray(Image.open(p))
        h, w = img.shape[:2]
        t, l = (h - 512) // 2, (w - 512) // 2
        Image.fromarray(np.ascontiguousarray(img[t:t + 512, l:l + 512])).save(dst / sub / p.name, quality=100, subsampling=0)
print("crops written to", dst)
EOF
    du -sh build/gpu-wheels build/gpu-data
    exit 0
fi

OUTDIR=${OUT:-/tmp/ganprint-gpu-out}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 GANPRINT_NUMBA_CACHE=0

pick_python() {
    for cand in "${GANPRINT_GPU_PYTHON:-}" "$ROOT/.venv/bin/python" python3; do
        [[ -z "$cand" ]] && continue
        if "$cand" -c 'import cupy' >/dev/null 2>&1; then echo "$cand"; return 0; fi
    done
    return 1
}
PY=$(pick_python) || { echo "gpu_check: no Python with CuPy found (set GANPRINT_GPU_PYTHON)"; exit 2; }
echo "== python: $PY"

SITE=/tmp/ganprint-site
if compgen -G "build/gpu-wheels/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" build/gpu-wheels/*.whl \
        || { echo "gpu_check: installing the carried wheels failed"; exit 2; }
fi
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"

if [[ ! -d ../shared/data/dresden && -d build/gpu-data/dresden ]]; then
    mkdir -p ../shared 2>/dev/null && ln -sfn "$ROOT/build/gpu-data" ../shared/data \
        && echo "== using the carried 512x512 Dresden crops (re-encoded JPEG q100) as ../shared/data"
fi

echo "== environment"
nvidia-smi -L 2>&1 | head -4
"$PY" - <<'EOF' 2>&1 | tee "$OUTDIR/env.txt"
import sys, numpy, scipy, numba, pywt
print("python", sys.version.split()[0], "numpy", numpy.__version__, "scipy", scipy.__version__,
      "numba", numba.__version__, "pywt", pywt.__version__)
import cupy
print("cupy", cupy.__version__, "CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(),
      "driver", cupy.cuda.runtime.driverGetVersion())
from numba import cuda
print("numba.cuda", getattr(cuda, "implementation", "?"), cuda.__file__, "available:", cuda.is_available())
from kernels._backend import cuda_status
print("ganprint cuda_status:", cuda_status())
EOF

echo "== GPU tests (tests/test_gpu.py device tests, tests/test_backend.py; simulator suite deselected: CPU CI runs it)"
timeout 240 "$PY" -m pytest tests/test_gpu.py tests/test_backend.py -q -p no:cacheprovider -rs \
    -k "not simulator_suite" -W ignore::UserWarning 2>&1 | tee "$OUTDIR/gpu_tests.log"
test_rc=${PIPESTATUS[0]}

echo "== GPU benchmark and the decisions on the Dresden protocols (CPU vs --backend cuda)"
DRESDEN_ARGS=()
[[ -d ../shared/data/dresden/ff ]] && DRESDEN_ARGS=(--dresden ../shared/data/dresden)
[[ ${#DRESDEN_ARGS[@]} -eq 0 ]] && echo "gpu_check: no Dresden data: decisions NOT compared"
timeout 240 "$PY" benchmarks/gpu_bench.py --out "$OUTDIR/gpu.json" "${DRESDEN_ARGS[@]}" 2>&1 | tee "$OUTDIR/gpu_bench.log"
bench_rc=${PIPESTATUS[0]}
if [[ -f "$OUTDIR/gpu.json" ]]; then
    mkdir -p benchmarks/results && cp "$OUTDIR/gpu.json" benchmarks/results/gpu.json
fi

echo "== the command line on the device: ganprint bench --pipeline --backend cuda (every stage's path)"
timeout 90 "$PY" -m fingerprint.cli bench --pipeline --backend cuda --sizes 2000x3008 --repeat 2 --references 2 \
    2>&1 | tee "$OUTDIR/cli_bench.log"
cli_rc=${PIPESTATUS[0]}

echo "== done: tests rc=$test_rc, benchmark rc=$bench_rc, cli rc=$cli_rc (logs and gpu.json in $OUTDIR)"
[[ $test_rc -eq 0 && $bench_rc -eq 0 && $cli_rc -eq 0 ]]
