#!/usr/bin/env bash
# Recipe 6 alone: the findings on the Free Spoken Digit Dataset, then the report.
#   bash recipes/fsdd.sh FSDD_DIR        (make recipes FSDD=DIR runs it with the others)
set -euo pipefail
cd "$(dirname "$0")/.."
# SIGTERM (to the group too) ends the command running, which says 'interrupted'; then this script, as Ctrl-C does: 130
trap 'exit 130' TERM
if [ $# -ne 1 ]; then echo "usage: recipes/fsdd.sh FSDD_DIR" >&2; exit 2; fi
export FSDD=$1 RESULTS=${RESULTS:-results} QUICK=${QUICK:-}
python recipes/fsdd.py
asr-init report "$RESULTS"
