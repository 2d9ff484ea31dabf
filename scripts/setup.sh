#!/usr/bin/env bash
# Sets up everything the harness needs, idempotently: the QR decoder's system library
# (when we may install it), a .venv, the pinned CPU build of torch and this package.
#
# Fast path: uv (from PyPI) installs the same constraints in parallel, about 4x faster
# than pip; pip is the fallback, or the choice with SETUP_INSTALLER=pip. apt runs in the
# background meanwhile, so neither waits for the other.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
INSTALLER=${SETUP_INSTALLER:-uv}

apt_job=""
if ! ldconfig -p 2>/dev/null | grep -q 'libzbar\.so'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    ( { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libzbar0; } >/dev/null 2>&1 \
      || echo "setup: could not install libzbar0; QR codes will be decoded by zxing-cpp" >&2 ) &
    apt_job=$!
  else
    echo "setup: libzbar0 is missing and cannot be installed here; QR codes will be decoded by zxing-cpp" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check)

# uv does not read pip's configuration: hand it pip's local wheel folders (where this
# machine keeps the CPU build of torch), or it would resolve torch on PyPI alone.
pip_find_links() {
  echo "${PIP_FIND_LINKS:-$("${PIP[@]}" config get global.find-links 2>/dev/null || true)}"
}

install_with_uv() {
  "${PIP[@]}" install --quiet uv >/dev/null 2>&1 || return 1
  local links
  links=$(pip_find_links)
  # --compile-bytecode, as pip does: without .pyc files (and with PYTHONDONTWRITEBYTECODE set) every
  # process, so every worker, recompiles torch on import: 2.4x the CPU time of an import.
  UV_FIND_LINKS="${UV_FIND_LINKS:-$links}" .venv/bin/python -m uv pip install --quiet --compile-bytecode \
    --python .venv/bin/python -c constraints.txt -e ".[test]"
}

# constraints.txt pins torch to the CPU build tested in CI; unconstrained, pip would fetch CUDA.
if [ "$INSTALLER" != uv ] || ! install_with_uv; then
  [ "$INSTALLER" != uv ] || echo "setup: uv failed or is unavailable; installing with pip" >&2
  "${PIP[@]}" install --quiet -c constraints.txt -e ".[test]"
fi

.venv/bin/python -c "import sys, torch; sys.exit(torch.version.cuda is not None)" \
  || echo "setup: the installed torch is a CUDA build; constraints.txt means the CPU wheel (local wheels not found?)" >&2
[ -z "$apt_job" ] || wait "$apt_job"
