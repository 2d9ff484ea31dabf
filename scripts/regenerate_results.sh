#!/usr/bin/env bash
# Regenerates the committed results/ from a clean checkout, so that every record names a commit
# anyone can check out and re-run. Refuses a dirty tree: records would name "<commit>-dirty".
#
#   bash scripts/regenerate_results.sh [SECTION ...]
#
# Sections, in this order when none is named: default (the README job at seeds 0, 1, 2, with the
# reference row of each mark as released, `none`), serving (the
# serving attacks on StealthMark and every baseline, seeds 0, 1, 2), certify and certify-rank (the
# false-accusation bound and the two-owner table, detector and paired-rank verifier), suite (every
# weight-space, input and training attack but distillation, seed 0), marks (the other triggers and
# baselines, before any attack), adaptive (the strongest thief's attacks -- self-training, FST,
# NAD, ANP, CLP, I-BAU, Neural-Cleanse unlearning, a chain -- at their moderate strength on
# StealthMark, BadNets and WaNet, seeds 0, 1, 2), claims-subset (the cells
# tests/claims/test_adaptive_removal.py re-runs: one attack per family), fingerprints (StealthMark and BadNets
# beside the three fingerprints, with 5 same-data innocents, every attack but distill-arch at one setting,
# seeds 0, 1, 2), report. Also:
# adaptive-strong (the same at their strong setting), adaptive-marks (the other baselines, moderate). Also: thief-images (soft distillation by a thief with 1000 images, against
# attacked nulls, seeds 0, 1, 2), distill-curve (student Dice against the thief's image count,
# scripts/distillation_curve.py), suite-seeds (the suite at
# seeds 1 and 2), distill (the three distillation attacks, seed 0: an hour and more on 2 cores, since
# each trains five attacked nulls), models (StealthMark in every architecture, each against nulls of
# its own), stealthmark-qr (StealthMark-QR under the serving attacks and the suite, seeds 0, 1, 2; an hour and
# more on 2 cores: each of three embeddings is 23 minutes on one thread). Naming sections reuses WORK's records, so a later section can be added to the same results.
#
# The runs write to a work folder outside the tree (WORK, default a new temporary folder; point it at
# an earlier WORK to reuse its cached models), so the tree stays clean while records are written; the
# records, leaderboards and report then replace those in results/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "regenerate: the tree has uncommitted changes; commit first (records name the commit they ran on)" >&2
  exit 2
fi
PY=.venv/bin/python
WORK=${WORK:-$(mktemp -d)}
rm -rf "$WORK/leaderboard.csv" "$WORK/worst_case.csv" "$WORK/report"
TIMEFORMAT='   %R s'
step() { echo "== $*" >&2; time "$@" --results "$WORK"; }
SUITE=blur,brightness,contrast,downscale,fine-prune,ftal,ftll,gamma,gauss-noise,hflip,jpeg,median,none,overwrite
SUITE=$SUITE,prune-channels,prune-layer,quantize,rtal,rtll,weight-noise
SERVING=hard-mask,temperature,round-probs,tta,ensemble,recalibrate,smooth-probs
MARKS=stealthmark,badnets,blended,border-backdoor,noise-backdoor,text-backdoor,wanet
ADAPTIVE=ft-pseudo.e5,ft-large-lr.e5,nad.e5,anp.p02,clp.u3,ibau.r5,nc-unlearn.e5,prune.l1_50+ftal.e5
ADAPTIVE_STRONG=ft-pseudo.e20,ft-large-lr.e20,nad.e20,anp.p05,clp.u2_5,ibau.r10,nc-unlearn.e20,prune.l1_70+ftal.e20
# Watermarks beside fingerprints, with innocents trained on the owner's own images: every attack at one
# setting (its mild one), except distill-arch (a student of another architecture for 60 epochs per
# attacked model). tests/claims/test_fingerprint_claims.py re-runs a subset.
FINGERPRINT_MARKS=stealthmark,badnets,mask-agreement,prob-distance,adversarial-agreement
FINGERPRINT_ATTACKS=none,hard-mask.masks,temperature.soft4,round-probs.l4,tta.flips4,ensemble.w50,recalibrate.all
FINGERPRINT_ATTACKS=$FINGERPRINT_ATTACKS,smooth-probs.s1,prune.l1_30,weight-noise.std5,quantize.int8,jpeg.q50,median.k3
FINGERPRINT_ATTACKS=$FINGERPRINT_ATTACKS,ft-pseudo.e5,ftal.e5,distill-soft.e10,overwrite.e5,nc-unlearn.e5,prune.l1_50+ftal.e5
FINGERPRINT_ATTACKS=$FINGERPRINT_ATTACKS,blur.s10,brightness.plus30,contrast.plus50,downscale.x050,gamma.g15
FINGERPRINT_ATTACKS=$FINGERPRINT_ATTACKS,gauss-noise.std08,hflip.flip,prune-layer.l1_30,prune-channels.l1_30,clp.u3
FINGERPRINT_ATTACKS=$FINGERPRINT_ATTACKS,fine-prune.fp_60,ftll.e5,rtll.e5,rtal.e5,ft-large-lr.e5,nad.e5,anp.p02,ibau.r5
FINGERPRINT_ATTACKS=$FINGERPRINT_ATTACKS,distill-hard.e60
# StealthMark-QR beside StealthMark (stealthmark-qr): every serving attack at one setting (the fingerprints'),
# then the suite, seeds 0, 1, 2. Read with captum-occlusion: the surest of the five model-dependent
# readers (docs/stealthmark.md) and the cheapest, since a cell explains the suspect and every attacked null.
QR_SERVING=hard-mask.masks,temperature.soft4,round-probs.l4,tta.flips4,ensemble.w50,recalibrate.all,smooth-probs.s1
# One attack per family; tests/claims/test_adaptive_removal.py checks that this line matches it.
CLAIMS=none,prune.l1_30,ft-pseudo.e5,distill-soft.e10,quantize.int8,weight-noise.std5,jpeg.q50,overwrite.e5,hard-mask.masks,nc-unlearn.e5,prune.l1_50+ftal.e5
sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(default serving certify certify-rank suite marks adaptive claims-subset fingerprints report)
for section in "${sections[@]}"; do
  case $section in
    default) step $PY -m harness run --attack none,prune --seed 0,1,2 ;;
    serving) step $PY -m harness run --watermark $MARKS --attack $SERVING --seed 0,1,2 ;;
    adaptive) step $PY -m harness run --watermark stealthmark,badnets,wanet --attack $ADAPTIVE --seed 0,1,2 ;;
    adaptive-strong) step $PY -m harness run --watermark stealthmark,badnets,wanet --attack $ADAPTIVE_STRONG --seed 0,1,2 ;;
    adaptive-marks) step $PY -m harness run --watermark blended,border-backdoor,noise-backdoor,text-backdoor \
      --attack $ADAPTIVE --seed 0,1,2 ;;
    fingerprints) step $PY -m harness run --watermark $FINGERPRINT_MARKS --attack $FINGERPRINT_ATTACKS \
      --same-data-innocents 5 --seed 0,1,2 ;;
    claims-subset) step $PY -m harness run --watermark stealthmark --attack $CLAIMS ;;
    thief-images) step $PY -m harness run --watermark stealthmark --attack distill-soft --strength 16 \
      --attacker-images 1000 --seed 0,1,2 ;;
    distill-curve) echo "== distillation curve" >&2; time $PY scripts/distillation_curve.py --results "$WORK" ;;
    certify) step $PY -m harness certify ;;
    certify-rank) step $PY -m harness certify --verifier paired-rank ;;
    suite) step $PY -m harness run --attack $SUITE ;;
    suite-seeds) step $PY -m harness run --attack $SUITE --seed 1,2 ;;
    distill) step $PY -m harness run --attack distill-hard,distill-soft,distill-arch ;;
    marks)
      step $PY -m harness run --watermark stealthmark --trigger text,border,noise,warp,blend --attack none
      step $PY -m harness run --watermark blended,border-backdoor,noise-backdoor,text-backdoor,wanet --attack none
      step $PY -m harness run --watermark stealthmark --explainer all --attack none ;;
    stealthmark-qr)
      step $PY -m harness run --watermark stealthmark-qr --explainer captum-occlusion --attack none,$QR_SERVING --seed 0,1,2
      step $PY -m harness run --watermark stealthmark-qr --explainer captum-occlusion --attack $SUITE --seed 0,1,2 ;;
    models) step $PY -m harness run --watermark stealthmark --model unet,attention-unet,segresnet,swin-unetr,unetr,sam --attack none ;;
    report) step $PY -m harness report ;;
    *) echo "regenerate: unknown section $section" >&2; exit 2 ;;
  esac
done
# Records stamp the commit they ran on, "-dirty" if the tree changed meanwhile: checked again at the end.
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "regenerate: the tree changed during the run; its records say -dirty, so nothing is copied" >&2
  exit 2
fi
rm -rf results/runs results/report/figures
cp -r "$WORK/runs" results/runs
cp "$WORK/leaderboard.csv" "$WORK/worst_case.csv" results/
if [ -f "$WORK/distillation_curve.csv" ]; then cp "$WORK/distillation_curve.csv" results/; fi
# A certification is replaced only by one this WORK holds.
for folder in certification certification-paired-rank; do
  if [ -d "$WORK/$folder" ]; then rm -rf "results/$folder" && cp -r "$WORK/$folder" "results/$folder"; fi
done
[ -d "$WORK/report" ] && cp -r "$WORK/report/figures" results/report/figures \
  && cp "$WORK/report/report.html" "$WORK/report/report.md" results/report/
echo "results/ regenerated from $(git rev-parse HEAD); work folder: $WORK" >&2
