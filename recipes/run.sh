#!/usr/bin/env bash
# The main job on the embedded corpus. Each numbered stage calls the asr-init CLI and is
# skipped when its output is already complete, so a re-run after an interruption
# continues where it stopped.
#
#   bash recipes/run.sh            # full size (about 1 hour of speech)
#   QUICK=1 bash recipes/run.sh    # tiny scale, for a smoke test
set -euo pipefail

RESULTS=${RESULTS:-results}
QUICK=${QUICK:-}
if [ -n "$QUICK" ]; then
  HOURS=0.05
else
  HOURS=1.0
fi
mkdir -p "$RESULTS"
STORE=$RESULTS/store

echo "== stage 1: embedded corpus ($HOURS h) and feature store -> $STORE"
asr-init extract --hours "$HOURS" --out "$STORE" --seed 0

if [ -n "$QUICK" ]; then
  PT_OPTS="--layers 2 --hidden 128 --epochs 1 --max-frames 20000 --report-every 5000"
else
  PT_OPTS="--layers 3 --hidden 512 --epochs 1 --report-every 20000"
fi
echo "== stage 2: DBN pre-training (init optimal) -> $RESULTS/dbn"
# shellcheck disable=SC2086
asr-init pretrain "$STORE" --out "$RESULTS/dbn" --init optimal $PT_OPTS --seed 0
