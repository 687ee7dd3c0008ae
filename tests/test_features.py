"""MFCC shapes, frame targets and their alignment to phone boundaries."""

import numpy as np
import pytest

from asr_init.corpus import PhoneSegment
from asr_init.features import MfccConfig, frame_targets, mfcc_with_deltas


@pytest.mark.parametrize("seconds", [0.03, 1.0, 2.345])
def test_mfcc_shape(seconds):
    cfg = MfccConfig()
    n = int(seconds * 16000)
    feats = mfcc_with_deltas(np.random.default_rng(0).standard_normal(n).astype(np.float32), cfg)
    assert feats.shape == (1 + n // 160, 39)
    assert feats.dtype == np.float32 and np.isfinite(feats).all()
    assert cfg.win_length == 400 and cfg.hop_length == 160 and cfg.n_fft == 512


def test_frame_targets_boundaries_and_states():
    ids = {"sil": 0, "aa": 1, "s": 2}
    segs = (PhoneSegment(0.0, 0.123, "sil"), PhoneSegment(0.123, 0.4567, "aa"), PhoneSegment(0.4567, 0.8, "s"))
    phones, states = frame_targets(segs, 90, 0.01, ids, "sil")
    for t, lab in ((0.123, 1), (0.4567, 2)):
        first = int(np.flatnonzero(phones == lab)[0])
        assert abs(first - round(t / 0.01)) <= 1
    assert (phones[80:] == 0).all()  # past the last segment: silence
    # The 'aa' run is split into three equal parts: states 3, 4, 5.
    run = states[phones == 1]
    assert list(np.unique(run)) == [3, 4, 5]
    counts = np.bincount(run - 3)
    assert counts.max() - counts.min() <= 1
    assert (states // 3 == phones).all()
