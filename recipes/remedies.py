"""Recipe 4: what practitioners reach for instead of pre-training, and whether the
initialisation still matters with it.

6 x 1024 without pre-training, every row with the same fine-tuning budget (3 epochs of
60,000 frames on 2 CPU cores, so that the whole of `make recipes` stays within 2 hours; full
epochs on a GPU) and two seeds: the initialisations
{optimal, xavier-normal, lsuv, data-dependent} x {sigmoid, sigmoid with batch norm, ReLU}
(ReLU has no D*: no `optimal` row, and `data-dependent` gives its net inputs unit spread, as
LSUV does), and the default DBN (recipe 3's) fine-tuned with the same budget. Then pruning:
the DBN's model pruned to 50, 70 and 90 % by magnitude and fine-tuned with its mask, against
a dense network of the same parameter count trained from scratch with the same budget.
"""

import math

from common import RESULTS, SCALE, STORE, cut, label, run_commands, run_recipe, steps_on_device, write_manifest

OUT = RESULTS / "remedies"
INITS = ["optimal", "xavier-normal", "lsuv", "data-dependent"]
VARIANTS = {"sigmoid": [], "sigmoid-bn": ["--batch-norm"], "relu": ["--activation", "relu"]}
SPARSITIES = [0.5, 0.7, 0.9]
INPUTS = 39 * 11  # the network's inputs: 13 MFCCs with deltas, spliced +-5 (the defaults)


def _init_for(variant: str, init: str) -> str | None:
    if variant == "relu":
        return None if init == "optimal" else "data-dependent:1" if init == "data-dependent" else init
    return init


def dense_width(layers: int, hidden: int, inputs: int, sparsity: float) -> int:
    """The width w of a dense network of `layers` hidden layers with as many hidden weights as
    the `layers` x `hidden` one keeps after pruning: inputs w + (layers - 1) w^2 = kept."""
    kept = (1 - sparsity) * (inputs * hidden + (layers - 1) * hidden * hidden)
    a, b = layers - 1, inputs
    return max(1, round((-b + math.sqrt(b * b + 4 * a * kept)) / (2 * a))) if a else max(1, round(kept / b))


def main() -> None:
    size = ["--layers", str(SCALE["rem_layers"]), "--hidden", str(SCALE["rem_hidden"])]
    budget = ["--max-epochs", str(SCALE["rem_epochs"]), *cut("--max-frames", SCALE["rem_frames"])]
    dbn = RESULTS / "am" / f"dbn-{label('optimal')}"  # recipe 3's DBN: every default of pretrain
    train, evaluate = [], []
    for seed in SCALE["rem_seeds"]:
        rows = {"dbn": ["--dbn", str(dbn)]}
        for variant, extra in VARIANTS.items():
            for init in INITS:
                spec = _init_for(variant, init)
                if spec is not None:
                    rows[f"{variant}/{label(init)}"] = [*size, "--init", spec, *extra]
        for row, args in rows.items():
            model = OUT / row / f"seed{seed}"
            train.append((["finetune", str(STORE), "--out", str(model), *args, *budget, "--seed", str(seed),
                           "--resume"], model / "finetune.json"))  # fmt: skip
            evaluate.append((["evaluate", str(STORE), "--model", str(model)], model / "eval-test" / "results.json"))
    base = OUT / "dbn" / f"seed{SCALE['rem_seeds'][0]}"
    prune = [(["prune", str(base), "--out", str(OUT / "pruned"), "--sparsity", ",".join(map(str, SPARSITIES)),
               *budget], OUT / "pruned" / "prune.json")]  # fmt: skip
    dense = []
    for share in SPARSITIES:
        width = dense_width(SCALE["rem_layers"], SCALE["rem_hidden"], INPUTS, share)
        model = OUT / "dense" / f"sparsity-{share:g}"
        args = ["--layers", str(SCALE["rem_layers"]), "--hidden", str(width), "--init", "optimal"]
        dense.append((["finetune", str(STORE), "--out", str(model), *args, *budget, "--seed", "0", "--resume"],
                      model / "finetune.json"))  # fmt: skip
        evaluate.append((["evaluate", str(STORE), "--model", str(model)], model / "eval-test" / "results.json"))
    train, prune, dense, evaluate = steps_on_device(train, prune, dense, evaluate)
    write_manifest("remedies", train + prune + dense + evaluate)
    run_commands("recipe 4: remedies, fine-tuning", train + dense)
    run_commands("recipe 4: remedies, evaluation", evaluate)
    run_commands("recipe 4: pruning", prune, jobs=1)


if __name__ == "__main__":
    run_recipe(main)
