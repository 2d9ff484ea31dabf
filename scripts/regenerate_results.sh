#!/usr/bin/env bash
# Regenerates the committed results/ from a clean checkout, so that every record names a commit
# anyone can check out and re-run. Refuses a dirty tree: records would name "<commit>-dirty".
#
#   bash scripts/regenerate_results.sh [--models]
#
# --models also re-runs StealthMark in every registered architecture (about 30 more minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "regenerate: the tree has uncommitted changes; commit first (records name the commit they ran on)" >&2
  exit 2
fi
PY=.venv/bin/python
export OMP_NUM_THREADS=2  # records store the torch thread count: numbers are identical at the same count
rm -rf results/runs results/leaderboard.csv results/worst_case.csv
TIMEFORMAT='   %R s'
step() { echo "== $*" >&2; time "$@"; }
# The default job first (it trains the shared null population), then everything that reuses it.
step $PY -m harness run --attack prune
step $PY -m harness run --attack all
step $PY -m harness run --watermark stealthmark --trigger text,border,noise,warp,blend --attack none
step $PY -m harness run --watermark blended,border-backdoor,noise-backdoor,text-backdoor,wanet --attack none
step $PY -m harness run --watermark stealthmark --explainer all --attack none
if [ "${1:-}" = "--models" ]; then
  step $PY -m harness run --watermark stealthmark --model unet,attention-unet,segresnet,swin-unetr,unetr,sam --attack none
fi
step $PY -m harness report
