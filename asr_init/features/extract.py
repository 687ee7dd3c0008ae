"""The `extract` stage: a corpus into a feature store.

Two passes. Pass 1 (a process pool) reads each utterance's audio, computes MFCC +
deltas and frame targets, and appends them to shards in corpus order, accumulating
per-speaker sums. Pass 2 normalises the shards in place (per-speaker or per-utterance
mean/variance), then the train-split statistics are written. All of it happens in a
temporary folder beside the output, renamed into place only when complete. The sample rate
(resolve_sample_rate) and the check that every mel band carries signal (_band_levels):
docs/reference.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.markup import escape

from asr_init.config import DATA_DIR, SPLITS
from asr_init.corpora.readers import (
    Corpus,
    Utterance,
    corpus_root,
    read_corpus,
    read_label_list,
    read_label_map,
)
from asr_init.corpora.synth import is_embedded
from asr_init.environment import environment
from asr_init.errors import UserError
from asr_init.features.config import MIN_SAMPLE_RATE, ExtractConfig
from asr_init.features.frontend import (
    STATES_PER_PHONE,
    FeatureConfig,
    Frontend,
    apply_cmvn,
    cmvn_stats,
    frame_targets,
    mel_band_edges,
    read_audio_headers,
)
from asr_init.features.store import (
    STORE_FORMAT_VERSION,
    FrameMoments,
    StoreWriter,
    shard_name,
    store_summary,
    write_metadata,
)
from asr_init.folders import output_folder, reading
from asr_init.io import digest, resolved
from asr_init.progress import console, progress_bar

# The embedded corpus's phone set in a store's settings: by its name in the package, not where it is installed.
OWN_PHONES = "data/phones39.txt"
# A store's "channels" (what was read of audio files of several channels) where its record predates it: a Kaldi
# kind's store then held their mean (as every kind read them once) or channel 0, which cannot be told apart, so
# it is made again; librosa-mfcc has always read their mean.
OLDER_CHANNELS = "not recorded (older asr-init)"
# A store's "channels" where the `segments` lines name the channel of each utterance.
SEGMENTS_CHANNEL = "the segments file's channel"
# The default rate is the corpus's own up to this: wideband ASR features stop at 8 kHz.
MAX_DEFAULT_SAMPLE_RATE = 16000
# A mel band whose long-term power is this far below the strongest band's carries no signal.
EMPTY_BAND_DB = -60.0


def resolve_sample_rate(file_rates: dict[tuple, int], requested: int | None, corpus_path: Path,
                        unread: str | None = None) -> int:  # fmt: skip
    """The extraction rate: `requested`, or the rate most recordings have (`file_rates`: an audio file,
    or one WAV of a wav archive, each), capped at MAX_DEFAULT_SAMPLE_RATE (a tie goes to the lower rate:
    every band then has signal in every recording). `unread`: why the first recording whose header could
    not be read could not (read_audio_headers)."""
    if requested is not None:
        return requested
    if not file_rates:
        raise UserError(
            f"no recording of {corpus_path} can be read to find the corpus's sample rate (the first: {unread}); "
            "check the audio paths, or give --sample-rate"
        )
    counts = Counter(file_rates.values())
    rate = min(counts, key=lambda r: (-counts[r], r))
    if rate < MIN_SAMPLE_RATE:
        raise UserError(
            f"most recordings of {corpus_path} are at {rate} Hz, below the lowest rate extract "
            f"reads ({MIN_SAMPLE_RATE} Hz); resample them to at least {MIN_SAMPLE_RATE} Hz first"
        )
    return min(rate, MAX_DEFAULT_SAMPLE_RATE)


def _warn_upsampling(file_rates: dict[tuple, int], rate: int) -> None:
    """One warning when recordings below the extraction rate are upsampled: their mel bands
    above their own Nyquist frequency will hold no signal. Recordings below MIN_SAMPLE_RATE are
    not upsampled but refused, each where it is read."""
    low = Counter(r for r in file_rates.values() if MIN_SAMPLE_RATE <= r < rate)
    if not low:
        return
    rates = ", ".join(f"{r} Hz" for r in sorted(low))
    console.print(
        f"[yellow]warning: {sum(low.values())} of {len(file_rates)} recordings ({rates}) are upsampled to "
        f"{rate} Hz, and their mel bands above {max(low) / 2:g} Hz hold no signal; "
        f"--sample-rate {min(low)} keeps every band filled in every recording.",
        highlight=False,
    )


def channels_read(kind: str, utterances: list[Utterance] = ()) -> str:
    """What features of `kind` read of an audio file of several channels: the channel a `segments` line
    gives where the utterances' lines give channels (a line of such a file must); else Kaldi's kinds
    channel 0, as compute-mfcc-feats does without --channel, librosa-mfcc their mean, as librosa.load does."""
    if any(u.channel is not None for u in utterances):
        return SEGMENTS_CHANNEL
    return "mean" if kind == "librosa-mfcc" else "channel 0"


def _warn_channels(file_channels: dict[tuple, int], kind: str) -> None:
    """One warning when recordings have more than one channel: what `kind` reads of them."""
    several = sum(c > 1 for c in file_channels.values())
    if several:
        taken = ("channel 0 (the left) is read, as compute-mfcc-feats reads it" if channels_read(kind) == "channel 0"
                 else "their channels are averaged, as librosa.load averages them")  # fmt: skip
        files, many = len(file_channels), " or ".join(str(c) for c in sorted(set(file_channels.values())) if c > 1)
        console.print(f"[yellow]warning: {several} of {files} recordings have {many} channels: {taken}; "
                      "a segments line 'utt recording 0 -1 CHANNEL' reads another", highlight=False)  # fmt: skip


def _leave_out(corpus: Corpus, short: list[Utterance], corpus_path: Path) -> Corpus:
    """The corpus without the utterances whose `segments` regions extract-segments leaves out as too short
    (read_audio_headers), with one warning that counts them and names the first line and any speaker left
    with none; a corpus left with no utterance is refused."""
    if not short:
        return corpus
    ids = {u.id for u in short}
    kept = [u for u in corpus.utterances if u.id not in ids]
    first = min(short, key=lambda u: int(u.region.rpartition(":")[2]))  # region: the segments line, PATH:N
    lines = sum(bool(u.region) for u in corpus.utterances)
    if not kept:
        raise UserError(f"corpus {corpus_path}: all {lines} segments lines are shorter than 0.1 s, and "
                        f"extract-segments leaves such a line out (the first: {first.region})")  # fmt: skip
    gone = sorted({u.speaker for u in short} - {u.speaker for u in kept})
    none = f"; speaker{'s' * (len(gone) > 1)} {', '.join(gone)} left with none" if gone else ""
    console.print(f"[yellow]warning: {len(short)} of {lines} segments lines are shorter than 0.1 s, and their "
                  "utterances are left out, as extract-segments leaves them out (the first: "
                  f"{escape(first.region)}, utterance {escape(first.id)}){escape(none)}", highlight=False)  # fmt: skip
    return dataclasses.replace(corpus, utterances=kept)


def assign_splits(corpus: Corpus, config: ExtractConfig) -> dict[str, str | None]:
    """Speaker -> split. Explicit lists win, then the layout's own split, then fractions.

    With fractions, speakers are shuffled with the seed; dev and test get
    round(fraction * speakers) each, at least one when the fraction is positive.
    """
    speakers = sorted({u.speaker for u in corpus.utterances})
    if config.dev_speakers or config.test_speakers:
        for spk in config.dev_speakers + config.test_speakers:
            if spk not in speakers:
                raise UserError(
                    f"speaker {spk} has no utterances in the corpus "
                    f"(known: {', '.join(speakers[:10])}{' ...' if len(speakers) > 10 else ''})"
                )
        return {
            s: "dev" if s in config.dev_speakers else "test" if s in config.test_speakers else "train" for s in speakers
        }
    if corpus.layout == "timit":
        return {u.speaker: u.split for u in corpus.utterances}
    order = speakers[:]
    random.Random(config.seed).shuffle(order)

    def count(fraction: float) -> int:
        return 0 if fraction == 0 else max(1, round(fraction * len(order)))

    n_test, n_dev = count(config.test_fraction), count(config.dev_fraction)
    if n_test + n_dev >= len(order):
        raise UserError(
            f"the corpus has {len(order)} speakers, too few for {n_dev} dev + {n_test} test speakers and a train "
            "set; lower --dev-fraction/--test-fraction"
        )
    return {s: "test" if i < n_test else "dev" if i < n_test + n_dev else "train" for i, s in enumerate(order)}


def fold_labels(corpus: Corpus, map_path: Path) -> Corpus:
    """Rewrite every segment label through a folding map; a label outside it is an error."""
    mapping = read_label_map(map_path)
    utterances = []
    for utt in corpus.utterances:
        segs = []
        for seg in utt.segments:
            if seg.label not in mapping:
                raise UserError(
                    f"{utt.source}: utterance {utt.id} has label {seg.label!r}, which is not in the folding map "
                    f"{map_path}"
                )
            segs.append(dataclasses.replace(seg, label=mapping[seg.label]))
        utterances.append(dataclasses.replace(utt, segments=tuple(segs)))
    labels = tuple(dict.fromkeys(mapping.values()))
    return dataclasses.replace(corpus, utterances=utterances, labels=labels if corpus.labels is None else corpus.labels)


def label_inventory(corpus: Corpus, splits: dict[str, str | None], config: ExtractConfig) -> list[str]:
    """The label set: a given list, the layout's (or folding map's) own, or the labels of the training alignments."""
    fixed = read_label_list(Path(config.phones)) if config.phones else corpus.labels
    train_labels = {s.label for u in corpus.utterances if splits.get(u.speaker) == "train" for s in u.segments}
    allowed = train_labels if fixed is None else set(fixed)
    for utt, seg in ((u, s) for u in corpus.utterances for s in u.segments if s.label not in allowed):
        if fixed is not None:
            source = config.phones or "the layout's phone set"
            raise UserError(f"{utt.source}: utterance {utt.id} has label {seg.label!r}, which is not in {source}")
        if splits.get(utt.speaker) is not None and seg.label != config.silence:
            raise UserError(
                f"{utt.source}: utterance {utt.id} ({splits[utt.speaker]}) has label {seg.label!r}, "
                "which never occurs in the training alignments"
            )
    labels = sorted(train_labels) if fixed is None else list(fixed)
    if config.silence not in labels:
        labels.append(config.silence)
    return labels


# Worker state, set once per process by _init_worker.
_W: dict = {}


def _init_worker(features: FeatureConfig, seed: int, label_ids: dict[str, int], silence: str) -> None:
    _reuse_freed_memory()
    _W.update(frontend=Frontend(features, seed), label_ids=label_ids, silence=silence)


def _reuse_freed_memory() -> None:
    """Have glibc's malloc serve arrays up to 32 MiB from its heap and keep freed memory there,
    instead of mapping every array over 128 KiB afresh (page faults) and unmapping it when freed."""
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    _libc("mallopt", m_mmap_threshold, 32 << 20)
    _libc("mallopt", m_trim_threshold, 256 << 20)


def _libc(function: str, *args: int) -> None:
    """Call the C library's `function` with `args` on Linux; elsewhere, or where the C library
    lacks it (not glibc), nothing."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            getattr(ctypes.CDLL(None), function)(*args)


def _init_pool_worker(parent: int, *initargs) -> None:
    from threadpoolctl import threadpool_limits

    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends the workers
    threadpool_limits(1)  # one BLAS thread per worker: the pool already uses every core
    _init_worker(*initargs)


def _die_with_parent(parent: int) -> None:
    """End this worker process when `parent`, the extract process, ends, however it ends.

    A pool stops its workers when the extract process exits or is interrupted, but a SIGKILL
    (or the OOM killer) gives it no chance: the workers would wait for work forever. On Linux
    prctl(PR_SET_PDEATHSIG) has the kernel send them SIGKILL when the parent dies; as well
    (other systems, or a prctl that fails), a daemon thread checks every second whether the
    parent is still this process's parent and exits the process when it is not.
    """
    pr_set_pdeathsig = 1  # <linux/prctl.h>
    _libc("prctl", pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


@contextmanager
def _mapper(jobs: int, initargs: tuple):
    """A map over utterances: a process pool, or in this process for jobs=1, with one BLAS thread as
    a pool's worker has (more threads sum the mel products in another order: other frames)."""
    if jobs == 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            _init_worker(*initargs)
            yield map
        return
    # forked workers (not Python 3.14's forkserver default): their parent is this process, which
    # _die_with_parent watches, and they start without importing anything again
    fork = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(jobs, fork, _init_pool_worker, (os.getpid(), *initargs)) as pool:
        try:
            yield functools.partial(pool_map, pool)
        except BaseException:  # an error or an interrupt: the queued utterances are not computed
            end_pool(pool)
            raise


def end_pool(pool: ProcessPoolExecutor) -> None:
    """End `pool` at once, as a run stops on an error or an interrupt: its workers are killed (SIGKILL:
    a worker may ignore or defer other signals) and the work still queued is dropped.

    A worker killed while it sent a result leaves part of it in the pool's result pipe, where the pool's
    reader would wait for the rest for ever: with this process's end of the pipe closed too, it meets the
    pipe's end instead. The queued work is not written to a pipe no one reads (which would hold the process
    at its exit). The pool's manager thread has ended when this returns."""
    workers = list((getattr(pool, "_processes", None) or {}).values())
    for worker in workers:
        worker.kill()
    for worker in workers:
        worker.join()
    with contextlib.suppress(AttributeError, OSError):
        pool._result_queue._writer.close()
    with contextlib.suppress(AttributeError):
        pool._call_queue.cancel_join_thread()
    pool.shutdown(wait=True, cancel_futures=True)


def pool_map(pool: ProcessPoolExecutor, fn, items, chunksize: int = 16) -> Iterator:
    """fn over `items` in `pool`, in order (Executor.map's results): every chunk of `chunksize` items
    submitted now, each chunk's results dropped once passed on. Unlike Executor.map's, results closed
    early (an error, an interrupt) leave the queued chunks to the pool, which fails them when end_pool
    ends its workers: one it finds cancelled is an InvalidStateError in its thread (Python 3.11)."""
    items = list(items)
    futures = [pool.submit(_map_chunk, fn, items[at : at + chunksize]) for at in range(0, len(items), chunksize)]
    futures.reverse()

    def results():
        while futures:
            yield from futures.pop().result()

    return results()


def _map_chunk(fn, chunk: list) -> list:
    return [fn(item) for item in chunk]


def _process(utt: Utterance):
    """Worker: (features, phones, states, duration, per-band mel power summed over the
    frames (bins,), transcript) for one utterance, or the error text."""
    try:
        frontend: Frontend = _W["frontend"]
        with np.errstate(over="ignore", invalid="ignore"):  # such frames are refused in one line, without warnings
            feats, band_power, duration = frontend(utt)
        if len(feats) == 0:  # snip-edges: audio shorter than one frame
            raise UserError(f"{utt.audio}: audio of utterance {utt.id} is {duration * 1000:.1f} ms long, shorter "
                            f"than one {frontend.c.frame_length_ms:g} ms frame: it gives no features")  # fmt: skip
        _check_finite_features(feats, utt, frontend.c.frame_shift_ms)
        if frontend.c.cmvn == "utterance":
            apply_cmvn(cmvn_stats(feats[:, : frontend.c.static_dim]), feats, frontend.c.norm_vars)
        phones, states, transcript = frame_targets(utt.segments, len(feats), frontend.c, _W["label_ids"], _W["silence"])
        return feats, phones, states, duration, band_power, transcript
    except UserError as exc:
        return str(exc)


def _check_finite_features(feats: np.ndarray, utt: Utterance, shift_ms: float) -> None:
    """Raise a UserError naming the utterance and its file if any of its features (frames, dim) is NaN
    or infinite: finite samples far outside [-1, 1] (a float WAV of 1e38) overflow float32 on the way."""
    finite = np.isfinite(feats).all(axis=1)
    if not finite.all():
        first = int(np.argmin(finite))
        raise UserError(
            f"{utt.audio}: audio of utterance {utt.id} gives {int((~finite).sum())} frame(s) of NaN or infinite "
            f"features, the first frame {first} ({first * shift_ms / 1000:.3f}s); its samples are far outside "
            "[-1, 1] (the file is damaged, or was written unscaled)"
        )


_BLOCK = 1 << 16  # frames normalised or summed at a time in pass 2: memory bounded whatever an utterance's length


def _blocks(path: Path, records: list, mmap_mode: str):
    """(record, its shard memory-mapped, a slice of at most _BLOCK of its frames) for every
    record, shard by shard: each shard is read once (and with "r+" flushed when done)."""
    for shard in sorted({r.shard for r in records}):
        feats = np.load(path / shard_name("feats", shard), mmap_mode=mmap_mode)
        for rec in (r for r in records if r.shard == shard):
            for at in range(rec.offset, rec.offset + rec.frames, _BLOCK):
                yield rec, feats, slice(at, min(at + _BLOCK, rec.offset + rec.frames))
        if mmap_mode == "r+":
            feats.flush()
        del feats


def _normalise_by_speaker(path: Path, writer: StoreWriter, stats: dict[str, np.ndarray], norm_vars: bool) -> None:
    """Pass 2: each speaker's CMVN (apply-cmvn with the speaker's stats) on the shards in place."""
    for rec, feats, block in _blocks(path, writer.records, "r+"):
        feats[block] = apply_cmvn(stats[rec.speaker], np.array(feats[block]), norm_vars)


def _global_stats(path: Path, writer: StoreWriter) -> dict:
    """Per-dimension mean/std over the train split (FrameMoments)."""
    moments = FrameMoments()
    for _, feats, block in _blocks(path, [r for r in writer.records if r.split == "train"], "r"):
        moments.add(feats[block])
    return moments.result()


def extract(corpus_path: Path, out_dir: Path, config: ExtractConfig, force: bool = False) -> dict:
    """Extract `corpus_path` into a feature store at `out_dir`; returns the summary.

    The embedded corpus, without --phones, has the fixed 39-phone set data/phones39.txt (recorded
    in the store's settings as --phones by that name, not where asr-init is installed). An existing
    complete store made with the same corpus
    and settings is left as it is (the stage is done); a different one is replaced only with
    `force` (folders.py)."""
    config.validate()
    corpus_path = resolved(corpus_path, "corpus")
    own_phones = config.phones is None and is_embedded(corpus_path)
    if own_phones:
        config = dataclasses.replace(config, phones=str(DATA_DIR / "phones39.txt"))
    corpus = read_corpus(
        corpus_path, ctm=Path(config.ctm) if config.ctm else None, tier=config.tier, include_sa=config.include_sa
    )
    if not corpus.utterances:
        raise UserError(f"corpus {corpus_path} has no utterances")
    file_rates, channels, unread, short = read_audio_headers(corpus.utterances)
    rate = resolve_sample_rate(file_rates, config.requested_rate(), corpus_path, unread)
    features = _feature_config(config, rate)
    settings = {"corpus": str(corpus_root(corpus_path)), "extract": config.settings(), "features": features.to_dict(),
                "inputs": {"corpus": corpus_identity(corpus, corpus_path, config)}}  # fmt: skip
    if own_phones:
        settings["extract"]["phones"] = OWN_PHONES
    if any(c > 1 for c in channels.values()):
        settings["channels"] = channels_read(features.kind, corpus.utterances)
    inputs = [("corpus", corpus_path), ("--ctm file", config.ctm), ("--phones file", config.phones),
              ("--phone-map file", config.phone_map)]  # fmt: skip
    inputs += [("audio file", u.audio) for u in {u.audio.parent: u for u in corpus.utterances}.values()]
    with reading(corpus_path), output_folder(out_dir, settings, record="config.json", finished=("summary.json",),
                                             force=force, inputs=inputs, summary="summary.json",
                                             what="a feature store", upgrade=_upgrade) as output:  # fmt: skip
        if output.done is not None:
            console.print(f"[green]{out_dir} is already complete with these settings (--force redoes it)")
            return output.done
        corpus = _leave_out(corpus, short, corpus_path)
        summary = _extract_into(output.path, corpus, corpus_path, config, (file_rates, channels), features, settings)
    _warn_empty_bands(summary, features)
    return summary


def corpus_identity(corpus: Corpus, corpus_path: Path, config: ExtractConfig) -> str:
    """What a store is extracted from, so that a re-run on a corpus changed in place (audio recorded
    again, a label edited, an utterance added) is refused rather than found complete: its utterances
    (ids, speakers, regions and the channels `segments` gives, splits) and the files they come from,
    their audio and the alignment each was read from (a CTM, a .PHN, a TextGrid), by size and
    modification time (a digest of hours of audio would read it all once more), the embedded corpus's
    by content (one generated again is the same, only newer); and the --phones and --phone-map files
    by content."""
    embedded = is_embedded(corpus_path)
    h = hashlib.sha256(digest([Path(p) for p in (config.phones, config.phone_map) if p]).encode())
    seen = set()
    for u in corpus.utterances:
        channel = () if u.channel is None else (u.channel,)  # a store made without one keeps its identity
        h.update(repr((u.id, u.speaker, str(u.audio), u.start, u.end, u.split, u.source, *channel)).encode())
        for path in (u.audio, Path(u.source or u.audio)):  # in this order: a set's would change per process
            if path not in seen:
                seen.add(path)
                h.update(repr((str(path), _file_identity(path, embedded))).encode())
    return h.hexdigest()[:16]


def _file_identity(path: Path, by_content: bool) -> str | tuple[int, int] | None:
    """A corpus file's content digest, or its size and modification time; None for a file that cannot
    be stat'ed (missing, unreadable, a NUL in its name), which its reader reports."""
    try:
        st = path.stat()
    except (OSError, ValueError):
        return None
    return digest([path]) if by_content else (st.st_size, st.st_mtime_ns)


def _feature_config(config: ExtractConfig, rate: int) -> FeatureConfig:
    """The feature settings at the resolved rate; where the rate is the corpus's own, an error
    about the filterbank's edges says so."""
    try:
        return config.feature_config(rate)
    except UserError as exc:
        if config.requested_rate() is not None:
            raise
        raise UserError(f"{exc} (at {rate} Hz, the corpus's own rate; --sample-rate sets another)") from None


def _upgrade(record: dict) -> dict:
    """A store's config.json as today's extract writes it: an older store's "mfcc" record (librosa's
    MFCC, the only features then, and the CMVN it had) becomes a "features" record; a record without
    "channels" (written before it was) holds OLDER_CHANNELS, or "mean" for librosa-mfcc; a corpus
    recorded as FSDD's folder names the recordings/ read from it, as today's record does."""
    if isinstance(record.get("mfcc"), dict) and isinstance(record.get("extract"), dict):
        record["features"] = FeatureConfig.from_store_config(record).to_dict()
        del record["mfcc"]
        record["extract"].pop("cmvn", None)
    if isinstance(record.get("features"), dict) and "channels" not in record:  # compared where the corpus has them
        record["channels"] = "mean" if record["features"].get("kind") == "librosa-mfcc" else OLDER_CHANNELS
    if isinstance(record.get("corpus"), str):
        record["corpus"] = str(corpus_root(Path(record["corpus"])))
    if isinstance(record.get("extract"), dict) and isinstance(record.get("corpus"), str):
        record["extract"]["phones"] = _own_phones(record["extract"].get("phones"), Path(record["corpus"]))
    return record


def _own_phones(phones, corpus: Path):
    """An older record's --phones: the embedded corpus's asr-init data/phones39.txt, wherever that
    asr-init was installed, as OWN_PHONES; any other as it was."""
    own = isinstance(phones, str) and Path(phones).parts[-2:] == ("data", "phones39.txt") and is_embedded(corpus)
    return OWN_PHONES if own else phones


def _extract_into(tmp: Path, corpus: Corpus, corpus_path: Path, config: ExtractConfig, headers: tuple[dict, dict],
                  features: FeatureConfig, settings: dict) -> dict:  # fmt: skip
    """Both passes into the folder `tmp` (`headers`: each audio file's rate and channels); returns the summary."""
    (file_rates, channels), rate = headers, features.sample_rate
    corpus, splits, problems, labels = _selected_corpus(corpus, config)
    utterances = [u for u in corpus.utterances if splits.get(u.speaker) is not None]
    t0 = time.perf_counter()
    frames = _extract_utterances(tmp, utterances, splits, labels, features, problems, config)
    kept_rates = {u.recording: file_rates[u.recording] for u in frames.utterances if u.recording in file_rates}
    _warn_upsampling(kept_rates, rate)  # not --skip-bad's
    _warn_channels({u.recording: channels[u.recording] for u in frames.utterances if u.recording in kept_rates and
                    u.channel is None}, features.kind)  # fmt: skip
    if not frames.writer.records:
        raise UserError(f"no utterance of {corpus_path} could be extracted")
    if config.cmvn == "speaker":
        _normalise_by_speaker(tmp, frames.writer, frames.sums, features.norm_vars)
    stats = _global_stats(tmp, frames.writer)
    layout = "embedded" if is_embedded(corpus_path) else corpus.layout  # synth writes a Kaldi dir
    elapsed = time.perf_counter() - t0
    summary = store_summary(frames.writer.records, layout, problems, elapsed)
    summary |= {
        "x_real_time": summary["hours"] * 3600 / max(elapsed, 1e-9),
        "features": features.kind,
        "sample_rate": rate,
        "low_freq": features.low_freq,
        "high_freq": features.high_freq,
        "source_rates": {str(r): n for r, n in sorted(Counter(kept_rates.values()).items())},
        "resampled_utterances": sum(file_rates.get(u.recording) != rate for u in frames.utterances),
        **_band_levels(frames.band_power),
    }
    states = [f"{lab}_{k}" for lab in labels for k in range(STATES_PER_PHONE)]
    record = settings | {"format_version": STORE_FORMAT_VERSION}
    versions = environment(torch_details=False)
    return write_metadata(tmp, {"phones": labels, "states": states}, record, stats, summary, versions)


def _selected_corpus(corpus: Corpus, config: ExtractConfig) -> tuple[Corpus, dict, list[str], list[str]]:
    """(corpus with folded labels, speaker -> split, problems to report, label inventory)."""
    if config.phone_map:
        corpus = fold_labels(corpus, Path(config.phone_map))
    splits = assign_splits(corpus, config)
    # What the reader left out counts unless its speaker is one the splits leave unused.
    problems = [message for speaker, message in corpus.problems if speaker not in splits or splits[speaker]]
    _skip_or_stop(problems, config.skip_bad)
    return corpus, splits, problems, label_inventory(corpus, splits, config)


def _skip_or_stop(problems: list[str], skip_bad: bool) -> None:
    """Report each of `problems` (a bad utterance) as skipped with `skip_bad`; else a UserError
    naming the first."""
    if problems and not skip_bad:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"{problems[0]}{more} (use --skip-bad to skip such utterances and report them)")
    for message in problems:
        console.print(f"[yellow]skipped: {escape(message)}", highlight=False)


@dataclass
class _Frames:
    """What pass 1 wrote and summed: the shards, per-speaker CMVN stats (cmvn_stats), the mel
    band power for the empty-band check, the utterances kept."""

    writer: StoreWriter
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    band_power: np.ndarray | None = None
    utterances: list[Utterance] = field(default_factory=list)


def _extract_utterances(tmp, utterances, splits, labels, features: FeatureConfig, problems: list[str],
                        config: ExtractConfig) -> _Frames:  # fmt: skip
    """Pass 1: features and targets of every utterance (worker processes), into shards at `tmp`.
    A bad utterance stops extraction, or with --skip-bad is added to `problems`."""
    frames = _Frames(StoreWriter(tmp, config.shard_frames), band_power=np.zeros(features.num_mel_bins))
    label_ids = {lab: i for i, lab in enumerate(labels)}
    initargs = (features, config.seed, label_ids, config.silence)
    width = features.static_dim
    with _mapper(config.jobs, initargs) as mapper, progress_bar() as bar:
        task = bar.add_task("extracting", total=len(utterances), unit="utt")
        for utt, result in zip(utterances, mapper(_process, utterances)):
            bar.advance(task)
            if isinstance(result, str):
                _skip_or_stop([result], config.skip_bad)
                problems.append(result)
                continue
            feats, phones, states, duration, power, transcript = result
            frames.writer.add(utt.id, utt.speaker, splits[utt.speaker], duration, feats, phones, states, transcript)
            stats = cmvn_stats(feats[:, :width])
            frames.sums[utt.speaker] = frames.sums[utt.speaker] + stats if utt.speaker in frames.sums else stats
            frames.band_power += power
            frames.utterances.append(utt)
    frames.writer.close()
    return frames


def _band_levels(band_power: np.ndarray) -> dict:
    """Each mel band's long-term power in dB below the strongest band's (floored at -200 dB),
    and the bands (1-based) more than EMPTY_BAND_DB below it: those carry no signal."""
    peak = float(band_power.max())
    if peak <= 0:  # silence throughout: every band is equally empty
        return {"mel_band_db": [0.0] * len(band_power), "empty_mel_bands": []}
    db = 10 * np.log10(np.maximum(band_power, peak * 1e-20) / peak)
    return {
        "mel_band_db": [round(float(v), 2) for v in db],
        "empty_mel_bands": [i + 1 for i, v in enumerate(db) if v < EMPTY_BAND_DB],
    }


def _warn_empty_bands(summary: dict, features: FeatureConfig) -> None:
    """Warn when mel bands carry no signal, naming their frequencies and the fix."""
    empty = summary["empty_mel_bands"]
    if not empty:
        return
    edges = mel_band_edges(features)
    lowest = min(empty)
    console.print(
        f"[yellow]warning: {len(empty)} of {features.num_mel_bins} mel bands (bands {', '.join(map(str, empty))}, from "
        f"{edges[lowest - 1]:.0f} Hz) carry no signal: their power is more than {-EMPTY_BAND_DB:g} dB below the "
        f"strongest band's (summary.json: mel_band_db). The audio holds nothing there (upsampled, or recorded "
        f"band-limited); --high-freq {edges[lowest - 1]:.0f} or a lower --sample-rate puts every band where "
        f"there is signal.",
        highlight=False,
    )


def summary_table(summary: dict):
    """A rich table of a store summary."""
    from rich.table import Table

    table = Table(title=f"feature store ({summary['layout']} corpus)")
    for col in ("split", "speakers", "utterances", "hours", "frames"):
        table.add_column(col, justify="right")
    for split in [name for name in SPLITS if name in summary["splits"]]:  # summary.json sorts them by name
        s = summary["splits"][split]
        table.add_row(split, f"{s['speakers']:,}", f"{s['utterances']:,}", f"{s['hours']:.3f}", f"{s['frames']:,}")
    return table
