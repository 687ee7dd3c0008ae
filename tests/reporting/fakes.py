"""Fabricated recipe logs for the reporting tests: the numbers are chosen, so the conclusions are known."""

from pathlib import Path

from asr_init.io import write_csv
from asr_init.training.pretrain import CSV_COLUMNS


def write_fake_run(folder: Path, errors: list[float], input_var: float = 400.0, saturated: float = 0.05) -> None:
    """One seed's recon.csv: a first layer with these interval errors and one epoch."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"layer": 1, "epoch": 1, "frames": 0, "kind": "epoch_start", "input_var": input_var}]
    rows += [
        {"layer": 1, "epoch": 1, "frames": 1000 * (i + 1), "kind": "interval", "recon_error": e}
        for i, e in enumerate(errors)
    ]
    rows.append({"layer": 1, "epoch": 1, "frames": 1000 * len(errors), "kind": "epoch_end", "saturated": saturated})
    write_csv(folder / "recon.csv", rows, CSV_COLUMNS)


def write_fake_layer1(paper: Path, curves: dict[str, list[float]], lr: str = "0.01", noise: float = 0.5) -> None:
    """Recipe 1's first-layer logs: three seeds per init, spread by `noise` around the given curve."""
    for init, base in curves.items():
        for seed in (0, 1, 2):
            errs = [e + noise * (seed - 1) for e in base]
            write_fake_run(paper / "layer1" / "gauss" / f"lr{lr}" / init.replace(":", "_") / f"seed{seed}", errs)


FAST = [300, 200, 150, 130, 120, 115]
SLOW = [400, 330, 260, 200, 160, 140]
