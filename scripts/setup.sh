#!/usr/bin/env bash
# Sets up everything the harness needs, idempotently: the QR decoder's system library
# (when we may install it), a .venv, the pinned CPU build of torch and this package.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if ! ldconfig -p 2>/dev/null | grep -q 'libzbar\.so'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libzbar0; } >/dev/null \
      || echo "setup: could not install libzbar0; QR codes will be decoded by zxing-cpp" >&2
  else
    echo "setup: libzbar0 is missing and cannot be installed here; QR codes will be decoded by zxing-cpp" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# constraints.txt pins torch to the CPU build tested in CI; unconstrained, pip would fetch CUDA.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
