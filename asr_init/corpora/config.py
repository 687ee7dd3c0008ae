"""Settings of `asr-init synth`: the one home of its defaults, read by the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from asr_init.config import SEED_RANGE, ConfigBase, check_limits, option

# The largest |--snr| in dB: the 16-bit WAV files span 96 dB, so noise further below the
# speech than this is lost in the quantisation, and speech further below the noise is gone.
MAX_SNR_DB = 100.0
MAX_HOURS = 1000.0  # about three days of synthesis on 2 cores; beyond it a typo such as 1e30 would fill the disk


@dataclass(frozen=True)
class SynthConfig(ConfigBase):
    """Settings of `asr-init synth` (and of the embedded corpus `extract` makes)."""

    hours: float = option(1.0, "Amount of speech to generate.")
    seed: int = option(0, "Seed for speakers, sentences and noise.")
    speakers: int = option(40, "Number of distinct synthetic speakers.")
    snr_db: float | None = option(20.0, "Additive noise SNR in dB; --no-noise for clean speech.", "--snr")
    jobs: int = option(2, "Worker processes.")

    def validate(self) -> None:
        self._check(0 < self.hours <= MAX_HOURS, "hours", f"must be a number of hours > 0 and at most {MAX_HOURS:,.0f}")
        self._check(self.speakers >= 3, "speakers", "need at least 3 (one each for train, dev, test)")
        self._check(
            self.snr_db is None or abs(self.snr_db) <= MAX_SNR_DB,
            "snr_db",
            f"must be a number of dB between -{MAX_SNR_DB:g} and {MAX_SNR_DB:g} (the WAV files are 16-bit, whose 96 dB "
            "range holds no larger ratio; --no-noise gives clean speech)",
        )
        self._check(0 <= self.seed < 2**32, "seed", SEED_RANGE)
        self._check(self.jobs >= 1, "jobs", "must be at least 1")
        check_limits(self)
