#!/bin/bash
# The checks that need a GPU, in one run: the CUDA tests (graph capture, CUDA against CPU
# batches and steps), then the benchmarks of issue #14 on the GPU. The benches run even
# when a test fails; the script's exit status is the tests'.
#   usage: scripts/gpu-check.sh STORE OUT_DIR   (STORE: a feature store, e.g. results/store)
# Uses the python on PATH (or $PYTHON) with asr-init importable; writes OUT_DIR/*.txt.
set -uo pipefail
store=${1:?usage: scripts/gpu-check.sh STORE OUT_DIR}
out=${2:?usage: scripts/gpu-check.sh STORE OUT_DIR}
py=${PYTHON:-python}
mkdir -p "$out"
"$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" \
    | tee "$out/device.txt" || exit 1
"$py" -m pytest -q -rs tests/test_cuda_graphs.py tests/models/test_rbm.py tests/features/test_pipeline.py \
    2>&1 | tee "$out/tests.txt"
tests=${PIPESTATUS[0]}
for precision in fp32 tf32 bf16; do
    "$py" -m asr_init.cli bench pretrain --device cuda --store "$store" --seconds 4 --precision "$precision" \
        2>&1 | tee "$out/bench-pretrain-$precision.txt"
    "$py" -m asr_init.cli bench finetune --device cuda --seconds 4 --precision "$precision" \
        2>&1 | tee "$out/bench-finetune-$precision.txt"
done
exit "$tests"
