"""MFCC features with deltas, and frame-level targets from phone alignments.

Frame i is centred at i * hop seconds (librosa's `center=True`), so a phone boundary
at t seconds falls between frames floor(t / hop) and ceil(t / hop): the first frame of
the next phone is round(t / hop) +- 1. A frame's target is the segment that contains its
centre; frames outside every segment are silence. Each phone segment is split into
three equal runs of frames, the begin/middle/end states of a 3-state HMM.

Features are computed at the corpus's own rate (8 kHz telephone speech stays 8 kHz) and the
mel filterbank spans [fmin, fmax], as Kaldi's --low-freq / --high-freq: resampling 8 kHz
audio to 16 kHz would leave every mel band above 4 kHz without signal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from asr_init.corpora.readers import PhoneSegment, Utterance
from asr_init.errors import UserError

STATES_PER_PHONE = 3
# An alignment may run past the audio by up to one frame (rounding in CTM writers).
_END_TOLERANCE_S = 0.01


@dataclass(frozen=True)
class MfccConfig:
    """13 MFCCs + delta + delta-delta over a 25 ms window every 10 ms, from `n_mels` mel
    bands between `fmin` and `fmax` Hz (the filterbank's edges)."""

    sample_rate: int = 16000
    n_mfcc: int = 13
    n_mels: int = 40
    win_ms: float = 25.0
    hop_ms: float = 10.0
    delta_width: int = 5  # +-2 frames, the HTK/Kaldi regression window
    fmin: float = 20.0
    fmax: float | None = None  # None: the Nyquist frequency, sample_rate / 2 (librosa's default)

    def resolved(self) -> MfccConfig:
        """The same settings with `fmax` written out, so that equal filterbanks compare equal."""
        return self if self.fmax is not None else dataclasses.replace(self, fmax=self.sample_rate / 2)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self.resolved())

    @classmethod
    def from_dict(cls, data: dict) -> MfccConfig:
        """Read a store's "mfcc" record. Stores written before `fmax` was recorded used
        librosa's default upper edge, the Nyquist frequency, which `resolved` fills in."""
        return cls(**data).resolved()

    def differences(self, other: MfccConfig) -> list[tuple[str, object, object]]:
        """(field, this value, other value) for every setting in which two feature configs differ."""
        a, b = self.resolved(), other.resolved()
        return [
            (f.name, getattr(a, f.name), getattr(b, f.name))
            for f in dataclasses.fields(self)
            if getattr(a, f.name) != getattr(b, f.name)
        ]

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def n_fft(self) -> int:
        return 1 << (self.win_length - 1).bit_length()

    @property
    def dim(self) -> int:
        return 3 * self.n_mfcc


def read_sample_rates(paths: Iterable[Path]) -> dict[Path, int]:
    """The sample rate of each audio file, read from its header (soundfile.info: no decoding).

    Files that cannot be opened are left out; extraction reports them, utterance by utterance.
    """
    rates: dict[Path, int] = {}
    for path in paths:
        if path in rates or not path.is_file():  # a pipe or a device would block or never end
            continue
        try:
            rates[path] = int(sf.info(str(path)).samplerate)
        except (sf.LibsndfileError, RuntimeError, OSError):
            continue
    return rates


def load_audio(utt: Utterance, sample_rate: int) -> np.ndarray:
    """Read the utterance's region of its audio file as mono float32 at `sample_rate`.

    Raises UserError for a missing, unreadable or empty file, or a region past its end.
    """
    if not utt.audio.is_file():
        what = "is not a regular file (a pipe or a device?)" if utt.audio.exists() else "does not exist"
        raise UserError(f"{utt.audio}: audio file of utterance {utt.id} {what}")
    try:
        info = sf.info(str(utt.audio))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise UserError(f"{utt.audio}: cannot read audio of utterance {utt.id} ({exc})") from None
    if info.frames == 0:
        raise UserError(f"{utt.audio}: audio file of utterance {utt.id} is empty (0 samples)")
    file_duration = info.frames / info.samplerate
    start = int(round(utt.start * info.samplerate))
    stop = info.frames if utt.end is None else int(round(utt.end * info.samplerate))
    if start >= info.frames or stop > info.frames + int(_END_TOLERANCE_S * info.samplerate):
        raise UserError(
            f"{utt.audio}: region {utt.start:.3f}-{utt.end}s of utterance {utt.id} is past the end of the audio "
            f"({file_duration:.3f}s)"
        )
    try:
        audio, rate = sf.read(str(utt.audio), start=start, stop=min(stop, info.frames), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise UserError(f"{utt.audio}: cannot decode audio of utterance {utt.id} ({exc})") from None
    finite = np.isfinite(audio).all(axis=1)
    if not finite.all():
        first = start + int(np.argmin(finite))
        raise UserError(
            f"{utt.audio}: audio of utterance {utt.id} has {int((~finite).sum())} sample(s) that are NaN or "
            f"infinite, the first at sample {first} ({first / info.samplerate:.3f}s); the file is damaged"
        )
    audio = audio.mean(axis=1)
    if len(audio) == 0:
        raise UserError(f"{utt.audio}: utterance {utt.id} selects no audio")
    duration = len(audio) / rate
    if utt.segments and utt.segments[-1].end > duration + _END_TOLERANCE_S:
        raise UserError(
            f"{utt.source or utt.audio}: alignment of utterance {utt.id} ends at {utt.segments[-1].end:.3f}s, "
            f"past the end of its audio ({duration:.3f}s)"
        )
    if rate != sample_rate:
        audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    return audio.astype(np.float32)


def mel_band_edges(config: MfccConfig) -> np.ndarray:
    """(n_mels + 2,) Hz: band k's triangle rises from edge k, peaks at k + 1, falls to k + 2."""
    cfg = config.resolved()
    return librosa.mel_frequencies(n_mels=cfg.n_mels + 2, fmin=cfg.fmin, fmax=cfg.fmax)


def mel_power(audio: np.ndarray, config: MfccConfig) -> np.ndarray:
    """(num_samples,) audio -> (n_mels, num_frames) mel filterbank power (Slaney-normalised
    triangles on the power spectrum of a Hann-windowed frame, as librosa's MFCC uses)."""
    cfg = config.resolved()
    return librosa.feature.melspectrogram(
        y=audio,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        center=True,
    )


def mfcc_with_deltas(audio: np.ndarray, config: MfccConfig, mel: np.ndarray | None = None) -> np.ndarray:
    """(num_samples,) audio -> (num_frames, 3 * n_mfcc) float32 [MFCC, delta, delta-delta].

    `mel` is `mel_power(audio, config)` where the caller has it already. The MFCCs are
    librosa.feature.mfcc's own steps (power_to_db, then an orthonormal DCT-II), so features
    are identical to librosa.feature.mfcc(y=audio, ...) with the same settings.
    """
    if mel is None:
        mel = mel_power(audio, config)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=config.n_mfcc)
    # mode="nearest" repeats edge frames (as Kaldi does) and works for any length.
    d1 = librosa.feature.delta(mfcc, width=config.delta_width, order=1, mode="nearest")
    d2 = librosa.feature.delta(mfcc, width=config.delta_width, order=2, mode="nearest")
    return np.concatenate([mfcc, d1, d2], axis=0).T.astype(np.float32)


def frame_targets(
    segments: tuple[PhoneSegment, ...], num_frames: int, hop_s: float, label_ids: dict[str, int], silence: str
) -> tuple[np.ndarray, np.ndarray]:
    """Phone and HMM-state ids per frame, each of shape (num_frames,), int16.

    State id = 3 * phone id + position (0 begin, 1 middle, 2 end) within the phone's run
    of frames; a run of n frames has state k on frames [k*n/3, (k+1)*n/3).
    """
    sil = label_ids[silence]
    phones = np.full(num_frames, sil, dtype=np.int16)
    seg_index = np.full(num_frames, -1, dtype=np.int64)
    centres = np.arange(num_frames) * hop_s
    for k, seg in enumerate(segments):
        first = int(np.searchsorted(centres, seg.start, side="left"))
        last = int(np.searchsorted(centres, seg.end, side="left"))
        phones[first:last] = label_ids[seg.label]
        seg_index[first:last] = k
    # Runs: consecutive frames from the same segment, or from the same gap (-1).
    states = np.empty(num_frames, dtype=np.int16)
    starts = np.r_[0, np.flatnonzero(np.diff(seg_index)) + 1]
    ends = np.r_[starts[1:], num_frames]
    for a, b in zip(starts, ends):
        n = b - a
        position = (np.arange(n) * STATES_PER_PHONE) // n
        states[a:b] = phones[a:b] * STATES_PER_PHONE + position
    return phones, states
