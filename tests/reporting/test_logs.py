"""Reading the recipes' logs: the summaries over seeds of fabricated reconstruction curves."""

import numpy as np
import pytest
from fakes import FAST, write_fake_layer1

from asr_init.reporting.logs import load_layer1


def test_summary_numbers(tmp_path):
    write_fake_layer1(tmp_path, {"optimal": FAST}, noise=0.0)
    (summaries,) = load_layer1(tmp_path).values()
    s = summaries[0]
    assert s.seeds == 3 and s.final == pytest.approx(115)
    assert s.auc == pytest.approx(np.trapezoid(FAST, np.arange(1, 7) * 1000) / 5000)
    assert s.frames_to(150) == 3000 and s.frames_to(100) is None
