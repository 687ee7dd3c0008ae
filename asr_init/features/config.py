"""Settings of `asr-init extract` and `asr-init import-kaldi`: the one home of their defaults,
read by the CLI (this module imports nothing heavy, so `asr-init --help` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass, field

from asr_init.config import ConfigBase
from asr_init.corpora.readers import SILENCE
from asr_init.features.mfcc import MfccConfig

CMVN_MODES = ("speaker", "utterance", "none")


MIN_SAMPLE_RATE = 8000


@dataclass
class ExtractConfig(ConfigBase):
    """Settings of `asr-init extract` (see `asr-init extract --help`)."""

    sample_rate: int | None = None  # None: the corpus's own rate (most files'), at most 16 kHz
    low_freq: float = 20.0  # lower edge of the mel filterbank, Hz
    high_freq: float | None = None  # upper edge, Hz; None: the Nyquist frequency
    cmvn: str = "speaker"
    dev_fraction: float = 0.1
    test_fraction: float = 0.1
    dev_speakers: list[str] = field(default_factory=list)
    test_speakers: list[str] = field(default_factory=list)
    seed: int = 0
    phones: str | None = None  # a label list: labels outside it are an error
    phone_map: str | None = None  # a folding map "from to": labels outside it are an error
    ctm: str | None = None
    tier: str = "phones"
    include_sa: bool = False
    silence: str = SILENCE
    skip_bad: bool = False
    shard_frames: int = 200_000
    jobs: int = 2

    def validate(self) -> None:
        self._check(
            self.sample_rate is None or self.sample_rate >= MIN_SAMPLE_RATE,
            "sample_rate",
            f"--sample-rate must be at least {MIN_SAMPLE_RATE} Hz",
        )
        self._check(self.low_freq >= 0, "low_freq", "--low-freq must be at least 0 Hz")
        self._check(
            self.high_freq is None or self.high_freq > 0,
            "high_freq",
            "--high-freq must be a positive frequency in Hz (Kaldi's negative values, "
            "offsets from the Nyquist frequency, are not accepted)",
        )
        self._check(
            self.high_freq is None or self.low_freq < self.high_freq,
            "low_freq",
            f"--low-freq must be below --high-freq {self.high_freq} Hz",
        )
        if self.sample_rate is not None:
            self.mfcc(self.sample_rate)  # the edges against this rate's Nyquist frequency
        self._check(self.cmvn in CMVN_MODES, "cmvn", f"must be one of {', '.join(CMVN_MODES)}")
        self._check(0 <= self.dev_fraction < 1, "dev_fraction", "must be in [0, 1)")
        self._check(0 <= self.test_fraction < 1, "test_fraction", "must be in [0, 1)")
        self._check(
            self.dev_fraction + self.test_fraction < 1,
            "test_fraction",
            "dev + test fractions must leave speakers for training",
        )
        self._check(self.shard_frames > 0, "shard_frames", "must be positive")
        self._check(self.jobs >= 1, "jobs", "must be at least 1")
        self._check(self.seed >= 0, "seed", "--seed must be at least 0")
        overlap = set(self.dev_speakers) & set(self.test_speakers)
        self._check(not overlap, "dev_speakers", f"speaker(s) {', '.join(sorted(overlap))} also in test_speakers")

    def mfcc(self, sample_rate: int) -> MfccConfig:
        """The feature settings at `sample_rate` (the resolved rate), the filterbank's edges
        checked against its Nyquist frequency."""
        nyquist = sample_rate / 2
        high = nyquist if self.high_freq is None else float(self.high_freq)
        rate_from = "" if self.sample_rate is not None else " (the corpus's own rate; --sample-rate sets another)"
        self._check(
            high <= nyquist,
            "high_freq",
            f"--high-freq must be at most the Nyquist frequency, {nyquist:g} Hz at {sample_rate} Hz{rate_from}",
        )
        self._check(
            self.low_freq < high,
            "low_freq",
            f"--low-freq must be below the filterbank's upper edge, {high:g} Hz (--high-freq)",
        )
        return MfccConfig(sample_rate=sample_rate, fmin=float(self.low_freq), fmax=high)


@dataclass
class KaldiImportConfig(ConfigBase):
    """Settings of `asr-init import-kaldi` (see `asr-init import-kaldi --help`)."""

    ali: list[str] = field(default_factory=list)  # pdf alignments (ali-to-pdf), for any split
    phone_ali: list[str] = field(default_factory=list)  # phone alignments (ali-to-phones --per-frame)
    phones: str | None = None  # lang/phones.txt: names of the phone ids
    num_pdfs: int | None = None  # None: the highest pdf id in the alignments + 1
    dev: str | None = None  # a data dir for dev (train.sh's cross-validation set)
    test: str | None = None  # a data dir for test
    dev_fraction: float = 0.1  # without --dev: this share of the train speakers is dev
    cmvn: bool | None = None  # None: apply CMVN when the data dir has cmvn.scp
    norm_vars: bool = False
    seed: int = 0
    shard_frames: int = 200_000

    def validate(self) -> None:
        self._check(
            bool(self.ali or self.phone_ali),
            "ali",
            "give --ali (pdf alignments, ali-to-pdf) and/or --phone-ali (ali-to-phones --per-frame)",
        )
        self._check(self.num_pdfs is None or 1 <= self.num_pdfs <= 1 << 20, "num_pdfs", "must be from 1 to 1,048,576")
        self._check(0 <= self.dev_fraction < 1, "dev_fraction", "must be in [0, 1)")
        self._check(self.shard_frames > 0, "shard_frames", "must be positive")
        self._check(not (self.norm_vars and self.cmvn is False), "norm_vars", "needs CMVN; drop --no-cmvn")
        self._check(
            self.phones is None or bool(self.phone_ali), "phones", "names the ids of --phone-ali; give --phone-ali too"
        )
        self._check(self.seed >= 0, "seed", "--seed must be at least 0")

    @property
    def target_kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind, given in (("pdfs", self.ali), ("phones", self.phone_ali)) if given)
