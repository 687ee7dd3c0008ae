"""Recipe 2: initialisation without pre-training (the classic comparison).

The same network, every layer initialised by one method (the softmax layer too:
--output-init same), trained from scratch with a constant learning rate, for sigmoid,
tanh and ReLU hidden units; then test frame accuracy. A run whose loss diverges is a
result, not a recipe failure: the report marks it. Then the size users train, 6 x 1024
sigmoid units, from every initialisation: where an initialisation decides whether a deep
sigmoid network trains at all (epochs cut to `deep_frames` frames at full scale).
"""

from common import RESULTS, SCALE, STORE, cut, label, run_commands, run_recipe, steps_on_device, write_manifest

INITS = ["zeros", "large", "xavier-normal", "he-normal", "lecun-normal", "optimal"]
ACTIVATIONS = ["sigmoid", "tanh", "relu"]
OUT = RESULTS / "nopretrain"


def main() -> None:
    train, evaluate = [], []
    for activation in ACTIVATIONS:
        for init in INITS:
            if activation == "relu" and init == "optimal":
                continue  # D* is a sigmoid's or tanh's: a ReLU has none, and finetune refuses it
            out = OUT / activation / label(init)
            train.append(
                (
                    [
                        "finetune",
                        str(STORE),
                        "--out",
                        str(out),
                        "--init",
                        init,
                        "--output-init",
                        "same",
                        "--activation",
                        activation,
                        "--layers",
                        str(SCALE["nopre_layers"]),
                        "--hidden",
                        str(SCALE["nopre_hidden"]),
                        "--schedule",
                        "constant",
                        "--max-epochs",
                        str(SCALE["nopre_epochs"]),
                        *cut("--max-frames", SCALE["nopre_frames"]),
                        "--seed",
                        "0",
                        "--resume",
                    ],
                    out / "finetune.json",
                )
            )
            evaluate.append(
                (["evaluate", str(STORE), "--model", str(out), "--frames-only"], out / "eval-test" / "results.json")
            )
    deep = f"sigmoid-{SCALE['deep_layers']}x{SCALE['deep_hidden']}"
    for init in INITS:
        out = OUT / deep / label(init)
        train.append(
            (
                [
                    "finetune",
                    str(STORE),
                    "--out",
                    str(out),
                    "--init",
                    init,
                    "--output-init",
                    "same",
                    "--layers",
                    str(SCALE["deep_layers"]),
                    "--hidden",
                    str(SCALE["deep_hidden"]),
                    "--schedule",
                    "constant",
                    "--max-epochs",
                    str(SCALE["deep_epochs"]),
                    *cut("--max-frames", SCALE["deep_frames"]),
                    "--seed",
                    "0",
                    "--resume",
                ],
                out / "finetune.json",
            )
        )
        evaluate.append(
            (["evaluate", str(STORE), "--model", str(out), "--frames-only"], out / "eval-test" / "results.json")
        )

    train, evaluate = steps_on_device(train, evaluate)
    write_manifest("nopretrain", train + evaluate)
    run_commands("recipe 2: training without pre-training", train, allow_fail=True)
    done = [(args, marker) for args, marker in evaluate if (marker.parent.parent / "model.pt").exists()]
    run_commands("recipe 2: test frame accuracy", done)


if __name__ == "__main__":
    run_recipe(main)
