"""Recipe 5: the same pipeline on TIMIT, for users who have it (TIMIT=/path/to/timit).

Standard protocol: 61 phones folded to 39, SA sentences excluded, the 24-speaker core
test set and the 50-speaker dev set. Without a TIMIT path the recipe says so and stops.
"""

from common import RESULTS, SCALE, corpus_or_skip, cut, on_device, run_commands, run_recipe, write_manifest

OUT = RESULTS / "timit"


def main() -> None:
    timit = corpus_or_skip(OUT, "TIMIT", "recipe 5 (TIMIT)", "TIMIT path")
    if timit is None:
        return
    store, dbn, model = OUT / "store", OUT / "dbn-optimal", OUT / "dnn-pretrained-optimal"
    size = ["--layers", str(SCALE["am_layers"]), "--hidden", str(SCALE["am_hidden"])]
    steps = [
        (["extract", str(timit), "--out", str(store)], store / "summary.json"),
        (
            on_device(
                [
                    "pretrain",
                    str(store),
                    "--out",
                    str(dbn),
                    "--init",
                    "optimal",
                    *size,
                    *cut("--epochs", SCALE["am_pre_epochs"]),
                    "--resume",
                ]
            ),
            dbn / "pretrain.json",
        ),
        (
            on_device(
                [
                    "finetune",
                    str(store),
                    "--out",
                    str(model),
                    "--dbn",
                    str(dbn),
                    *cut("--max-epochs", SCALE["am_max_epochs"]),
                    "--resume",
                ]
            ),
            model / "finetune.json",
        ),
        (
            on_device(["evaluate", str(store), "--model", str(model), "--split", "test"]),
            model / "eval-test" / "results.json",
        ),
    ]
    write_manifest("timit", steps)
    for i, step in enumerate(steps):
        run_commands(f"recipe 5: TIMIT step {i + 1}", [step], jobs=1)


if __name__ == "__main__":
    run_recipe(main)
