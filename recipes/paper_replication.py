"""Recipe 1: does the optimal initialisation speed up RBM pre-training?

D* by quadrature and Monte Carlo (and its plot); then the first RBM layer pre-trained
with every initialisation at the same learning rate, for both visible types and two
learning rates each, and a full DBN per initialisation; several seeds each. The report
(`asr-init report`) turns the logs into curves, tables and conclusions. The saturation
guard is off here (`--sat-guard 0`): it would rescale a saturating initialisation to D*,
and this recipe measures what each initialisation does by itself.
"""

from pathlib import Path

from common import RESULTS, SCALE, STORE, cut, label, run_commands, run_recipe, steps_on_device, write_manifest

INITS = [
    "optimal",
    "optimal:1.392",
    "optimal-data",
    "hinton",
    "kaldi",
    "xavier-normal",
    "he-normal",
    "lecun-normal",
    "zeros",
    "large",
]
SWEEP = [f"optimal:{d}" for d in ("0.25", "0.5", "1", "1.4078", "2", "3", "4")]
LEARNING_RATES = {"gauss": [0.01, 0.05], "bernoulli": [0.1, 0.4]}  # the same for every init
OUT = RESULTS / "paper"


def layer1_commands(store: Path, out: Path, rates: dict[str, list[float]], inits: list[str], seeds: list[int],
                    hidden: int, cut_epoch: list[str], report_every: int) -> list[tuple[list[str], Path]]:  # fmt: skip
    """The first RBM layer pre-trained with each init at each visible type's learning rates, per seed
    (saturation guard off), into OUT/layer1/VISIBLE/lrLR/INIT/seedS: the layout the report reads."""
    commands = []
    for visible, lrs in rates.items():
        for lr in lrs:
            for init in inits:
                for seed in seeds:
                    run = out / "layer1" / visible / f"lr{lr:g}" / label(init) / f"seed{seed}"
                    args = ["pretrain", str(store), "--out", str(run), "--init", init, "--visible", visible,
                            "--layers", "1", "--hidden", str(hidden), "--epochs", "1", "--epochs-gauss", "1",
                            *cut_epoch, "--report-every", str(report_every),
                            "--lr-gauss" if visible == "gauss" else "--lr", f"{lr:g}", "--sat-guard", "0",
                            "--seed", str(seed), "--resume"]  # fmt: skip
                    commands.append((args, run / "pretrain.json"))
    return commands


def dbn_commands(store: Path, out: Path, inits: list[str], seeds: list[int], layers: int, hidden: int,
                 cut_epoch: list[str], report_every: int) -> list[tuple[list[str], Path]]:  # fmt: skip
    """A DBN per init and seed, one epoch a layer, saturation guard off, into OUT/dbn/INIT/seedS."""
    commands = []
    for init in inits:
        for seed in seeds:
            run = out / "dbn" / label(init) / f"seed{seed}"
            args = ["pretrain", str(store), "--out", str(run), "--init", init, "--layers", str(layers),
                    "--hidden", str(hidden), "--epochs", "1", "--epochs-gauss", "1", *cut_epoch,
                    "--report-every", str(report_every), "--sat-guard", "0", "--seed", str(seed),
                    "--resume"]  # fmt: skip
            commands.append((args, run / "pretrain.json"))
    return commands


def spread_commands(out: Path) -> list[tuple[list[str], Path]]:
    """D* for the sigmoid (with its plot) and for tanh."""
    return [
        (["optimal-d", "--plot", str(out / "optimal_d.png"), "--json", str(out / "optimal_d.json")],
         out / "optimal_d.json"),
        (["optimal-d", "--activation", "tanh", "--json", str(out / "optimal_d_tanh.json")],
         out / "optimal_d_tanh.json"),
    ]  # fmt: skip


def main() -> None:
    spread = spread_commands(OUT)
    rates = {visible: lrs[: SCALE["layer1_rates"]] for visible, lrs in LEARNING_RATES.items()}
    layer1 = layer1_commands(STORE, OUT, rates, INITS + SWEEP, SCALE["seeds"], SCALE["layer1_hidden"],
                             cut("--max-frames", SCALE["layer1_frames"]), SCALE["layer1_report"])  # fmt: skip
    dbn = dbn_commands(STORE, OUT, INITS, SCALE["seeds"], SCALE["dbn_layers"], SCALE["dbn_hidden"],
                       cut("--max-frames", SCALE["dbn_frames"]), SCALE["dbn_report"])  # fmt: skip
    layer1, dbn = steps_on_device(layer1, dbn)
    write_manifest("paper", spread + layer1 + dbn)
    run_commands("recipe 1: optimal spread D*", spread, jobs=1)
    run_commands("recipe 1: first-layer pre-training", layer1)
    run_commands("recipe 1: DBN pre-training", dbn)


if __name__ == "__main__":
    run_recipe(main)
