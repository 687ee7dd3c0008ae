"""asr-init against the real Kaldi: the binaries that ../shared/kaldi/build.sh builds (or any
Kaldi build's src/featbin and src/nnetbin), found through ASR_INIT_KALDI_BIN, a folder holding
compute-mfcc-feats, compute-fbank-feats, compute-cmvn-stats, apply-cmvn, add-deltas and
nnet-forward. Without it every test here is skipped, so `make test` passes without Kaldi:

    ASR_INIT_KALDI_BIN=/tmp/asr-init-kaldi/bin .venv/bin/python -m pytest tests/test_real_kaldi.py
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import write_kaldi_dir, write_kaldi_features
from typer.testing import CliRunner

from asr_init.cli import app
from asr_init.features.config import ExtractConfig
from asr_init.features.extract import extract
from asr_init.features.store import FeatureStore

BIN = Path(os.environ.get("ASR_INIT_KALDI_BIN", "/nonexistent"))
TOOLS = ("compute-mfcc-feats", "compute-fbank-feats", "compute-cmvn-stats", "apply-cmvn", "add-deltas", "nnet-forward")
pytestmark = pytest.mark.skipif(
    not all((BIN / tool).is_file() for tool in TOOLS),
    reason="set ASR_INIT_KALDI_BIN to a folder of Kaldi's binaries (../shared/kaldi/build.sh builds them)",
)
runner = CliRunner()


def _kaldi(*args: str, cwd: Path) -> None:
    """One Kaldi binary (no shell: each stage reads and writes archives in `cwd`)."""
    done = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _kaldi_pipeline(corpus: Path, work: Path, tool: str, feature_opts: list[str], cmvn_opts: list[str],
                    delta_opts: list[str]) -> dict[str, np.ndarray]:  # fmt: skip
    """compute-*-feats | compute-cmvn-stats --spk2utt | apply-cmvn --utt2spk | add-deltas, as
    steps/make_mfcc.sh, steps/compute_cmvn_stats.sh and steps/nnet/decode.sh run them."""
    work.mkdir(parents=True, exist_ok=True)
    wavs = [line.split() for line in (corpus / "wav.scp").read_text().splitlines()]
    (work / "wav.scp").write_text("".join(f"{utt} {(corpus / path).resolve()}\n" for utt, path in wavs))
    speakers: dict[str, list[str]] = {}
    for line in (corpus / "utt2spk").read_text().splitlines():
        utt, spk = line.split()
        speakers.setdefault(spk, []).append(utt)
    (work / "spk2utt").write_text("".join(f"{spk} {' '.join(utts)}\n" for spk, utts in speakers.items()))
    (work / "utt2spk").write_text((corpus / "utt2spk").read_text())
    audio = "scp:wav.scp"
    if (corpus / "segments").is_file():  # steps/make_mfcc.sh cuts the regions first
        (work / "segments").write_text((corpus / "segments").read_text())
        _kaldi("extract-segments", "scp:wav.scp", "segments", "ark:regions.ark", cwd=work)
        audio = "ark:regions.ark"
    _kaldi(tool, *feature_opts, audio, "ark:raw.ark", cwd=work)
    _kaldi("compute-cmvn-stats", "--spk2utt=ark:spk2utt", "ark:raw.ark", "ark:cmvn.ark", cwd=work)
    _kaldi("apply-cmvn", *cmvn_opts, "--utt2spk=ark:utt2spk", "ark:cmvn.ark", "ark:raw.ark", "ark:cmvn-applied.ark",
           cwd=work)  # fmt: skip
    _kaldi("add-deltas", *delta_opts, "ark:cmvn-applied.ark", "ark:feats.ark", cwd=work)
    return dict(kaldiio.load_ark(str(work / "feats.ark")))


@pytest.mark.parametrize(
    "features,tool", [("kaldi-mfcc", "compute-mfcc-feats"), ("kaldi-fbank", "compute-fbank-feats")]
)
@pytest.mark.parametrize("norm_vars", [False, True])
@pytest.mark.parametrize("channels", [1, 2])
def test_extracted_frames_are_kaldis(tmp_path, features, tool, norm_vars, channels):
    """The store holds what Kaldi's feature pipeline makes of the same audio (dither 0; within the
    float32 FFT rounding by which kaldi-native-fbank too differs from Kaldi); of 2-channel files,
    what Kaldi makes of channel 0, its default."""
    corpus = write_kaldi_dir(tmp_path / "c", speakers=3, utts_per_speaker=2)
    for wav in (corpus / "wav").glob("*.wav") if channels == 2 else ():
        left, rate = sf.read(wav)
        sf.write(wav, np.stack([left, np.random.default_rng(0).normal(0, 0.1, len(left))], axis=1), rate)
    config = ExtractConfig(
        features=features, dither=0.0, norm_vars=norm_vars, jobs=1, dev_fraction=0, test_fraction=0.3
    )
    extract(corpus, tmp_path / "store", config)
    cmvn = [f"--norm-vars={str(norm_vars).lower()}"]
    kaldi = _kaldi_pipeline(corpus, tmp_path / "kaldi", tool, ["--dither=0"], cmvn, [])
    store = FeatureStore(tmp_path / "store")
    assert sorted(kaldi) == sorted(r.id for r in store.records)
    for rec in store.records:
        np.testing.assert_allclose(store.features(rec), kaldi[rec.id], rtol=1e-2, atol=2e-2)


def _tie(k: int, rate: int = 16000) -> str:
    """A time in seconds, as a decimal, at which j + 0.5 samples fall (in double precision), j >= k."""
    times = (f"{(j + 0.5) / rate:.{d}f}" for j in range(k, k + 100) for d in range(4, 12))
    return next(t for t in times if float(t) * rate % 1 == 0.5)


@pytest.mark.skipif(not (BIN / "extract-segments").is_file(), reason="no extract-segments in ASR_INIT_KALDI_BIN")
def test_segments_regions_give_the_frames_of_what_extract_segments_cuts(tmp_path):
    """A `segments` file with boundaries half-way between two samples and ends up to 0.5 s past
    their recording: extract cuts the samples extract-segments cuts (the frame-level match is
    exact at the sample level below), and its frames are compute-mfcc-feats' of those."""
    from asr_init.corpora.readers import read_kaldi_dir
    from asr_init.features.frontend import audio_blocks

    corpus = write_kaldi_dir(tmp_path / "c", speakers=3, utts_per_speaker=2)
    segments, utt2spk, ctm = [], [], []
    for line in (corpus / "utt2spk").read_text().splitlines():
        rec, spk = line.split()
        n = sf.info(corpus / "wav" / f"{rec}.wav").frames
        regions = [(f"{rec}-a", _tie(1600 + len(ctm)), _tie(8000 + len(ctm))), (f"{rec}-b", "0.5625", n / 16000 + 0.3)]
        for utt, start, end in regions:
            segments.append(f"{utt} {rec} {start} {end}\n")
            length = min(float(end), n / 16000) - float(start) - 0.02
            utt2spk.append(f"{utt} {spk}\n")
            ctm += [f"{utt} 1 0.00 0.10 sil\n", f"{utt} 1 0.10 {length - 0.1:.4f} aa\n"]
    for name, lines in [("segments", segments), ("utt2spk", utt2spk), ("phones.ctm", ctm)]:
        (corpus / name).write_text("".join(lines))
    kaldi = _kaldi_pipeline(corpus, tmp_path / "kaldi", "compute-mfcc-feats", ["--dither=0"], [], [])
    cut = dict(kaldiio.load_ark(str(tmp_path / "kaldi" / "regions.ark")))
    for utt in read_kaldi_dir(corpus).utterances:
        samples = np.concatenate(list(audio_blocks(utt, 16000)))
        np.testing.assert_array_equal(samples * 32768, cut[utt.id][1])
    _store_is_kaldis(corpus, tmp_path / "store", kaldi, 12, test_fraction=0.3)


def _store_is_kaldis(corpus: Path, out: Path, kaldi: dict, count: int, test_fraction: float) -> None:
    """extract (no dither) of `corpus` into `out` gives the `count` utterances of Kaldi's frames `kaldi`."""
    extract(corpus, out, ExtractConfig(dither=0.0, jobs=1, dev_fraction=0, test_fraction=test_fraction))
    store = FeatureStore(out)
    assert sorted(kaldi) == sorted(r.id for r in store.records) and len(kaldi) == count
    for rec in store.records:
        np.testing.assert_allclose(store.features(rec), kaldi[rec.id], rtol=1e-2, atol=2e-2)


@pytest.mark.skipif(not (BIN / "extract-segments").is_file(), reason="no extract-segments in ASR_INIT_KALDI_BIN")
def test_a_segments_channel_gives_the_frames_of_the_channel_extract_segments_cuts(tmp_path):
    """`segments` lines with a fifth field, the channel, of 2-channel recordings holding different
    audio in each: the frames are those of `extract-segments | compute-mfcc-feats` (channel 0 was
    read, whatever the line said)."""
    corpus = write_kaldi_dir(tmp_path / "c", speakers=4, utts_per_speaker=1)
    lines = []
    for k, rec in enumerate(sorted(p.stem for p in (corpus / "wav").glob("*.wav"))):
        audio, rate = sf.read(corpus / "wav" / f"{rec}.wav")
        noise = np.random.default_rng(k).normal(0, 0.1, len(audio))
        sf.write(corpus / "wav" / f"{rec}.wav", np.stack([audio, noise][:: 1 - 2 * (k % 2)], axis=1), rate)
        lines.append(f"{rec} {rec} 0 -1 {k % 2}\n")
    (corpus / "segments").write_text("".join(lines))
    kaldi = _kaldi_pipeline(corpus, tmp_path / "kaldi", "compute-mfcc-feats", ["--dither=0"], [], [])
    _store_is_kaldis(corpus, tmp_path / "store", kaldi, 4, test_fraction=0)


# (start, end) of regions of 1 s recordings, and whether extract-segments keeps them (longer than 0.1 s, a float).
SHORT_REGIONS = [("0.5", "0.6", False), ("0", "0.1", False), ("0.5", "0.6001", True), ("0.95", "-1", False),
                 ("0.95", "1.04", False), ("0.85", "1.4", True), ("0.2", "0.9", True)]  # fmt: skip


def write_short_segments(corpus: Path) -> list[str]:
    """`segments` of SHORT_REGIONS over the data dir's first recording, cut to 1 s; returns the ids kept."""
    rec = sorted(p.stem for p in (corpus / "wav").glob("*.wav"))[0]
    audio, rate = sf.read(corpus / "wav" / f"{rec}.wav")
    sf.write(corpus / "wav" / f"{rec}.wav", audio[:rate], rate)
    lines = [(f"{rec}-{k}", start, end) for k, (start, end, _) in enumerate(SHORT_REGIONS)]
    (corpus / "wav.scp").write_text(f"{rec} wav/{rec}.wav\n")
    (corpus / "segments").write_text("".join(f"{utt} {rec} {start} {end}\n" for utt, start, end in lines))
    (corpus / "utt2spk").write_text("".join(f"{utt} {rec[:4]}\n" for utt, _, _ in lines))
    (corpus / "phones.ctm").write_text("".join(f"{utt} 1 0 0.05 aa\n" for utt, _, _ in lines))
    return [utt for (utt, _, _), (_, _, kept) in zip(lines, SHORT_REGIONS) if kept]


@pytest.mark.skipif(not (BIN / "extract-segments").is_file(), reason="no extract-segments in ASR_INIT_KALDI_BIN")
def test_segments_regions_extract_segments_finds_too_short_are_left_out(tmp_path):
    """Regions shorter than extract-segments' --min-segment-length (0.1 s, compared as Kaldi compares
    it, once an end past the recording is cut at its end) are left out of the store, as Kaldi leaves
    them out: the store holds the utterances, and the frames, of extract-segments | compute-mfcc-feats."""
    corpus = write_kaldi_dir(tmp_path / "c", speakers=1, utts_per_speaker=1)
    kept = write_short_segments(corpus)
    kaldi = _kaldi_pipeline(corpus, tmp_path / "kaldi", "compute-mfcc-feats", ["--dither=0"], [], [])
    assert sorted(kaldi) == sorted(kept)
    _store_is_kaldis(corpus, tmp_path / "store", kaldi, len(kept), test_fraction=0)


@pytest.mark.skipif(not (BIN / "wav-copy").is_file(), reason="no wav-copy in ASR_INIT_KALDI_BIN")
def test_a_wav_archive_wav_copy_wrote_gives_the_frames_of_its_files(tmp_path):
    """`wav-copy scp:wav.scp ark,scp:wavs.ark,wav.scp`: extract reads each recording at its offset
    in the archive, and the store is the one the separate files give, and Kaldi's frames."""
    import shutil

    plain = write_kaldi_dir(tmp_path / "plain", speakers=3, utts_per_speaker=2)
    packed = tmp_path / "packed"
    shutil.copytree(plain, packed)
    lines = (plain / "wav.scp").read_text().splitlines()
    (tmp_path / "files.scp").write_text("".join(f"{k} {(plain / p).resolve()}\n" for k, p in map(str.split, lines)))
    _kaldi("wav-copy", f"scp:{tmp_path / 'files.scp'}", "ark,scp:wavs.ark,wav.scp", cwd=packed)
    shutil.rmtree(packed / "wav")
    assert ":" in (packed / "wav.scp").read_text().split()[1]
    config = ExtractConfig(dither=0.0, jobs=1, dev_fraction=0, test_fraction=0.3)
    stores = [FeatureStore(extract(d, tmp_path / f"{d.name}.store", config) and tmp_path / f"{d.name}.store")
              for d in (plain, packed)]  # fmt: skip
    kaldi = _kaldi_pipeline(packed, tmp_path / "kaldi", "compute-mfcc-feats", ["--dither=0"], [], [])
    assert [r.id for r in stores[0].records] == [r.id for r in stores[1].records] and len(kaldi) == 6
    for a, b in zip(stores[0].records, stores[1].records):
        np.testing.assert_array_equal(stores[0].features(a), stores[1].features(b))
        np.testing.assert_allclose(stores[1].features(b), kaldi[b.id], rtol=1e-2, atol=2e-2)


def test_exported_model_gives_its_frame_accuracy_on_kaldi_made_features(tmp_path):
    """extract -> pretrain -> finetune -> export-kaldi; Kaldi then makes the features from the
    exported conf/mfcc.conf, cmvn_opts and delta_opts and runs nnet-forward with the exported
    transform and network: its decisions are asr-init's, frame for frame."""
    corpus = write_kaldi_dir(tmp_path / "c", speakers=6, utts_per_speaker=3)
    store, dbn, dnn, exp = (tmp_path / name for name in ("store", "dbn", "dnn", "exp"))
    for args in (
        ["extract", str(corpus), "--out", str(store), "--jobs", "1", "--dither", "0"],
        ["pretrain", str(store), "--out", str(dbn), "--layers", "2", "--hidden", "64", "--splice", "3", "--epochs",
         "1", "--batch-size", "64"],
        ["finetune", str(store), "--out", str(dnn), "--dbn", str(dbn), "--max-epochs", "3", "--batch-size", "64"],
        ["export-kaldi", str(dnn), "--out", str(exp)],
    ):  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args[0], result.output)
    conf = (exp / "conf" / "mfcc.conf").resolve()
    kaldi = _kaldi_pipeline(
        corpus,
        tmp_path / "kaldi",
        "compute-mfcc-feats",
        [f"--config={conf}"],
        (exp / "cmvn_opts").read_text().split(),
        (exp / "delta_opts").read_text().split(),
    )
    kaldiio.save_ark(str(tmp_path / "kaldi" / "final.ark"), kaldi)
    _kaldi(
        "nnet-forward",
        f"--feature-transform={(exp / 'final.feature_transform').resolve()}",
        str((exp / "final.nnet").resolve()),
        "ark:final.ark",
        "ark:posteriors.ark",
        cwd=tmp_path / "kaldi",
    )
    posteriors = dict(kaldiio.load_ark(str(tmp_path / "kaldi" / "posteriors.ark")))

    from asr_init.models.dnn import load_model

    model, meta = load_model(dnn)
    from asr_init.features.pipeline import FeaturePipeline

    pipeline = FeaturePipeline.from_dict(meta["pipeline"])
    frames = agree = ours_right = kaldi_right = 0
    data = FeatureStore(store)
    with torch.no_grad():
        for rec in data.records:
            ours = model(pipeline.utterance(np.asarray(data.features(rec)))).argmax(1).numpy()
            theirs = posteriors[rec.id].argmax(1)
            states = np.asarray(data.targets("states", rec))
            frames += len(ours)
            agree += int((ours == theirs).sum())
            ours_right += int((ours == states).sum())
            kaldi_right += int((theirs == states).sum())
    assert agree / frames >= 0.99, (agree, frames)
    assert abs(ours_right - kaldi_right) / frames <= 0.005
    assert ours_right / frames > 0.3  # the model learnt something (15 classes: chance is under 0.2)


def _ranged(scp: Path, rows: dict[str, int]) -> None:
    """feats.scp with the ranges Kaldi's scripts write (utils/data/subsegment_data_dir.sh): one
    running 2 rows past the last (Kaldi allows 3 and stops at the last), the rest whole or ':'."""
    lines = scp.read_text().splitlines()
    ranges = [f"[1:{rows[line.split()[0]] + 1}]" if i == 0 else "[:,0:38]" if i == 1 else "[:]"
              for i, line in enumerate(lines)]  # fmt: skip
    scp.write_text("".join(line + r + "\n" for line, r in zip(lines, ranges)))


@pytest.mark.skipif(not (BIN / "copy-feats").is_file(), reason="needs copy-feats in ASR_INIT_KALDI_BIN")
@pytest.mark.parametrize("method", [*range(1, 8), "ranges"])
def test_imported_frames_are_what_copy_feats_reads(tmp_path, method):
    """import-kaldi of a feats.scp of compressed matrices (copy-feats --compress=true, every
    --compression-method) or with row/column ranges holds, bit for bit, what Kaldi's copy-feats
    reads from the same feats.scp."""
    corpus = write_kaldi_dir(tmp_path / "c", speakers=2, utts_per_speaker=2)
    kaldi = _kaldi_pipeline(corpus, tmp_path / "k", "compute-mfcc-feats", ["--dither=0"], [], [])
    data = tmp_path / "data"
    data.mkdir()
    (data / "utt2spk").write_text((corpus / "utt2spk").read_text())
    compress = ["--compress=true", f"--compression-method={method}"] if method != "ranges" else []
    kaldiio.save_ark(str(tmp_path / "feats.ark"), kaldi)
    _kaldi("copy-feats", *compress, "ark:feats.ark", f"ark,scp:{data / 'c.ark'},{data / 'feats.scp'}", cwd=tmp_path)
    if method == "ranges":
        _ranged(data / "feats.scp", {utt: len(x) for utt, x in kaldi.items()})
    _kaldi("copy-feats", f"scp:{data / 'feats.scp'}", "ark:read.ark", cwd=tmp_path)
    read = dict(kaldiio.load_ark(str(tmp_path / "read.ark")))
    kaldiio.save_ark(str(tmp_path / "pdf.ark"), {utt: np.arange(len(x), dtype=np.int32) % 3 for utt, x in read.items()})
    _imported_as(data, tmp_path, ["--no-cmvn"], read)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("binary", [True, False])
def test_nnet_forward_reads_every_activations_export(tmp_path, activation, binary):
    """Kaldi's nnet-forward on an exported model (a ReLU one as <ParametricRelu> alpha 1, beta 0)
    gives asr-init's posteriors. (Compared as probabilities: nnet-forward --apply-log takes the
    log of p + 1e-20, which moves the log of a probability under 1e-18 by more than float error.)"""
    from models.test_nnet1 import make_model, model_log_posteriors

    from asr_init.models.export_kaldi import export_kaldi

    model = make_model(tmp_path / "model", activation)
    export_kaldi(model, tmp_path / "exp", binary=binary)
    feats = {f"u{i}": np.random.default_rng(i).normal(0, 2, (30 + i, 13)).astype(np.float32) for i in range(3)}
    kaldiio.save_ark(str(tmp_path / "feats.ark"), feats)
    _kaldi("nnet-forward", f"--feature-transform={tmp_path / 'exp' / 'final.feature_transform'}",
           str(tmp_path / "exp" / "final.nnet"), "ark:feats.ark", "ark:out.ark", cwd=tmp_path)  # fmt: skip
    theirs = dict(kaldiio.load_ark(str(tmp_path / "out.ark")))
    for utt, x in feats.items():
        np.testing.assert_allclose(theirs[utt], np.exp(model_log_posteriors(model, x)), atol=2e-6)


def test_nnet_forward_passes_through_the_dropout_the_import_leaves_out(tmp_path):
    """The <Dropout> components (both of Kaldi's spellings of the rate) that the import skips are
    ones nnet-forward reads and passes through: its posteriors are the network's without them."""
    import re

    from models.test_nnet1 import make_model

    from asr_init.models.export_kaldi import export_kaldi

    export_kaldi(make_model(tmp_path / "model"), tmp_path / "exp", binary=False)
    text = (tmp_path / "exp" / "final.nnet").read_text()
    rates = iter(["<DropoutRate> 0.2", "<DropoutRetention> 0.9"])
    dropped = re.sub(r"<Sigmoid> (\d+) \d+ \n<!EndOfComponent>", lambda m: f"{m[0]}\n<Dropout> {m[1]} {m[1]} "
                     f"{next(rates)} <!EndOfComponent>", text)  # fmt: skip
    (tmp_path / "exp" / "dropout.nnet").write_text(dropped)
    feats = {"u": np.random.default_rng(0).normal(0, 2, (40, 13)).astype(np.float32)}
    kaldiio.save_ark(str(tmp_path / "feats.ark"), feats)
    for name in ("final", "dropout"):
        _kaldi("nnet-forward", f"--feature-transform={tmp_path / 'exp' / 'final.feature_transform'}",
               str(tmp_path / "exp" / f"{name}.nnet"), "ark:feats.ark", f"ark:{name}.ark", cwd=tmp_path)  # fmt: skip
    out = {name: dict(kaldiio.load_ark(str(tmp_path / f"{name}.ark")))["u"] for name in ("final", "dropout")}
    assert "<Dropout>" in dropped and np.array_equal(out["final"], out["dropout"])


def _speaker_dir(tmp_path: Path, feats: dict[str, np.ndarray], text: bool) -> Path:
    """A data dir whose feats.scp and cmvn.scp copy-feats and compute-cmvn-stats wrote (binary,
    or as ark,t archives), its utterances "SPEAKER-N"; also per-utterance stats in utt.ark."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in feats))
    speakers = sorted({u.split("-")[0] for u in feats})
    (data / "spk2utt").write_text("".join(f"{s} {' '.join(u for u in feats if u.startswith(s + '-'))}\n"
                                          for s in speakers))  # fmt: skip
    kaldiio.save_ark(str(tmp_path / "in.ark"), feats)
    t = ",t" if text else ""
    _kaldi("copy-feats", "ark:in.ark", f"ark{t},scp:{tmp_path / 'feats.ark'},{data / 'feats.scp'}", cwd=tmp_path)
    _kaldi("compute-cmvn-stats", f"--spk2utt=ark:{data / 'spk2utt'}", f"scp:{data / 'feats.scp'}",
           f"ark{t},scp:{tmp_path / 'cmvn.ark'},{data / 'cmvn.scp'}", cwd=tmp_path)  # fmt: skip
    utt = f"ark{t},scp:{tmp_path / 'utt.ark'},{tmp_path / 'utt.scp'}"
    _kaldi("compute-cmvn-stats", f"scp:{data / 'feats.scp'}", utt, cwd=tmp_path)
    kaldiio.save_ark(str(tmp_path / "pdf.ark"), {u: np.arange(len(x), dtype=np.int32) % 3 for u, x in feats.items()})
    return data


@pytest.mark.parametrize("text", [False, True])
@pytest.mark.parametrize("keyed_by", ["speaker", "utterance"])
@pytest.mark.parametrize("norm_vars", [False, True])
def test_imported_cmvn_is_what_apply_cmvn_makes(tmp_path, norm_vars, keyed_by, text):
    """import-kaldi of a data dir whose cmvn.scp compute-cmvn-stats wrote (per speaker, or per
    utterance as apply-cmvn without --utt2spk reads it; binary or text) holds what apply-cmvn makes
    of its feats.scp, bit for bit, also where a dimension's mean is thousands of times
    its spread: compute-cmvn-stats writes double sums, and sum(x^2)/n - mean^2 of the values in
    float would be off by more than the variance."""
    rng = np.random.default_rng(0)
    feats = {f"s{s}-{u}": (np.array([1000.0, 30.0, 0.0]) + rng.normal(0, [0.5, 1, 1], (1500, 3))).astype(np.float32)
             for s in range(2) for u in range(2)}  # fmt: skip
    data = _speaker_dir(tmp_path, feats, text)
    if keyed_by == "utterance":
        (data / "cmvn.scp").write_text((tmp_path / "utt.scp").read_text())
    nv = f"--norm-vars={str(norm_vars).lower()}"
    utt2spk = [f"--utt2spk=ark:{data / 'utt2spk'}"] if keyed_by == "speaker" else []
    _kaldi("apply-cmvn", nv, *utt2spk, f"scp:{data / 'cmvn.scp'}", f"scp:{data / 'feats.scp'}", "ark:applied.ark",
           cwd=tmp_path)  # fmt: skip
    applied = dict(kaldiio.load_ark(str(tmp_path / "applied.ark")))
    _imported_as(data, tmp_path, ["--cmvn", *(["--norm-vars"] if norm_vars else [])], applied)


def _imported_as(data, tmp_path, options: list[str], frames: dict) -> None:
    """import-kaldi of DATA with TMP/pdf.ark and `options` stores exactly `frames` (what Kaldi's tool made)."""
    args = ["import-kaldi", str(data), "--ali", str(tmp_path / "pdf.ark"), "--dev-fraction", "0.5", *options]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "store")])
    assert result.exit_code == 0, result.output
    store = FeatureStore(tmp_path / "store")
    assert sorted(r.id for r in store.records) == sorted(frames)
    for rec in store.records:
        np.testing.assert_array_equal(store.features(rec), frames[rec.id])


@pytest.mark.skipif(not (BIN / "copy-feats").is_file(), reason="needs copy-feats in ASR_INIT_KALDI_BIN")
def test_a_text_archives_one_frame_utterances_are_imported(tmp_path):
    """import-kaldi of a feats.scp into a copy-feats ark,t: archive holding one-frame utterances
    (one of whole numbers) has the frames copy-feats reads from it."""
    rng = np.random.default_rng(0)
    feats = {"a-1": rng.normal(size=(1, 3)), "a-2": rng.normal(size=(5, 3)), "b-1": np.array([[1.0, 2.0, 3.0]]),
             "b-2": rng.normal(size=(4, 3))}  # fmt: skip
    kaldiio.save_ark(str(tmp_path / "in.ark"), {u: x.astype(np.float32) for u, x in feats.items()})
    data = tmp_path / "data"
    data.mkdir()
    (data / "utt2spk").write_text("".join(f"{u} {u[0]}\n" for u in feats))
    _kaldi("copy-feats", "ark:in.ark", f"ark,t,scp:{tmp_path / 't.ark'},{data / 'feats.scp'}", cwd=tmp_path)
    _kaldi("copy-feats", f"scp:{data / 'feats.scp'}", "ark:read.ark", cwd=tmp_path)
    read = dict(kaldiio.load_ark(str(tmp_path / "read.ark")))
    kaldiio.save_ark(str(tmp_path / "pdf.ark"), {u: np.zeros(len(x), dtype=np.int32) for u, x in feats.items()})
    _imported_as(data, tmp_path, ["--no-cmvn"], read)


@pytest.mark.skipif(not (BIN / "nnet-initialize").is_file(), reason="needs nnet-initialize in ASR_INIT_KALDI_BIN")
def test_an_rbm_given_as_a_dbn_is_refused_naming_its_conversion(tmp_path):
    """pretrain_dbn.sh leaves each N.rbm beside the N.dbn it converts it to; the .rbm given to
    --dbn is one error line that names rbm-convert-to-nnet and the .dbn."""
    store = write_kaldi_features(tmp_path / "data", speakers=2)
    kaldiio.save_ark(str(tmp_path / "pdf.ark"), store["pdfs"])
    result = runner.invoke(app, ["import-kaldi", str(tmp_path / "data"), "--ali", str(tmp_path / "pdf.ark"),
                                 "--dev-fraction", "0.5", "--out", str(tmp_path / "store")])  # fmt: skip
    assert result.exit_code == 0, result.output
    (tmp_path / "rbm.proto").write_text("<Rbm> <InputDim> 13 <OutputDim> 8 <VisibleType> gauss <HiddenType> bern\n")
    _kaldi("nnet-initialize", "rbm.proto", "1.rbm", cwd=tmp_path)
    result = runner.invoke(app, ["finetune", str(tmp_path / "store"), "--dbn", str(tmp_path / "1.rbm"), "--out",
                                 str(tmp_path / "dnn")])  # fmt: skip
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and text.count("error:") == 1, result.output
    assert "<Rbm>" in text and "rbm-convert-to-nnet" in text and ".dbn" in text, result.output
