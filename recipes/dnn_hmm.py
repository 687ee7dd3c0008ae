"""Recipe 3: the DNN-HMM acoustic model, pre-trained against not pre-trained.

Kaldi's TIMIT shape, 6 hidden layers of 1024 sigmoid units, with every default of
`pretrain` and `finetune` (the commands name no training option but the init; on 2 CPU
cores fine-tuning is cut to 4 epochs of 100,000 frames, on a GPU it runs full epochs):
DBNs pre-trained with the initialisation that converged fastest in recipe 1 (Gaussian
first layer, its default learning rate) and with the paper's `optimal`, each fine-tuned
with newbob; the same network trained without pre-training (Xavier and `optimal`, the
from-scratch defaults); all evaluated on dev and test (frame accuracy, phone error rate).
"""

from common import RESULTS, SCALE, STORE, cut, label, run_commands, run_recipe, steps_on_device, write_manifest

from asr_init.errors import UserError
from asr_init.reporting.conclusions import best_pretraining_init

OUT = RESULTS / "am"


def main() -> None:
    try:
        best = best_pretraining_init(RESULTS / "paper")
    except UserError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"recipe 3: fastest initialisation in recipe 1: {best}")
    (OUT).mkdir(parents=True, exist_ok=True)
    (OUT / "best_init.txt").write_text(best + "\n", "utf-8")
    size = ["--layers", str(SCALE["am_layers"]), "--hidden", str(SCALE["am_hidden"])]
    # Full scale: the defaults (full epochs, newbob's own stopping); quick: cut short.
    pre_cut = cut("--epochs", SCALE["am_pre_epochs"])
    fine_cut = [*cut("--max-epochs", SCALE["am_max_epochs"]), *cut("--max-frames", SCALE["am_fine_frames"])]

    pretrain, finetune, evaluate = [], [], []
    for init in dict.fromkeys([best, "optimal"]):
        dbn = OUT / f"dbn-{label(init)}"
        pretrain.append(
            (
                ["pretrain", str(STORE), "--out", str(dbn), "--init", init, *size, *pre_cut, "--seed", "0", "--resume"],
                dbn / "pretrain.json",
            )
        )
        model = OUT / f"dnn-pretrained-{label(init)}"
        finetune.append(
            (
                ["finetune", str(STORE), "--out", str(model), "--dbn", str(dbn), *fine_cut, "--seed", "0", "--resume"],
                model / "finetune.json",
            )
        )
    for init in ("xavier-normal", "optimal"):  # Glorot's and the paper's, with the from-scratch defaults
        model = OUT / f"dnn-not-pretrained-{label(init)}"
        finetune.append(
            (
                [
                    "finetune",
                    str(STORE),
                    "--out",
                    str(model),
                    "--init",
                    init,
                    *size,
                    *fine_cut,
                    "--seed",
                    "0",
                    "--resume",
                ],
                model / "finetune.json",
            )
        )
    for _, marker in finetune:
        model = marker.parent
        for split in ("dev", "test"):
            evaluate.append(
                (
                    ["evaluate", str(STORE), "--model", str(model), "--split", split],
                    model / f"eval-{split}" / "results.json",
                )
            )

    pretrain, finetune, evaluate = steps_on_device(pretrain, finetune, evaluate)
    write_manifest("am", pretrain + finetune + evaluate)
    run_commands("recipe 3: DBN pre-training", pretrain)
    run_commands("recipe 3: fine-tuning", finetune)
    run_commands("recipe 3: evaluation", evaluate)


if __name__ == "__main__":
    run_recipe(main)
