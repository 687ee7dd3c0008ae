"""Settings of `asr-init extract` and `asr-init import-kaldi`: the one home of their defaults,
read by the CLI (this module imports nothing heavy, so `asr-init --help` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass

from asr_init.config import SEED_RANGE, ConfigBase, option
from asr_init.corpora.readers import SILENCE
from asr_init.features.mfcc import MfccConfig

CMVN_MODES = ("speaker", "utterance", "none")


MIN_SAMPLE_RATE = 8000


@dataclass
class ExtractConfig(ConfigBase):
    """Settings of `asr-init extract`."""

    sample_rate: int | None = option(
        None,
        "Sample rate of the features in Hz; files at other rates are resampled. Default: the rate most of the "
        "corpus's files have, at most 16000.",
    )
    low_freq: float = option(20.0, "Lower edge of the mel filterbank in Hz.")
    high_freq: float | None = option(None, "Upper edge of the mel filterbank in Hz (default: the Nyquist frequency).")
    cmvn: str = option("speaker", "Mean/variance normalisation: speaker, utterance or none.")
    dev_fraction: float = option(0.1, "Fraction of speakers for dev (when no lists are given).")
    test_fraction: float = option(0.1, "Fraction of speakers for test.")
    dev_speakers: list[str] = option([], "Comma-separated dev speakers (overrides the fractions).")
    test_speakers: list[str] = option([], "Comma-separated test speakers.")
    seed: int = option(0, "Seed for the speaker split (and the embedded corpus).")
    phones: str | None = option(None, "Label list; a label outside it is an error.", path=True)
    phone_map: str | None = option(
        None, "Folding map 'from to' applied to the labels; a label outside it is an error.", path=True
    )
    ctm: str | None = option(None, "Phone CTM of a Kaldi data dir (default DIR/phones.ctm).", path=True)
    tier: str = option("phones", "TextGrid tier holding the phone labels.")
    include_sa: bool = option(False, "TIMIT: keep the SA sentences.")
    silence: str = option(SILENCE, "The label of silence (frames outside every segment).")
    skip_bad: bool = option(False, "Skip utterances with bad audio or alignments and report them, instead of stopping.")
    shard_frames: int = option(200_000, "Frames per shard of the store.")
    jobs: int = option(2, "Worker processes.")

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
        self._check(0 <= self.seed < 2**32, "seed", SEED_RANGE)
        overlap = set(self.dev_speakers) & set(self.test_speakers)
        self._check(not overlap, "dev_speakers", f"speaker(s) {', '.join(sorted(overlap))} also in test_speakers")

    def settings(self) -> dict:
        """What the store's frames depend on, as its config.json records them: the rate and the
        filterbank's edges are recorded resolved (in "mfcc"); the worker count changes nothing."""
        return {k: v for k, v in self.to_dict().items() if k not in ("sample_rate", "low_freq", "high_freq", "jobs")}

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
    """Settings of `asr-init import-kaldi`."""

    ali: list[str] = option(
        [],
        "Pdf alignments (ali-to-pdf output): an archive (text or binary), a .scp, or a gzipped archive; repeat for "
        "several files. They may cover every split.",
        repeat=True,
    )
    phone_ali: list[str] = option(
        [], "Phone alignments (ali-to-phones --per-frame output), in the same forms as --ali.", repeat=True
    )
    phones: str | None = option(None, "Kaldi's lang/phones.txt, to name the phone ids of --phone-ali.", path=True)
    num_pdfs: int | None = option(
        None, "Pdfs of the tree (hmm-info final.mdl prints it); default: the highest pdf id in --ali + 1."
    )
    dev: str | None = option(None, "Kaldi data dir of the dev set (train.sh's cross-validation dir).")
    test: str | None = option(None, "Kaldi data dir of a test set.")
    dev_fraction: float = option(0.1, "Without --dev: share of the train speakers that become dev.")
    cmvn: bool | None = option(
        None, "Apply each speaker's CMVN stats (cmvn.scp) as apply-cmvn does; default: when cmvn.scp exists.",
        "--cmvn/--no-cmvn",
    )  # fmt: skip
    norm_vars: bool = option(False, "Normalise variances too (apply-cmvn --norm-vars).", "--norm-vars")
    seed: int = option(0, "Seed of the --dev-fraction speaker draw.")
    shard_frames: int = option(200_000, "Frames per shard of the store.")

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
        self._check(0 <= self.seed < 2**32, "seed", SEED_RANGE)

    @property
    def target_kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind, given in (("pdfs", self.ali), ("phones", self.phone_ali)) if given)
