#!/usr/bin/env bash
# The main job: the embedded corpus, then the recipes, then REPORT.md.
# Every command a recipe runs is skipped when its output is complete, so re-running
# after an interruption continues where it stopped.
#
#   bash recipes/run.sh                 # full scale (about 1 hour of speech)
#   QUICK=1 bash recipes/run.sh         # tiny scale, a few minutes
#   TIMIT=/path/to/timit bash recipes/run.sh   # also recipe 5
#   FSDD=/path/to/fsdd bash recipes/run.sh      # also recipe 6 (the Free Spoken Digit Dataset)
# Environment: RESULTS (default results), JOBS (parallel commands, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
# SIGTERM (to the group too) ends the command running, which says 'interrupted'; then this script, as Ctrl-C does: 130
trap 'exit 130' TERM

export RESULTS=${RESULTS:-results}
export QUICK=${QUICK:-}
if [ -n "$QUICK" ]; then HOURS=0.05; else HOURS=1.0; fi
mkdir -p "$RESULTS"
START=$(date +%s)

echo "== stage 0: embedded corpus ($HOURS h of speech) and feature store -> $RESULTS/store"
asr-init extract --hours "$HOURS" --out "$RESULTS/store" --seed 0

echo "== stage 1: paper replication"
python recipes/paper_replication.py
echo "== stage 2: initialisation without pre-training"
python recipes/init_without_pretraining.py
echo "== stage 3: DNN-HMM acoustic model, pre-trained or not"
python recipes/dnn_hmm.py
echo "== stage 4: instead of pre-training (batch norm, LSUV, ReLU, pruning)"
python recipes/remedies.py
echo "== stage 5: TIMIT"
python recipes/timit.py
echo "== stage 6: real recorded speech (FSDD)"
python recipes/fsdd.py

echo "== report"
asr-init report "$RESULTS"
echo "== done in $(( $(date +%s) - START )) s: $RESULTS/REPORT.md"
