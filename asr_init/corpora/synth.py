"""The embedded default corpus: eSpeak NG speech with exact phone alignments.

`synthesize_corpus` writes a Kaldi-style data dir (wav.scp, utt2spk, spk2utt,
spk2gender, text, phones.ctm), so the embedded corpus goes through the same reader as a
real one. Everything is derived from one seed: the speakers (accent x voice variant,
rate, pitch, pitch range), each utterance's sentence, its leading silence and its noise.
Utterance i always gets the same content, whatever the number of worker processes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from asr_init.config import DATA_DIR
from asr_init.corpora.config import SynthConfig
from asr_init.corpora.readers import read_label_map
from asr_init.corpora.sentences import make_sentence
from asr_init.errors import UserError
from asr_init.folders import output_folder, taking_turns
from asr_init.io import check_writable_folder, write_json_atomic
from asr_init.progress import progress_bar

ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-us-nyc", "en-029")
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "klatt", "klatt2")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")
_STRIP = str.maketrans("", "", "',%=:")


@dataclass(frozen=True)
class SynthSpeaker:
    """A consistent voice: accent, variant (gender), rate (words/min), pitch and range (0-100)."""

    id: str
    accent: str
    variant: str
    gender: str
    rate: int
    pitch: int
    pitch_range: int

    @property
    def voice(self) -> str:
        return f"{self.accent}+{self.variant}"


def make_speakers(count: int, seed: int) -> list[SynthSpeaker]:
    """`count` distinct speakers, half female, from `seed`."""
    rng = random.Random(f"speakers-{seed}")
    speakers = []
    for i in range(count):
        female = i % 2 == 1
        variant = rng.choice(FEMALE_VARIANTS if female else MALE_VARIANTS)
        pitch = rng.randint(45, 80) if female else rng.randint(20, 55)
        speakers.append(
            SynthSpeaker(
                id=f"{'f' if female else 'm'}{i:03d}",
                accent=rng.choice(ACCENTS),
                variant=variant,
                gender="f" if female else "m",
                rate=rng.randint(135, 195),
                pitch=pitch,
                pitch_range=rng.randint(25, 75),
            )
        )
    return speakers


def load_phone_map() -> dict[str, str]:
    return read_label_map(DATA_DIR / "espeak_phones.tsv")


def phone_segments(
    phonemes: list[tuple[int, str]], num_samples: int, sample_rate: int, offset: int, phone_map: dict[str, str]
) -> list[tuple[float, float, str]]:
    """Turn eSpeak phoneme start events into (start, end, phone) segments in seconds.

    A phoneme lasts until the next one starts; the last one ends with the audio. Leading
    audio before the first phoneme and the `offset` samples of added silence are `sil`.
    Adjacent segments with the same phone are merged (e.g. two pauses).
    """
    bounds: list[tuple[int, str]] = [(0, "sil")]
    for start, mnemonic in phonemes:
        symbol = mnemonic.translate(_STRIP)
        if symbol not in phone_map:
            raise UserError(
                f"eSpeak phoneme {mnemonic!r} (stripped {symbol!r}) is not in "
                f"{DATA_DIR / 'espeak_phones.tsv'}; add it there"
            )
        if phone_map[symbol] != "-":
            bounds.append((start + offset, phone_map[symbol]))
    segments: list[tuple[float, float, str]] = []
    for (start, phone), (stop, _) in zip(bounds, bounds[1:] + [(num_samples, "")]):
        if stop <= start:
            continue
        if segments and segments[-1][2] == phone:
            segments[-1] = (segments[-1][0], stop / sample_rate, phone)
        else:
            segments.append((start / sample_rate, stop / sample_rate, phone))
    return segments


def _add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add coloured Gaussian noise (a mix of white and 1/f-ish low-passed) at `snr_db`."""
    white = rng.standard_normal(len(x))
    brown = np.cumsum(rng.standard_normal(len(x)))
    brown -= np.convolve(brown, np.ones(256) / 256, mode="same")  # remove the drift
    noise = white / white.std() + 0.7 * brown / (brown.std() + 1e-9)
    speech_power = np.mean(x[np.abs(x) > 1e-4] ** 2) if np.any(np.abs(x) > 1e-4) else 1e-6
    noise *= np.sqrt(speech_power / 10 ** (snr_db / 10) / np.mean(noise**2))
    return x + noise


def _synthesize_one(task: tuple[int, SynthSpeaker, SynthConfig, str]):
    """Worker: synthesise utterance `index` and write its WAV; returns its description."""
    from asr_init.corpora.espeak import Espeak

    index, speaker, config, wav_dir = task
    rng = random.Random(f"utt-{config.seed}-{index}")
    text = make_sentence(rng)
    espeak = Espeak()
    espeak.seed(config.seed * 1_000_003 + index)
    out = espeak.synthesize(text, speaker.voice, speaker.rate, speaker.pitch, speaker.pitch_range)
    sr = out.sample_rate
    lead = int(sr * rng.uniform(0.1, 0.3))
    tail = int(sr * rng.uniform(0.05, 0.2))
    audio = np.concatenate([np.zeros(lead, np.float32), out.samples, np.zeros(tail, np.float32)])
    if config.snr_db is not None:
        audio = _add_noise(audio, config.snr_db, np.random.default_rng([config.seed, index]))
    peak = np.abs(audio).max()
    if peak > 0.99:
        audio = audio * (0.99 / peak)
    segments = phone_segments(out.phonemes, len(audio), sr, lead, load_phone_map())
    utt_id = f"{speaker.id}-u{index:05d}"
    path = Path(wav_dir) / f"{utt_id}.wav"
    sf.write(path, audio.astype(np.float32), sr, subtype="PCM_16")
    return utt_id, speaker.id, text, len(audio) / sr, segments


GENERATOR = "asr-init synth (eSpeak NG)"  # corpus.json's mark of a corpus synth wrote


def is_embedded(corpus_path: Path) -> bool:
    """Whether `corpus_path` is the embedded corpus: a folder `asr-init synth` wrote, whose
    corpus.json says so (another corpus may hold a corpus.json of its own)."""
    try:
        return json.loads((Path(corpus_path) / "corpus.json").read_text()).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def synthesize_corpus(out_dir: Path, config: SynthConfig, force: bool = False) -> Path:
    """Generate the embedded corpus into `out_dir` (a Kaldi-style data dir), built aside and
    swapped in when complete (folders.py); a corpus of the same settings there is kept.
    Returns `out_dir`."""
    config.validate()
    settings = {"config": {k: v for k, v in vars(config).items() if k != "jobs"}}
    with output_folder(out_dir, settings, record="corpus.json", finished=("corpus.json",), force=force,
                       what="a synthesised corpus", option="OUT") as output:  # fmt: skip
        if output.done is None:
            (output.path / "wav").mkdir()
            speakers = make_speakers(config.speakers, config.seed)
            rows, total = _synthesize_utterances(output.path, speakers, config)
            _write_data_dir(output.path, rows, speakers)
            used = {r[1] for r in rows}
            record = {"generator": GENERATOR, "utterances": len(rows), "hours": total / 3600.0,
                      "speakers": [vars(s) for s in speakers if s.id in used]}  # fmt: skip
            write_json_atomic(output.path / "corpus.json", settings | record)
    return Path(out_dir)


def _synthesize_utterances(tmp: Path, speakers: list[SynthSpeaker], config: SynthConfig) -> tuple[list, float]:
    """WAV files under TMP/wav until `config.hours` of speech; returns (rows sorted by
    utterance id: (utt, speaker, text, seconds, segments), total seconds)."""
    target = config.hours * 3600.0
    rows = []
    total = 0.0
    index = 0
    batch = 64
    # A fresh forked process per utterance (maxtasksperchild=1): eSpeak NG keeps state between
    # utterances (docs/reference.md, `asr-init synth`), so utterance i is the same whatever ran before it.
    ctx = multiprocessing.get_context("fork")
    quiet = (signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: leaving the pool ends the workers
    pool = ctx.Pool(max(1, config.jobs), signal.signal, quiet, maxtasksperchild=1)
    try:
        with progress_bar() as bar:
            task = bar.add_task("synthesising", total=round(target), unit="s audio")
            while total < target:
                ids, index = range(index, index + batch), index + batch
                tasks = [(i, speakers[i % len(speakers)], config, str(tmp / "wav")) for i in ids]
                for row in pool.imap(_synthesize_one, tasks, chunksize=1):
                    if total >= target:  # cut at the same utterance whatever the batch size
                        os.remove(tmp / "wav" / f"{row[0]}.wav")
                        continue
                    rows.append(row)
                    total += row[3]
                    bar.update(task, completed=min(total, target))
        pool.close()  # the workers end by themselves
    except BaseException:
        _terminate(pool)
        raise
    pool.join()
    rows.sort(key=lambda r: r[0])
    return rows, total


def _terminate(pool) -> None:
    """Pool.terminate, which alone can wait for ever: with maxtasksperchild its worker thread may start
    a worker after terminate has stopped the others, and that one waits for work that never comes.
    Every child left is killed until terminate has joined them all."""
    done = threading.Event()

    def reap() -> None:
        while not done.wait(0.2):
            for child in multiprocessing.active_children():
                child.kill()

    threading.Thread(target=reap, name="reap-workers", daemon=True).start()
    try:
        pool.terminate()
    finally:
        done.set()


def _write_data_dir(tmp: Path, rows: list, speakers: list[SynthSpeaker]) -> None:
    """wav.scp, utt2spk, spk2utt, spk2gender, text, phones.ctm and phones.txt of the corpus."""
    by_speaker: dict[str, list[str]] = {}
    for utt, spk, *_ in rows:
        by_speaker.setdefault(spk, []).append(utt)
    (tmp / "wav.scp").write_text("".join(f"{u} wav/{u}.wav\n" for u, *_ in rows))
    (tmp / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s, *_ in rows))
    (tmp / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in sorted(by_speaker.items())))
    genders = {s.id: s.gender for s in speakers}
    (tmp / "spk2gender").write_text("".join(f"{s} {genders[s]}\n" for s in sorted(by_speaker)))
    (tmp / "text").write_text("".join(f"{u} {t}\n" for u, _, t, *_ in rows))
    (tmp / "phones.ctm").write_text(
        "".join(f"{u} 1 {a:.5f} {b - a:.5f} {p}\n" for u, _, _, _, segs in rows for a, b, p in segs)
    )
    shutil.copy(DATA_DIR / "phones39.txt", tmp / "phones.txt")


def cache_dir() -> Path:
    """Where generated corpora live: $ASR_INIT_CACHE, else $XDG_CACHE_HOME/asr-init, else ~/.cache/asr-init."""
    if os.environ.get("ASR_INIT_CACHE"):
        return Path(os.environ["ASR_INIT_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "asr-init"


def default_corpus(config: SynthConfig) -> Path:
    """The embedded corpus for `config`, generated into the cache on first use."""
    config.validate()
    snr = "clean" if config.snr_db is None else f"snr{config.snr_db:g}"
    path = cache_dir() / f"espeak-{config.hours:g}h-{config.speakers}spk-{snr}-seed{config.seed}"
    if (path / "corpus.json").is_file():
        return path
    check_writable_folder(path.parent, "cache folder (ASR_INIT_CACHE)", why="the embedded corpus's cache")
    # A second command waits for the first's corpus; the turn is a lock of its own (--out's is synthesize_corpus's).
    with taking_turns(path.with_name(f"{path.name}.making"), f"waiting for another asr-init run to make {path}"):
        return path if (path / "corpus.json").is_file() else synthesize_corpus(path, config)
