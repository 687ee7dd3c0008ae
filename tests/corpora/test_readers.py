"""Corpus readers: Kaldi data dir, TIMIT (SPHERE audio), TextGrid folders."""

import dataclasses
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import make_audio, write_kaldi_dir
from typer.testing import CliRunner

from asr_init.corpora.readers import detect_layout, read_kaldi_dir, read_textgrid_dir, read_timit
from asr_init.errors import UserError


def test_kaldi_reader(kaldi_dir):
    corpus = read_kaldi_dir(kaldi_dir)
    assert corpus.layout == "kaldi"
    assert len(corpus.utterances) == 15
    utt = corpus.utterances[0]
    assert utt.id == "spk0-utt0" and utt.speaker == "spk0"
    assert utt.audio == kaldi_dir / "wav" / "spk0-utt0.wav"
    assert utt.segments[0].label == "sil" and utt.segments[0].start == 0.0
    assert all(a.end == pytest.approx(b.start, abs=1e-3) for a, b in zip(utt.segments, utt.segments[1:]))


def test_kaldi_segments_file(kaldi_dir):
    # One recording split into two utterances through `segments`.
    (kaldi_dir / "segments").write_text("a spk0-utt0 0.0 0.5\nb spk0-utt0 0.5 -1\n")
    (kaldi_dir / "utt2spk").write_text("a spk0\nb spk0\n")
    (kaldi_dir / "phones.ctm").write_text("a 1 0 0.5 sil\nb 1 0.0 0.3 aa\n")
    corpus = read_kaldi_dir(kaldi_dir)
    assert [(u.id, u.start, u.end) for u in corpus.utterances] == [("a", 0.0, 0.5), ("b", 0.5, None)]


def test_kaldi_rejects_piped_command(kaldi_dir):
    (kaldi_dir / "wav.scp").write_text("spk0-utt0 sox x.wav -t wav - |\n")
    with pytest.raises(UserError, match=r"wav\.scp:1: .*piped command"):
        read_kaldi_dir(kaldi_dir)


def write_wav_archive(corpus: Path) -> list[int]:
    """The corpus's recordings moved into one wav archive, as `wav-copy scp:wav.scp
    ark,scp:wavs.ark,wav.scp` writes it ("key " then the WAV file's bytes, for each): wav.scp
    names `wavs.ark:OFFSET`; returns the offsets."""
    lines, archive = [], b""
    for line in (corpus / "wav.scp").read_text().splitlines():
        key, path = line.split()
        archive += key.encode() + b" "
        lines.append(f"{key} wavs.ark:{len(archive)}\n")
        archive += (corpus / path).read_bytes()
        (corpus / path).unlink()
    (corpus / "wavs.ark").write_bytes(archive)
    (corpus / "wav.scp").write_text("".join(lines))
    return [int(line.rsplit(":", 1)[1]) for line in lines]


def test_kaldi_reads_recordings_inside_a_wav_archive(tmp_path):
    """A wav.scp entry "utt wavs.ark:10", as wav-copy ark,scp: writes it, is the WAV at that
    byte of the archive: the same samples as the file it was made from, and the same store."""
    from asr_init.features.config import ExtractConfig
    from asr_init.features.extract import extract
    from asr_init.features.frontend import audio_blocks
    from asr_init.features.store import FeatureStore

    plain, packed = write_kaldi_dir(tmp_path / "plain", 3, 1), write_kaldi_dir(tmp_path / "packed", 3, 1)
    offsets = write_wav_archive(packed)
    utts, files = read_kaldi_dir(packed).utterances, read_kaldi_dir(plain).utterances
    assert [(u.audio, u.offset) for u in utts] == [(packed / "wavs.ark", at) for at in offsets]
    for utt, file in zip(utts, files):  # resampled to 8 kHz: read in a stream
        samples = [np.concatenate(list(audio_blocks(u, 8000))) for u in (utt, file)]
        np.testing.assert_array_equal(*samples)
    config = ExtractConfig(dither=0.0, jobs=1, dev_fraction=0, test_fraction=0.3)
    stores = [FeatureStore(extract(d, tmp_path / f"{d.name}.store", config) and tmp_path / f"{d.name}.store")
              for d in (plain, packed)]  # fmt: skip
    assert [r.id for r in stores[0].records] == [r.id for r in stores[1].records]
    for a, b in zip(stores[0].records, stores[1].records):
        np.testing.assert_array_equal(stores[0].features(a), stores[1].features(b))


def test_each_recording_of_a_wav_archive_counts_at_its_own_rate_and_channels(tmp_path):
    """An archive's recordings are read one by one for the corpus's rates and channels (only its
    first recording's header was read): one at 8 kHz in two channels among 16 kHz mono ones is
    resampled, counted and warned about as a file of its own would be."""
    from asr_init.cli import app
    from asr_init.features.frontend import read_audio_headers

    corpus = write_kaldi_dir(tmp_path / "c", 3, 1)
    audio, _ = sf.read(corpus / "wav" / "spk1-utt0.wav")
    sf.write(corpus / "wav" / "spk1-utt0.wav", np.stack([audio[::2], audio[1::2]], axis=1), 8000)
    offsets = write_wav_archive(corpus)
    ark = corpus / "wavs.ark"
    rates, channels, problem, short = read_audio_headers(read_kaldi_dir(corpus).utterances)
    assert rates == {(ark, offsets[0]): 16000, (ark, offsets[1]): 8000, (ark, offsets[2]): 16000}
    assert problem is None and short == []
    assert channels == {(ark, offsets[0]): 1, (ark, offsets[1]): 2, (ark, offsets[2]): 1}
    result = CliRunner().invoke(app, ["extract", str(corpus), "--out", str(tmp_path / "s"), "--test-fraction", "0"])
    output = " ".join(result.output.split())
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["source_rates"] == {"8000": 1, "16000": 2} and summary["resampled_utterances"] == 1
    assert "warning: 1 of 3 recordings (8000 Hz) are upsampled to 16000 Hz" in output, result.output
    assert "warning: 1 of 3 recordings have 2 channels: channel 0 (the left) is read" in output
    assert json.loads((tmp_path / "s" / "config.json").read_text())["channels"] == "channel 0"


def test_relative_audio_paths_are_found_as_kaldi_finds_them(tmp_path, monkeypatch):
    """A relative wav.scp path (a file, or an archive's `wavs.ark:N`) is read from the current folder,
    as Kaldi's tools and import-kaldi read it (it was read from the data dir only), else from the data
    dir and the folders above it: a data dir whose paths are relative to itself reads as before."""
    recipe = tmp_path / "recipe"
    corpus = write_kaldi_dir(recipe / "data" / "train", 2, 1)
    offsets = write_wav_archive(corpus)
    (corpus / "wavs.ark").rename(recipe / "wavs.ark")
    monkeypatch.chdir(recipe)
    assert [(u.audio, u.offset) for u in read_kaldi_dir(corpus).utterances] == [
        (recipe / "wavs.ark", at) for at in offsets
    ]
    (recipe / "wav").mkdir()
    (recipe / "wav" / "spk0-utt0.wav").write_bytes(b"")
    (corpus / "wav.scp").write_text("spk0-utt0 wav/spk0-utt0.wav\nspk1-utt0 /abs/missing.wav\n")
    assert [u.audio for u in read_kaldi_dir(corpus).utterances] == [
        recipe / "wav/spk0-utt0.wav",
        Path("/abs/missing.wav"),
    ]
    (recipe / "wav" / "spk0-utt0.wav").unlink()
    (corpus / "wav" / "spk0-utt0.wav").write_bytes(b"")
    assert read_kaldi_dir(corpus).utterances[0].audio == corpus / "wav/spk0-utt0.wav"  # the data dir's, as before
    (recipe / "wav" / "spk0-utt0.wav").write_bytes(b"")
    assert read_kaldi_dir(corpus).utterances[0].audio == recipe / "wav/spk0-utt0.wav"  # the current folder's first


@pytest.mark.parametrize("gap", ["\t", " \t ", "\t\t"])
def test_kaldi_files_separated_by_tabs(kaldi_dir, gap):
    """Kaldi splits a line's key from the rest at the first run of whitespace, tabs included:
    the same corpus read with tabs for spaces gives the same utterances."""
    before = read_kaldi_dir(kaldi_dir).utterances
    keys = [line.split()[0] for line in (kaldi_dir / "wav.scp").read_text().splitlines()]
    (kaldi_dir / "segments").write_text("".join(f"{k} {k} 0 -1\n" for k in keys))
    (kaldi_dir / "spk2utt").write_text("spk0 spk0-utt0 spk0-utt1 spk0-utt2\n")
    for name in ("wav.scp", "utt2spk", "segments", "spk2utt", "phones.ctm"):
        path = kaldi_dir / name
        path.write_text(path.read_text().replace(" ", gap))
    after = read_kaldi_dir(kaldi_dir).utterances
    assert [u.region for u in after] == [f"{kaldi_dir / 'segments'}:{n}" for n in range(1, 16)]
    assert [dataclasses.replace(u, region="") for u in after] == before
    (kaldi_dir / "wav.scp").write_text(f"spk0-utt0{gap}sox x.wav -t wav -{gap}|\n")
    with pytest.raises(UserError, match=r"wav\.scp:1: recording spk0-utt0 has a piped command"):
        read_kaldi_dir(kaldi_dir)


@pytest.mark.parametrize("odd", ["\x85", "\u2028", "\x0c"])
def test_kaldi_lines_end_at_newlines_only(kaldi_dir, odd):
    """Kaldi breaks a line at "\\n" only (str.splitlines breaks at \\x85, \\u2028, \\f ... too): a file
    name holding one is one entry, and the lines after it keep their numbers; a "\\r\\n" line end
    (a file saved on Windows) reads as "\\n"."""
    before = read_kaldi_dir(kaldi_dir).utterances
    for name in ("wav.scp", "utt2spk", "phones.ctm"):
        (kaldi_dir / name).write_bytes((kaldi_dir / name).read_bytes().replace(b"\n", b"\r\n"))
    assert read_kaldi_dir(kaldi_dir).utterances == before
    audio = (kaldi_dir / "wav" / "spk0-utt0.wav").rename(kaldi_dir / "wav" / f"a{odd}b.wav")
    scp = (kaldi_dir / "wav.scp").read_text().replace("wav/spk0-utt0.wav", f"wav/a{odd}b.wav")
    (kaldi_dir / "wav.scp").write_text(scp)
    assert {u.id: u.audio for u in read_kaldi_dir(kaldi_dir).utterances}["spk0-utt0"] == audio
    (kaldi_dir / "wav.scp").write_text(scp + "spk9-utt0\n")
    with pytest.raises(UserError, match=rf"wav\.scp:{len(before) + 1}: recording spk9-utt0 has no audio path"):
        read_kaldi_dir(kaldi_dir)


@pytest.mark.parametrize("name, old, new", [("wav.scp", "spk0-utt1 ", "spk0\x00utt1 "),
                                            ("utt2spk", "spk0-utt1 spk0", "spk0-utt1 spk\x1b0")])  # fmt: skip
def test_a_kaldi_id_holding_a_control_character_is_refused_naming_the_line(kaldi_dir, name, old, new):
    """A NUL or an escape in an id (which Kaldi's IsToken refuses) was read: it printed unseen in messages
    and matched no other file's id."""
    text = (kaldi_dir / name).read_text()
    line = text[: text.index(old)].count("\n") + 1
    (kaldi_dir / name).write_text(text.replace(old, new))
    with pytest.raises(UserError, match=rf"{name}:{line}: field '.*\\x(00|1b).*' holds .*\(IsToken\)"):
        read_kaldi_dir(kaldi_dir)


@pytest.mark.parametrize("odd", ["\u00a0", "\u3000", "\u2009", "\u1680"])
def test_kaldi_fields_are_split_at_ascii_white_space_only(kaldi_dir, odd):
    """Kaldi splits a line at ASCII white space only (isspace in the C locale; str.split() splits at
    U+00A0, U+3000 ... too): an id, a file name or a phone holding one is one field. Kaldi's own
    binaries agree: copy-feats scp:feats.scp ark,t:- writes the key "spk0\\u00a0utt0" whole, and
    extract-segments finds no recording "spk1-utt0\\u00a00" for a segments line naming it."""
    audio = (kaldi_dir / "wav" / "spk0-utt0.wav").rename(kaldi_dir / "wav" / f"a.wav{odd}")
    edits = {"wav.scp": ("spk0-utt0 wav/spk0-utt0.wav", f"spk0{odd}utt0 wav/a.wav{odd}"),
             "utt2spk": ("spk0-utt0 ", f"spk0{odd}utt0 "), "phones.ctm": ("spk0-utt0 ", f"spk0{odd}utt0 ")}  # fmt: skip
    for name, (old, new) in edits.items():
        (kaldi_dir / name).write_text((kaldi_dir / name).read_text().replace(old, new))
    ctm = (kaldi_dir / "phones.ctm").read_text()
    (kaldi_dir / "phones.ctm").write_text(ctm.replace(" sil\n", f" s{odd}l\n", 1))
    utt = {u.id: u for u in read_kaldi_dir(kaldi_dir).utterances}[f"spk0{odd}utt0"]
    assert utt.speaker == "spk0" and utt.audio == audio and utt.segments[0].label == f"s{odd}l"
    keys = [line.split(" ")[0] for line in (kaldi_dir / "wav.scp").read_text().splitlines()]
    (kaldi_dir / "segments").write_text("".join(f"{k} {k} 0 -1\n" for k in keys))
    assert f"spk0{odd}utt0" in {u.id for u in read_kaldi_dir(kaldi_dir).utterances}


@pytest.mark.parametrize("name, old, new, message", [
    ("wav.scp", "spk0-utt1 ", "spk0\x1cutt1 ", r"wav\.scp:2: field 'spk0\\x1cutt1' holds '\\x1c'.*\(IsToken\)"),
    ("utt2spk", " spk0\n", " spk\x1f0\n", r"utt2spk:1: field 'spk\\x1f0' holds '\\x1f'.*\(IsToken\)"),
    ("segments", "spk0-utt0 spk0-utt0", "spk0-utt0\x0bspk0-utt0", r"segments:1: expected at least 4 fields"),
    # an archive's key ends at a space or a tab (apply-cmvn --utt2spk: "expected space after key")
    ("utt2spk", "spk0-utt0 ", "spk0-utt0\x0c", r"utt2spk:1: expected a space or a tab after the key 'spk0-utt0'"),
])  # fmt: skip
def test_a_kaldi_line_split_at_no_ascii_space_is_refused_as_kaldi_refuses_it(kaldi_dir, name, old, new, message):
    """\\x1c-\\x1f split a line for str.split(), not for Kaldi: "spk0\\x1cutt1" is one key, which Kaldi's
    IsToken refuses (wav-copy: "Using invalid key"); extract-segments splits a segments line at spaces, tabs
    and "\\r" only, so a "\\v" leaves three fields ("Invalid line in segments file")."""
    (kaldi_dir / "segments").write_text(
        "".join(f"spk{s}-utt{u} spk{s}-utt{u} 0 -1\n" for s in range(5) for u in range(3))
    )
    path = kaldi_dir / name
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(UserError, match=message):
        read_kaldi_dir(kaldi_dir)


def _write_timit(root: Path) -> Path:
    """A tiny TIMIT tree: NIST SPHERE audio, .PHN in samples, a core-test and a dev speaker."""
    entries = [
        ("TRAIN", "DR1", "FCJF0", "SI1027"),
        ("TRAIN", "DR1", "FCJF0", "SA1"),
        ("TEST", "DR1", "FELC0", "SX126"),
        ("TEST", "DR2", "FAKS0", "SI943"),
        ("TEST", "DR3", "MABC0", "SX1"),
    ]
    for part, dr, spk, utt in entries:
        d = root / part / dr / spk
        d.mkdir(parents=True, exist_ok=True)
        segs = [(0.0, 0.1, "h#"), (0.1, 0.25, "ao"), (0.25, 0.3, "q"), (0.3, 0.45, "zh"), (0.45, 0.6, "h#")]
        audio = make_audio([(a, b, "aa" if lab == "ao" else "s" if lab == "zh" else "sil") for a, b, lab in segs])
        sf.write(d / f"{utt}.WAV", audio, 16000, format="NIST", subtype="PCM_16")
        (d / f"{utt}.PHN").write_text("".join(f"{int(a * 16000)} {int(b * 16000)} {lab}\n" for a, b, lab in segs))
    return root


def test_timit_reader_sphere_folding_and_splits(tmp_path):
    root = _write_timit(tmp_path / "timit")
    assert sf.info(str(root / "TRAIN/DR1/FCJF0/SI1027.WAV")).format == "NIST"
    assert detect_layout(root) == "timit"
    corpus = read_timit(root)
    ids = {u.id: u for u in corpus.utterances}
    assert "FCJF0_SA1" not in ids  # SA sentences excluded by default
    assert [s.label for s in ids["FCJF0_SI1027"].segments] == ["sil", "aa", "sil", "sh", "sil"]
    assert ids["FCJF0_SI1027"].segments[1].start == pytest.approx(0.1)
    assert {u.speaker: u.split for u in corpus.utterances} == {
        "FCJF0": "train",
        "FELC0": "test",
        "FAKS0": "dev",
        "MABC0": None,
    }
    assert len(corpus.labels) == 39
    assert "FCJF0_SA1" in {u.id for u in read_timit(root, include_sa=True).utterances}


def test_timit_unknown_phone(tmp_path):
    root = _write_timit(tmp_path / "timit")
    phn = root / "TRAIN/DR1/FCJF0/SI1027.PHN"
    phn.write_text(phn.read_text().replace("ao", "xx"))
    with pytest.raises(UserError, match=r"SI1027\.PHN:2: phone 'xx' is not a TIMIT phone"):
        read_timit(root)


def test_textgrid_reader(tmp_path):
    from praatio import textgrid as tgio

    d = tmp_path / "mfa" / "alice"
    d.mkdir(parents=True)
    sf.write(d / "u1.wav", make_audio([(0, 0.3, "sil"), (0.3, 0.6, "aa"), (0.6, 1.0, "sil")]), 16000)
    tg = tgio.Textgrid()
    tg.addTier(tgio.IntervalTier("words", [(0.3, 0.6, "ah")], 0, 1.0))
    tg.addTier(tgio.IntervalTier("phones", [(0.3, 0.45, "AA1"), (0.45, 0.6, "M")], 0, 1.0))
    tg.save(str(d / "u1.TextGrid"), format="long_textgrid", includeBlankSpaces=True)
    assert detect_layout(tmp_path / "mfa") == "textgrid"
    corpus = read_textgrid_dir(tmp_path / "mfa")
    (utt,) = corpus.utterances
    assert utt.speaker == "alice" and utt.audio == d / "u1.wav"
    assert [(s.start, s.end, s.label) for s in utt.segments] == [(0.3, 0.45, "AA1"), (0.45, 0.6, "M")]
    with pytest.raises(UserError, match="no tier named 'phonemes'"):
        read_textgrid_dir(tmp_path / "mfa", tier="phonemes")
    # a speaker folder whose name is bytes, not UTF-8: ids are made of names and written as text
    bad = d.rename(tmp_path / "mfa" / os.fsdecode(b"al\xffce"))
    with pytest.raises(UserError, match=re.escape(f"{bad / 'u1.TextGrid'}: the name 'al\\udcffce' is not UTF-8")):
        read_textgrid_dir(tmp_path / "mfa")


@pytest.mark.parametrize(
    "entries, message",
    [
        ('[0, 0.5, "sil"], [0.5, NaN, "aa"], [NaN, 1.0, "sil"]', "segment 'aa' from 0.5 to nan s: end time nan"),
        ('[0, 0.5, "sil"], [0.5, 1.0, "aa"], [1.0, Infinity, "sil"]', "segment 'sil' from 1.0 to inf s: end time inf"),
    ],
)
def test_textgrid_times_must_be_finite(tmp_path, entries, message):
    """praatio reads NaN and Infinity in a TextGrid (here its JSON form), and every comparison
    with a NaN is false: the segment check must refuse them, naming the file."""
    d = tmp_path / "mfa" / "alice"
    d.mkdir(parents=True)
    sf.write(d / "u1.wav", make_audio([(0, 1.0, "sil")]), 16000)
    tier = f'{{"class": "IntervalTier", "name": "phones", "xmin": 0, "xmax": 1.0, "entries": [{entries}]}}'
    (d / "u1.TextGrid").write_text(f'{{"xmin": 0, "xmax": 1.0, "tiers": [{tier}]}}')
    expected = re.escape(f"{d / 'u1.TextGrid'}: utterance alice_u1: {message} is not a finite number of seconds")
    with pytest.raises(UserError, match=f"^{expected}"):
        read_textgrid_dir(tmp_path / "mfa")


@pytest.mark.parametrize("label, shown", [("a b", "'a b'"), ("a\\nb", "'a\\nb'"), ("a\\rb", "'a\\rb'")])
def test_textgrid_label_with_white_space_inside_is_refused(tmp_path, label, shown):
    """A store's phones.txt and states.txt are split at ASCII white space (kaldi_io.fields): a label "a b"
    or one with a line break made a store whose label files read back as other labels."""
    d = tmp_path / "mfa" / "alice"
    d.mkdir(parents=True)
    sf.write(d / "u1.wav", make_audio([(0, 1.0, "sil")]), 16000)
    tier = f'{{"class": "IntervalTier", "name": "phones", "xmin": 0, "xmax": 1.0, "entries": [[0.25, 0.5, "{label}"]]}}'
    (d / "u1.TextGrid").write_text(f'{{"xmin": 0, "xmax": 1.0, "tiers": [{tier}]}}')
    expected = f"{d / 'u1.TextGrid'}: utterance alice_u1: segment {shown} from 0.25 to 0.5 s: a label may not"
    with pytest.raises(UserError, match=f"^{re.escape(expected)}"):
        read_textgrid_dir(tmp_path / "mfa")


def test_unknown_layout(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(UserError, match="unknown corpus layout"):
        detect_layout(tmp_path)


def test_fsdd_layout_every_frame_its_digit(tmp_path):
    from conftest import write_fake_fsdd

    from asr_init.corpora.readers import DIGITS, detect_layout, read_corpus

    root = write_fake_fsdd(tmp_path / "fsdd", per_digit=2)
    assert detect_layout(root) == "fsdd" and detect_layout(root / "recordings") == "fsdd"
    corpus = read_corpus(root)
    assert corpus.layout == "fsdd" and corpus.labels == DIGITS and len(corpus.utterances) == 4 * 10 * 2
    utt = next(u for u in corpus.utterances if u.id == "theo-7-001")
    assert utt.speaker == "theo" and utt.audio.name == "7_theo_1.wav"
    (segment,) = utt.segments
    assert (segment.start, segment.label) == (0.0, "seven") and 0.3 <= segment.end <= 0.5
    assert [u.id for u in corpus.utterances] == sorted(u.id for u in corpus.utterances)
    (root / "recordings" / "notes.wav").write_bytes(b"")  # another name: not FSDD's layout
    with pytest.raises(UserError, match="unknown corpus layout .* FSDD's recordings"):
        read_corpus(root)
    (root / "recordings" / "notes.wav").unlink()
    (root / "recordings" / "3_theo_01.wav").write_bytes((root / "recordings" / "3_theo_1.wav").read_bytes())
    with pytest.raises(UserError, match="utterance theo-3-001 is given twice"):
        read_corpus(root)


def test_fsdds_folder_and_its_recordings_have_one_root(tmp_path):
    """corpus_root: FSDD's folder and its recordings/ are the recordings/ read; a folder of another
    layout whose recordings/ looks like FSDD's (a Kaldi dir: wav.scp wins) and a missing path stay."""
    from conftest import write_fake_fsdd

    from asr_init.corpora.readers import corpus_root

    root = write_fake_fsdd(tmp_path / "fsdd", speakers=("jackson",))
    assert corpus_root(root) == root / "recordings" == corpus_root(root / "recordings")
    (root / "wav.scp").write_text("")
    assert corpus_root(root) == root and corpus_root(tmp_path / "gone") == tmp_path / "gone"


def test_fsdd_folder_with_a_stray_wav_names_it(tmp_path):
    """One .wav that is not named {digit}_{speaker}_{index}.wav among FSDD's recordings (a
    macOS '._' copy, a note) makes the folder no known layout; the line names that file, so the
    user knows which one to move, instead of only listing the layouts."""
    from conftest import write_fake_fsdd

    root = write_fake_fsdd(tmp_path / "fsdd", speakers=("jackson",))
    stray = root / "recordings" / "._0_jackson_0.wav"
    stray.write_bytes(b"")
    with pytest.raises(UserError, match=r"unknown corpus layout .* FSDD's recordings") as err:
        detect_layout(root)
    assert f"{stray} is not named so" in str(err.value)
    assert "10 of 11 .wav files are" in str(err.value)
