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
