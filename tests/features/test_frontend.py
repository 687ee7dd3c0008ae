"""The feature front end: Kaldi's MFCC and fbank against kaldi-native-fbank (k2-fsa's C++ copy
of Kaldi's feature code), block streaming, add-deltas, apply-cmvn, frame targets, Kaldi config
files, and librosa's MFCC as asr-init computed it before."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import kaldi_native_features, make_audio, random_segments

from asr_init.corpora.readers import PhoneSegment, Utterance
from asr_init.errors import UserError
from asr_init.features.frontend import (
    FeatureConfig,
    KaldiFeatures,
    add_deltas,
    apply_cmvn,
    audio_blocks,
    cmvn_stats,
    frame_targets,
    librosa_mfcc,
    read_kaldi_conf,
)


def _audio(sr: int, seconds_of_phones: int = 20, seed: int = 1) -> np.ndarray:
    """Tones and noise, quantised to 16 bits as a WAV file holds them."""
    audio = make_audio(random_segments(np.random.default_rng(seed), seconds_of_phones), sr, seed=seed)
    return (np.round(audio * 32767) / 32768).astype(np.float32)


KALDI_CASES = [
    ("kaldi-mfcc", 16000, {}),
    ("kaldi-mfcc", 16000, {"snip_edges": False}),
    ("kaldi-mfcc", 8000, {"use_energy": False, "low_freq": 64.0, "high_freq": -400.0, "num_mel_bins": 15}),
    ("kaldi-mfcc", 16000, {"window": "hamming", "raw_energy": False, "num_ceps": 20, "num_mel_bins": 30}),
    ("kaldi-mfcc", 16000, {"cepstral_lifter": 0.0}),  # no liftering (and no warning of a division by 0)
    ("kaldi-fbank", 16000, {"num_mel_bins": 40}),
    ("kaldi-fbank", 8000, {"use_energy": True, "snip_edges": False}),
    ("kaldi-mfcc", 11025, {}),  # 275.625 and 110.25 samples: Kaldi truncates them (round gave 276)
    ("kaldi-fbank", 8000, {"num_mel_bins": 10, "frame_length_ms": 25.1, "frame_shift_ms": 10.09}),
]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("kind,sr,options", KALDI_CASES)
def test_kaldi_features_match_kaldi_native_fbank(kind, sr, options):
    """Same frame count, and every coefficient within float32 FFT rounding of Kaldi's (in quiet
    mel bands of these pure tones the rounding reaches 1e-2; a wrong window, lifter or mel bank
    is off by whole units, as the last check shows)."""
    audio = _audio(sr)
    config = FeatureConfig(kind=kind, sample_rate=sr, dither=0.0, **options)
    ours, _ = KaldiFeatures(config)([audio])
    reference = kaldi_native_features(audio, config)
    assert ours.shape == reference.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, rtol=1e-2, atol=2e-2)
    other = dataclasses.replace(config, window="hanning" if config.window != "hanning" else "povey")
    assert np.abs(KaldiFeatures(other)([audio])[0] - reference).max() > 0.5


@pytest.mark.parametrize("snip_edges", [True, False])
def test_frame_counts_are_kaldis(snip_edges):
    """snip_edges: 1 + (n - 400) // 160 whole frames (none under 400 samples); otherwise one frame
    per 160 samples, rounded: (n + 80) // 160."""
    kf = KaldiFeatures(FeatureConfig(dither=0.0, snip_edges=snip_edges))
    for n in (1, 200, 399, 400, 401, 559, 560, 16000, 16079, 16080):
        frames, _ = kf([np.full(n, 0.01, np.float32)])
        expected = (1 + (n - 400) // 160 if n >= 400 else 0) if snip_edges else (n + 80) // 160
        assert len(frames) == expected, n


@pytest.mark.parametrize("snip_edges", [True, False])
def test_blocks_of_any_size_give_the_same_frames(snip_edges):
    """Audio arrives in blocks (extract reads 30 s at a time): where the blocks end changes no
    frame, dither included (it is read from its table by sample position)."""
    audio = _audio(16000, 30)
    kf = KaldiFeatures(FeatureConfig(dither=1.0, snip_edges=snip_edges), seed=3)
    whole, power = kf([audio], 7)
    cuts = np.sort(np.random.default_rng(0).choice(len(audio), 9, replace=False))
    blocked, blocked_power = kf(np.split(audio, cuts), 7)
    np.testing.assert_allclose(blocked, whole, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(blocked_power, power, rtol=1e-6)
    tiny, _ = kf([audio[i : i + 100] for i in range(0, len(audio), 100)], 7)
    np.testing.assert_allclose(tiny, whole, rtol=1e-5, atol=1e-4)


def test_dither_is_seeded_and_small():
    audio = _audio(16000)
    plain, _ = KaldiFeatures(FeatureConfig(dither=0.0))([audio])
    a, _ = KaldiFeatures(FeatureConfig(dither=1.0), seed=1)([audio], 5)
    b, _ = KaldiFeatures(FeatureConfig(dither=1.0), seed=1)([audio], 5)
    c, _ = KaldiFeatures(FeatureConfig(dither=1.0), seed=2)([audio], 5)
    d, _ = KaldiFeatures(FeatureConfig(dither=1.0), seed=1)([audio], 6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    assert 0 < np.median(np.abs(a - plain)) < 0.1  # one 16-bit step of noise on speech-level audio


def _deltas_by_definition(x: np.ndarray, order: int, window: int) -> np.ndarray:
    """add-deltas (feat/feature-functions.cc) written out: the i-th order's filter is the first's
    convolved with itself; frame t - j before the start is frame 0, after the end the last."""
    first = np.array([j / (2.0 * sum(k * k for k in range(1, window + 1))) for j in range(-window, window + 1)])
    filters, out = [np.ones(1)], [x]
    for _ in range(order):
        filters.append(np.convolve(filters[-1], first))
        half = (len(filters[-1]) - 1) // 2
        rows = [
            sum(w * x[min(max(t + j - half, 0), len(x) - 1)] for j, w in enumerate(filters[-1])) for t in range(len(x))
        ]
        out.append(np.array(rows))
    return np.concatenate(out, 1)


@pytest.mark.parametrize("order,window,frames", [(2, 2, 40), (1, 3, 5), (2, 2, 1), (3, 1, 12)])
def test_add_deltas_is_kaldis(order, window, frames):
    x = np.random.default_rng(0).standard_normal((frames, 13)).astype(np.float32)
    np.testing.assert_allclose(add_deltas(x, order, window), _deltas_by_definition(x, order, window), atol=1e-5)
    assert add_deltas(x, order, window).shape == (frames, 13 * (order + 1))


@pytest.mark.parametrize("norm_vars", [False, True])
def test_cmvn_then_deltas_is_deltas_then_cmvn_of_the_statics(norm_vars):
    """Kaldi's recipes apply CMVN to the statics and add deltas after; extract adds deltas in
    its workers and applies the speaker's CMVN later, with stats of the statics: the same frames."""
    rng = np.random.default_rng(1)
    statics = (rng.standard_normal((300, 13)) * rng.uniform(1, 9, 13) + rng.uniform(-40, 40, 13)).astype(np.float32)
    stats = cmvn_stats(statics)
    kaldi_order = add_deltas(apply_cmvn(stats, statics.copy(), norm_vars), 2, 2)
    ours = apply_cmvn(stats, add_deltas(statics, 2, 2), norm_vars)
    np.testing.assert_allclose(ours, kaldi_order, atol=2e-4)
    np.testing.assert_allclose(ours[:, :13].mean(0), 0, atol=1e-4)
    spread = ours[:, :13].std(0)
    assert np.allclose(spread, 1, atol=1e-3) if norm_vars else np.allclose(spread, statics.std(0), rtol=1e-3)


def _targets_by_definition(segments, num_frames, shift, offset, ids, silence):
    """The rule, one segment at a time: frame i belongs to the segment holding (i + offset) * shift,
    a later segment winning a frame two claim; each run split into thirds."""
    times = (np.arange(num_frames) + offset) * shift
    phones, owner = np.full(num_frames, ids[silence]), np.full(num_frames, -1)
    for k, seg in enumerate(segments):
        inside = (times >= seg.start) & (times < seg.end)
        phones[inside], owner[inside] = ids[seg.label], k
    states = np.empty(num_frames, int)
    start = 0
    for i in range(1, num_frames + 1):
        if i == num_frames or owner[i] != owner[start]:
            n = i - start
            states[start:i] = phones[start:i] * 3 + (np.arange(n) * 3) // n
            start = i
    return phones, states, owner


@pytest.mark.parametrize("kind,offset", [("kaldi-mfcc", 0.5), ("librosa-mfcc", 0.0)])
def test_frame_targets_follow_the_rule_with_rounded_ends(kind, offset):
    """Kaldi's frames are labelled at the middle of their 10 ms (a CTM Kaldi writes from frame
    indices gives back its own labels), librosa's at their centre; an end that passes the next
    start by a rounding error (start + duration in a CTM) gives the frame to the next segment.
    The transcript keeps every segment and has silence where 3 or more frames outside them are
    (the shortest phone the decoder gives: a 1-frame gap is a boundary's rounding)."""
    rng = np.random.default_rng(0)
    ids = {"sil": 0, "aa": 1, "s": 2}
    config = FeatureConfig(kind=kind)
    for _ in range(300):
        t, segments = float(rng.uniform(0, 0.3)), []
        for _ in range(int(rng.integers(0, 12))):
            gap, length = float(rng.uniform(0, 0.05)) * (rng.random() < 0.3), float(rng.uniform(0.001, 0.2))
            rounding = float(rng.choice([0.0, 1e-9, -1e-9]))
            segments.append(PhoneSegment(t + gap, t + gap + length + rounding, str(rng.choice(list(ids)))))
            t += gap + length
        frames = int(rng.integers(0, int(t * 100) + 30))
        phones, states, transcript = frame_targets(tuple(segments), frames, config, ids, "sil")
        want_phones, want_states, owner = _targets_by_definition(segments, frames, 0.01, offset, ids, "sil")
        np.testing.assert_array_equal(phones, want_phones)
        np.testing.assert_array_equal(states, want_states)
        # The transcript: every segment in order, and silence before the segment that follows a run of
        # 3 or more frames no segment holds (at the end after the last); repeats merged.
        runs = [(i, j) for i in range(frames) for j in [next((j for j in range(i, frames) if owner[j] >= 0), frames)]
                if owner[i] < 0 and (i == 0 or owner[i - 1] >= 0) and j - i >= 3]  # fmt: skip
        follows = {next((int(o) for o in owner[j:] if o >= 0), len(segments)) for _, j in runs}
        want = [
            lab
            for k in range(len(segments) + 1)
            for lab in ["sil"] * (k in follows) + [s.label for s in segments[k : k + 1]]
        ]
        assert list(transcript) == [lab for i, lab in enumerate(want) if i == 0 or want[i - 1] != lab]
        assert phones.dtype == states.dtype == np.int16


def test_kaldi_config_files_round_trip_and_bad_lines_are_named(tmp_path):
    config = FeatureConfig(sample_rate=8000, num_ceps=20, num_mel_bins=30, use_energy=False, snip_edges=False,
                           dither=0.5, low_freq=40.0, high_freq=-200.0)  # fmt: skip
    conf = tmp_path / "mfcc.conf"
    conf.write_text("# written by hand\n" + config.kaldi_conf() + "--allow-downsample=true\n\n")
    again = FeatureConfig(**read_kaldi_conf(conf))
    assert again.resolved() == config.resolved() and again.resolved().high_freq == 3800.0
    assert read_kaldi_conf(_write(tmp_path, "--use-energy=false  # as in egs/*/conf/mfcc.conf")) == {
        "use_energy": False
    }
    for text, message in [
        ("--vtln-warp=1.1", "is not a feature option asr-init computes with"),
        ("--num-ceps=thirteen", "'thirteen' is not an integer"),
        ("--use-energy=maybe", "'maybe' is not a bool"),
        ("num-ceps=13", "is not a feature option"),
        ("--htk-compat=true", "is not a feature option"),
    ]:
        with pytest.raises(UserError, match=message) as err:
            read_kaldi_conf(_write(tmp_path, f"--sample-frequency=16000\n{text}"))
        assert ":2:" in str(err.value)


def test_kaldi_config_files_are_read_as_kaldis_parse_options_reads_them(tmp_path):
    """Names with "_", a bare bool, t/f, a float sample frequency, and options asr-init does not
    compute with set to Kaldi's defaults: compute-mfcc-feats --config reads all of them."""
    text = ("--use_energy=false\n--snip-edges= T\n--raw-energy\n--remove-dc-offset=f\n--sample-frequency=8000.0\n"
            "--subtract-mean=false\n--vtln-warp=1.0\n--Round_To_Power_Of_Two\n--channel=-1\n")  # fmt: skip
    assert read_kaldi_conf(_write(tmp_path, text)) == {
        "use_energy": False, "snip_edges": True, "raw_energy": True, "remove_dc": False, "sample_rate": 8000,
    }  # fmt: skip
    refused = {"--sample-frequency=8000.5": "'8000.5' is not an integer", "--num-ceps": "gives no value",
               "--subtract-mean=true": "is not a feature option", "--channel=1": "is not a feature option",
               "--use-energy=": "gives no value", "--use-power=": "gives no value",
               "--num-mel-bins=23.0": "'23.0' is not an integer",
               "\u00a0--num-ceps=20": "is not a feature option",  # Kaldi trims ASCII white space only
               "--use-energy=false\u3000": r"'false\\u3000' is not a bool",
               # strtol and strtod read ASCII digits only, where Python's int() and float() also take these
               "--num-ceps=\u0661\u0663": r"'\u0661\u0663' is not an integer",
               "--num-ceps=1_3": "'1_3' is not an integer",
               "--frame-length=2_5": "'2_5' is not a number",
               "--frame-shift=\uff11\uff10": r"'\uff11\uff10' is not a number"}  # fmt: skip
    for line, message in refused.items():
        with pytest.raises(UserError, match=message):
            read_kaldi_conf(_write(tmp_path, line))


def test_window_and_shift_are_truncated_as_kaldis():
    """Kaldi's WindowSize/WindowShift truncate samp_freq * 0.001 * ms (feature-window.h)."""
    for rate, ms, samples in [(16000, 25.0, 400), (16000, 10.0, 160), (8000, 25.1, 200), (11025, 25.0, 275),
                              (11025, 10.0, 110), (22050, 10.0, 220), (44100, 25.0, 1102)]:  # fmt: skip
        assert FeatureConfig(sample_rate=rate, frame_length_ms=ms).frame_length == samples, (rate, ms)
    assert FeatureConfig(kind="librosa-mfcc", sample_rate=11025).frame_length == 276  # librosa's: rounded, as before


def _write(tmp_path, text):
    path = tmp_path / "x.conf"
    path.write_text(text + "\n")
    return path


def test_fbank_config_has_no_cepstral_options_and_checks_refuse_bad_banks():
    conf = FeatureConfig(kind="kaldi-fbank", num_mel_bins=40).kaldi_conf()
    assert "--num-mel-bins=40" in conf and "num-ceps" not in conf and "cepstral-lifter" not in conf
    assert FeatureConfig(kind="kaldi-fbank", num_mel_bins=40).dim == 120
    assert FeatureConfig(kind="kaldi-fbank", num_mel_bins=40, use_energy=True).dim == 123
    assert FeatureConfig().dim == 39 and FeatureConfig().static_dim == 13
    for bad, message in [
        ({"high_freq": 9000.0}, "Nyquist"),
        ({"num_ceps": 30}, "--num-ceps must be from 1 to --num-mel-bins"),
        ({"kind": "mfcc"}, "--features must be one of"),
        ({"window": "kaiser"}, "--window-type"),
        ({"num_mel_bins": 2, "num_ceps": 2}, "--num-mel-bins must be from 3 to 512, not 2"),  # Kaldi's MelBanks
        (
            {"kind": "kaldi-fbank", "num_mel_bins": 100, "sample_rate": 8000},
            "mel band 2 of --num-mel-bins 100 between 20 and 4000 Hz holds no bin of the 256-point FFT at 8000 Hz",
        ),  # fmt: skip
    ]:
        with pytest.raises(UserError, match=message):
            FeatureConfig(**bad).check()


def test_fbank_takes_fewer_bands_than_mfccs_ceps():
    """--num-ceps is MFCC's: fbank with 10 bands was refused for --num-ceps 13, never given."""
    FeatureConfig(kind="kaldi-fbank", num_mel_bins=10).check()
    FeatureConfig(kind="librosa-mfcc", num_mel_bins=40, num_ceps=13).check()


def test_records_from_before_kaldis_features_read_as_librosa_mfcc():
    """Stores and models made before --features recorded librosa's MFCC under "mfcc", with the
    CMVN in the store's "extract" record; they read as what they were."""
    old = {
        "delta_width": 5,
        "fmin": 20.0,
        "hop_ms": 10.0,
        "n_mels": 40,
        "n_mfcc": 13,
        "sample_rate": 16000,
        "win_ms": 25.0,
    }
    config = FeatureConfig.from_store_config({"mfcc": old, "extract": {"cmvn": "utterance"}})
    assert (config.kind, config.num_mel_bins, config.high_freq, config.dim) == ("librosa-mfcc", 40, 8000.0, 39)
    assert (config.cmvn, config.norm_vars) == ("utterance", True)
    model_side = FeatureConfig.from_dict(old)  # a model's pipeline record has no CMVN: not compared
    assert model_side.differences(config) == []
    assert FeatureConfig.from_store_config({}) is None
    assert config.differences(dataclasses.replace(config, cmvn="speaker")) == [("cmvn", "utterance", "speaker")]


@pytest.mark.parametrize("sr", [8000, 16000])
def test_librosa_mfcc_is_librosas(sr):
    """--features librosa-mfcc is librosa.feature.mfcc(y=...) bit for bit, as stores were made before."""
    import librosa

    config = FeatureConfig(kind="librosa-mfcc", sample_rate=sr).resolved()
    audio = (0.1 * np.random.default_rng(1).standard_normal(sr)).astype(np.float32)
    reference = librosa.feature.mfcc(y=audio, sr=sr, n_mfcc=13, n_fft=config.fft_size, hop_length=config.frame_shift,
                                     win_length=config.frame_length, n_mels=40, fmin=20.0, center=True)  # fmt: skip
    feats, power = librosa_mfcc(audio, config)
    np.testing.assert_array_equal(feats[:, :13], reference.T.astype(np.float32))
    assert feats.shape == (1 + sr // config.frame_shift, 39) and power.shape == (40,)


@pytest.mark.parametrize(
    "start, end, first, stop",
    [
        ("0.10003125", "0.5", 1601, 8000),  # 1600.5 samples: a tie rounds up (round() made it 1600)
        ("0.30015625", "0.5", 4803, 8000),  # 4802.5 (round(): 4802)
        ("0.2", "0.30015625", 3200, 4803),
        ("0.6", "1.4999", 9600, 16000),  # an end up to 0.5 s past the recording is cut at its end
        ("0.6", "-1", 9600, 16000),
    ],
)
def test_segments_regions_are_the_samples_extract_segments_cuts(tmp_path, start, end, first, stop):
    """extract-segments (featbin/extract-segments.cc) takes samples int(t * rate + 0.5) and cuts an
    end past the recording by at most --max-overshoot (0.5 s) at its end: a ramp's samples tell
    which ones a region gets."""
    import soundfile as sf

    sf.write(tmp_path / "r.wav", np.arange(16000, dtype=np.int16), 16000)
    seconds = float(end)
    utt = Utterance("u", "s", tmp_path / "r.wav", (), float(start), None if seconds < 0 else seconds)
    got = np.concatenate(list(audio_blocks(utt, 16000))) * 32768
    np.testing.assert_array_equal(got, np.arange(first, stop))


def test_a_segments_region_further_past_its_recording_is_refused(tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "r.wav", np.zeros(16000, np.int16), 16000)
    utt = Utterance("u", "s", tmp_path / "r.wav", (), 0.6, 1.5001)
    with pytest.raises(UserError, match=r"r\.wav: region 0\.600-1\.5001s of utterance u is past the end of the audio "
                       r"\(1\.000s, and an end may pass it by 0\.5s\)"):  # fmt: skip
        next(audio_blocks(utt, 16000))


@pytest.mark.parametrize("end", [None, 1e308])
def test_a_segments_start_no_sample_number_holds_is_past_the_end(tmp_path, end):
    """A start of 1e308 s (to the recording's end, or with an end as far) is past the end of the audio, a
    problem --skip-bad skips; its sample number, infinite, stopped in 'cannot convert float infinity to
    integer', naming no file."""
    import soundfile as sf

    sf.write(tmp_path / "r.wav", np.zeros(16000, np.int16), 16000)
    utt = Utterance("u", "s", tmp_path / "r.wav", (), 1e308, end)
    with pytest.raises(UserError, match=r"r\.wav: region 1\d{308}\.000-\S+s of utterance u is past the end of the"):
        next(audio_blocks(utt, 16000))


def test_segments_regions_extract_segments_finds_too_short_are_left_out_with_one_warning(tmp_path):
    """A `segments` region shorter than extract-segments' --min-segment-length (0.1 s, a float: 0.5 to
    0.6 s is shorter; an end past the recording cut at its end first) is left out, as extract-segments
    leaves it out (test_real_kaldi holds the same regions against it), with one warning counting them."""
    import json

    from conftest import write_kaldi_dir
    from test_real_kaldi import SHORT_REGIONS, write_short_segments
    from typer.testing import CliRunner

    from asr_init.cli import app
    from asr_init.corpora.readers import read_kaldi_dir
    from asr_init.features.frontend import read_audio_headers

    corpus = write_kaldi_dir(tmp_path / "c", speakers=1, utts_per_speaker=1)
    kept = write_short_segments(corpus)
    utterances = read_kaldi_dir(corpus).utterances
    assert sorted(u.id for u in read_audio_headers(utterances)[3]) == sorted(set(u.id for u in utterances) - set(kept))
    result = CliRunner().invoke(app, ["extract", str(corpus), "--out", str(tmp_path / "s"), "--test-fraction", "0",
                                      "--dev-fraction", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    output = "".join(result.output.split())  # rich breaks a long path anywhere: compared without white space
    short, first = len(SHORT_REGIONS) - len(kept), utterances[0].id
    warning = (
        f"warning: {short} of {len(SHORT_REGIONS)} segments lines are shorter than 0.1 s, and their utterances are "
        f"left out, as extract-segments leaves them out (the first: {corpus / 'segments'}:1, utterance {first})"
    )
    assert output.count("warning:") == 1 and "".join(warning.split()) in output, result.output
    manifest = (tmp_path / "s" / "manifest.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in manifest) == sorted(kept)


def test_short_segments_name_the_first_line_and_a_speaker_left_with_none_and_none_kept_is_refused(tmp_path):
    """The warning named the first short region by utterance id, not by line; a speaker whose lines were
    all short, and a corpus with nothing left, stopped later in the split assignment, with advice that did
    not help ("the corpus has 0 speakers ... lower --dev-fraction")."""
    from conftest import write_kaldi_dir
    from typer.testing import CliRunner

    from asr_init.cli import app

    corpus = write_kaldi_dir(tmp_path / "c", speakers=2, utts_per_speaker=1)
    (corpus / "wav.scp").write_text("r0 wav/spk0-utt0.wav\nr1 wav/spk1-utt0.wav\n")
    lines = [("z", "r0", "0 0.05", "spk0"), ("a", "r1", "0.5 0.55", "spk1"), ("m", "r0", "0.1 0.9", "spk0")]
    (corpus / "segments").write_text("".join(f"{u} {r} {t}\n" for u, r, t, _ in lines))
    (corpus / "utt2spk").write_text("".join(f"{u} {s}\n" for u, _, _, s in lines))
    (corpus / "phones.ctm").write_text("".join(f"{u} 1 0 0.05 aa\n" for u, *_ in lines))
    args = ["extract", str(corpus), "--test-fraction", "0", "--dev-fraction", "0"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "s")])
    said = "".join(result.output.split())  # rich breaks a long path anywhere: compared without white space
    assert result.exit_code == 0, result.output
    assert f"(thefirst:{corpus / 'segments'}:1,utterancez);speakerspk1leftwithnone" in said, result.output
    (corpus / "segments").write_text("z r0 0 0.05\na r1 0.5 0.55\nm r0 0.1 0.15\n")
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "t")])
    error = f"error: corpus {corpus}: all 3 segments lines are shorter than 0.1 s, and extract-segments leaves"
    assert result.exit_code == 1 and "".join(error.split()) in "".join(result.output.split()), result.output
    assert not (tmp_path / "t").exists()


def test_librosa_mfcc_refuses_an_utterance_longer_than_its_limit(tmp_path):
    """librosa-mfcc holds a whole utterance in memory (a 28 KB FLAC of an hour ran out of 3 GB): a
    recording past its limit (docs/reference.md: 10 minutes at 16 kHz) is refused from its header,
    before a sample is decoded; a region of it (a segments file) within the limit is computed."""
    import soundfile as sf

    from asr_init.features.frontend import Frontend

    sf.write(tmp_path / "r.flac", np.zeros(601 * 16000, np.float32), 16000, subtype="PCM_16")
    frontend = Frontend(FeatureConfig(kind="librosa-mfcc", sample_rate=16000))
    with pytest.raises(UserError, match=r"r\.flac: utterance u is 601\.0 s long, longer than the 600 s \(at 16000 Hz\) "
                       r"that --features librosa-mfcc computes.*--features kaldi-mfcc.*segments file"):  # fmt: skip
        frontend(Utterance("u", "s", tmp_path / "r.flac", ()))
    feats, _, seconds = frontend(Utterance("u", "s", tmp_path / "r.flac", (), 10.0, 11.0))
    assert seconds == 1.0 and feats.shape == (101, 39)
