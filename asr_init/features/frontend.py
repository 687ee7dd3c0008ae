"""Features from audio: Kaldi's MFCC and filterbank, librosa's MFCC, deltas, CMVN, frame targets.

Kaldi's features are computed as compute-mfcc-feats and compute-fbank-feats compute them
(feat/feature-window.cc, mel-computations.cc, feature-mfcc.cc, feature-fbank.cc): frames of
`frame_length_ms` every `frame_shift_ms` (`snip_edges`: whole frames only, else centred with
the edges reflected), dither, DC removal, the raw log energy, pre-emphasis, a window (Povey's
by default), an FFT padded to a power of two, the power spectrum, Kaldi's triangular mel
banks (mel = 1127 ln(1 + f / 700)), log, and for MFCC a DCT-II, liftering and the energy in
place of c0. They are written here in numpy, a block of frames at a time (docs/kaldi.md: the
tests that hold them against Kaldi's). Audio is read, resampled (soxr) and framed in blocks, so
memory does not grow with an utterance's length.
Dither is Gaussian noise of `dither` 16-bit sample units added to each sample, read from a
table of 2^18 draws made once from the seed, from a start given by the utterance's id (Kaldi
draws new noise for every frame, unseeded): the same frames on every run.

Deltas are add-deltas' (window `delta_window`, order `delta_order`: the i-th order's filter
is the first's convolved with itself i times, edge frames repeated); CMVN is apply-cmvn's.
`librosa-mfcc` is the MFCC asr-init computed before (librosa: centred frames, Slaney mel
banks, power_to_db, an orthonormal DCT, deltas by Savitzky-Golay).

A frame's target is the segment that contains its reference time: the middle of its shift
interval, (i + 0.5) x shift, for Kaldi's frames (exact for a CTM Kaldi wrote from frame
indices), its centre i x shift for librosa's. Each phone's run of frames is split into three
equal parts, the begin/middle/end states of a 3-state HMM.
"""

from __future__ import annotations

import dataclasses
import io
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr_init.corpora.readers import PhoneSegment, Utterance, check_audio_file, merge_repeats, read_lines
from asr_init.errors import UserError
from asr_init.features.config import KINDS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from asr_init.io import read_number
from asr_init.kaldi_io import SPACES

WINDOWS = ("povey", "hamming", "hanning", "rectangular", "blackman")
STATES_PER_PHONE = 3
_END_TOLERANCE_S = 0.01  # an alignment may run past the audio by this much (rounding in CTM writers)
_MAX_OVERSHOOT_S = 0.5  # a `segments` end may run past its recording by this much (extract-segments' default)
_MIN_SEGMENT_S = float(np.float32(0.1))  # a shorter `segments` region is left out (extract-segments' default)
_EPS = float(np.finfo(np.float32).eps)
_CHUNK = 512  # frames computed together, so that their arrays stay in the cache (docs/bench.md)
# librosa-mfcc holds an utterance's whole signal (and its spectrogram) in memory: at most this many samples at
# the extraction rate (10 minutes at 16 kHz, about 0.5 GB); Kaldi's kinds read any length in blocks.
LIBROSA_MAX_SAMPLES = 600 * 16000
DITHER_TABLE = 1 << 18  # dither samples drawn once per seed (16 s at 16 kHz), read round from an utterance's own start
# Kaldi option names (conf/mfcc.conf, conf/fbank.conf) and the fields they set.
KALDI_OPTIONS = {"sample-frequency": "sample_rate", "num-ceps": "num_ceps", "num-mel-bins": "num_mel_bins",
                 "use-energy": "use_energy", "low-freq": "low_freq", "high-freq": "high_freq",
                 "frame-length": "frame_length_ms", "frame-shift": "frame_shift_ms", "dither": "dither",
                 "preemphasis-coefficient": "preemphasis", "window-type": "window", "snip-edges": "snip_edges",
                 "cepstral-lifter": "cepstral_lifter", "energy-floor": "energy_floor", "raw-energy": "raw_energy",
                 "remove-dc-offset": "remove_dc"}  # fmt: skip
_CEPSTRA = ("num_ceps", "cepstral_lifter")  # KALDI_OPTIONS' fields that compute-fbank-feats lacks
# Options of Kaldi's feature tools asr-init computes at one value only (Kaldi's default): a config may set them to it.
_KALDI_FIXED = {"round-to-power-of-two": True, "htk-compat": False, "use-log-fbank": True, "use-power": True,
                "subtract-mean": False, "debug-mel": False, "vtln-warp": 1.0, "vtln-low": 100.0, "vtln-high": -500.0,
                "min-duration": 0.0, "channel": -1.0}  # fmt: skip


@dataclass(frozen=True)
class FeatureConfig:
    """What a store's frames are and how they were computed from audio; every model keeps it
    and refuses a store whose frames were computed otherwise. `num_mel_bins` and `use_energy`
    None: the kind's default (23 and energy for Kaldi's MFCC, 23 and none for its fbank, 40
    bands for librosa's); `high_freq` <= 0: that far below the Nyquist frequency (Kaldi's)."""

    kind: str = "kaldi-mfcc"
    sample_rate: int = 16000
    num_ceps: int = 13
    num_mel_bins: int | None = None
    use_energy: bool | None = None
    low_freq: float = 20.0
    high_freq: float = 0.0
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 1.0
    preemphasis: float = 0.97
    window: str = "povey"
    snip_edges: bool = True
    cepstral_lifter: float = 22.0
    energy_floor: float = 0.0
    raw_energy: bool = True
    remove_dc: bool = True
    delta_order: int = 2
    delta_window: int = 2
    cmvn: str | None = None  # speaker, utterance or none; None: not recorded (a model from before)
    norm_vars: bool | None = None

    def resolved(self) -> FeatureConfig:
        """The same settings with every default written out, so that equal features compare equal."""
        nyquist, bands = self.sample_rate / 2, 40 if self.kind == "librosa-mfcc" else 23
        return dataclasses.replace(
            self,
            num_mel_bins=bands if self.num_mel_bins is None else self.num_mel_bins,  # 0 is checked, not the default
            use_energy=self.kind == "kaldi-mfcc" if self.use_energy is None else self.use_energy,
            high_freq=float(self.high_freq if self.high_freq > 0 else nyquist + self.high_freq),
        )

    @property
    def dim(self) -> int:
        r = self.resolved()
        static = r.num_mel_bins + r.use_energy if r.kind == "kaldi-fbank" else r.num_ceps
        return static * (r.delta_order + 1)

    @property
    def frame_length(self) -> int:
        return _samples(self.sample_rate, self.frame_length_ms, self.kind)

    @property
    def frame_shift(self) -> int:
        return _samples(self.sample_rate, self.frame_shift_ms, self.kind)

    @property
    def fft_size(self) -> int:
        return 1 << (self.frame_length - 1).bit_length()

    def check(self) -> None:
        """Raise UserError naming the first setting that cannot make features."""
        r, nyquist = self.resolved(), self.sample_rate / 2
        least = 1 if r.kind == "librosa-mfcc" else 3  # Kaldi's MelBanks needs 3
        problems = [
            (r.sample_rate > MAX_SAMPLE_RATE, f"a sample rate of {r.sample_rate:,} Hz is above the highest asr-init "
             f"computes features at ({MAX_SAMPLE_RATE:,} Hz); give --sample-rate {MAX_SAMPLE_RATE} or lower"),
            (r.kind not in KINDS, f"--features must be one of {', '.join(KINDS)}, not {r.kind!r}"),
            (r.window not in WINDOWS, f"--window-type must be one of {', '.join(WINDOWS)}, not {r.window!r}"),
            (not 0 <= r.low_freq < r.high_freq <= nyquist, f"the mel bands' edges must satisfy 0 <= --low-freq "
             f"({r.low_freq:g}) < --high-freq ({r.high_freq:g}) <= the Nyquist frequency {nyquist:g} Hz"),
            (not least <= r.num_mel_bins <= 512, f"--num-mel-bins must be from {least} to 512, not {r.num_mel_bins}"),
            (r.kind != "kaldi-fbank" and not 1 <= r.num_ceps <= r.num_mel_bins,
             f"--num-ceps must be from 1 to --num-mel-bins ({r.num_mel_bins})"),
            (not 0 < r.frame_shift <= r.frame_length <= r.sample_rate, "frames must be 0 < shift <= length <= 1 s"),
            (not (0 <= r.dither < 1e6 and 0 <= r.preemphasis <= 1), "--dither >= 0 and a pre-emphasis in [0, 1]"),
            (not (0 <= r.delta_order <= 4 and 1 <= r.delta_window <= 10), "deltas: order 0 to 4, window 1 to 10"),
        ]  # fmt: skip
        for bad, message in problems:
            if bad:
                raise UserError(f"invalid feature settings: {message}")
        banks = _mel_banks(r.num_mel_bins, r.fft_size, r.sample_rate, r.low_freq, r.high_freq)
        empty = np.flatnonzero(~(banks > 0).any(axis=0))
        if r.kind != "librosa-mfcc" and len(empty):  # Kaldi's MelBanks refuses such a bank too
            raise UserError(
                f"invalid feature settings: mel band {empty[0] + 1} of --num-mel-bins {r.num_mel_bins} between "
                f"{r.low_freq:g} and {r.high_freq:g} Hz holds no bin of the {r.fft_size}-point FFT at {r.sample_rate} "
                "Hz; give fewer bands, or a longer --frame-length"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self.resolved())

    @classmethod
    def from_dict(cls, data: dict) -> FeatureConfig:
        """A "features" record; an older store's or model's "mfcc" record (librosa's MFCC, the
        only features asr-init computed then) is read as what it was."""
        if "n_mfcc" in data:
            rate = int(data["sample_rate"])
            data = {"kind": "librosa-mfcc", "sample_rate": rate, "num_ceps": data["n_mfcc"],
                    "num_mel_bins": data["n_mels"], "frame_length_ms": data["win_ms"], "frame_shift_ms": data["hop_ms"],
                    "delta_window": (data["delta_width"] - 1) // 2, "low_freq": data["fmin"],
                    "high_freq": data.get("fmax") or rate / 2}  # fmt: skip
        return cls(**data).resolved()

    @classmethod
    def from_store_config(cls, config: dict) -> FeatureConfig | None:
        """The feature settings a store's config.json records ("features"; before, "mfcc" with
        the CMVN in "extract", where librosa's CMVN always normalised variances); None if none."""
        if "features" in config:
            return cls.from_dict(config["features"])
        if "mfcc" not in config:
            return None
        cmvn = (config.get("extract") or {}).get("cmvn", "speaker")
        return dataclasses.replace(cls.from_dict(config["mfcc"]), cmvn=cmvn, norm_vars=cmvn != "none")

    def differences(self, other: FeatureConfig) -> list[tuple[str, object, object]]:
        """(field, this value, other value) for every setting in which two feature configs differ
        (a setting one side does not record is not compared)."""
        a, b = self.resolved(), other.resolved()
        pairs = [(f.name, getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(self)]
        return [(name, x, y) for name, x, y in pairs if x != y and x is not None and y is not None]

    @property
    def static_dim(self) -> int:
        """Dimensions before the deltas: CMVN statistics are taken over these for Kaldi's
        features (apply-cmvn before add-deltas), over all for librosa's (as asr-init did)."""
        return self.dim if self.kind == "librosa-mfcc" else self.dim // (self.delta_order + 1)

    def kaldi_opts(self) -> dict[str, str]:
        """The cmvn_opts and delta_opts files of a Kaldi nnet1 model dir (steps/nnet/decode.sh
        passes them to apply-cmvn and add-deltas); no cmvn_opts without speaker or utterance CMVN."""
        r = self.resolved()
        out = {"delta_opts": f"--delta-order={r.delta_order} --delta-window={r.delta_window}"}
        if r.cmvn in ("speaker", "utterance"):
            out["cmvn_opts"] = f"--norm-means=true --norm-vars={str(bool(r.norm_vars)).lower()}"
        return out

    def kaldi_conf(self) -> str:
        """The options of compute-mfcc-feats (or compute-fbank-feats) that compute these
        features, as a conf/mfcc.conf (conf/fbank.conf) for Kaldi's steps/make_mfcc.sh."""
        r = self.resolved()
        fields = [name for name in KALDI_OPTIONS.values() if r.kind != "kaldi-fbank" or name not in _CEPSTRA]
        text = "".join(kaldi_line(name, getattr(r, name)) + "\n" for name in fields)
        return text + "".join(
            f"--{opt}={str(_KALDI_FIXED[opt]).lower()}\n" for opt in ("round-to-power-of-two", "htk-compat")
        )


def kaldi_line(field: str, value) -> str | None:
    """The line of a Kaldi feature config (conf/mfcc.conf) that sets FeatureConfig field `field` to
    `value` ("--window-type=povey", a bool as true/false), or None where no option of Kaldi's sets it."""
    names = {name: opt for opt, name in KALDI_OPTIONS.items()}
    if field not in names:
        return None
    return f"--{names[field]}={str(value).lower() if isinstance(value, bool) else value}"


def read_kaldi_conf(path: Path) -> dict:
    """The FeatureConfig fields a Kaldi feature config file sets ("--name=value" per line, "#"
    comments), read as Kaldi's ParseOptions reads them (lines and values trimmed of ASCII white space
    only: kaldi_io.SPACES): "_" in a name is "-", a bool is
    true/t/1 or false/f/0 and a bare "--name" is true; an option asr-init does not compute with
    (but at the value it computes) is an error naming the line."""
    changes = {}
    types = {f.name: f.type for f in dataclasses.fields(FeatureConfig)}
    for n, line in enumerate(read_lines(path, "Kaldi feature config"), 1):
        line, where = line.split("#", 1)[0].strip(SPACES), f"{path}:{n}"
        if not line:
            continue
        if not line.startswith("--"):
            raise UserError(f"{where}: {line!r} is not a feature option asr-init computes with")
        name, equals, value = line[2:].partition("=")
        name, value = name.replace("_", "-").lower(), value.strip(SPACES)
        if name in ("allow-downsample", "allow-upsample", "verbose"):
            continue
        field = KALDI_OPTIONS.get(name)
        kind = types[field] if field else "bool" if isinstance(_KALDI_FIXED.get(name), bool) else "float"
        if (field or name in _KALDI_FIXED) and not value and (equals or "bool" not in kind):  # "--x" is x=true
            raise UserError(f"{where}: {line!r} gives no value")
        if name in _KALDI_FIXED and _convert(value, kind, where) == _KALDI_FIXED[name]:
            continue
        if field is None:
            raise UserError(f"{where}: {line!r} is not a feature option asr-init computes with")
        changes[field] = _convert(value, "float | int" if field == "sample_rate" else kind, where)
    return changes


def _convert(text: str, kind: str, where: str):
    """`text` as Kaldi's ParseOptions reads a value of type `kind`; "float | int": a float option
    asr-init keeps as an integer (--sample-frequency), which must be a whole number."""
    names = {"bool": "a bool (true or false)", "int": "an integer", "float": "a number", "str": "a string"}
    try:
        if "bool" in kind:
            return {"true": True, "t": True, "1": True, "": True, "false": False, "f": False, "0": False}[text.lower()]
        if kind == "str":
            return text
        number = read_number(text)  # ASCII digits only, as Kaldi's strtod and strtol read them
        if kind.startswith("int"):
            return int(text)
        if kind == "float | int" and not number.is_integer():
            raise ValueError(text)
        return int(number) if kind == "float | int" else number
    except (KeyError, ValueError, OverflowError):
        kind = "int" if kind == "float | int" else kind.split(" |")[0]
        raise UserError(f"{where}: {text!r} is not {names[kind]}") from None


def _samples(rate: int, ms: float, kind: str) -> int:
    """Samples in `ms` milliseconds: for Kaldi's features as its WindowSize/WindowShift count them
    (float options, a double product, truncated: feature-window.h); librosa's MFCC round them."""
    if kind == "librosa-mfcc":
        return int(round(rate * ms / 1000))
    return int(float(np.float32(rate)) * 0.001 * float(np.float32(ms)))


# --------------------------------------------------------------------------- audio


def read_audio_headers(utterances: list[Utterance]) -> tuple[dict[tuple, int], dict[tuple, int], str | None, list]:
    """(sample rate, channels) of each recording the utterances are in (Utterance.recording: a regular
    audio file, or one WAV of a wav archive), from its header (no decoding); recordings that cannot be
    opened are left out (extraction reports them), and the first one's problem is the third item (else None).
    The fourth: the utterances whose `segments` region extract-segments leaves out as too short (_too_short)."""
    rates: dict[tuple, int] = {}
    channels: dict[tuple, int] = {}
    frames: dict[tuple, int] = {}
    problem = None
    for utt in (u for u in utterances if u.recording not in rates):
        try:
            with _sound_file(utt) as fh:
                rates[utt.recording], channels[utt.recording] = int(fh.samplerate), int(fh.channels)
                frames[utt.recording] = fh.frames
        except UserError as exc:
            problem = problem or str(exc)
    short = [u for u in utterances if u.recording in rates and _too_short(u, frames[u.recording], rates[u.recording])]
    return rates, channels, problem, short


def _sound_file(utt: Utterance):
    """The utterance's audio, open (soundfile.SoundFile): its file, or the bytes of its WAV in a
    wav archive (`utt.offset`), from the RIFF header there to the end of the data chunk it names:
    its header must be there and its samples within the file (a UserError naming both); check_audio_file first.
    Audio that soundfile or the system cannot open is a UserError naming the file and why. The
    path goes to soundfile as the file system's bytes (os.fsencode), so a folder name that is
    not valid UTF-8 opens as any other."""
    import soundfile as sf

    check_audio_file(utt.audio, utt.id)
    try:
        if utt.offset is None:
            return sf.SoundFile(os.fsencode(utt.audio))
        fh = open(utt.audio, "rb")  # noqa: SIM115 (closed with the SoundFile that reads it, or here)
        try:
            end = _wav_end(fh, utt.offset, f"{utt.audio}:{utt.offset}: the WAV of utterance {utt.id}")
            return sf.SoundFile(_Window(fh, utt.offset, end))
        except BaseException:
            fh.close()
            raise
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise UserError(f"{utt.audio}: cannot read audio of utterance {utt.id} ({exc})") from None


def _wav_end(fh, offset: int, what: str) -> int:
    """The byte after the data chunk of the RIFF (or big-endian RIFX) WAV at byte `offset` of
    the binary file `fh`, found as Kaldi's WaveInfo::Read finds it: the chunks after "WAVE"
    passed over to "data"; a UserError (starting `what`) if there is none, or if its samples
    would run past the file's end (a truncated archive, or Kaldi's 'stream mode' sizes), or if `offset` is
    at or past that end (checked before seeking: no seek goes past 2**63 bytes)."""
    size = os.fstat(fh.fileno()).st_size
    if offset >= size:
        raise UserError(f"{what} is not there: byte {offset} is past the end of the file ({size} bytes)")
    fh.seek(offset)
    head = fh.read(12)
    if head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        raise UserError(f"{what} is not there: no RIFF/WAVE header at that byte (found {head[:12]!r})")
    order, at = "little" if head[:4] == b"RIFF" else "big", offset + 12
    while True:
        fh.seek(at)
        chunk = fh.read(8)
        if len(chunk) < 8:
            raise UserError(f"{what} has no data chunk before the end of the file ({size} bytes)")
        tag, length, at = chunk[:4], int.from_bytes(chunk[4:], order), at + 8
        if tag == b"data":
            break
        at += length
    if at + length > size:
        raise UserError(f"{what} claims {length} bytes of samples, but the file holds {size - at} after its header")
    return at + length


class _Window(io.RawIOBase):
    """Bytes [start, end) of a binary file, read as a file of their own (what soundfile reads a
    WAV in an archive from); closing it closes the file."""

    def __init__(self, fh, start: int, end: int):
        super().__init__()
        self.fh, self.start, self.size, self.pos = fh, start, end - start, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = max(0, pos + (0, self.pos, self.size)[whence])
        return self.pos

    def readinto(self, buffer) -> int:
        self.fh.seek(self.start + self.pos)
        got = self.fh.readinto(memoryview(buffer)[: max(0, min(len(buffer), self.size - self.pos))])
        self.pos += got
        return got

    def close(self) -> None:
        self.fh.close()
        super().close()


def audio_blocks(utt: Utterance, rate: int, block_seconds: float = 30.0, first_channel: bool = False,
                 max_seconds: float | None = None) -> Iterator[np.ndarray]:  # fmt: skip
    """The utterance's region of its file, mono float32 at `rate` (resampled by soxr), in
    blocks of about `block_seconds`: of a file of several channels, the utterance's `channel` (as
    extract-segments cuts it), else the first (`first_channel`, as Kaldi's compute-mfcc-feats takes
    it) or their mean (as librosa.load makes it). A missing, unreadable, empty or damaged file, a
    region or an alignment past the end of the audio, a region longer than `max_seconds`
    (librosa-mfcc's limit; its header says, before a sample is read), is a UserError naming the file."""
    import soundfile as sf
    import soxr

    try:
        fh, start, stop = _open_audio(utt)
        with fh:
            if max_seconds is not None and (stop - start) / fh.samplerate > max_seconds:
                raise UserError(
                    f"{utt.audio}: utterance {utt.id} is {(stop - start) / fh.samplerate:.1f} s long, longer than "
                    f"the {max_seconds:g} s (at {rate} Hz) that --features librosa-mfcc computes, which holds a whole "
                    "utterance in memory; --features kaldi-mfcc reads any length in blocks, or a segments file cuts "
                    "the recording into shorter utterances"
                )
            step, done = max(1, int(block_seconds * fh.samplerate)), start
            whole = stop - start <= step  # one block: resampled at once, without a stream's set-up
            stream = None if fh.samplerate == rate or whole else soxr.ResampleStream(fh.samplerate, rate, 1, "float32")
            fh.seek(start)
            channel = utt.channel if utt.channel is not None else 0 if first_channel else None
            while done < stop:
                block = fh.read(min(step, stop - done), dtype="float32", always_2d=True)
                if not len(block):
                    break
                _check_finite(block, utt, done, fh.samplerate)
                done += len(block)
                mono = block.mean(axis=1) if block.shape[1] > 1 and channel is None else block[:, channel or 0]
                if fh.samplerate != rate:
                    mono = stream.resample_chunk(mono, last=done >= stop) if stream else soxr.resample(
                        mono, fh.samplerate, rate)  # fmt: skip
                yield mono
            duration = (done - start) / fh.samplerate
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise UserError(f"{utt.audio}: cannot decode audio of utterance {utt.id} ({exc})") from None
    if utt.segments and utt.segments[-1].end > duration + _END_TOLERANCE_S:
        raise UserError(
            f"{utt.source or utt.audio}: alignment of utterance {utt.id} ends at {utt.segments[-1].end:.3f}s, "
            f"past the end of its audio ({duration:.3f}s)"
        )


def _open_audio(utt: Utterance):
    """(the utterance's audio file, open (soundfile.SoundFile), the first sample of its region and
    the sample after it, within the file): its rate checked against MIN_SAMPLE_RATE (a header that
    claims 1 Hz would be resampled into hours of samples), its region against its length, and the
    channel a `segments` line gives against its channels (a file of several needs one, as for
    extract-segments)."""
    fh = _sound_file(utt)
    start, stop = _region(utt.start, utt.end, fh.frames, fh.samplerate)
    problem = None
    if fh.frames == 0:
        problem = f"{utt.audio}: audio file of utterance {utt.id} is empty (0 samples)"
    elif fh.samplerate < MIN_SAMPLE_RATE:
        problem = (f"{utt.audio}: audio file of utterance {utt.id} is at {fh.samplerate} Hz, below the lowest rate "
                   f"extract reads ({MIN_SAMPLE_RATE} Hz); resample it to at least {MIN_SAMPLE_RATE} Hz, or mend its "
                   "header if the rate is wrong")  # fmt: skip
    elif utt.region and (fh.channels > 1 if utt.channel is None else utt.channel >= fh.channels):
        asked = "names no channel" if utt.channel is None else f"asks for channel {utt.channel}"
        n = fh.channels
        has = f"{n} channels; give one from 0 to {n - 1}" if n > 1 else "1 channel; give 0"
        problem = (f"{utt.region}: utterance {utt.id} {asked} of {utt.audio}, which has {has} as the line's fifth "
                   "field, as extract-segments requires")  # fmt: skip
    elif start >= fh.frames or stop <= start:
        problem = (f"{utt.audio}: region {utt.start:.3f}-{utt.end}s of utterance {utt.id} is past the end of the "
                   f"audio ({fh.frames / fh.samplerate:.3f}s, and an end may pass it by {_MAX_OVERSHOOT_S:g}s)"
                   )  # fmt: skip
    if problem:
        fh.close()
        raise UserError(problem)
    return fh, start, stop


def _region(start: float, end: float | None, frames: int, rate: int) -> tuple[int, int]:
    """The samples [first, stop) of a `segments` region `start`-`end` s (None: to the end) of a
    recording of `frames` samples at `rate` Hz, as extract-segments cuts them: each time x rate
    + 0.5 truncated (a double; a tie rounds up), the end as _segment_end takes it; an end further
    past the recording than --max-overshoot left empty (0, 0); a start at or past its end is `frames` (a
    start such as 1e308 s makes an infinite sample number, which no int holds)."""
    end = _segment_end(end, frames, rate)
    if end is None:
        return 0, 0
    return int(min(start * rate + 0.5, frames)), min(int(end * rate + 0.5), frames)


def _segment_end(end: float | None, frames: int, rate: int) -> float | None:
    """A `segments` end in seconds as extract-segments takes it for a recording of `frames` samples at
    `rate` Hz: None (-1 in the file) or an end past the recording by at most --max-overshoot (0.5 s; its
    float32 length plus that, compared) is its float32 length; one further past it is None."""
    length = np.float32(frames) / np.float32(rate)
    if end is not None and end > float(length + np.float32(_MAX_OVERSHOOT_S)):
        return None
    return float(length) if end is None or end > float(length) else end


def _too_short(utt: Utterance, frames: int, rate: int) -> bool:
    """Whether extract-segments leaves out the utterance's `segments` region (a recording of `frames`
    samples at `rate` Hz) as shorter than its --min-segment-length, 0.1 s (a float): the end as
    _segment_end takes it, less the start, compared in double precision (featbin/extract-segments.cc).
    A region it leaves out for starting past the recording's end, or ending too far past it, is not
    (extract refuses those, naming the line)."""
    end = _segment_end(utt.end, frames, rate)
    starts_within = utt.start <= float(np.float32(frames) / np.float32(rate))
    return bool(utt.region) and end is not None and starts_within and end - utt.start < _MIN_SEGMENT_S


def _check_finite(block: np.ndarray, utt: Utterance, offset: int, rate: int) -> None:
    finite = np.isfinite(block).all(axis=1)
    if not finite.all():
        first = offset + int(np.argmin(finite))
        raise UserError(
            f"{utt.audio}: audio of utterance {utt.id} has {int((~finite).sum())} sample(s) that are NaN or "
            f"infinite, the first at sample {first} ({first / rate:.3f}s); the file is damaged"
        )


# --------------------------------------------------------------------------- Kaldi's features


class KaldiFeatures:
    """compute-mfcc-feats / compute-fbank-feats on a stream of sample blocks (see the module)."""

    def __init__(self, config: FeatureConfig, seed: int = 0):
        import scipy.fft

        self.rfft = scipy.fft.rfft
        self.c = c = config.resolved()
        n, length = c.fft_size, c.frame_length
        a = 2 * np.pi * np.arange(length) / (length - 1)
        hann = 0.5 - 0.5 * np.cos(a)
        self.window = {"povey": hann**0.85, "hanning": hann, "hamming": 0.54 - 0.46 * np.cos(a),
                       "rectangular": np.ones(length), "blackman": 0.42 - 0.5 * np.cos(a) + 0.08 * np.cos(2 * a)}[
            c.window].astype(np.float32)  # fmt: skip
        self.banks = np.repeat(_mel_banks(c.num_mel_bins, n, c.sample_rate, c.low_freq, c.high_freq), 2, axis=0)
        k, m = np.arange(c.num_ceps)[:, None], np.arange(c.num_mel_bins)
        dct = np.sqrt(2.0 / c.num_mel_bins) * np.cos(np.pi / c.num_mel_bins * (m + 0.5) * k)
        dct[0] = np.sqrt(1.0 / c.num_mel_bins)
        q = c.cepstral_lifter  # 0: none
        lifter = 1 + 0.5 * q * np.sin(np.pi * np.arange(c.num_ceps) / q) if q else 1
        self.dct = (dct.T * lifter).astype(np.float32)  # (bins, ceps), liftered
        table = np.random.default_rng(seed).standard_normal(DITHER_TABLE, dtype=np.float32) * np.float32(c.dither)
        self.dither = table if c.dither else np.zeros(0, np.float32)

    def __call__(self, blocks: Iterable[np.ndarray], dither_at: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(static features (frames, dim), the mel bands' power summed over the frames (bins,)),
        the dither read from its table from `dither_at` on."""
        out, power = [], np.zeros(self.c.num_mel_bins)
        for frames in _frames(self.c, blocks, self.dither, dither_at):
            for at in range(0, len(frames), _CHUNK):  # a few hundred frames at a time stay in the cache
                feats, mel = self._compute(frames[at : at + _CHUNK])
                out.append(feats)
                power += mel.sum(0, dtype=np.float64)
        return (np.concatenate(out) if out else np.zeros((0, self.c.static_dim), np.float32)), power

    def _compute(self, view: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features, mel power) of a (read-only) view of frames."""
        c = self.c
        frames = view - view.mean(1, keepdims=True) if c.remove_dc else view.copy()
        if c.use_energy and c.raw_energy:
            energy = np.log(np.maximum(np.einsum("ij,ij->i", frames, frames), _EPS))
        if c.preemphasis:
            frames[:, 1:] -= c.preemphasis * frames[:, :-1]
            frames[:, 0] -= c.preemphasis * frames[:, 0]
        frames *= self.window
        if c.use_energy and not c.raw_energy:
            energy = np.log(np.maximum(np.einsum("ij,ij->i", frames, frames), _EPS))
        spectrum = self.rfft(frames, c.fft_size).view(np.float32)  # single precision, as Kaldi's own FFT
        spectrum *= spectrum  # re^2, im^2 side by side: the banks, each row twice, sum them into the power
        mel = spectrum @ self.banks
        log_mel = np.log(np.maximum(mel, _EPS))
        if c.use_energy:
            energy = np.maximum(energy, np.log(c.energy_floor)) if c.energy_floor > 0 else energy
        if c.kind == "kaldi-fbank":
            parts = [energy[:, None], log_mel] if c.use_energy else [log_mel]
            return np.concatenate(parts, 1).astype(np.float32), mel
        ceps = log_mel @ self.dct
        if c.use_energy:
            ceps[:, 0] = energy
        return ceps, mel


def _mel_banks(bins: int, fft_size: int, rate: int, low: float, high: float) -> np.ndarray:
    """(fft_size / 2 + 1, bins) float32: Kaldi's triangles, equal widths in mel, over the FFT
    bins below the Nyquist frequency (mel-computations.cc)."""

    def mel(f):
        return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

    m = mel(np.arange(fft_size // 2) * rate / fft_size)
    delta = (mel(high) - mel(low)) / (bins + 1)
    left = mel(low) + delta * np.arange(bins)[:, None]
    up, down = (m - left) / delta, (left + 2 * delta - m) / delta
    weights = np.where((m > left) & (m < left + 2 * delta), np.where(m <= left + delta, up, down), 0.0)
    out = np.zeros((fft_size // 2 + 1, bins), np.float32)
    out[: fft_size // 2] = weights.T
    return out


def _frames(c: FeatureConfig, blocks: Iterable[np.ndarray], dither: np.ndarray, at: int) -> Iterator[np.ndarray]:
    """(n, frame_length) float32 frames of the samples (scaled to 16-bit units, dithered from
    the table `dither` on from `at`), a block's worth at a time. Frame i starts at sample
    i * shift, or with snip_edges false at i * shift + shift / 2 - length / 2, with the samples
    before the start and past the end reflected as Kaldi reflects them (feature-window.cc)."""
    length, shift = c.frame_length, c.frame_shift
    offset = 0 if c.snip_edges else length // 2 - shift // 2
    buffer, base, total, i = np.zeros(0, np.float32), 0, 0, 0  # buffer[0] is sample `base`; i: the next frame
    for block in blocks:
        x = block * np.float32(32768.0)
        if len(dither):
            x += _cycle(dither, at + total, len(x))
        total += len(block)
        buffer = np.concatenate([buffer, x])
        while i * shift - offset < 0 and i * shift - offset + length <= total:  # frames over the start
            yield buffer[_reflect(i * shift - offset + np.arange(length), total)][None]
            i += 1
        count = (total - (i * shift - offset) - length) // shift + 1 if i * shift - offset >= 0 else 0
        if count > 0:
            first = i * shift - offset - base
            yield np.lib.stride_tricks.sliding_window_view(buffer[first:], length)[::shift][:count]
            i += count
        if i * shift - offset > base:  # keep the samples from the next frame's start on
            drop = min(i * shift - offset - base, len(buffer))
            buffer, base = buffer[drop:], base + drop
    wanted = (
        (1 + (total - length) // shift if total >= length else 0) if c.snip_edges else (total + shift // 2) // shift
    )
    for j in range(i, wanted):  # frames over the end (and, for audio shorter than a frame, both ends)
        yield buffer[_reflect(j * shift - offset + np.arange(length), total) - base][None]


def _reflect(samples: np.ndarray, n: int) -> np.ndarray:
    """Sample indices outside [0, n) reflected into it: -s - 1 before the start, 2n - 1 - s past
    the end, as often as it takes."""
    while True:
        low, high = samples < 0, samples >= n
        if not (low.any() or high.any()):
            return samples
        samples = np.where(low, -samples - 1, np.where(high, 2 * n - 1 - samples, samples))


def _cycle(table: np.ndarray, start: int, n: int) -> np.ndarray:
    """n values of `table` from `start` on, going round it."""
    start %= len(table)
    laps = -(-(start + n) // len(table))
    return np.tile(table, laps)[start : start + n] if laps > 1 else table[start : start + n]


def add_deltas(x: np.ndarray, order: int, window: int) -> np.ndarray:
    """(frames, dim) -> (frames, dim * (order + 1)): [x, delta, delta-delta, ...] as add-deltas
    computes them: the first order's filter is j / (2 sum_k k^2) for j in -window..window, the
    i-th order's is the first's convolved with itself i times, and frames past the edges are
    the edge frames (float32)."""
    from scipy.ndimage import correlate1d

    x = np.asarray(x, dtype=np.float32)
    first = np.arange(-window, window + 1) / (2.0 * sum(j * j for j in range(1, window + 1)))
    taps, out = np.ones(1), [x]
    for _ in range(order):
        taps = np.convolve(taps, first)
        out.append(correlate1d(x, taps.astype(np.float32), axis=0, mode="nearest"))
    return np.concatenate(out, 1)


def cmvn_stats(feats: np.ndarray) -> np.ndarray:
    """(2, dim + 1) float64 stats of a block of frames, as compute-cmvn-stats accumulates them:
    sums and sums of squares per dimension, the count last in the first row."""
    x = feats.astype(np.float64)
    out = np.zeros((2, x.shape[1] + 1))
    out[0, :-1], out[1, :-1], out[0, -1] = x.sum(0), (x * x).sum(0), len(x)
    return out


def apply_cmvn(stats: np.ndarray, feats: np.ndarray, norm_vars: bool, floor: float = 1e-20) -> np.ndarray:
    """apply-cmvn (transform/cmvn.cc) in place on float32 `feats`, with stats (cmvn_stats) of
    its first `stats.shape[1] - 1` dimensions: those get x - mean, or with `norm_vars`
    x * scale - mean * scale, scale = 1 / sqrt(max(variance, floor)). Any further blocks of as
    many dimensions (the deltas of those statics, a linear filter of them) get the same scale,
    so that normalising statics and then adding deltas, as Kaldi's recipes do, and adding
    deltas first give the same frames."""
    width, count = stats.shape[1] - 1, stats[0, -1]
    mean = stats[0, :width] / count
    if norm_vars:
        scale = 1.0 / np.sqrt(np.maximum(stats[1, :width] / count - mean**2, floor))
        feats *= np.tile(scale, feats.shape[1] // width).astype(np.float32)
        feats[:, :width] -= (mean * scale).astype(np.float32)
    else:
        feats[:, :width] -= mean.astype(np.float32)
    return feats


class Frontend:
    """One utterance's features as a store keeps them: statics, deltas (and with `cmvn`
    "utterance" its own CMVN), with the mel bands' power summed over its frames."""

    def __init__(self, config: FeatureConfig, seed: int = 0):
        self.c = config.resolved()
        self.kaldi = None if self.c.kind == "librosa-mfcc" else KaldiFeatures(self.c, seed)

    def __call__(self, utt: Utterance) -> tuple[np.ndarray, np.ndarray, float]:
        """(features (frames, dim) float32, band power (bins,), seconds of audio)."""
        samples = [0]

        def counted():
            limit = None if self.kaldi else LIBROSA_MAX_SAMPLES / self.c.sample_rate
            for block in audio_blocks(utt, self.c.sample_rate, first_channel=self.kaldi is not None, max_seconds=limit):
                samples[0] += len(block)
                yield block

        if self.kaldi is None:
            feats, power = librosa_mfcc(np.concatenate(list(counted())), self.c)
        else:
            static, power = self.kaldi(counted(), zlib.crc32(utt.id.encode()))
            feats = add_deltas(static, self.c.delta_order, self.c.delta_window)
        return feats, power, samples[0] / self.c.sample_rate


# --------------------------------------------------------------------------- librosa's MFCC


def librosa_mfcc(audio: np.ndarray, c: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """(MFCC + deltas (frames, 3 n_mfcc), mel band power summed over the frames (bands,)):
    librosa's centred frames, Slaney mel banks, power_to_db and orthonormal DCT."""
    import librosa

    c = c.resolved()
    mel = librosa.feature.melspectrogram(y=audio, sr=c.sample_rate, n_fft=c.fft_size, hop_length=c.frame_shift,
                                         win_length=c.frame_length, n_mels=c.num_mel_bins, fmin=c.low_freq,
                                         fmax=c.high_freq, center=True)  # fmt: skip
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=c.num_ceps)
    width = 2 * c.delta_window + 1
    deltas = [librosa.feature.delta(mfcc, width=width, order=k, mode="nearest") for k in (1, 2)]
    return np.concatenate([mfcc, *deltas], axis=0).T.astype(np.float32), mel.sum(axis=1, dtype=np.float64)


def mel_band_edges(c: FeatureConfig) -> np.ndarray:
    """(bands + 2,) Hz: band k rises from edge k, peaks at k + 1, falls to k + 2."""
    c = c.resolved()
    if c.kind == "librosa-mfcc":
        import librosa

        return librosa.mel_frequencies(n_mels=c.num_mel_bins + 2, fmin=c.low_freq, fmax=c.high_freq)
    lo, hi = (1127.0 * np.log(1.0 + f / 700.0) for f in (c.low_freq, c.high_freq))
    return 700.0 * (np.exp(np.linspace(lo, hi, c.num_mel_bins + 2) / 1127.0) - 1.0)


# --------------------------------------------------------------------------- targets


def frame_targets(segments: tuple[PhoneSegment, ...], num_frames: int, c: FeatureConfig, label_ids: dict[str, int],
                  silence: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:  # fmt: skip
    """Phone and HMM-state ids per frame, each (num_frames,) int16, and the utterance's phone
    transcript. State id = 3 * phone id + position (0 begin, 1 middle, 2 end) within the phone's
    run: a run of n frames has state k on frames [k n/3, (k+1) n/3). Frames outside every segment
    are silence, and so the transcript (the segments' labels, repeats merged) has `silence` where
    such frames are (a CTM or TextGrid that leaves silence out as gaps)."""
    shift = c.frame_shift_ms / 1000
    times = (np.arange(num_frames) + (0.0 if c.kind == "librosa-mfcc" else 0.5)) * shift
    ids = np.array([label_ids[seg.label] for seg in segments] + [label_ids[silence]], dtype=np.int16)
    first = np.searchsorted(times, [seg.start for seg in segments], side="left")
    last = np.searchsorted(times, [seg.end for seg in segments], side="left")
    # Segments are sorted and do not overlap (readers.py), but an end written as start + duration can
    # pass the next start by a rounding error: the next segment has the frame.
    last = np.minimum(last, np.r_[first[1:], num_frames]) if len(segments) else last
    marks = np.zeros(num_frames + 1, dtype=np.int64)
    np.add.at(marks, first, np.arange(1, len(segments) + 1))
    np.add.at(marks, last, -np.arange(1, len(segments) + 1))
    seg_index = np.cumsum(marks[:-1]) - 1  # -1: outside every segment
    phones = ids[seg_index]  # ids[-1] is silence
    # Runs: consecutive frames of one segment, or one gap; state = position in thirds of the run.
    starts = np.r_[0, np.flatnonzero(np.diff(seg_index)) + 1]
    is_start = np.zeros(num_frames, dtype=bool)
    is_start[starts[starts < num_frames]] = True
    run = np.cumsum(is_start) - 1
    lengths = np.diff(np.r_[starts, num_frames])
    position = (np.arange(num_frames) - starts[run]) * STATES_PER_PHONE // lengths[run]
    states = (phones * STATES_PER_PHONE + position).astype(np.int16)
    return phones, states, _transcript(segments, seg_index, silence)


def _transcript(segments: tuple[PhoneSegment, ...], seg_index: np.ndarray, silence: str) -> tuple[str, ...]:
    """The segments' labels with `silence` before each one (or at the end) that a run of frames
    outside every segment precedes, a run as long as the shortest phone the decoder gives
    (STATES_PER_PHONE frames: a shorter gap is a boundary's rounding); repeats merged.
    (`seg_index`: each frame's segment, -1 outside.)"""
    n = len(segments)
    outside = np.r_[seg_index < 0, False]
    after = np.minimum.accumulate(np.where(outside[:-1], n, seg_index)[::-1])[::-1]  # the next frame's segment
    edges = np.flatnonzero(np.diff(np.r_[False, outside].astype(np.int8)))  # run starts and ends, alternately
    starts, ends = edges[::2], edges[1::2]
    gaps = set(after[starts[ends - starts >= STATES_PER_PHONE]].tolist())
    labels = []
    for k in range(n + 1):
        labels += ([silence] if k in gaps else []) + ([segments[k].label] if k < n else [])
    return tuple(merge_repeats(labels))
