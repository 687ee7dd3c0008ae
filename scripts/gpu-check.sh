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
# A graphed fine-tuning run against an eager one on the GPU (batch norm, one rate for every epoch:
# the cases where a graph once wrote to stale tensors): the same log and weights within 1e-4.
for graphs in cuda-graphs no-cuda-graphs; do
    "$py" -m asr_init.cli finetune "$store" --out "$out/finetune-$graphs" --force --device cuda --layers 2 \
        --hidden 256 --batch-norm --schedule constant --max-epochs 3 --max-frames 50000 "--$graphs" \
        2>&1 | tee "$out/finetune-$graphs.txt"
done
"$py" - "$out" <<'PY' 2>&1 | tee "$out/graphed-vs-eager.txt" || tests=1
import csv, sys, torch
out = sys.argv[1]
rows = [list(csv.DictReader(open(f"{out}/finetune-{g}/train.csv"))) for g in ("cuda-graphs", "no-cuda-graphs")]
keys = ("train_loss", "train_acc", "dev_loss", "dev_acc")
worst = max(abs(float(a[k]) - float(b[k])) / max(abs(float(b[k])), 1e-9) for a, b in zip(*rows) for k in keys if a[k])
models = [torch.load(f"{out}/finetune-{g}/model.pt", map_location="cpu", weights_only=True) for g in ("cuda-graphs", "no-cuda-graphs")]
state = [m["state_dict"] for m in models]
diff = max(float((state[0][k].double() - state[1][k].double()).abs().max()) for k in state[1] if torch.is_tensor(state[1][k]))
print(f"graphed against eager: largest relative difference of the log {worst:.3g}, of the weights {diff:.3g}")
sys.exit(0 if worst < 1e-4 and diff < 1e-4 else 1)
PY
for precision in fp32 tf32 bf16; do
    "$py" -m asr_init.cli bench pretrain --device cuda --store "$store" --seconds 4 --precision "$precision" \
        2>&1 | tee "$out/bench-pretrain-$precision.txt"
    "$py" -m asr_init.cli bench finetune --device cuda --seconds 4 --precision "$precision" \
        2>&1 | tee "$out/bench-finetune-$precision.txt"
done
exit "$tests"
