"""Settings of `asr-init extract` and `asr-init import-kaldi`: the one home of their defaults,
read by the CLI (this module imports nothing heavy, so `asr-init --help` stays fast)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from asr_init.config import SEED_RANGE, ConfigBase, check_limits, option
from asr_init.corpora.readers import SILENCE
from asr_init.errors import UserError
from asr_init.kaldi_io import KaldiFormatError, check_token

CMVN_MODES = ("speaker", "utterance", "none")
KINDS = ("kaldi-mfcc", "kaldi-fbank", "librosa-mfcc")  # the features frontend.py computes
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192_000  # the highest rate of studio audio; memory and FFT sizes grow with it
# ExtractConfig's fields that are FeatureConfig's.
FEATURE_OPTIONS = ("num_ceps", "num_mel_bins", "use_energy", "dither", "snip_edges", "low_freq", "high_freq")


@dataclass
class ExtractConfig(ConfigBase):
    """Settings of `asr-init extract`. The feature options carry Kaldi's names and, left unset
    (None), Kaldi's defaults (compute-mfcc-feats, compute-fbank-feats) or those of a
    --mfcc-config file; one given on the command line wins over the file, as in Kaldi."""

    features: str = option("kaldi-mfcc", "Features: kaldi-mfcc, kaldi-fbank (Kaldi's own) or librosa-mfcc.")
    mfcc_config: str | None = option(
        None, "A Kaldi feature config (conf/mfcc.conf or conf/fbank.conf): its options, under the command line's.",
        path=True,
    )  # fmt: skip
    sample_rate: int | None = option(
        None,
        "Sample rate of the features in Hz (Kaldi's --sample-frequency); files at other rates are resampled. "
        "Default: the rate most of the corpus's files have, at most 16000.",
    )
    num_ceps: int | None = option(None, "Cepstra per frame (kaldi-mfcc, librosa-mfcc). Default 13.")
    num_mel_bins: int | None = option(None, "Mel bands. Default 23 (Kaldi's), 40 for librosa-mfcc.")
    use_energy: bool | None = option(
        None, "Log energy as the first coefficient (fbank: an extra one). Default: on for kaldi-mfcc.",
        "--use-energy/--no-use-energy",
    )  # fmt: skip
    dither: float | None = option(None, "Dither in 16-bit sample units, seeded per utterance. Default 1.0.")
    snip_edges: bool | None = option(
        None, "Whole frames only (true, Kaldi's default), or frames centred on every 10 ms with the edges "
        "reflected (--no-snip-edges).", "--snip-edges/--no-snip-edges",
    )  # fmt: skip
    low_freq: float | None = option(None, "Lower edge of the mel filterbank in Hz. Default 20.")
    high_freq: float | None = option(
        None, "Upper edge of the mel filterbank in Hz; 0 or less: that far below the Nyquist frequency. Default 0."
    )
    cmvn: str = option("speaker", "Mean (and variance) normalisation per speaker, per utterance, or none.")
    norm_vars: bool | None = option(
        None, "Normalise variances too (apply-cmvn --norm-vars). Default: off for Kaldi's features, on for "
        "librosa-mfcc.", "--norm-vars/--no-norm-vars",
    )  # fmt: skip
    dev_fraction: float = option(0.1, "Fraction of speakers for dev (when no lists are given).")
    test_fraction: float = option(0.1, "Fraction of speakers for test.")
    dev_speakers: list[str] = option([], "Comma-separated dev speakers (overrides the fractions).")
    test_speakers: list[str] = option([], "Comma-separated test speakers.")
    seed: int = option(0, "Seed for the speaker split, the dither (and the embedded corpus).")
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
            self.sample_rate is None or MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE,
            "sample_rate",
            f"must be from {MIN_SAMPLE_RATE:,} to {MAX_SAMPLE_RATE:,} Hz",
        )
        self._check(self.features in KINDS, "features", f"must be one of {', '.join(KINDS)}")
        self._check(self.cmvn in CMVN_MODES, "cmvn", f"must be one of {', '.join(CMVN_MODES)}")
        self._check(not (self.norm_vars and self.cmvn == "none"), "norm_vars", "needs CMVN; drop --cmvn none")
        self._check(0 <= self.dev_fraction < 1, "dev_fraction", "must be in [0, 1)")
        self._check(0 <= self.test_fraction < 1, "test_fraction", "must be in [0, 1)")
        self._check(
            self.dev_fraction + self.test_fraction < 1,
            "test_fraction",
            f"with --dev-fraction {self.dev_fraction} it leaves no speakers for training (the two must sum below 1)",
        )
        self._check(self.shard_frames > 0, "shard_frames", "must be positive")
        self._check(self.jobs >= 1, "jobs", "must be at least 1")
        if not _is_label(self.silence):  # shown with repr(): a tab or a control character would print unseen
            raise UserError(f"invalid --silence {self.silence!r}: a label is one word, without white space or "
                            "control characters (phones.txt and states.txt are split at white space)")  # fmt: skip
        check_limits(self)
        self._check(0 <= self.seed < 2**32, "seed", SEED_RANGE)
        overlap = set(self.dev_speakers) & set(self.test_speakers)
        self._check(not overlap, "dev_speakers", f"speaker(s) {', '.join(sorted(overlap))} also in --test-speakers")
        self.feature_config(self.requested_rate() or 16000)

    def settings(self) -> dict:
        """What the store depends on besides the feature settings and CMVN (recorded resolved,
        in "features"); the worker count changes nothing."""
        dropped = FEATURE_OPTIONS + ("features", "mfcc_config", "sample_rate", "cmvn", "norm_vars", "jobs")
        return {k: v for k, v in self.to_dict().items() if k not in dropped}

    def file_settings(self) -> dict:
        """The FeatureConfig fields the --mfcc-config file sets."""
        from asr_init.features.frontend import read_kaldi_conf

        return read_kaldi_conf(Path(self.mfcc_config)) if self.mfcc_config else {}

    def requested_rate(self) -> int | None:
        """--sample-rate, else the file's --sample-frequency, else None (the corpus's own)."""
        return self.sample_rate or self.file_settings().get("sample_rate")

    def feature_config(self, sample_rate: int):
        """The feature settings at `sample_rate` (the resolved rate): Kaldi's defaults, under the
        --mfcc-config file's, under the options given; checked."""
        from asr_init.features.frontend import FeatureConfig

        given = {name: getattr(self, name) for name in FEATURE_OPTIONS if getattr(self, name) is not None}
        config = FeatureConfig(**{**self.file_settings(), **given, "kind": self.features, "sample_rate": sample_rate,
                                  "cmvn": self.cmvn, "norm_vars": self.cmvn_vars()})  # fmt: skip
        config.check()
        return config.resolved()

    def cmvn_vars(self) -> bool:
        """Whether CMVN normalises variances: --norm-vars, else only for librosa-mfcc (as asr-init did)."""
        if self.cmvn == "none":
            return False
        return self.norm_vars if self.norm_vars is not None else self.features == "librosa-mfcc"


def _is_label(text: str) -> bool:
    """Whether `text` can be a label of a store: one field of phones.txt, as a segment's label must be
    (readers.check_segments): not empty, no white space Kaldi splits at, no control character (check_token)."""
    try:
        return bool(text) and check_token(text) == text
    except KaldiFormatError:
        return False


def split_rspecifier(spec: str) -> tuple[str | None, str]:
    """("ark", "scp" or None where it names no form, the file part) of an rspecifier given as PATH,
    ark:PATH or scp:PATH (with Kaldi's read options such as ark,s,cs:), white space stripped."""
    text = spec.strip()
    m = re.match(r"^(ark|scp)(,[a-z]+)*:(.*)$", text, re.DOTALL)
    return (m.group(1), m.group(3).strip()) if m else (None, text)


@dataclass
class KaldiImportConfig(ConfigBase):
    """Settings of `asr-init import-kaldi`."""

    ali: list[str] = option(
        [],
        "Pdf alignments (ali-to-pdf output): an archive (text or binary), a .scp, or a gzipped archive; repeat for "
        "several files. They may cover every split.",
        repeat=True,
        names_path=True,
    )
    phone_ali: list[str] = option(
        [], "Phone alignments (ali-to-phones --per-frame output), in the same forms as --ali.", repeat=True,
        names_path=True,
    )  # fmt: skip
    phones: str | None = option(None, "Kaldi's lang/phones.txt, to name the phone ids of --phone-ali.", path=True)
    num_pdfs: int | None = option(
        None, "Pdfs of the tree (hmm-info final.mdl prints it); default: the highest pdf id in --ali + 1."
    )
    dev: str | None = option(None, "Kaldi data dir of the dev set (train.sh's cross-validation dir).", names_path=True)
    test: str | None = option(None, "Kaldi data dir of a test set.", names_path=True)
    dev_fraction: float = option(0.1, "Without --dev: share of the train speakers that become dev.")
    cmvn: bool | None = option(
        None, "Apply each speaker's CMVN stats (cmvn.scp) as apply-cmvn does; default: when cmvn.scp exists.",
        "--cmvn/--no-cmvn",
    )  # fmt: skip
    norm_vars: bool = option(False, "Normalise variances too (apply-cmvn --norm-vars).", "--norm-vars")
    seed: int = option(0, "Seed of the --dev-fraction speaker draw.")
    shard_frames: int = option(200_000, "Frames per shard of the store.")
    length_tolerance: int = option(
        5,
        "Frames an utterance's features and alignments may differ by: fewer are cut to the shortest, more leave "
        "the utterance out (nnet-train-frmshuff's --length-tolerance); 0: any difference is an error.",
    )

    def validate(self) -> None:
        if not (self.ali or self.phone_ali):
            raise UserError("no alignments: give --ali (pdf alignments, ali-to-pdf) and/or --phone-ali (ali-to-phones "
                            "--per-frame)")  # fmt: skip
        self._check(self.num_pdfs is None or 1 <= self.num_pdfs <= 1 << 20, "num_pdfs", "must be from 1 to 1,048,576")
        self._check(0 <= self.dev_fraction < 1, "dev_fraction", "must be in [0, 1)")
        self._check(self.shard_frames > 0, "shard_frames", "must be positive")
        self._check(0 <= self.length_tolerance <= 1000, "length_tolerance", "must be from 0 to 1,000 frames")
        self._check(not (self.norm_vars and self.cmvn is False), "norm_vars", "needs CMVN; drop --no-cmvn")
        self._check(
            self.phones is None or bool(self.phone_ali), "phones", "names the ids of --phone-ali; give --phone-ali too"
        )
        self._check(0 <= self.seed < 2**32, "seed", SEED_RANGE)
        self._check_inputs()

    def _check_inputs(self) -> None:
        """No path is empty or white space: Path("") is the current folder, which a run would import
        as the dev set, or name as "a folder" of alignments."""
        self._check_paths(dict.fromkeys(("dev", "test", "phones"), ""))
        why = "names no file: give an alignment file as PATH, ark:PATH or scp:PATH"
        for name in ("ali", "phone_ali"):
            for spec in getattr(self, name):
                self._check(split_rspecifier(spec)[1] != "", name, why)

    @property
    def target_kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind, given in (("pdfs", self.ali), ("phones", self.phone_ali)) if given)
