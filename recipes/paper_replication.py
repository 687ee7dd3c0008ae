"""Recipe 1: does the optimal initialisation speed up RBM pre-training?

D* by quadrature and Monte Carlo (and its plot); then the first RBM layer pre-trained
with every initialisation at the same learning rate, for both visible types and two
learning rates each, and a full DBN per initialisation; several seeds each. The report
(`asr-init report`) turns the logs into curves, tables and conclusions. The saturation
guard is off here (`--sat-guard 0`): it would rescale a saturating initialisation to D*,
and this recipe measures what each initialisation does by itself.
"""

from common import RESULTS, SCALE, STORE, cut, label, run_commands, steps_on_device, write_manifest

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


def main() -> None:
    spread = [
        (
            ["optimal-d", "--plot", str(OUT / "optimal_d.png"), "--json", str(OUT / "optimal_d.json")],
            OUT / "optimal_d.json",
        ),
        (
            ["optimal-d", "--activation", "tanh", "--json", str(OUT / "optimal_d_tanh.json")],
            OUT / "optimal_d_tanh.json",
        ),
    ]

    layer1 = []
    for visible, rates in LEARNING_RATES.items():
        for lr in rates:
            for init in INITS + SWEEP:
                for seed in SCALE["seeds"]:
                    out = OUT / "layer1" / visible / f"lr{lr:g}" / label(init) / f"seed{seed}"
                    args = [
                        "pretrain",
                        str(STORE),
                        "--out",
                        str(out),
                        "--init",
                        init,
                        "--visible",
                        visible,
                        "--layers",
                        "1",
                        "--hidden",
                        str(SCALE["layer1_hidden"]),
                        "--epochs",
                        "1",
                        "--epochs-gauss",
                        "1",
                        *cut("--max-frames", SCALE["layer1_frames"]),
                        "--report-every",
                        str(SCALE["layer1_report"]),
                        "--lr-gauss" if visible == "gauss" else "--lr",
                        f"{lr:g}",
                        "--sat-guard",
                        "0",
                        "--seed",
                        str(seed),
                        "--resume",
                    ]
                    layer1.append((args, out / "pretrain.json"))

    dbn = []
    for init in INITS:
        for seed in SCALE["seeds"]:
            out = OUT / "dbn" / label(init) / f"seed{seed}"
            args = [
                "pretrain",
                str(STORE),
                "--out",
                str(out),
                "--init",
                init,
                "--layers",
                str(SCALE["dbn_layers"]),
                "--hidden",
                str(SCALE["dbn_hidden"]),
                "--epochs",
                "1",
                "--epochs-gauss",
                "1",
                *cut("--max-frames", SCALE["dbn_frames"]),
                "--report-every",
                str(SCALE["dbn_report"]),
                "--sat-guard",
                "0",
                "--seed",
                str(seed),
                "--resume",
            ]
            dbn.append((args, out / "pretrain.json"))

    layer1, dbn = steps_on_device(layer1, dbn)
    write_manifest("paper", spread + layer1 + dbn)
    run_commands("recipe 1: optimal spread D*", spread, jobs=1)
    run_commands("recipe 1: first-layer pre-training", layer1)
    run_commands("recipe 1: DBN pre-training", dbn)


if __name__ == "__main__":
    main()
