#!/usr/bin/env bash
# Regenerates the committed results/ from a clean checkout, so that every record names a commit
# anyone can check out and re-run. Refuses a dirty tree: records would name "<commit>-dirty".
#
#   bash scripts/regenerate_results.sh [--models]
#
# The runs write to a work folder outside the tree (WORK, default a new temporary folder; point it at
# an earlier WORK to reuse its cached models), so the tree stays clean while records are written; the
# records, leaderboards and report then replace those in results/.
# --models also re-runs StealthMark in every registered architecture (about 30 more minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "regenerate: the tree has uncommitted changes; commit first (records name the commit they ran on)" >&2
  exit 2
fi
PY=.venv/bin/python
WORK=${WORK:-$(mktemp -d)}
rm -rf "$WORK/runs" "$WORK/leaderboard.csv" "$WORK/worst_case.csv" "$WORK/report"
TIMEFORMAT='   %R s'
step() { echo "== $*" >&2; time "$@" --results "$WORK"; }
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
rm -rf results/runs results/report/figures
cp -r "$WORK/runs" results/runs
cp "$WORK/leaderboard.csv" "$WORK/worst_case.csv" results/
cp -r "$WORK/report/figures" results/report/figures
cp "$WORK/report/report.html" "$WORK/report/report.md" results/report/
echo "results/ regenerated from $(git rev-parse HEAD); work folder: $WORK" >&2
