"""The `import-kaldi` stage: Kaldi's own features and alignments into a feature store.

No features are computed here. A Kaldi data dir brings `feats.scp` (any features Kaldi
made: MFCC, fbank, fMLLR, ...), `utt2spk` and optionally `cmvn.scp`; alignments bring the
frame targets:

- pdf ids, the tied HMM states of Kaldi's tree, as `ali-to-pdf` writes them, and/or
- phone ids, as `ali-to-phones --per-frame` writes them,

each as an archive (text or binary), a script file, or a gzipped archive. Files are read
by asr_init.kaldi_io: no command taken from the input is run (a piped specifier is refused),
no size written in a file is trusted, and a `.gz` archive is decompressed as it is read.
Only the alignments of the utterances feats.scp lists are kept.

CMVN is applied as Kaldi's `apply-cmvn --utt2spk` does (transform/cmvn.cc, ApplyCmvn): from
each speaker's stats (count n, sums s, sums of squares q per dimension) x <- x - s/n, and
with --norm-vars x <- (x - s/n) / sqrt(max(q/n - (s/n)^2, 1e-20)). steps/nnet/train.sh
takes the frames after that step (its --cmvn-opts) and normalises them globally in its
feature transform, as asr-init's pipeline does with the store's train statistics.

Splits: the data dir is the train set; `--dev DIR` is train.sh's cross-validation dir
(utils/subset_data_dir_tr_cv.sh makes one) and `--test DIR` a test set. Without `--dev`, a
seeded `--dev-fraction` of the train speakers becomes dev. Alignments are looked up by
utterance id in every alignment file given, so one set of files may cover all splits.
An utterance without an alignment is skipped and reported (Kaldi's aligners leave out the
utterances they fail on). Features and alignments of lengths that differ by fewer than
--length-tolerance frames are cut to the shortest, and an utterance whose differ by more is
left out, as nnet-train-frmshuff does (--length-tolerance 0: any difference is an error).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.markup import escape

from asr_init import kaldi_io
from asr_init.corpora.readers import locate, merge_repeats
from asr_init.environment import environment
from asr_init.errors import UserError
from asr_init.features.config import KaldiImportConfig, split_rspecifier
from asr_init.features.store import FrameMoments, StoreWriter, store_summary, write_metadata
from asr_init.folders import output_folder
from asr_init.io import check_regular_file, digest, read_count, read_number, read_regular_file, resolved, unique
from asr_init.progress import console, progress_bar

VAR_FLOOR = 1e-20  # apply-cmvn's variance floor
# What a Kaldi recipe must do with stats keyed by utterance (train.sh and decode.sh run apply-cmvn --utt2spk).
OWN_STATS_HINT = (
    "steps/nnet/train.sh and decode.sh run apply-cmvn --utt2spk, which gives no frames for such utterances: for "
    "per-utterance CMVN make utt2spk map each utterance to itself"
)
DEFAULT_FRAME_SHIFT = 0.01  # seconds; a data dir's frame_shift file overrides it
MAX_PHONES = 1 << 15  # phone ids are stored as int16
MAX_PDFS = 1 << 20  # pdf ids: Kaldi trees have thousands; more would make an output layer of gigabytes


# ---------------------------------------------------------------------------- Kaldi files


def parse_rspecifier(spec: str, what: str) -> tuple[str, Path]:
    """("ark" or "scp", path) of a file given as PATH, ark:PATH or scp:PATH (with Kaldi's
    read options such as ark,s,cs:). A piped specifier is refused: asr-init runs no commands."""
    kind, text = split_rspecifier(spec)
    if not text:
        raise UserError(f"{what} {spec!r} names no file: give an alignment file as PATH, ark:PATH or scp:PATH")
    if text.startswith("|") or text.endswith("|") or text == "-":
        raise UserError(
            f"{what} {spec!r} is a pipe or standard input; asr-init runs no commands from its input: write the "
            'alignments to a file first (e.g. ali-to-pdf final.mdl "ark:gunzip -c ali.*.gz|" ark:pdf.ark) '
            "and give that file"
        )
    path = Path(text)
    if kind is None:
        kind = "scp" if path.suffix == ".scp" else "ark"
    if path.is_dir():
        raise UserError(
            f"{what} {spec} is a folder; give the alignment files. A Kaldi alignment dir's ali.*.gz hold transition "
            f'ids: convert them first, e.g. ali-to-pdf {path}/final.mdl "ark:gunzip -c {path}/ali.*.gz|" '
            "ark,t:pdf.ark (or ali-to-phones --per-frame)"
        )
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    return kind, path


def read_archive(path: Path, what: str, ints: bool = False) -> Iterator[tuple[str, str, np.ndarray]]:
    """(key, where, array) of every entry of a Kaldi archive, text or binary, plain or
    gzipped (decompressed as it is read); `where` names the entry in messages; `ints`: an
    archive of integer vectors (alignments), whose other objects are refused unread."""
    try:
        for key, n, value in kaldi_io.read_archive(path, ints):
            yield key, f"{path}, entry {n}", value
    except kaldi_io.KaldiFormatError as exc:
        raise UserError(f"{what} {path} is not a readable Kaldi archive ({exc})") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path} ({exc.strerror or exc})") from None


def read_script(path: Path, what: str, ints: bool = False, dtype=np.float32) -> Iterator[tuple[str, str, np.ndarray]]:
    """(key, where, array) of every line of a Kaldi script file ("key rxfilename[:offset][range]");
    float matrices as `dtype`.

    Each entry is resolved to a file, an offset and a range here and the file is opened
    directly (kaldi_io): nothing in a script file reaches a shell. A relative file name is found
    as Kaldi's tools find it, from the current folder, and else from the script's folder and the
    folders above it (a data dir's scp files name the archives relative to the recipe folder)."""
    files = kaldi_io.ObjectFiles()
    try:
        for where, line in _numbered(path):
            file = offset = None
            try:
                key, name, offset, span = kaldi_io.parse_script_line(line)
                if ints and span is not None:  # Kaldi's BasicVectorHolder::ExtractRange is an error
                    raise kaldi_io.KaldiFormatError(f"a range [{span}] of an alignment: Kaldi takes ranges of "
                                                    "matrices only; give the entry without it")  # fmt: skip
                file = _locate(name, path, where)
                value = files.read(file, offset, ints, dtype)
                value = kaldi_io.apply_range(value, span) if span is not None else value  # "[]" too
            except kaldi_io.KaldiFormatError as exc:
                at = "" if file is None else f" at byte {offset or 0} of {file}"  # the archive the line names
                raise UserError(f"{where}: cannot read {what}{at} ({exc})") from None
            except OSError as exc:
                raise UserError(f"{where}: cannot read {file or line} ({exc.strerror or exc})") from None
            yield key, where, value
    finally:
        files.close()


def _locate(name: str, script: Path, where: str) -> Path:
    """The file that a line of `script` (`where` names it in messages) names, found as Kaldi's tools
    find it (readers.locate); a UserError where there is none, or where it is not a regular file (a pipe
    would block the read)."""
    found = locate(name, script)
    if found is None:
        relative = "" if Path(name).is_absolute() else " (relative names are read from the current folder)"
        raise UserError(f"{where}: {name} does not exist{relative}")
    check_regular_file(found, f"{where}: file" if where else "file")
    return found


def _numbered(path: Path) -> list[tuple[str, str]]:
    """("PATH, line N", line) of each non-blank line of a text file (a regular file:
    io.read_regular_file), split at "\\n" only and numbered as in the file, as Kaldi reads it."""
    try:
        text = read_regular_file(path).decode()
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file (a binary archive given where a list was expected?)") from None
    lines = enumerate(text.split("\n"), 1)  # a "\r" ending a line (a file saved on Windows) is dropped
    return [(f"{path}, line {n}", line.removesuffix("\r")) for n, line in lines if kaldi_io.fields(line)]


def read_utt2spk(data_dir: Path) -> dict[str, str]:
    path = data_dir / "utt2spk"
    if not path.is_file():
        raise UserError(f"Kaldi data dir {data_dir} has no utt2spk (utils/fix_data_dir.sh writes one)")
    rows = []
    for where, line in _numbered(path):
        try:
            parts = kaldi_io.table_fields(line)
            if len(parts) != 2:
                raise UserError(f"{where}: expected 'utterance speaker', found {line[:60]!r}")
            rows.append((kaldi_io.check_token(parts[0], "utterance"), where, kaldi_io.check_token(parts[1], "speaker")))
        except kaldi_io.KaldiFormatError as exc:
            raise UserError(f"{where}: {exc}") from None
    return unique(rows, "utterance")


def read_phone_symbols(path: Path) -> dict[int, str]:
    """Kaldi's lang/phones.txt ("symbol id" per line) as id -> symbol; ids are below MAX_PHONES
    and neither an id nor a symbol may be given twice."""
    rows = []
    for where, line in _numbered(path):
        parts = kaldi_io.fields(line)
        number = read_count(parts[1], MAX_PHONES) if len(parts) == 2 else None
        if number is None:
            raise UserError(f"{where}: expected 'symbol id' as in Kaldi's phones.txt, found {line[:60]!r}")
        if number >= MAX_PHONES:
            shown = parts[1] if len(parts[1]) <= 20 else f"of {len(parts[1])} digits"
            raise UserError(f"{where}: phone id {shown} is not below {MAX_PHONES:,}, the most read")
        rows.append((number, where, parts[0]))
    unique(((symbol, where, i) for i, where, symbol in rows), "phone symbol")
    return unique(rows, "phone id")


@dataclass
class Alignments:
    """Frame targets of one kind, pooled from every file given, by utterance id."""

    kind: str  # "pdfs" or "phones"
    by_utt: dict[str, np.ndarray]
    source: dict[str, str]  # utterance -> the file it came from

    @classmethod
    def read(cls, kind: str, specs: list[str], keep: set[str]) -> Alignments:
        """The alignments of the utterances in `keep` (those of the data dirs) from every
        file of `specs`; the others are read past, not kept, so memory follows the data dirs."""
        what = "pdf alignments" if kind == "pdfs" else "phone alignments"
        by_utt: dict[str, np.ndarray] = {}
        source: dict[str, str] = {}
        for spec in specs:
            seen: dict[str, str] = {}
            form, path = parse_rspecifier(spec, what)
            table = read_script(path, what, ints=True) if form == "scp" else read_archive(path, what, ints=True)
            for key, where, ali in table:
                if key in seen:
                    raise UserError(f"utterance {key} is given twice, at {seen[key]} and at {where}; give it once")
                seen[key] = where
                if key not in keep:
                    continue
                if key in by_utt and not np.array_equal(by_utt[key], ali):
                    raise UserError(f"utterance {key} has different {what} in {source[key]} and {where}")
                if len(ali) and ali.min() < 0:
                    raise UserError(f"{what} {where}: utterance {key} has a negative id {int(ali.min())}")
                by_utt[key], source[key] = ali.astype(np.int32), where
        if not by_utt:
            raise UserError(
                f"{what} {', '.join(specs)} hold no utterance that the data dirs' feats.scp list; the alignments "
                "must be keyed by the same utterance ids"
            )
        return cls(kind, by_utt, source)

    def holder(self, target: int) -> str:
        """ "utterance U in FILE": the first utterance whose alignment holds id `target`."""
        utt = next(u for u, a in self.by_utt.items() if len(a) and (a == target).any())
        return f"utterance {utt} in {self.source[utt]}"


# ---------------------------------------------------------------------------- data dirs


@dataclass
class DataDir:
    """A Kaldi data dir: its feats.scp entries are read lazily, utterance by utterance."""

    path: Path
    split: str | None  # None: train and dev by speaker fraction
    utt2spk: dict[str, str]
    cmvn: dict[str, np.ndarray] | None
    frame_shift: float

    @classmethod
    def open(cls, path: Path, split: str | None, cmvn: bool | None) -> DataDir:
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise UserError(f"Kaldi data dir {path} is a file, not a folder; give the folder holding feats.scp")
        if not path.is_dir():
            raise UserError(f"Kaldi data dir {path} does not exist")
        if not (path / "feats.scp").is_file():
            raise UserError(
                f"Kaldi data dir {path} has no feats.scp (make features with steps/make_mfcc.sh or steps/make_fbank.sh)"
            )
        stats = None
        has_cmvn = (path / "cmvn.scp").is_file()
        if cmvn and not has_cmvn:
            raise UserError(
                f"--cmvn: Kaldi data dir {path} has no cmvn.scp (steps/compute_cmvn_stats.sh makes it); "
                "use --no-cmvn for features that need none"
            )
        if cmvn or (cmvn is None and has_cmvn):
            rows = []
            # Kaldi's stats are double sums: read in float, sum(x^2)/n - mean^2 loses the variance
            for key, where, s in read_script(path / "cmvn.scp", "CMVN stats", dtype=np.float64):
                if s.ndim != 2 or s.shape[0] not in (1, 2) or s.shape[1] < 2:
                    raise UserError(f"{where}: {key} holds a {s.shape} matrix, not CMVN stats (2, dim + 1)")
                if not np.isfinite(s).all():
                    raise UserError(f"{where}: the CMVN stats of {key} hold NaN or infinite values; recompute them")
                rows.append((key, where, s.astype(np.float64)))
            stats = unique(rows, "speaker")
        shift = DEFAULT_FRAME_SHIFT
        if (path / "frame_shift").exists():  # a pipe or a folder there is refused, not passed over
            text = read_regular_file(path / "frame_shift", "frame shift")
            try:
                shift = read_number(kaldi_io.fields(text.decode())[0])
            except (ValueError, IndexError):  # UnicodeDecodeError too
                shift = math.nan
            if not 0 < shift <= 1:  # NaN too; a frame is 10 ms (30 ms in chain models)
                raise UserError(f"{path / 'frame_shift'} does not hold a frame shift in seconds (over 0, at most 1)")
        return cls(path, split, read_utt2spk(path), stats, shift)

    def utterances(self) -> Iterator[tuple[str, str, np.ndarray]]:
        """(utterance, where, features) of every line of feats.scp, read one at a time."""
        return read_script(self.path / "feats.scp", "features")

    def utterance_ids(self) -> list[str]:
        """The utterances feats.scp lists (nothing is read); one listed twice is an error."""
        rows = []
        for where, line in _numbered(self.path / "feats.scp"):
            try:
                rows.append((kaldi_io.parse_script_line(line)[0], where, None))
            except kaldi_io.KaldiFormatError as exc:
                raise UserError(f"{where}: {exc}") from None
        return list(unique(rows, "utterance"))

    def apply_cmvn(self, utt: str, speaker: str, feats: np.ndarray, norm_vars: bool) -> np.ndarray:
        """apply-cmvn on one utterance: the speaker's stats (or the utterance's, for per-utterance stats)."""
        if self.cmvn is None:
            return feats
        stats = self.cmvn.get(speaker, self.cmvn.get(utt))
        where = self.path / "cmvn.scp"
        if stats is None:
            raise UserError(
                f"{where} has no stats for speaker {speaker} (utterance {utt}); re-run compute_cmvn_stats.sh"
            )
        dim = stats.shape[1] - 1
        if dim != feats.shape[1]:
            raise UserError(
                f"{where}: stats of {speaker} are for {dim}-dim features, utterance {utt} has {feats.shape[1]}"
            )
        count = stats[0, dim]
        if count < 1.0:
            raise UserError(f"{where}: stats of {speaker} count {count:g} frames, too few for CMVN")
        # ApplyCmvn's arithmetic: offset (and scale) from the double stats, rounded to float, then
        # applied to the float features in float, so that the frames are apply-cmvn's to the bit.
        feats = np.asarray(feats, dtype=np.float32)
        if not norm_vars:
            return feats + (np.float64(np.float32(-1.0 / count)) * stats[0, :dim]).astype(np.float32)
        if stats.shape[0] < 2:
            raise UserError(f"{where}: --norm-vars needs variance stats, and those of {speaker} have none")
        mean = stats[0, :dim] / count
        var = np.maximum(stats[1, :dim] / count - mean**2, VAR_FLOOR)
        scale = 1.0 / np.sqrt(var)
        return feats * scale.astype(np.float32) + (-(mean * scale)).astype(np.float32)


def _dev_speakers(speakers: set[str], fraction: float, seed: int, where: Path) -> set[str]:
    """A seeded share of the speakers for dev (at least one when the fraction is positive)."""
    if fraction == 0:
        return set()
    order = sorted(speakers)
    random.Random(seed).shuffle(order)
    n = max(1, round(fraction * len(order)))
    if n >= len(order):
        raise UserError(
            f"{where} has {len(order)} speaker(s), too few for {n} dev speaker(s) and a train set; "
            "give a separate dev data dir with --dev or lower --dev-fraction"
        )
    return set(order[:n])


# ---------------------------------------------------------------------------- the stage


def import_kaldi(data_dir: Path, out_dir: Path, config: KaldiImportConfig, force: bool = False) -> dict:
    """Build a feature store at `out_dir` from Kaldi data dirs and alignments; returns the summary.

    An existing complete store made from the same inputs and settings is left as it is."""
    config.validate()
    data_dir = resolved(data_dir, "Kaldi data dir")
    inputs = _inputs(data_dir, config)
    settings = _settings(data_dir, config) | {"inputs": _identities(inputs)}
    # A given --num-pdfs is compared with the store's pdf count (the top-level "num_pdfs" every record holds), not
    # as given then: the store that inferred N pdfs from these alignments is the one --num-pdfs N makes. Not given,
    # it is compared as given (None).
    given = {"num_pdfs": config.num_pdfs} if config.ali and config.num_pdfs is not None else {}
    with output_folder(out_dir, settings | given, record="config.json", finished=("summary.json",), force=force,
                       inputs=inputs, neutral=tuple(given), summary="summary.json", what="a feature store",
                       upgrade=lambda record: _upgrade(record, config)) as output:  # fmt: skip
        if output.done is not None:
            console.print(f"[green]{out_dir} is already complete with these inputs; nothing to do (--force redoes it)")
            return output.done
        dirs, cmvn_opts = _open_data_dirs(data_dir, config)
        listed = {utt for d in dirs for utt in d.utterance_ids()}
        given = (("pdfs", config.ali), ("phones", config.phone_ali))
        alignments = [Alignments.read(kind, specs, listed) for kind, specs in given if specs]
        labels = {a.kind: _inventory(a, config) for a in alignments}
        speakers = set(dirs[0].utt2spk.values())
        dev_speakers = set() if config.dev else _dev_speakers(speakers, config.dev_fraction, config.seed, data_dir)
        t0, tmp = time.perf_counter(), output.path
        importer = _Importer(StoreWriter(tmp, config.shard_frames, config.target_kinds), alignments, labels, config)
        for d in dirs:
            importer.add_data_dir(d, dev_speakers)
        importer.writer.close()
        _check_imported(importer, dirs, config)
        record = settings | {"num_pdfs": len(labels.get("pdfs", [])), "cmvn_opts": cmvn_opts,
                             "cmvn_own_stats": len(importer.own_stats)}  # fmt: skip
        summary = store_summary(importer.writer.records, "Kaldi", importer.skipped, time.perf_counter() - t0)
        summary["targets"] = {kind: len(names) for kind, names in labels.items()}
        summary = write_metadata(tmp, labels, record, importer.stats.result(), summary, environment())
    _warn_left_out(importer, config)
    return summary


def _upgrade(record: dict, config: KaldiImportConfig) -> dict:
    """A store's config.json as today's import-kaldi writes it: a record written before --length-tolerance
    (when every length had to match, which any tolerance then keeps as it is) takes the one given."""
    if isinstance(record.get("kaldi"), dict):
        record["kaldi"].setdefault("length_tolerance", config.length_tolerance)
    return record


def _warn_left_out(importer: _Importer, config: KaldiImportConfig) -> None:
    """One warning line for each kind of utterance cut or left out (each counted, the first named)."""
    n = config.length_tolerance
    said = [
        (importer.unaligned, "have no alignment and were left out", ", ".join(importer.unaligned[:5])),
        (importer.cut, f"were cut to the shortest of their features and alignments, which differ by fewer than {n} "
         f"frames (--length-tolerance {n}, as nnet-train-frmshuff cuts them)", None),
        (importer.mismatched, f"were left out: their features and alignments differ by {n} frames or more "
         f"(--length-tolerance {n}, as nnet-train-frmshuff leaves them out); the alignments must be made on these "
         "features (same frame shift, no frame subsampling)", None),
        (importer.own_stats, f"were normalised with their own stats in cmvn.scp, which has none for their speaker in "
         f"utt2spk; {OWN_STATS_HINT}", None),
    ]  # fmt: skip
    for utts, what, first in said:
        if utts:
            console.print(f"[yellow]warning: {len(utts)} utterance(s) {what} (first: {first or escape(utts[0])})",
                          highlight=False)  # fmt: skip


def _inputs(data_dir: Path, config: KaldiImportConfig) -> list[tuple[str, Path | str | None]]:
    """Everything import-kaldi reads, for the output-over-inputs check: the data dirs, the
    alignment and phones files, and every archive their script files name."""
    inputs = [("data dir", data_dir), ("--dev data dir", config.dev), ("--test data dir", config.test),
              ("--phones file", config.phones)]  # fmt: skip
    scripts = [Path(d) / scp for d in (data_dir, config.dev, config.test) if d for scp in ("feats.scp", "cmvn.scp")]
    for option, specs in (("--ali", config.ali), ("--phone-ali", config.phone_ali)):
        for spec in specs:
            kind, path = parse_rspecifier(spec, f"{option} file")
            inputs.append((f"{option} file", path))
            scripts += [path] if kind == "scp" else []
    for script in (s for s in scripts if s.is_file()):
        inputs += [(f"archive named in {script}", archive) for archive in _scp_archives(script)]
    return inputs


def _identities(inputs: list[tuple[str, Path | str | None]]) -> dict[str, str]:
    """What a store is made from, so that a re-run after Kaldi made them again (features with
    deltas, a new alignment) is refused: the data dirs' lists and the alignment and phones files
    by content, the archives their script files name by size and modification time (a digest of
    gigabytes of features would read them all once more)."""
    lists, archives = [], []
    for what, path in inputs:
        if path is None:
            continue
        if what.endswith("data dir"):
            lists += [Path(path) / name for name in ("feats.scp", "cmvn.scp", "utt2spk", "frame_shift")]
        elif what.startswith("archive"):
            stat = Path(path).stat()
            archives.append(f"{Path(path).resolve()} {stat.st_size} {stat.st_mtime_ns}\n")
        else:
            lists.append(Path(path))
    stats = hashlib.sha256("".join(sorted(archives)).encode()).hexdigest()[:16]
    return {"Kaldi lists and alignments": digest(lists), "archives the script files name": stats}


def _scp_archives(script: Path) -> set[Path]:
    """The files a script file names (those that exist; a missing one is reported when read)."""
    names = set()
    for _, line in _numbered(script):
        with contextlib.suppress(kaldi_io.KaldiFormatError):  # a bad line is reported when it is read
            names.add(kaldi_io.parse_script_line(line)[1])
    found = set()
    for name in names:
        with contextlib.suppress(UserError):
            found.add(_locate(name, script, ""))
    return found


def _settings(data_dir: Path, config: KaldiImportConfig) -> dict:
    """The identity of the inputs, every path resolved (a re-run from another folder matches)."""
    paths = {"dev": config.dev, "test": config.test, "phones": config.phones}
    absolute = {k: str(resolved(Path(v), f"--{k}")) if v else None for k, v in paths.items()} | {
        "ali": [_resolved_spec(spec, "pdf alignments") for spec in config.ali],
        "phone_ali": [_resolved_spec(spec, "phone alignments") for spec in config.phone_ali],
    }
    return {"corpus": str(data_dir), "kaldi": config.to_dict() | absolute, "targets": list(config.target_kinds)}


def _open_data_dirs(data_dir: Path, config: KaldiImportConfig) -> tuple[list[DataDir], str | None]:
    """The train, dev and test data dirs, and the apply-cmvn options applied to all of them (or None)."""
    dirs = [DataDir.open(data_dir, None if config.dev is None else "train", config.cmvn)]
    for split, path in (("dev", config.dev), ("test", config.test)):
        if path is not None:
            dirs.append(DataDir.open(Path(path), split, config.cmvn))
    applied = [d.cmvn is not None for d in dirs]
    if config.norm_vars and not all(applied):
        missing = next(d.path for d in dirs if d.cmvn is None)
        raise UserError(f"--norm-vars: Kaldi data dir {missing} has no cmvn.scp to normalise variances with")
    if any(applied) and not all(applied):
        missing = ", ".join(str(d.path) for d in dirs if d.cmvn is None)
        raise UserError(
            f"{missing} has no cmvn.scp, the other data dirs have; give every one CMVN stats or use --no-cmvn"
        )
    # What Kaldi's decoding (steps/nnet/decode.sh) must apply to its features: export-kaldi writes it as cmvn_opts.
    cmvn_opts = f"--norm-means=true --norm-vars={str(config.norm_vars).lower()}" if all(applied) else None
    return dirs, cmvn_opts


class _Importer:
    """Checks every utterance of the data dirs, applies CMVN and writes it to the store."""

    def __init__(self, writer: StoreWriter, alignments: list[Alignments], labels: dict, config: KaldiImportConfig):
        self.writer, self.alignments, self.labels, self.config = writer, alignments, labels, config
        self.stats = FrameMoments()  # over the train split's frames
        self.skipped: list[str] = []  # every utterance left out: those with no alignment, and
        self.unaligned: list[str] = []
        self.mismatched: list[str] = []  # those whose lengths are further apart than --length-tolerance (_lengths)
        self.cut: list[str] = []  # cut to the shortest length (_lengths)
        self.own_stats: list[str] = []  # normalised with stats keyed by the utterance: its speaker has none
        self.seen: dict[str, str] = {}
        self.dim: int | None = None

    def add_data_dir(self, d: DataDir, dev_speakers: set[str]) -> None:
        with progress_bar() as bar:
            task = bar.add_task(f"importing {d.path.name}", total=len(d.utterance_ids()), unit="utt")
            for utt, where, feats in d.utterances():
                bar.advance(task)
                speaker = self._check(d, utt, where, feats)
                targets = _targets(utt, len(feats), self.alignments, d.path, self.config)
                if not isinstance(targets, dict):  # no alignment (None), or lengths too far apart
                    self.skipped.append(utt)
                    (self.mismatched if targets else self.unaligned).append(targets or utt)
                    continue
                if len({len(feats), *(len(a.by_utt[utt]) for a in self.alignments)}) > 1:
                    self.cut.append(_lengths(utt, len(feats), self.alignments))
                    feats = feats[: len(next(iter(targets.values())))]
                split = d.split or ("dev" if speaker in dev_speakers else "train")
                x = d.apply_cmvn(utt, speaker, np.asarray(feats, dtype=np.float32), self.config.norm_vars)
                if d.cmvn is not None and speaker not in d.cmvn:
                    self.own_stats.append(utt)
                phones = merge_repeats(targets["phones"].tolist()) if "phones" in targets else []
                transcript = tuple(self.labels["phones"][i] for i in phones)
                self.writer.add_utterance(utt, speaker, split, len(x) * d.frame_shift, x, targets, transcript)
                if split == "train":
                    self.stats.add(x)

    def _check(self, d: DataDir, utt: str, where: str, feats: np.ndarray) -> str:
        """The utterance's speaker, after checking it is new, a finite feature matrix of the
        common dimension, in utt2spk."""
        if utt in self.seen:
            raise UserError(
                f"utterance {utt} is given twice, at {self.seen[utt]} and at {where}; splits must not share utterances"
            )
        self.seen[utt] = where
        if feats.ndim != 2 or not feats.size:
            shape = " x ".join(map(str, feats.shape))
            raise UserError(f"{where}: {utt} is not a (frames, dim) feature matrix of at least 1 x 1 ({shape})")
        if not np.isfinite(feats).all():
            row = int(np.flatnonzero(~np.isfinite(feats).all(1))[0])
            raise UserError(f"{where}: the features of {utt} hold NaN or infinite values (first in frame {row})")
        if self.dim is None:
            self.dim = feats.shape[1]
        elif feats.shape[1] != self.dim:
            raise UserError(
                f"{d.path / 'feats.scp'}: utterance {utt} has {feats.shape[1]}-dim features, the ones "
                f"before it {self.dim}-dim"
            )
        speaker = d.utt2spk.get(utt)
        if speaker is None:
            raise UserError(f"utterance {utt} of {d.path / 'feats.scp'} is not in {d.path / 'utt2spk'}")
        return speaker


def _resolved_spec(spec: str, what: str) -> str:
    kind, path = parse_rspecifier(spec, what)
    return f"{kind}:{path.resolve()}"


def _inventory(ali: Alignments, config: KaldiImportConfig) -> list[str]:
    """The class labels of one target kind: pdf ids 0..N-1, or the phone symbols of lang/phones.txt."""
    top = max((int(a.max()) for a in ali.by_utt.values() if len(a)), default=0)
    if ali.kind == "pdfs":
        if top >= MAX_PDFS:
            raise UserError(
                f"{ali.holder(top)} has pdf id {top:,}; asr-init reads pdf ids below {MAX_PDFS:,} (are these "
                "transition ids? convert them with ali-to-pdf first)"
            )
        distinct = len(np.unique(np.concatenate(list(ali.by_utt.values()))))
        if config.num_pdfs is None and top + 1 > 2 * distinct + 100:
            raise UserError(
                f"pdf ids run up to {top:,} ({ali.holder(top)}) but only {distinct:,} distinct ids occur; give the "
                "tree's number of pdfs with --num-pdfs (hmm-info final.mdl prints it), or check that these are pdf ids "
                "(ali-to-pdf), not transition ids"
            )
        if config.num_pdfs is None:
            console.print(
                f"[yellow]note: {top + 1} pdfs, from the highest pdf id in the alignments; give --num-pdfs (hmm-info "
                "final.mdl prints it) so that the network's output layer has every pdf of the tree",
                highlight=False,
            )
            return [str(i) for i in range(top + 1)]
        if top >= config.num_pdfs:
            raise UserError(
                f"{ali.holder(top)} has pdf id {top}, but --num-pdfs is {config.num_pdfs}; are these transition "
                "ids? Convert Kaldi's ali.*.gz with ali-to-pdf final.mdl first"
            )
        return [str(i) for i in range(config.num_pdfs)]
    if top >= MAX_PHONES:
        raise UserError(f"{ali.holder(top)} has phone id {top:,}; phone ids must be below {MAX_PHONES:,}")
    if config.phones is None:
        return [str(i) for i in range(top + 1)]
    symbols = read_phone_symbols(Path(config.phones))
    missing = sorted({int(i) for a in ali.by_utt.values() for i in np.unique(a)} - set(symbols))
    if missing:
        raise UserError(f"phone alignments hold phone id(s) {missing[:5]} that {config.phones} does not list")
    return [symbols.get(i, str(i)) for i in range(max(max(symbols), top) + 1)]


def _targets(utt: str, frames: int, alignments: list[Alignments], where: Path, config: KaldiImportConfig):
    """{kind: ids} of one utterance, each cut to the shortest of its features' and alignments' lengths where
    those differ by fewer than --length-tolerance frames (nnet-train-frmshuff); None where an alignment is
    missing, and where they differ by more, the lengths (_lengths) of an utterance to leave out."""
    found = [(ali, ali.by_utt.get(utt)) for ali in alignments]
    if any(ids is None for _, ids in found):
        return None
    lengths = [frames, *(len(ids) for _, ids in found)]
    if max(lengths) - min(lengths) >= max(config.length_tolerance, 1):
        if config.length_tolerance == 0:
            ali, ids = next((ali, ids) for ali, ids in found if len(ids) != frames)
            raise UserError(
                f"utterance {utt}: {where / 'feats.scp'} has {frames} frames but its {ali.kind[:-1]} alignment in "
                f"{ali.source[utt]} has {len(ids)}; the alignments must be made on these features (same frame "
                "shift, no frame subsampling), or give --length-tolerance to cut or leave out such utterances"
            )
        return _lengths(utt, frames, alignments)
    n = min(lengths)
    return {ali.kind: ids[:n].astype(np.int32 if ali.kind == "pdfs" else np.int16) for ali, ids in found}


def _lengths(utt: str, frames: int, alignments: list[Alignments]) -> str:
    """An utterance's features' and alignments' lengths, as a warning names them."""
    alis = ", ".join(f"{ali.kind[:-1]} alignment in {ali.source[utt]} {len(ali.by_utt[utt])}" for ali in alignments)
    return f"{utt}: features {frames} frames, {alis}"


def _check_imported(importer: _Importer, dirs: list[DataDir], config: KaldiImportConfig) -> None:
    writer, mismatched = importer.writer, importer.mismatched
    if not any(r.split == "train" for r in writer.records) and mismatched:
        raise UserError(
            f"no utterance of {dirs[0].path / 'feats.scp'} was imported: {len(mismatched)} have features and "
            f"alignments whose lengths differ by --length-tolerance ({config.length_tolerance}) frames or more "
            f"(first: {mismatched[0]}); the alignments must be made on these features (same frame shift, no frame "
            "subsampling)"
        )
    if not any(r.split == "train" for r in writer.records):
        specs = ", ".join(config.ali + config.phone_ali)
        raise UserError(
            f"no utterance of {dirs[0].path / 'feats.scp'} has an alignment in {specs} ({len(importer.skipped)} "
            "left out); the alignments must be keyed by the same utterance ids"
        )
    for d in dirs[1:]:
        if not any(r.split == d.split for r in writer.records):
            raise UserError(f"no utterance of the {d.split} data dir {d.path} has an alignment")
