"""MFCC shapes, frame targets and their alignment to phone boundaries."""

import numpy as np
import pytest

from asr_init.corpora.readers import PhoneSegment
from asr_init.features.mfcc import MfccConfig, frame_targets, mfcc_with_deltas


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


@pytest.mark.parametrize("sr", [8000, 16000])
def test_mfcc_equals_librosa_mfcc_of_the_audio(sr):
    """The MFCCs are librosa.feature.mfcc(y=...) with these settings, bit for bit: at 16 kHz
    the call the store was computed with before the filterbank's edges became options."""
    import librosa

    cfg = MfccConfig(sample_rate=sr)
    audio = (0.1 * np.random.default_rng(1).standard_normal(sr)).astype(np.float32)
    reference = librosa.feature.mfcc(
        y=audio,
        sr=sr,
        n_mfcc=13,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        n_mels=40,
        fmin=20.0,
        center=True,
    )
    np.testing.assert_array_equal(mfcc_with_deltas(audio, cfg)[:, :13], reference.T.astype(np.float32))
    assert cfg.resolved().fmax == sr / 2 and cfg.n_fft == (256 if sr == 8000 else 512)


def test_feature_settings_read_from_old_records_and_compared():
    old = {
        "delta_width": 5,
        "fmin": 20.0,
        "hop_ms": 10.0,
        "n_mels": 40,
        "n_mfcc": 13,
        "sample_rate": 16000,
        "win_ms": 25.0,
    }
    cfg = MfccConfig.from_dict(old)  # a store from before fmax was recorded: librosa's default, Nyquist
    assert cfg == MfccConfig(fmax=8000.0) and cfg.to_dict() == old | {"fmax": 8000.0}
    assert MfccConfig().differences(cfg) == []
    assert MfccConfig().differences(MfccConfig(sample_rate=8000)) == [
        ("sample_rate", 16000, 8000),
        ("fmax", 8000.0, 4000.0),
    ]
