"""Recipe 6: the findings on real recorded speech, the Free Spoken Digit Dataset (FSDD=DIR).

FSDD: 3,000 recordings of the digits 0-9 by 6 speakers, 8 kHz, trimmed; every frame is
labelled with its recording's digit. Held out: `theo` for test and `lucas` for dev, each
sharing his accent with a speaker who stays in training (`jackson`, USA; `yweweler`, German),
so the split measures another speaker, not an accent training never heard; training keeps
`jackson`, `nicolas`, `yweweler` and `george` (2,000 recordings, 79,000 frames).

At the widths users train (1024 units), with whole epochs: recipe 1's first-layer comparison
(Gaussian visible units, every initialisation and the sweep of D, three seeds, Kaldi's rate
0.01 and 0.05), its 3 x 1024 DBNs' saturation, and digit frame classification of the held-out
speaker from the default 6 x 1024 DBN, and without pre-training from `optimal` and from
`xavier-normal` (three seeds each; fine-tuning cut to 10 epochs). Without FSDD=DIR it says so.
"""

from pathlib import Path

from common import RESULTS, SCALE, corpus_or_skip, run_commands, run_recipe, steps_on_device, write_manifest
from paper_replication import INITS, SWEEP, dbn_commands, layer1_commands

OUT = RESULTS / "fsdd"
TEST, DEV = "theo", "lucas"
RATES = {"gauss": [0.01, 0.05]}
ROWS = {"pretrained": [], "optimal": ["--init", "optimal"], "xavier-normal": ["--init", "xavier-normal"]}


def _classification(store: Path, seeds: list[int]) -> tuple[list, list, list]:
    """(the default DBNs, the fine-tuning runs, their evaluations on the held-out speaker)."""
    am, hidden, layers = OUT / "am", str(SCALE["fsdd_hidden"]), str(SCALE["fsdd_am_layers"])
    size = ["--layers", layers, "--hidden", hidden]
    dbns, train, evaluate = [], [], []
    for seed in seeds:
        dbn = am / "dbn-default" / f"seed{seed}"
        dbns.append((["pretrain", str(store), "--out", str(dbn), *size, "--seed", str(seed), "--resume"],
                     dbn / "pretrain.json"))  # fmt: skip
        for row, start in ROWS.items():
            model = am / f"dnn-{row}" / f"seed{seed}"
            source = ["--dbn", str(dbn)] if row == "pretrained" else [*size, *start]
            train.append((["finetune", str(store), "--out", str(model), *source, "--targets", "phones",
                           "--max-epochs", str(SCALE["fsdd_max_epochs"]), "--seed", str(seed), "--resume"],
                          model / "finetune.json"))  # fmt: skip
            evaluate.append((["evaluate", str(store), "--model", str(model), "--frames-only"],
                             model / "eval-test" / "results.json"))  # fmt: skip
    return dbns, train, evaluate


def main() -> None:
    fsdd = corpus_or_skip(OUT, "FSDD", "recipe 6 (FSDD)", "FSDD folder")
    if fsdd is None:
        return
    store, seeds = OUT / "store", SCALE["seeds"]
    inits = SCALE["fsdd_inits"] or INITS + SWEEP
    extract = [(["extract", str(fsdd), "--out", str(store), "--test-speakers", TEST, "--dev-speakers", DEV],
                store / "summary.json")]  # fmt: skip
    hidden, report = SCALE["fsdd_hidden"], SCALE["fsdd_report"]
    layer1 = layer1_commands(store, OUT, RATES, inits, seeds, hidden, [], report)
    named = [i for i in inits if i in INITS]
    dbn = dbn_commands(store, OUT, named, seeds, SCALE["fsdd_dbn_layers"], hidden, [], report)
    dbns, train, evaluate = _classification(store, seeds)
    layer1, dbn, dbns, train, evaluate = steps_on_device(layer1, dbn, dbns, train, evaluate)
    write_manifest("fsdd", extract + layer1 + dbn + dbns + train + evaluate)
    run_commands("recipe 6: FSDD store", extract, jobs=1)
    run_commands("recipe 6: FSDD first-layer pre-training", layer1)
    run_commands("recipe 6: FSDD DBN pre-training", dbn + dbns)
    run_commands("recipe 6: FSDD digit classification", train)
    run_commands("recipe 6: FSDD evaluation", evaluate)


if __name__ == "__main__":
    run_recipe(main)
