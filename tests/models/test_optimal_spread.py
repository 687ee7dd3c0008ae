"""optimal-d's Monte Carlo options: each is checked on its own and named alone."""

import pytest
from typer.testing import CliRunner

from asr_init.cli import app


@pytest.mark.parametrize(
    "args, line",
    [
        (["--samples", "200000000"], "error: invalid --samples 200000000: must be from 100 to 100,000,000"),
        (["--samples", "99"], "error: invalid --samples 99: must be from 100 to 100,000,000"),
        (["--seed", "-1"], "error: invalid --seed -1: must be from 0 to 4294967295"),
        (["--seed", "4294967296"], "error: invalid --seed 4294967296: must be from 0 to 4294967295"),
    ],
)
def test_a_bad_monte_carlo_option_is_named_alone(args, line):
    """--samples 200000000 said 'invalid --seed 0 or --samples 200000000', blaming the seed too."""
    result = CliRunner().invoke(app, ["optimal-d", *args])
    assert result.exit_code == 1 and result.output.splitlines() == [line], result.output
