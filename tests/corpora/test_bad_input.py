"""Corpus files that are wrong: one UserError naming the file and line, or a skipped utterance."""

import contextlib
import dataclasses
import os
import threading
import warnings

import numpy as np
import pytest
import soundfile as sf
from conftest import write_fake_fsdd, write_fake_timit, write_kaldi_dir

from asr_init.corpora.readers import read_fsdd, read_kaldi_dir, read_textgrid_dir, read_timit
from asr_init.errors import UserError
from asr_init.features.config import ExtractConfig
from asr_init.features.extract import extract
from asr_init.features.frontend import audio_blocks


@pytest.fixture
def small_kaldi(tmp_path):
    return write_kaldi_dir(tmp_path / "c", speakers=4, utts_per_speaker=1)


def _set_ctm_field(d, line: int, field: int, value: str) -> None:
    lines = (d / "phones.ctm").read_text().splitlines()
    parts = lines[line - 1].split()
    parts[field] = value
    lines[line - 1] = " ".join(parts)
    (d / "phones.ctm").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "field, value, message",
    [
        (3, "nan", r"phones\.ctm:3: duration 'nan' is not a finite number of seconds"),
        (3, "inf", r"phones\.ctm:3: duration 'inf' is not a finite number of seconds"),
        (3, "-0.05", r"phones\.ctm:3: utterance spk0-utt0: segment .* duration -0.05 s; .* duration positive"),
        (3, "0", r"phones\.ctm:3: .* duration positive"),
        (2, "nan", r"phones\.ctm:3: start time 'nan' is not a finite number of seconds"),
        (2, "x1", r"phones\.ctm:3: start time 'x1' is not a number"),
    ],
)
def test_ctm_times_must_be_finite_and_positive(small_kaldi, field, value, message):
    _set_ctm_field(small_kaldi, 3, field, value)
    with pytest.raises(UserError, match=message):
        read_kaldi_dir(small_kaldi)


def test_ctm_line_numbers_count_blank_lines(small_kaldi):
    ctm = small_kaldi / "phones.ctm"
    ctm.write_text("\n" + ctm.read_text())
    _set_ctm_field(small_kaldi, 4, 3, "nan")
    with pytest.raises(UserError, match=r"phones\.ctm:4: duration 'nan'"):
        read_kaldi_dir(small_kaldi)


@pytest.mark.parametrize("name", ["wav.scp", "phones.ctm", "segments", "utt2spk"])
def test_non_utf8_file_names_line_and_byte(small_kaldi, name):
    if name == "segments":
        (small_kaldi / "segments").write_text("spk0-utt0 spk0-utt0 0 -1\n")
    path = small_kaldi / name
    lines = path.read_bytes().split(b"\n")
    lines[0] = lines[0][:4] + b"\xe9" + lines[0][4:]  # Latin-1 'é'
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(UserError, match=rf"{name}:1: not UTF-8 text \(byte 0xe9 at byte offset 4, column 5\)"):
        read_kaldi_dir(small_kaldi)


@pytest.fixture
def unblock():
    """Register FIFOs to be opened for writing (and closed) while a reader waits on them: a
    reader that should have refused a FIFO then reads an empty file and fails the test
    instead of hanging it."""
    fifos: list = []
    done = threading.Event()

    def open_and_close() -> None:
        while not done.wait(0.2):
            for fifo in fifos:
                with contextlib.suppress(OSError):  # ENXIO: no reader waits on it
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    thread = threading.Thread(target=open_and_close, daemon=True)
    thread.start()
    yield fifos.append
    done.set()
    thread.join()


def _not_a_file(path, kind: str, unblock) -> None:
    """Put a FIFO (opened from the other end when the test ends) or a link to /dev/null at `path`."""
    if kind == "fifo":
        os.mkfifo(path)
        unblock(path)
    else:
        path.symlink_to("/dev/null")


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize("name", ["wav.scp", "utt2spk", "spk2utt", "segments", "phones.ctm"])
def test_a_corpus_file_that_is_not_a_regular_file_is_refused(small_kaldi, unblock, name, kind):
    path = small_kaldi / name
    path.unlink(missing_ok=True)
    _not_a_file(path, kind, unblock)
    with pytest.raises(UserError, match=rf"^{path} is not a regular file \(a pipe or a device\?\)"):
        read_kaldi_dir(small_kaldi)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_textgrid_that_is_not_a_regular_file_is_refused(small_kaldi, tmp_path, unblock, kind):
    """praatio would wait on a pipe for ever and read /dev/zero until memory runs out."""
    (tmp_path / "mfa" / "alice").mkdir(parents=True)
    path = tmp_path / "mfa" / "alice" / "u1.TextGrid"
    (small_kaldi / "wav" / "spk0-utt0.wav").rename(path.with_suffix(".wav"))
    _not_a_file(path, kind, unblock)
    with pytest.raises(UserError, match=rf"^{path} is not a regular file \(a pipe or a device\?\)"):
        read_textgrid_dir(tmp_path / "mfa")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_an_fsdd_recording_that_is_not_a_regular_file_is_left_out(tmp_path, unblock, kind):
    """Its header is not read (soundfile would wait on a pipe for ever): the utterance is a problem
    the reader records, which extract stops on or skips with --skip-bad."""
    root = write_fake_fsdd(tmp_path / "fsdd", speakers=("jackson",))
    path = root / "recordings" / "3_jackson_0.wav"
    path.unlink()
    _not_a_file(path, kind, unblock)
    corpus = read_fsdd(root)
    why = "is not a regular file (a pipe or a device?); save its content to a file and give that"
    assert corpus.problems == [("jackson", f"audio file of utterance jackson-3-000 {path} {why}")]
    assert len(corpus.utterances) == 9


@pytest.mark.parametrize(
    "line, message",
    [
        ("spk0-utt0 spk0-utt0 zero 1.0", r"segments:1: start time 'zero' is not a number"),
        ("spk0-utt0 spk0-utt0 0.0 1,5", r"segments:1: end time '1,5' is not a number"),
        ("spk0-utt0 spk0-utt0 nan 1.0", r"segments:1: start time 'nan' is not a finite number"),
        ("spk0-utt0 spk0-utt0 0.5 0.2", r"segments:1: utterance spk0-utt0 runs from 0.5 to 0.2 s"),
        # extract-segments refuses any end at or below 0 but -1; -7 and -0.5 were taken as the recording's end
        ("spk0-utt0 spk0-utt0 0.5 -7", r"segments:1: utterance spk0-utt0 runs from 0.5 to -7 s; .* \(or -1: the end"),
        ("spk0-utt0 spk0-utt0 0 -0.5", r"segments:1: utterance spk0-utt0 runs from 0 to -0.5 s"),
        ("spk0-utt0 spk0-utt0 0 -0", r"segments:1: utterance spk0-utt0 runs from 0 to -0 s"),
    ],
)
def test_segments_fields_must_be_numbers(small_kaldi, line, message):
    (small_kaldi / "segments").write_text(line + "\n")
    with pytest.raises(UserError, match=message):
        read_kaldi_dir(small_kaldi)


def test_a_segments_end_of_minus_one_is_the_recordings_end(small_kaldi):
    (small_kaldi / "segments").write_text("spk0-utt0 spk0-utt0 0.5 -1.0\nspk1-utt0 spk1-utt0 0 1.5\n")
    (small_kaldi / "phones.ctm").write_text("spk0-utt0 1 0 0.2 sil\nspk1-utt0 1 0 0.2 sil\n")
    assert [(u.start, u.end) for u in read_kaldi_dir(small_kaldi).utterances] == [(0.5, None), (0.0, 1.5)]


@pytest.mark.parametrize("channel", ["-1", "1.0", "one", "0 x", "2147483648", "1" * 5000])
def test_a_segments_channel_is_a_whole_number_and_the_last_field(small_kaldi, channel):
    """A `segments` line is 'utt recording start end [channel]' (extract-segments'): a channel that is
    not a whole number from 0, or a sixth field, is refused naming the line; they were ignored."""
    (small_kaldi / "segments").write_text(f"spk0-utt0 spk0-utt0 0 -1 {channel}\n")
    with pytest.raises(UserError, match=r"segments:1: expected 'utterance recording start end \[channel\]'"):
        read_kaldi_dir(small_kaldi)


@pytest.mark.parametrize(
    "channel, message",
    [
        (" 2", "asks for channel 2 of .*spk0-utt0.wav, which has 2 channels; give one from 0 to 1 as the line's fifth"),
        ("", "names no channel of .*spk0-utt0.wav, which has 2 channels; give one from 0 to 1"),
    ],
)
def test_a_segments_channel_must_be_one_of_the_files(small_kaldi, channel, message):
    """Of a file of several channels a `segments` line reads the channel it names, which the file must
    have (extract-segments skips such a line), and must name one (extract-segments stops): one error
    naming the segments line; before, the field was ignored and channel 0 read."""
    wav = small_kaldi / "wav" / "spk0-utt0.wav"
    left, rate = sf.read(wav)
    sf.write(wav, np.stack([left, left], axis=1), rate)
    others = "".join(f"spk{k}-utt0 spk{k}-utt0 0 -1 0\n" for k in range(1, 4))
    (small_kaldi / "segments").write_text(f"spk0-utt0 spk0-utt0 0 -1{channel}\n{others}")
    corpus = read_kaldi_dir(small_kaldi)
    with pytest.raises(UserError, match=rf"segments:1: utterance spk0-utt0 {message}"):
        next(audio_blocks(corpus.utterances[0], 16000, first_channel=True))
    assert len(list(audio_blocks(corpus.utterances[1], 16000))) == 1  # channel 0 of a mono file


def test_timit_phn_with_non_integer_sample(tmp_path):
    root = write_fake_timit(tmp_path / "timit", utts_per_speaker=1)
    phn = root / "TRAIN/DR1/FCJF0/SX0.PHN"
    lines = phn.read_text().splitlines()
    begin, end, label = lines[1].split()
    lines[1] = f"{begin} {end}.5 {label}"
    phn.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=rf"SX0\.PHN:2: sample numbers '{begin}' '{end}\.5' are not both integers"):
        read_timit(root)


@pytest.mark.parametrize(
    "begin, message",
    [
        ("-5", r"SX0\.PHN:2: sample numbers '-5' '\d+' are not both integers from 0"),
        ("1" + "0" * 400, r"SX0\.PHN:2: a sample number of 401 digits is past the end of any recording"),
        ("1" * 5000, r"SX0\.PHN:2: a sample number of 5000 digits is past the end of any recording"),
    ],
)
def test_a_timit_sample_number_is_a_count_of_samples(tmp_path, begin, message):
    """A .PHN sample number is read as a count of bounded length: 401 digits stopped in 'int too large to
    convert to float' naming no file, 5000 in int()'s 4,300-digit limit (a traceback)."""
    root = write_fake_timit(tmp_path / "timit", utts_per_speaker=1)
    phn = root / "TRAIN/DR1/FCJF0/SX0.PHN"
    lines = phn.read_text().splitlines()
    lines[1] = " ".join([begin, *lines[1].split()[1:]])
    phn.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=message):
        read_timit(root)


def test_timit_wav_without_phn_stops_or_is_skipped_and_reported(tmp_path):
    root = write_fake_timit(tmp_path / "timit", utts_per_speaker=2)
    (root / "TRAIN/DR1/MDAC0/SX11.PHN").unlink()
    (root / "TEST/DR3/MXYZ0/SX11.PHN").unlink()  # a speaker of neither dev nor test: unused, not reported
    # A RIFF copy converted from the SPHERE file is that utterance's audio, not an utterance.
    sf.write(root / "TRAIN/DR1/FCJF0/SX0.WAV.wav", np.zeros(1600, np.float32), 16000)
    corpus = read_timit(root)
    assert [p for p in corpus.problems if p[0] != "MXYZ0"] == [
        ("MDAC0", f"{root}/TRAIN/DR1/MDAC0/SX11.WAV: audio of utterance MDAC0_SX11 has no .PHN alignment beside it")
    ]
    assert "MDAC0_SX11" not in {u.id for u in corpus.utterances}
    with pytest.raises(UserError, match=r"MDAC0/SX11\.WAV: audio of utterance MDAC0_SX11 has no \.PHN .*--skip-bad"):
        extract(root, tmp_path / "s", ExtractConfig(jobs=1))
    assert not (tmp_path / "s").exists()
    summary = extract(root, tmp_path / "s", ExtractConfig(jobs=1, skip_bad=True))
    assert len(summary["skipped"]) == 1 and "SX11.WAV: audio of utterance MDAC0_SX11" in summary["skipped"][0]


def test_timit_phn_without_wav_is_skipped_with_skip_bad(tmp_path):
    root = write_fake_timit(tmp_path / "timit", utts_per_speaker=1)
    (root / "TRAIN/DR2/FAEM0/SX0.WAV").unlink()
    corpus = read_timit(root)
    assert [m for _, m in corpus.problems] == [
        f"{root}/TRAIN/DR2/FAEM0/SX0.PHN: alignment of utterance FAEM0_SX0 has no .WAV file beside it"
    ]


def _nan_audio(d, value=np.nan) -> None:
    path = d / "wav" / "spk1-utt0.wav"
    audio, sr = sf.read(path, dtype="float32")
    audio[1000:1003] = value
    sf.write(path, audio, sr, subtype="FLOAT")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_wav_with_non_finite_samples(small_kaldi, value):
    _nan_audio(small_kaldi, value)
    utt = next(u for u in read_kaldi_dir(small_kaldi).utterances if u.id == "spk1-utt0")
    with pytest.raises(
        UserError, match=r"spk1-utt0\.wav: audio of utterance spk1-utt0 has 3 sample\(s\) that are NaN or infinite"
    ):
        list(audio_blocks(utt, 16000))


@pytest.mark.parametrize("rate, samples", [(1, 10_000), (4000, 8000)])
def test_wav_below_the_lowest_sample_rate(small_kaldi, rate, samples):
    """A header that claims 1 Hz must not be resampled into hours of samples: refused on opening."""
    sf.write(small_kaldi / "wav" / "spk1-utt0.wav", np.zeros(samples, np.float32), rate)
    utt = next(u for u in read_kaldi_dir(small_kaldi).utterances if u.id == "spk1-utt0")
    with pytest.raises(
        UserError,
        match=rf"spk1-utt0\.wav: audio file of utterance spk1-utt0 is at {rate} Hz, below the lowest rate extract "
        r"reads \(8000 Hz\); resample it",
    ):
        next(audio_blocks(utt, 16000))


def test_wav_with_nan_samples_stops_extract_or_is_skipped(small_kaldi, tmp_path):
    _nan_audio(small_kaldi)
    with pytest.raises(UserError, match=r"spk1-utt0\.wav: .* NaN or infinite.*--skip-bad"):
        extract(small_kaldi, tmp_path / "s", ExtractConfig(jobs=1))
    assert not (tmp_path / "s").exists()
    summary = extract(small_kaldi, tmp_path / "s", ExtractConfig(jobs=1, skip_bad=True))
    assert summary["utterances"] == 3
    assert len(summary["skipped"]) == 1 and "spk1-utt0.wav" in summary["skipped"][0]
    assert "first at sample 1000 (0.062s)" in summary["skipped"][0]


@pytest.mark.parametrize("features", ["kaldi-mfcc", "librosa-mfcc"])
def test_finite_samples_that_give_nan_features_stop_extract_or_are_skipped(small_kaldi, tmp_path, features):
    """Float samples of 1e38 are finite, but overflow float32 in the features: the store would hold
    NaN frames that only evaluate finds, and its advice (extract again) makes the same store. One
    error line: numpy's overflow warnings are not printed before it."""
    path = small_kaldi / "wav" / "spk1-utt0.wav"
    sf.write(path, np.full(sf.info(path).frames, 1e38, np.float32), 16000, subtype="FLOAT")
    config = ExtractConfig(jobs=1, features=features)
    message = r"spk1-utt0\.wav: audio of utterance spk1-utt0 gives \d+ frame\(s\) of NaN"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(UserError, match=message):
            extract(small_kaldi, tmp_path / "s", config)
    assert not (tmp_path / "s").exists()
    summary = extract(small_kaldi, tmp_path / "s", dataclasses.replace(config, skip_bad=True))
    assert summary["utterances"] == 3 and "spk1-utt0 gives" in summary["skipped"][0]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda ark: ark, r"wavs\.ark:12: the WAV of .* is not there: no RIFF/WAVE header at that byte"),
        (lambda ark: ark[:-1], r"wavs\.ark:10: the WAV of .* claims \d+ bytes of samples, but the file holds \d+"),
        (lambda ark: ark[:30], r"wavs\.ark:10: the WAV of utterance spk0-utt0 has no data chunk before the end"),
    ],
)
def test_a_wav_archive_entry_that_is_not_a_whole_wav_is_named(small_kaldi, damage, message):
    """An offset that is not at a WAV's header, or a WAV whose samples the archive does not hold
    (cut short): one error naming the archive, the byte and the utterance; nothing read past it."""
    wav = (small_kaldi / "wav" / "spk0-utt0.wav").read_bytes()
    (small_kaldi / "wavs.ark").write_bytes(damage(b"spk0-utt0 " + wav))
    offset = 12 if "not there" in message else 10
    scp = (small_kaldi / "wav.scp").read_text()
    (small_kaldi / "wav.scp").write_text(scp.replace("spk0-utt0 wav/spk0-utt0.wav", f"spk0-utt0 wavs.ark:{offset}"))
    utt = read_kaldi_dir(small_kaldi).utterances[0]
    assert (utt.audio.name, utt.offset) == ("wavs.ark", offset)
    with pytest.raises(UserError, match=message):
        next(audio_blocks(utt, 16000))


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_wav_archive_that_is_not_a_regular_file_is_named_as_such(small_kaldi, unblock, kind):
    """wav.scp's `wavs.ark:0` where wavs.ark is a pipe or a device: found, and refused as not a regular
    file (not reported as missing, and never opened)."""
    _not_a_file(small_kaldi / "wavs.ark", kind, unblock)
    scp = (small_kaldi / "wav.scp").read_text()
    (small_kaldi / "wav.scp").write_text(scp.replace("spk0-utt0 wav/spk0-utt0.wav", "spk0-utt0 wavs.ark:0"))
    utt = read_kaldi_dir(small_kaldi).utterances[0]
    assert (utt.audio, utt.offset) == (small_kaldi / "wavs.ark", 0)
    with pytest.raises(UserError, match=r"audio file of utterance spk0-utt0 .*wavs\.ark is not a regular file"):
        next(audio_blocks(utt, 16000))


@pytest.mark.parametrize(
    "offset, message",
    [
        (str(2**63), r"wav\.scp:1: recording spk0-utt0 starts at a byte offset of 19 digits in .*wavs\.ark, past"),
        ("9" * 300, r"wav\.scp:1: recording spk0-utt0 starts at a byte offset of 300 digits in .*wavs\.ark, past"),
        ("1" * 5000, r"wav\.scp:1: recording spk0-utt0 starts at a byte offset of 5000 digits in .*wavs\.ark, past"),
    ],
)
def test_a_wav_archive_offset_no_file_can_reach_names_the_line(small_kaldi, offset, message):
    """An offset of 2**63 or more stopped in a seek's 'cannot fit int into an offset-sized integer'; of
    hundreds of digits in 'File name too long' naming no line; of 5000 in int()'s digit limit."""
    (small_kaldi / "wavs.ark").write_bytes(b"spk0-utt0 " + (small_kaldi / "wav" / "spk0-utt0.wav").read_bytes())
    scp = (small_kaldi / "wav.scp").read_text()
    (small_kaldi / "wav.scp").write_text(scp.replace("spk0-utt0 wav/spk0-utt0.wav", f"spk0-utt0 wavs.ark:{offset}"))
    with pytest.raises(UserError, match=message):
        read_kaldi_dir(small_kaldi)


@pytest.mark.parametrize("offset", [2**63 - 1, 10**7])
def test_a_wav_archive_offset_past_its_end_is_named_before_a_seek(small_kaldi, offset):
    """The largest offset a file can have stopped in a seek's 'Invalid argument'; any offset at or past
    the archive's end is named with its size (a problem --skip-bad skips)."""
    wav = (small_kaldi / "wav" / "spk0-utt0.wav").read_bytes()
    (small_kaldi / "wavs.ark").write_bytes(b"spk0-utt0 " + wav)
    scp = (small_kaldi / "wav.scp").read_text()
    (small_kaldi / "wav.scp").write_text(scp.replace("spk0-utt0 wav/spk0-utt0.wav", f"spk0-utt0 wavs.ark:{offset}"))
    utt = read_kaldi_dir(small_kaldi).utterances[0]
    size = len(wav) + 10
    with pytest.raises(UserError, match=rf"wavs\.ark:{offset}: the WAV of utterance spk0-utt0 is not there: byte "
                                        rf"{offset} is past the end of the file \({size} bytes\)"):  # fmt: skip
        next(audio_blocks(utt, 16000))
