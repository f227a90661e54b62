#!/usr/bin/env bash
# GPU check of the compile step: on a machine with an NVIDIA GPU, install what can be installed
# (onnxruntime-gpu, tensorrt, cuda-python), build, check parity, benchmark, print the tables.
# Finishes in under 5 minutes (each step has a time limit).
#
#   scripts/gpu-check.sh            # or: make gpu-check
#
# Environment:
#   PY=path/to/python        interpreter (default: .venv/bin/python, else python3)
#   GPU_WHEELS=dir           install from wheels in this directory only (offline machines)
#   GPU_CHECK_NO_INSTALL=1   use what is installed, install nothing
#   GPU_CHECK_ALLOW_CPU=1    run the whole flow without a GPU (to check the script itself)
#   OUT=dir                  where results go (default: build/gpu-check)
#
# Note: onnxruntime-gpu replaces onnxruntime in the environment (same version); both provide
# the same module. `make venv` after removing .venv/.installed puts the CPU build back.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${OUT:-build/gpu-check}
mkdir -p "$OUT"
START=$(date +%s)
say() { printf '\n==> [%3ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }

say "device"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader \
    | tee "$OUT/gpu.txt"
  CUDA_MAJOR=$(nvidia-smi | sed -n 's/.*CUDA Version: \([0-9]*\).*/\1/p' | head -1)
elif [ "${GPU_CHECK_ALLOW_CPU:-}" = 1 ]; then
  echo "no NVIDIA GPU; GPU_CHECK_ALLOW_CPU=1 so the flow runs on the CPU" | tee "$OUT/gpu.txt"
  CUDA_MAJOR=""
else
  echo "gpu-check: no NVIDIA GPU found (nvidia-smi missing or sees no device)." >&2
  echo "  run this on a GPU machine, or set GPU_CHECK_ALLOW_CPU=1 to check the script" >&2
  exit 2
fi

pip_install() {  # pip_install NAME... ; never fatal: report what could not be installed
  local args=(-m pip install --quiet --disable-pip-version-check)
  if [ -n "${GPU_WHEELS:-}" ]; then args+=(--no-index --find-links "$GPU_WHEELS"); fi
  timeout 150 "$PY" "${args[@]}" "$@" && return 0
  echo "gpu-check: could not install $* (continuing without it)" >&2
  return 1
}

if [ -z "${GPU_CHECK_NO_INSTALL:-}" ] && [ -n "$CUDA_MAJOR" ]; then
  say "install onnxruntime-gpu, tensorrt, cuda-python (CUDA $CUDA_MAJOR driver)"
  ORT_VERSION=$("$PY" -c 'import onnxruntime as o; print(o.__version__)' 2>/dev/null || true)
  if ! "$PY" -c 'import onnxruntime as o, sys; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())' 2>/dev/null; then
    if pip_install "onnxruntime-gpu${ORT_VERSION:+==$ORT_VERSION}"; then
      "$PY" -m pip uninstall --quiet -y onnxruntime >/dev/null 2>&1
      # both wheels own the onnxruntime module: reinstall the GPU one over what was removed
      pip_install --force-reinstall --no-deps "onnxruntime-gpu${ORT_VERSION:+==$ORT_VERSION}"
    fi
  fi
  "$PY" -c 'import tensorrt' 2>/dev/null || pip_install "tensorrt-cu${CUDA_MAJOR}" \
    || pip_install tensorrt
  "$PY" -c 'import cuda' 2>/dev/null || pip_install "cuda-python==${CUDA_MAJOR}.*" \
    || pip_install cuda-python
fi

say "versions"
"$PY" - <<'PYEOF' | tee "$OUT/versions.txt"
import importlib
for name in ("onnxruntime", "tensorrt", "cuda", "onnx", "numpy"):
    try:
        mod = importlib.import_module(name)
        print(f"{name:12} {getattr(mod, '__version__', 'installed')}")
    except Exception as exc:
        print(f"{name:12} not available ({type(exc).__name__})")
import onnxruntime as ort
print("onnxruntime providers:", ", ".join(ort.get_available_providers()))
from ci.compile.base import get_backend
print("tensorrt backend:", get_backend("tensorrt").unavailable_reason() or "available")
PYEOF

say "model and data"
if [ ! -f models/model.onnx ] || [ ! -f data/prepared/test.npz ]; then
  timeout 120 "$PY" -m dvc pull -q models/model.onnx data/prepared 2>/dev/null \
    || timeout 200 "$PY" -m dvc repro -q export || { echo "gpu-check: no model" >&2; exit 2; }
fi
ls -l models/model.onnx data/prepared/test.npz

status=0
TRT=$("$PY" -c 'from ci.compile.base import get_backend as g; print(g("tensorrt").unavailable_reason() or "")')
if [ -z "$TRT" ]; then PRECISIONS="fp32 fp16 int8"; else PRECISIONS="fp32"; fi
for precision in $PRECISIONS; do
  say "compile: backend auto, precision $precision"
  timeout 120 "$PY" -m modelops.ci compile --precision "$precision" --out "$OUT/$precision" \
    --cache-dir "$OUT/cache" --section "$OUT/compile-$precision.json" --report "" \
    | tee "$OUT/compile-$precision.md"
  rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || { echo "gpu-check: compile $precision exited $rc" >&2; status=1; }
done

if [ -z "$TRT" ]; then
  say "real tensorrt tests (pytest -m gpu)"
  timeout 150 "$PY" -m pytest -q -m gpu tests/func/test_compile_gpu.py || status=1
fi

say "summary"
"$PY" - "$OUT" $PRECISIONS <<'PYEOF'
import json, sys
from pathlib import Path
out, precisions = Path(sys.argv[1]), sys.argv[2:]
print(f"{'precision':<9} {'backend':<12} {'batch':>5} {'p50 ms':>8} {'p99 ms':>8} "
      f"{'samples/s':>10} {'base p50':>9} {'speedup':>8}  runner")
for p in precisions:
    f = out / f"compile-{p}.json"
    if not f.exists():
        print(f"{p:<9} (no result)")
        continue
    s = json.loads(f.read_text())
    if s["status"] != "pass":
        print(f"{p:<9} {s['backend']:<12} FAILED: {s.get('error', '')}")
        continue
    for r in s["latency"]:
        c, b = r["compiled"], r["baseline"]
        print(f"{s['precision']:<9} {s['backend']:<12} {r['batch']:>5} {c['p50_ms']:>8.3f} "
              f"{c['p99_ms']:>8.3f} {c['throughput_per_s']:>10.0f} {b['p50_ms']:>9.3f} "
              f"{r['speedup_p50']:>7.2f}x  {s['runner']}")
    print(f"{'':<9} parity: max abs {s['parity']['max_abs_error']:.3g}, top-1 "
          f"{s['parity']['top1_agreement']:.4f}, accuracy {s['parity']['accuracy']:.4f}; "
          f"baseline: {s['baseline']}")
PYEOF
say "done (results in $OUT)"
exit $status
