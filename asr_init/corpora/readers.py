"""Corpus readers: Kaldi-style data dirs with a phone CTM, TIMIT, and audio + TextGrids.

Every reader returns the same records (`Utterance` with `PhoneSegment`s, times in
seconds), so nothing after reading cares which layout a corpus came in. Readers check
what can be checked without audio (segment order, overlaps, labels, file existence);
what needs the audio (length against the alignment) is checked at feature extraction.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from asr_init.config import DATA_DIR
from asr_init.errors import UserError
from asr_init.io import MAX_FILE_OFFSET, check_regular_file, read_count, read_number, read_regular_file, unique
from asr_init.kaldi_io import SEGMENTS_SPACES, SPACES, KaldiFormatError, check_token, fields, table_fields

SILENCE = "sil"
# Segment order tolerance: CTMs written with 2-3 decimals round boundaries.
_EPS = 1e-3
_MAX_CHANNEL = 2**31 - 1  # extract-segments reads a `segments` channel as an int32
_MAX_SAMPLE = 2**63 - 1  # the last sample number a .PHN line may give (a recording of millennia)


@dataclass(frozen=True)
class PhoneSegment:
    """One aligned label: [start, end) in seconds from the start of the utterance."""

    start: float
    end: float
    label: str


@dataclass(frozen=True)
class Utterance:
    """One utterance: where its audio is and what was said when.

    `start`/`end` select a region of the audio file (Kaldi `segments`); `end=None` means
    to the end of the file. `split` is a layout's own split (TIMIT), or None. `offset`: the
    byte at which the recording's WAV starts in `audio`, a wav archive (wav.scp's
    `wavs.ark:10`, as wav-copy writes it); None: `audio` is a file of its own. `channel`: the
    channel of the file to read (a `segments` line's fifth field, 0 the left); None: none given.
    `region`: the `segments` line (PATH:N) the region and channel come from, '' for a whole file.
    """

    id: str
    speaker: str
    audio: Path
    segments: tuple[PhoneSegment, ...]
    start: float = 0.0
    end: float | None = None
    split: str | None = None
    source: str = ""  # the file the alignment came from, for error messages
    offset: int | None = None
    channel: int | None = None
    region: str = ""

    @property
    def recording(self) -> tuple[Path, int | None]:
        """What identifies the utterance's recording: its file, and the byte its WAV starts at in a
        wav archive (None for a file of its own); the utterances of a `segments` file share one."""
        return self.audio, self.offset


@dataclass(frozen=True)
class Corpus:
    """Utterances plus the label set they are written in (None: derive from training data)."""

    layout: str
    utterances: list[Utterance]
    labels: tuple[str, ...] | None = None
    # (speaker, message) for each utterance the reader had to leave out (a TIMIT .WAV with no
    # .PHN, or the reverse); extract stops on them, or skips and reports them with --skip-bad.
    problems: list[tuple[str, str]] = field(default_factory=list)


def read_text(path: Path, what: str = "") -> str:
    """The text of `path`, which must be a regular file (io.read_regular_file) of UTF-8 (a
    byte-order mark is dropped). A file that cannot be read, or is not UTF-8, is a UserError
    naming it and the line and byte."""
    path = Path(path)
    data = read_regular_file(path, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise UserError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at byte offset {exc.start}, column "
            f"{column}); convert the file to UTF-8, e.g. with iconv -f latin1 -t utf-8"
        ) from None


def read_lines(path: Path, what: str = "") -> list[str]:
    """The lines of a text file (read_text), split at "\\n" only, as Kaldi splits them (not also at \\f,
    \\x85, \\u2028 ... as str.splitlines); a "\\r" ending a line (a file saved on Windows) is dropped."""
    return [line.removesuffix("\r") for line in read_text(path, what).split("\n")]


def locate(name: str, script: Path) -> Path | None:
    """The file that `name`, a file name in the Kaldi script `script` (wav.scp, feats.scp), names,
    found as Kaldi's tools find it: an absolute name as it is; a relative one from the current folder,
    else from the script's folder and the folders above it (a data dir's script files name files
    relative to the recipe folder they were made in, or to the data dir). None where no file is there. A
    folder is passed over; a pipe or a device is found, for its reader to refuse by name (check_regular_file);
    a name longer than the system takes (a wav archive's `wavs.ark:OFFSET` of many digits) names no file."""
    candidate = Path(name)
    bases = [Path("/")] if candidate.is_absolute() else [Path.cwd(), *Path(script).resolve().parents]
    return next((base / candidate for base in bases if _is_entry(base / candidate)), None)


def _is_entry(path: Path) -> bool:
    """Whether `path` is there and is not a folder; False where the system refuses the name (too long)."""
    try:
        return path.exists() and not path.is_dir()
    except OSError:
        return False


def check_audio_file(audio: Path, utt_id: str) -> None:
    """Raise a UserError naming the utterance unless `audio` exists and is a regular file
    (io.check_regular_file), before a reader or decoder opens it."""
    if not audio.exists():
        raise UserError(f"{audio}: audio file of utterance {utt_id} does not exist")
    check_regular_file(audio, f"audio file of utterance {utt_id}")


def read_label_map(path: Path) -> dict[str, str]:
    """Read a two-column map (`from to`), ignoring blank lines and `#` comments; a label
    mapped twice is an error naming both lines."""
    return unique([(key, where, value) for where, (key, value) in _read_table(path, 2, "label map", "'from to'")],
                  "label")  # fmt: skip


def read_label_list(path: Path) -> tuple[str, ...]:
    """Read one label per line (first column), ignoring blank lines and `#` comments; a label
    listed twice is an error naming both lines."""
    rows = [(parts[0], where, None) for where, parts in _read_table(path, 1, "label list")]
    if not rows:
        raise UserError(f"label list {path} is empty")
    return tuple(unique(rows, "label"))


def check_segments(utt_id: str, segments: list[PhoneSegment], source: str) -> None:
    """Raise if a segment's label holds white space (a store's label files are split at it: a TextGrid
    may hold "a b" or a line break), if its time is not a finite number of seconds (a NaN compares
    false with everything, so it would pass the other checks), or if segments are unsorted,
    overlapping or of non-positive length."""
    prev_end = 0.0
    for seg in segments:
        if fields(seg.label) != [seg.label]:
            raise UserError(
                f"{source}: utterance {utt_id}: segment {seg.label!r} from {seg.start} to {seg.end} s: a label may "
                "not hold white space (phones.txt and states.txt are split at it); write it as one word"
            )
        for name, value in (("start time", seg.start), ("end time", seg.end)):
            if not math.isfinite(value):
                raise UserError(
                    f"{source}: utterance {utt_id}: segment {seg.label!r} from {seg.start} to {seg.end} s: "
                    f"{name} {value} is not a finite number of seconds"
                )
        if seg.end <= seg.start:
            raise UserError(
                f"{source}: utterance {utt_id}: segment {seg.label!r} at {seg.start:.3f}s has non-positive duration"
            )
        if seg.start < prev_end - _EPS:
            raise UserError(
                f"{source}: utterance {utt_id}: segment {seg.label!r} at {seg.start:.3f}s overlaps or precedes "
                f"the previous one ending at {prev_end:.3f}s (segments must be sorted and non-overlapping)"
            )
        prev_end = seg.end


def _read_table(
    path: Path, min_fields: int, what: str = "", form: str = "", spaces: str = SPACES, table: bool = False
) -> list[tuple[str, list[str]]]:
    """("PATH:N", the line's fields, split at `spaces` as Kaldi splits them: kaldi_io.fields, or
    kaldi_io.table_fields for a `table` Kaldi reads as an archive) of each non-blank line; with `what`
    (a label file) `#` comment lines are passed over too. With `form` ('from to') a line has exactly
    `min_fields` fields."""
    rows = []
    for n, line in enumerate(read_lines(path, what), 1):
        try:
            parts = table_fields(line) if table else fields(line, spaces)
        except KaldiFormatError as exc:
            raise UserError(f"{path}:{n}: {exc}") from None
        if not parts or (what and line.startswith("#")):
            continue
        if len(parts) < min_fields or (form and len(parts) != min_fields):
            raise UserError(f"{path}:{n}: expected {form or f'at least {min_fields} fields'}, got {line!r}")
        _check_tokens(f"{path}:{n}", parts[:1] if what else parts)
        rows.append((f"{path}:{n}", parts))
    return rows


def _check_names(path: Path, *names: str) -> None:
    """Refuse ids made of file and folder names (a speaker's folder, an utterance's file) that are not
    UTF-8 text: the file system may hold any bytes, but an id is written to the store as text."""
    for name in names:
        try:
            name.encode()
        except UnicodeEncodeError:
            raise UserError(f"{path}: the name {ascii(name)} is not UTF-8 text, and ids are made of names; "
                            "rename it") from None  # fmt: skip


def _check_tokens(where: str, fields: list[str]) -> None:
    """Refuse a field Kaldi's IsToken refuses (kaldi_io.check_token: an ASCII control character, such as a
    NUL, that would print unseen in a message and match no other file's id), naming the line."""
    try:
        for text in fields:
            check_token(text, "field")
    except KaldiFormatError as exc:
        raise UserError(f"{where}: {exc}") from None


def _seconds(where: str, name: str, text: str) -> float:
    """A time field in seconds: a finite number, else a UserError naming the file and line (`where`)."""
    try:
        value = read_number(text)
    except ValueError:
        raise UserError(f"{where}: {name} {text!r} is not a number (seconds)") from None
    if not math.isfinite(value):
        raise UserError(f"{where}: {name} {text!r} is not a finite number of seconds")
    return value


# --- Kaldi-style data dir -------------------------------------------------------------


def read_kaldi_dir(data_dir: Path, ctm: Path | None = None) -> Corpus:
    """Read `wav.scp`, `utt2spk`, optional `segments`, and a phone CTM.

    The CTM (`utt channel start duration phone`, times in seconds relative to the
    utterance) defaults to `phones.ctm` in the data dir. Relative audio paths are found as
    Kaldi finds them (locate). Piped commands (`cmd |`) are rejected, never executed.
    """
    data_dir = Path(data_dir)
    recordings = _read_wav_scp(data_dir)
    utt2spk = _read_utt2spk(data_dir)
    regions = _read_segments(data_dir, recordings)
    ctm_path = Path(ctm) if ctm is not None else data_dir / "phones.ctm"
    aligned = _read_ctm(ctm_path)
    utterances = []
    for utt, (rec, start, end, channel, line) in sorted(regions.items()):
        if utt not in utt2spk:
            raise UserError(f"{data_dir / 'utt2spk'}: utterance {utt} has no speaker")
        if utt not in aligned:
            raise UserError(f"{ctm_path}: utterance {utt} has no alignment")
        segs = aligned[utt]
        check_segments(utt, segs, str(ctm_path))
        audio, offset = recordings[rec]
        utterances.append(Utterance(utt, utt2spk[utt], audio, tuple(segs), start, end, None, str(ctm_path), offset,
                                    channel, line))  # fmt: skip
    extra = sorted(set(aligned) - set(regions))
    if extra:
        raise UserError(f"{ctm_path}: utterance {extra[0]} is aligned but not in {data_dir / 'wav.scp'}/segments")
    return Corpus("kaldi", utterances)


def _read_wav_scp(data_dir: Path) -> dict[str, tuple[Path, int | None]]:
    """Recording id -> (audio file, None), or (wav archive, byte offset) for `wavs.ark:10` where
    no file has that name; the id ends at the first run of ASCII white space, as in Kaldi (kaldi_io.fields). Files are
    found as Kaldi finds them (locate); one found nowhere is the data dir's, reported when read. A
    piped command is refused, never run."""
    wav_scp = data_dir / "wav.scp"
    recordings = []
    for n, line in enumerate(read_lines(wav_scp), 1):
        parts = fields(line, maxsplit=1)
        if not parts:
            continue
        key, rest = parts[0], parts[1] if len(parts) > 1 else ""
        _check_tokens(f"{wav_scp}:{n}", [key])
        if not rest:
            raise UserError(f"{wav_scp}:{n}: recording {key} has no audio path")
        if rest.endswith("|"):
            raise UserError(
                f"{wav_scp}:{n}: recording {key} has a piped command (asr-init never executes commands from wav.scp; "
                "convert the audio to files first)"
            )
        path, (archive, _, tail) = locate(rest, wav_scp), rest.rpartition(":")
        offset = read_count(tail, MAX_FILE_OFFSET)
        archive = locate(archive, wav_scp) if path is None and archive and offset is not None else None
        if archive and offset > MAX_FILE_OFFSET:
            raise UserError(f"{wav_scp}:{n}: recording {key} starts at a byte offset of {len(tail)} digits in "
                            f"{archive}, past the end of any file")  # fmt: skip
        entry = (archive, offset) if archive else (path or data_dir / rest, None)  # an absolute `rest` as it is
        recordings.append((key, f"{wav_scp}:{n}", entry))
    return unique(recordings, "recording")


def _read_utt2spk(data_dir: Path) -> dict[str, str]:
    if not (data_dir / "utt2spk").exists():
        raise UserError(f"{data_dir / 'utt2spk'} is missing (a Kaldi data dir needs wav.scp and utt2spk)")
    rows = _read_table(data_dir / "utt2spk", 2, table=True)
    utt2spk = unique([(r[0], where, r[1]) for where, r in rows], "utterance")
    spk2utt_path = data_dir / "spk2utt"
    if spk2utt_path.exists():
        for _, row in _read_table(spk2utt_path, 1, table=True):
            if len(row) == 1:
                raise UserError(f"{spk2utt_path}: speaker {row[0]} has no utterances")
    return utt2spk


def _read_segments(data_dir: Path, recordings: dict[str, Path]) -> dict[str, tuple]:
    """Utterance -> (recording, start s, end s or None for the recording's end, channel or None, the
    line PATH:N), of `utt recording start end [channel]` lines (extract-segments' format); without a
    `segments` file every recording is one utterance."""
    segments_path = data_dir / "segments"
    if not segments_path.exists():
        return {utt: (utt, 0.0, None, None, "") for utt in recordings}
    regions = []
    for where, row in _read_table(segments_path, 4, spaces=SEGMENTS_SPACES):
        utt, rec = row[0], row[1]
        channel = read_count(row[4], _MAX_CHANNEL) if len(row) == 5 else None
        if len(row) > 5 or (len(row) == 5 and (channel is None or channel > _MAX_CHANNEL)):
            raise UserError(
                f"{where}: expected 'utterance recording start end [channel]', with the channel a whole number "
                f"from 0 (the left), got {' '.join(row)!r}"
            )
        start = _seconds(where, "start time", row[2])
        end = _seconds(where, "end time", row[3])
        if start < 0 or (end != -1 and end <= 0) or 0 < end <= start:  # extract-segments' test
            raise UserError(
                f"{where}: utterance {utt} runs from {row[2]} to {row[3]} s; the start must be "
                "at least 0 and the end after it (or -1: the end of the recording)"
            )
        if rec not in recordings:
            raise UserError(
                f"{segments_path}: utterance {utt} refers to recording {rec}, which is not in {data_dir / 'wav.scp'}"
            )
        regions.append((utt, where, (rec, start, None if end == -1 else end, channel, where)))
    return unique(regions, "utterance")


def _read_ctm(ctm_path: Path) -> dict[str, list[PhoneSegment]]:
    """Utterance -> its phone segments from a CTM (`utt channel start duration phone`)."""
    if not ctm_path.exists():
        raise UserError(
            f"phone alignment {ctm_path} is missing (give --ctm FILE with 'utt channel start duration phone' lines)"
        )
    aligned: dict[str, list[PhoneSegment]] = {}
    for where, row in _read_table(ctm_path, 5):
        start = _seconds(where, "start time", row[2])
        dur = _seconds(where, "duration", row[3])
        if start < 0 or dur <= 0:
            raise UserError(
                f"{where}: utterance {row[0]}: segment {row[4]!r} has start {row[2]} s and duration {row[3]} s; "
                "the start must be at least 0 and the duration positive"
            )
        aligned.setdefault(row[0], []).append(PhoneSegment(start, start + dur, row[4]))
    return aligned


# --- TIMIT ----------------------------------------------------------------------------


def _find_ci(parent: Path, name: str) -> Path | None:
    """A child of `parent` whose name matches `name` case-insensitively."""
    return next((child for child in parent.iterdir() if child.name.lower() == name.lower()), None)


def read_timit(root: Path, include_sa: bool = False) -> Corpus:
    """Read TIMIT: `TRAIN|TEST/DR*/SPEAKER/UTT.WAV` with `.PHN` sample-index alignments.

    Phones are folded 61 -> 39. Splits follow the standard protocol: TRAIN is train; the
    24-speaker core test set is test; the 50-speaker dev set is dev; the other TEST
    speakers get no split (unused). SA sentences are excluded unless `include_sa`.
    A .WAV without a .PHN beside it, or a .PHN without a .WAV, is left out and recorded in
    `problems` (a copy such as `SI1027.WAV.wav`, converted from the SPHERE file, counts as
    that utterance's audio, not as an utterance of its own).
    """
    root = Path(root)
    folding = read_label_map(DATA_DIR / "timit_61_to_39.tsv")
    core = set(read_label_list(DATA_DIR / "timit_core_test_speakers.txt"))
    dev = set(read_label_list(DATA_DIR / "timit_dev_speakers.txt"))
    utterances = []
    problems: list[tuple[str, str]] = []
    for part in ("TRAIN", "TEST"):
        part_dir = _find_ci(root, part)
        if part_dir is None:
            raise UserError(f"{root} has no {part}/ folder (TIMIT layout: TRAIN/ and TEST/ with DR1..DR8/SPEAKER/)")
        files = sorted(p for p in part_dir.glob("*/*/*") if p.suffix.lower() in (".phn", ".wav"))
        aligned = {(p.parent, p.stem) for p in files if p.suffix.lower() == ".phn"}
        for wav in (p for p in files if p.suffix.lower() == ".wav"):
            name = wav.stem.split(".")[0]
            if (wav.parent, name) in aligned or (name.upper().startswith("SA") and not include_sa):
                continue
            spk = wav.parent.name.upper()
            problems.append((spk, f"{wav}: audio of utterance {spk}_{name.upper()} has no .PHN alignment beside it"))
        for phn in (p for p in files if p.suffix.lower() == ".phn"):
            spk = phn.parent.name.upper()
            if phn.stem.upper().startswith("SA") and not include_sa:
                continue
            utt_id = f"{spk}_{phn.stem.upper()}"
            _check_names(phn, spk, utt_id)
            wav = next((p for p in phn.parent.iterdir() if p.stem == phn.stem and p.suffix.lower() == ".wav"), None)
            if wav is None:
                problems.append((spk, f"{phn}: alignment of utterance {utt_id} has no .WAV file beside it"))
                continue
            segs = [_phn_segment(where, row, folding) for where, row in _read_table(phn, 3)]
            check_segments(utt_id, segs, str(phn))
            split = "train" if part == "TRAIN" else "test" if spk in core else "dev" if spk in dev else None
            utterances.append(Utterance(utt_id, spk, wav, tuple(segs), split=split, source=str(phn)))
    if not utterances:
        raise UserError(f"{root}: no .PHN/.WAV pairs found under TRAIN/ and TEST/")
    return Corpus("timit", utterances, labels=read_label_list(DATA_DIR / "phones39.txt"), problems=problems)


def _phn_segment(where: str, row: list[str], folding: dict[str, str]) -> PhoneSegment:
    """One .PHN line, 'begin end phone' in samples at 16 kHz, as a folded segment in seconds."""
    label = row[2].lower()
    if label not in folding:
        raise UserError(f"{where}: phone {row[2]!r} is not a TIMIT phone (see data/timit_61_to_39.tsv)")
    begin, end = read_count(row[0], _MAX_SAMPLE), read_count(row[1], _MAX_SAMPLE)
    if begin is None or end is None:
        raise UserError(
            f"{where}: sample numbers {row[0]!r} {row[1]!r} are not both integers from 0 "
            "(a .PHN line is 'begin end phone', in samples at 16 kHz)"
        )
    if max(begin, end) > _MAX_SAMPLE:
        raise UserError(f"{where}: a sample number of {max(map(len, row[:2]))} digits is past the end of any recording")
    rate = 16000.0  # TIMIT .PHN sample indices are at 16 kHz
    return PhoneSegment(begin / rate, end / rate, folding[label])


# --- Audio + TextGrid (Montreal Forced Aligner output) -------------------------------

_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".sph", ".aiff", ".aif")


def read_textgrid_dir(root: Path, tier: str = "phones") -> Corpus:
    """Read a folder of audio files with a Praat TextGrid beside each (MFA layout).

    The speaker is the name of the folder holding the file (MFA's `speaker/utt.wav`);
    files directly under `root` use the part of the name before the first `_` or `-`.
    Empty intervals are silence. TextGrids are parsed with praatio, each once it is known to be a
    regular file (io.read_regular_file): praatio would wait on a pipe and read a device without end.
    """
    from praatio import textgrid as tgio

    root = Path(root)
    utterances = []
    for tg_path in sorted(root.rglob("*.TextGrid")):
        audio = next((tg_path.with_suffix(s) for s in _AUDIO_SUFFIXES if tg_path.with_suffix(s).exists()), None)
        if audio is None:
            raise UserError(f"{tg_path}: no audio file ({'/'.join(_AUDIO_SUFFIXES)}) beside it")
        check_regular_file(tg_path)  # praatio would wait on a FIFO for ever, read /dev/zero until memory ran out
        try:
            tg = tgio.openTextgrid(str(tg_path), includeEmptyIntervals=False)
        except Exception as exc:  # praatio raises several types on malformed files
            raise UserError(f"{tg_path}: cannot parse TextGrid ({exc})") from None
        if tier not in tg.tierNames:
            raise UserError(
                f"{tg_path}: no tier named {tier!r} (tiers: {', '.join(tg.tierNames)}); choose one with --tier"
            )
        entries = tg.getTier(tier).entries
        segs = [PhoneSegment(float(e.start), float(e.end), e.label.strip()) for e in entries if e.label.strip()]
        speaker = re.split(r"[_-]", tg_path.stem)[0] if tg_path.parent == root else tg_path.parent.name
        utt_id = f"{speaker}_{tg_path.stem}" if not tg_path.stem.startswith(speaker) else tg_path.stem
        _check_names(tg_path, speaker, utt_id)
        check_segments(utt_id, segs, str(tg_path))
        utterances.append(Utterance(utt_id, speaker, audio, tuple(segs), source=str(tg_path)))
    return Corpus("textgrid", utterances)


# --- Free Spoken Digit Dataset ---------------------------------------------------------

_FSDD_NAME = re.compile(r"^([0-9])_([A-Za-z]+)_([0-9]+)\.wav$")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _fsdd_folder(path: Path) -> Path | None:
    """The folder of FSDD's recordings: `path` itself or its `recordings/`, when every .wav
    file in it is named {digit}_{speaker}_{index}.wav (and there is one)."""
    for folder in (path, path / "recordings"):
        names = [p.name for p in folder.glob("*.wav")] if folder.is_dir() else []
        if names and all(_FSDD_NAME.match(n) for n in names):
            return folder
    return None


def read_fsdd(root: Path) -> Corpus:
    """Read the Free Spoken Digit Dataset: `{digit}_{speaker}_{index}.wav` (8 kHz, one spoken
    digit each, trimmed to near-minimal silence). It has no alignments: every frame of a
    recording is labelled with its digit ("zero" ... "nine"), which the trimming makes nearly
    true. Utterance ids put the speaker first (`jackson-3-12`), so that a speaker's utterances
    sort together as Kaldi's tools expect."""
    import soundfile as sf

    folder = _fsdd_folder(Path(root))
    if folder is None:
        raise UserError(f"{root}: no FSDD recordings ({{digit}}_{{speaker}}_{{index}}.wav) in it or in recordings/")
    utterances, problems = [], []
    for audio in sorted(folder.glob("*.wav")):
        digit, speaker, index = _FSDD_NAME.match(audio.name).groups()
        utt_id = f"{speaker}-{digit}-{int(index):03d}"
        try:
            check_audio_file(audio, utt_id)
            duration = sf.info(os.fsencode(audio)).duration  # bytes: any name the file system holds
        except UserError as exc:
            problems.append((speaker, str(exc)))
            continue
        except (sf.LibsndfileError, RuntimeError) as exc:
            problems.append((speaker, f"{audio}: cannot read audio of utterance {utt_id} ({exc})"))
            continue
        if duration <= 0:
            problems.append((speaker, f"{audio}: audio file of utterance {utt_id} is empty (0 samples)"))
            continue
        segment = PhoneSegment(0.0, duration, DIGITS[int(digit)])
        utterances.append(Utterance(utt_id, speaker, audio, (segment,), source=str(audio)))
    unique([(u.id, u.source, u) for u in utterances], "utterance")
    return Corpus("fsdd", sorted(utterances, key=lambda u: u.id), labels=DIGITS, problems=problems)


def detect_layout(path: Path) -> str:
    """Name the layout of a corpus folder, or raise a UserError saying what was expected."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"corpus {path} is not a folder")
    if (path / "wav.scp").exists():
        return "kaldi"
    if _find_ci(path, "TRAIN") is not None and _find_ci(path, "TEST") is not None:
        return "timit"
    if next(path.rglob("*.TextGrid"), None) is not None:
        return "textgrid"
    if _fsdd_folder(path) is not None:
        return "fsdd"
    raise UserError(
        f"unknown corpus layout at {path}: expected a Kaldi data dir (wav.scp, utt2spk, phones.ctm), "
        "a TIMIT tree (TRAIN/, TEST/), audio files with .TextGrid alignments, or FSDD's recordings "
        "({digit}_{speaker}_{index}.wav)" + _fsdd_strays(path)
    )


def _fsdd_strays(path: Path) -> str:
    """For a folder (or its recordings/) that holds some FSDD recordings among other .wav files:
    the first file not named as FSDD's, which keeps it from being read as FSDD's; else ''."""
    for folder in (path, path / "recordings"):
        names = sorted(p.name for p in folder.glob("*.wav")) if folder.is_dir() else []
        strays = [n for n in names if not _FSDD_NAME.match(n)]
        if strays and len(strays) < len(names):
            more = f" (and {len(strays) - 1} more)" if len(strays) > 1 else ""
            return (f"; {len(names) - len(strays)} of {len(names)} .wav files are, but {folder / strays[0]}{more} "
                    "is not named so: move it out of the folder")  # fmt: skip
    return ""


def corpus_root(path: Path) -> Path:
    """The folder a corpus at `path` is read from: FSDD's `recordings/` where `path` holds its
    recordings there (the folder or its parent, two spellings of one corpus); else `path` itself.
    Cheap for any path (an older record's): the layouts are told apart only where recordings/ is FSDD's."""
    path, folder = Path(path), _fsdd_folder(Path(path))
    return folder if folder not in (None, path) and detect_layout(path) == "fsdd" else path


def read_corpus(path: Path, ctm: Path | None = None, tier: str = "phones", include_sa: bool = False) -> Corpus:
    """Detect the layout of `path` and read it."""
    layout = detect_layout(path)
    if layout == "kaldi":
        return read_kaldi_dir(path, ctm)
    if layout == "timit":
        return read_timit(path, include_sa)
    if layout == "fsdd":
        return read_fsdd(path)
    return read_textgrid_dir(path, tier)


def merge_repeats(seq: list) -> list:
    """`seq` with runs of equal items merged into one: a frame labelling's phone sequence,
    or an utterance's transcript from its (possibly split) segments."""
    return [x for x, _ in itertools.groupby(seq)]
