"""The extract stage: store contents, normalisation, splits, determinism, bad input."""

import fcntl
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import write_kaldi_dir
from typer.testing import CliRunner

from asr_init.cli import app
from asr_init.config import DATA_DIR
from asr_init.corpora.readers import read_label_list
from asr_init.errors import UserError
from asr_init.features.config import ExtractConfig
from asr_init.features.extract import extract
from asr_init.features.store import FeatureStore
from asr_init.folders import lock_path

runner = CliRunner()


def _text(result) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def test_store_contents(tiny_store):
    store = FeatureStore(tiny_store)
    assert store.dim == 39
    assert store.phones == ["aa", "iy", "m", "s", "sil"]
    assert len(store.states) == 15 and store.states[3] == "iy_0"
    summary = json.loads((tiny_store / "summary.json").read_text())
    assert summary["utterances"] == 24
    for rec in store.records:
        feats, phones, states = store.features(rec), store.targets("phones", rec), store.targets("states", rec)
        assert feats.shape == (rec.frames, 39) and phones.shape == states.shape == (rec.frames,)
        assert isinstance(feats, np.memmap)
        assert rec.transcript[0] == "sil" and rec.transcript[-1] == "sil"
        assert rec.frames == 1 + (int(round(rec.duration * 16000)) - 400) // 160  # Kaldi's snip_edges


def _by_speaker(store: FeatureStore) -> dict[str, np.ndarray]:
    speakers = sorted({r.speaker for r in store.records})
    return {s: np.concatenate([store.features(r) for r in store.records if r.speaker == s]) for s in speakers}


def test_per_speaker_cmvn_is_kaldis_means_only_by_default(tiny_store):
    """apply-cmvn's default: each speaker's statics have mean 0 and keep their spread."""
    store = FeatureStore(tiny_store)
    for x in _by_speaker(store).values():
        np.testing.assert_allclose(x[:, :13].astype(np.float64).mean(0), 0, atol=1e-3)
        assert x[:, 1:13].std(0).max() > 3  # cepstra keep their scale: not variance-normalised
    assert store.feature_config.cmvn == "speaker" and store.feature_config.norm_vars is False


def test_norm_vars_normalises_each_speakers_variance_too(kaldi_dir, tmp_path):
    summary = extract(kaldi_dir, tmp_path / "s", ExtractConfig(jobs=1, norm_vars=True))
    store = FeatureStore(tmp_path / "s")
    assert summary["utterances"] == 15 and store.feature_config.norm_vars is True
    for x in _by_speaker(store).values():
        np.testing.assert_allclose(x[:, :13].astype(np.float64).mean(0), 0, atol=1e-3)
        np.testing.assert_allclose(x[:, :13].astype(np.float64).std(0), 1, atol=1e-3)


def test_the_summary_table_lists_train_dev_test_as_extracted_and_as_reread(tiny_store):
    """A re-run of a finished extract prints its summary.json, whose keys are sorted by name."""
    from rich.console import Console

    from asr_init.features.extract import summary_table

    console = Console(width=100, record=True)
    console.print(summary_table(json.loads((tiny_store / "summary.json").read_text())))
    rows = [
        line.split()[1]
        for line in console.export_text().splitlines()
        if line.split()[1:2] in (["train"], ["dev"], ["test"])
    ]
    assert rows == ["train", "dev", "test"]


def test_splits_are_speaker_disjoint(tiny_store):
    store = FeatureStore(tiny_store)
    by_split = {s: {r.speaker for r in store.split(s)} for s in ("train", "dev", "test")}
    assert all(by_split.values())
    assert (
        not (by_split["train"] & by_split["dev"])
        and not (by_split["train"] & by_split["test"])
        and not (by_split["dev"] & by_split["test"])
    )


def test_explicit_speaker_lists(kaldi_dir, tmp_path):
    summary = extract(
        kaldi_dir, tmp_path / "s", ExtractConfig(jobs=1, dev_speakers=["spk1"], test_speakers=["spk2", "spk3"])
    )
    assert summary["splits"]["dev"]["speakers"] == 1 and summary["splits"]["test"]["speakers"] == 2


def test_frame_targets_in_store_follow_ctm(kaldi_dir, tmp_path):
    extract(kaldi_dir, tmp_path / "s", ExtractConfig(jobs=1))
    store = FeatureStore(tmp_path / "s")
    rec = next(r for r in store.records if r.id == "spk0-utt0")
    phones = np.asarray(store.targets("phones", rec))
    ctm = [ln.split() for ln in (kaldi_dir / "phones.ctm").read_text().splitlines() if ln.startswith("spk0-utt0 ")]
    for prev, row in zip(ctm, ctm[1:]):
        if prev[4] == row[4]:
            continue
        t, lab = float(row[2]), store.phones.index(row[4])
        k = round(t / 0.01)
        assert lab in phones[max(k - 1, 0) : k + 2], f"boundary at {t}s not at frame {k}+-1"


def test_silence_a_ctm_leaves_out_as_gaps_is_in_the_transcript_as_in_the_frames(kaldi_dir, tmp_path):
    """Frames outside every segment are silence, and so is the reference that PER is counted
    against: a CTM without its 'sil' lines gives the store (frames, labels, transcripts) of the CTM with them."""
    import shutil

    shutil.copytree(kaldi_dir, tmp_path / "gaps")
    ctm = tmp_path / "gaps" / "phones.ctm"
    ctm.write_text("".join(ln + "\n" for ln in ctm.read_text().splitlines() if not ln.endswith(" sil")))
    (tmp_path / "phones.txt").write_text("sil\naa\niy\ns\nm\n")  # one phone set for both
    for name, corpus in (("full", kaldi_dir), ("gaps", tmp_path / "gaps")):
        extract(corpus, tmp_path / f"s-{name}", ExtractConfig(jobs=1, phones=str(tmp_path / "phones.txt")))
    full, gaps = (FeatureStore(tmp_path / f"s-{name}") for name in ("full", "gaps"))
    assert [r.transcript for r in gaps.records] == [r.transcript for r in full.records]
    assert all(r.transcript[0] == r.transcript[-1] == "sil" for r in gaps.records)
    for a, b in zip(full.records, gaps.records):
        np.testing.assert_array_equal(full.targets("phones", a), gaps.targets("phones", b))


def test_determinism(kaldi_dir, tmp_path):
    """The same store twice, and with --jobs 1 as with 2 (in this process, BLAS's threads summed the
    mel products in another order: frames 2.3e-5 apart)."""
    for name, jobs in (("a", 2), ("b", 1)):
        extract(kaldi_dir, tmp_path / name, ExtractConfig(jobs=jobs, shard_frames=500))
    for f in sorted((tmp_path / "a" / "shards").iterdir()):
        np.testing.assert_array_equal(np.load(f), np.load(tmp_path / "b" / "shards" / f.name))
    assert (tmp_path / "a/manifest.jsonl").read_text() == (tmp_path / "b/manifest.jsonl").read_text()
    assert len(list((tmp_path / "a" / "shards").glob("feats-*.npy"))) > 1


@pytest.mark.parametrize("layout", ["kaldi", "fsdd"])
def test_a_corpus_in_a_folder_whose_name_is_not_utf8_is_extracted(tmp_path, layout):
    """Audio under a folder name that is bytes, not UTF-8 (as a Linux file system may hold), opens
    as any other: soundfile was given the name as text, which it could not encode (a traceback)."""
    from conftest import write_fake_fsdd

    made = write_kaldi_dir(tmp_path / "c", speakers=4, utts_per_speaker=1) if layout == "kaldi" else (
        write_fake_fsdd(tmp_path / "c", speakers=("jackson", "theo", "lucas")))  # fmt: skip
    folder = tmp_path / os.fsdecode(b"bad\xff\xfedir")
    folder.mkdir()
    root = (tmp_path / "c").rename(folder / "c") / made.relative_to(tmp_path / "c")
    result = runner.invoke(app, ["extract", str(root), "--out", str(tmp_path / "s"), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "0 utterances skipped" in _text(result)
    assert FeatureStore(tmp_path / "s").records


def test_cli_refuses_existing_output_unless_force(kaldi_dir, tmp_path):
    out = tmp_path / "s"
    assert runner.invoke(app, ["extract", str(kaldi_dir), "--out", str(out), "--jobs", "1"]).exit_code == 0
    again = runner.invoke(app, ["extract", str(kaldi_dir), "--out", str(out), "--jobs", "1"])
    assert again.exit_code == 0 and "already complete" in _text(again)
    other = runner.invoke(app, ["extract", str(kaldi_dir), "--out", str(out), "--jobs", "1", "--cmvn", "utterance"])
    assert other.exit_code == 1 and "--force" in _text(other)
    assert "holds a feature store made with other settings (cmvn: 'speaker' then, 'utterance' now)" in _text(other)
    args = ["extract", str(kaldi_dir), "--out", str(out), "--jobs", "1", "--cmvn", "utterance", "--force"]
    with open(lock_path(out), "w") as held:  # a pretrain or finetune running on the store holds it
        fcntl.flock(held, fcntl.LOCK_SH)
        before = (out / "config.json").read_text()
        locked = runner.invoke(app, args)
    assert locked.exit_code == 1 and "is being read by another asr-init run" in _text(locked), locked.output
    assert [ln for ln in locked.output.splitlines() if ln.startswith("error:")] and "Traceback" not in locked.output
    assert (out / "config.json").read_text() == before
    forced = runner.invoke(app, args)
    assert forced.exit_code == 0
    assert json.loads((out / "config.json").read_text())["features"]["cmvn"] == "utterance"


# --- bad input: one clear message naming the file, exit 1, no store written ------------


def _break_missing(d):
    os.remove(d / "wav" / "spk1-utt1.wav")
    return "spk1-utt1.wav", "does not exist"


def _break_unreadable(d):
    (d / "wav" / "spk1-utt1.wav").write_bytes(b"this is not audio at all" * 10)
    return "spk1-utt1.wav", "cannot read audio"


def _break_empty(d):
    sf.write(d / "wav" / "spk1-utt1.wav", np.zeros(0, np.float32), 16000)
    return "spk1-utt1.wav", "empty"


def _break_past_end(d):
    with open(d / "phones.ctm", "a") as fh:
        fh.write("spk1-utt1 1 30.0 0.5 aa\n")
    return "phones.ctm", "past the end of its audio"


def _break_overlap(d):
    lines = (d / "phones.ctm").read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("spk1-utt1 ")) + 2
    utt, ch, start, dur, lab = lines[i].split()
    lines[i] = f"{utt} {ch} {float(start) - 0.05:.4f} {dur} {lab}"
    (d / "phones.ctm").write_text("\n".join(lines) + "\n")
    return "phones.ctm", "overlaps or precedes"


def _break_unsorted(d):
    lines = (d / "phones.ctm").read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("spk1-utt1 ")) + 1
    lines[i], lines[i + 2] = lines[i + 2], lines[i]
    (d / "phones.ctm").write_text("\n".join(lines) + "\n")
    return "phones.ctm", "overlaps or precedes"


def _break_speaker_without_utterances(d):
    (d / "spk2utt").write_text("spk0 spk0-utt0 spk0-utt1 spk0-utt2\nspk9\n")
    return "spk2utt", "speaker spk9 has no utterances"


def _break_piped(d):
    (d / "wav.scp").write_text((d / "wav.scp").read_text() + "x sox a.wav -t wav - |\n")
    return "wav.scp", "piped command"


def test_a_store_of_the_embedded_corpus_made_by_another_asr_init_install_is_found_complete(espeak_corpus, tmp_path):
    """The store's settings named the phone set by where asr-init was installed: the store (the
    bench's cache) made by another checkout or version was refused as made with other settings."""
    out = tmp_path / "store"
    extract(espeak_corpus, out, ExtractConfig(jobs=1))
    record = json.loads((out / "config.json").read_text())
    assert record["extract"]["phones"] == "data/phones39.txt"
    record["extract"]["phones"] = "/elsewhere/asr-init/data/phones39.txt"  # as an older asr-init there wrote it
    (out / "config.json").write_text(json.dumps(record))
    stamp = (out / "summary.json").stat().st_mtime_ns
    extract(espeak_corpus, out, ExtractConfig(jobs=1))
    assert (out / "summary.json").stat().st_mtime_ns == stamp


def test_a_corpus_changed_in_place_is_refused_not_found_complete(kaldi_dir, espeak_corpus, tmp_path):
    """The store records its corpus's identity: audio recorded again or a label edited under the same
    path is refused, where it was 'already complete' with stale features; the embedded corpus is
    known by its generator's settings, so one whose files were written again is still the same."""
    import shutil

    corpus, out = kaldi_dir, tmp_path / "s"
    args = ["extract", str(corpus), "--out", str(out), "--jobs", "1"]
    assert runner.invoke(app, args).exit_code == 0
    assert "already complete" in _text(runner.invoke(app, args))
    wav = corpus / "wav" / "spk0-utt0.wav"
    audio, rate = sf.read(wav)
    sf.write(wav, audio[::-1], rate)  # recorded again: the same length, another recording
    changed = runner.invoke(app, args)
    assert changed.exit_code == 1 and "the corpus changed since" in _text(changed), changed.output
    assert (
        "--force" in _text(changed) and [ln.startswith("error:") for ln in changed.output.splitlines()].count(True) == 1
    )
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    ctm = (corpus / "phones.ctm").read_text().splitlines()
    first = ctm[0].split()
    ctm[0] = " ".join([*first[:4], "sil" if first[4] != "sil" else "a"])
    (corpus / "phones.ctm").write_text("\n".join(ctm) + "\n")
    assert "the corpus changed since" in _text(runner.invoke(app, args))
    embedded = tmp_path / "embedded"
    shutil.copytree(espeak_corpus, embedded)
    assert runner.invoke(app, ["extract", str(embedded), "--out", str(tmp_path / "e"), "--jobs", "2"]).exit_code == 0
    for wav in (embedded / "wav").iterdir():
        os.utime(wav, ns=(wav.stat().st_atime_ns, wav.stat().st_mtime_ns + 10**9))  # as synth made again
    again = runner.invoke(app, ["extract", str(embedded), "--out", str(tmp_path / "e"), "--jobs", "2"])
    assert again.exit_code == 0 and "already complete" in _text(again), again.output
    audio, rate = sf.read(wav)
    sf.write(wav, audio[::-1], rate)  # its files are known by content: the same size is not the same
    edited = runner.invoke(app, ["extract", str(embedded), "--out", str(tmp_path / "e"), "--jobs", "2"])
    assert edited.exit_code == 1 and "the corpus changed since" in _text(edited), edited.output
    scp = corpus / "wav.scp"
    scp.write_text(scp.read_text().replace("wav/spk0-utt0.wav", "wav/spk0-utt0\0.wav"))  # a name no file has
    nul = runner.invoke(app, [*args, "--force"])
    assert nul.exit_code == 1 and nul.output.startswith("error:") and "does not exist" in _text(nul), nul.output


@pytest.mark.parametrize(
    "breaker",
    [
        _break_missing,
        _break_unreadable,
        _break_empty,
        _break_past_end,
        _break_overlap,
        _break_unsorted,
        _break_speaker_without_utterances,
        _break_piped,
    ],
)
def test_bad_input_gives_clear_error_and_no_store(tmp_path, breaker):
    d = write_kaldi_dir(tmp_path / "c", speakers=4, utts_per_speaker=2)
    fname, msg = breaker(d)
    out = tmp_path / "store"
    result = runner.invoke(app, ["extract", str(d), "--out", str(out), "--jobs", "1"])
    assert result.exit_code == 1
    text = _text(result)
    assert fname in text and msg in text, text
    assert not out.exists() and not list(tmp_path.glob("store.tmp-*"))


def test_bad_input_keeps_existing_store(tmp_path):
    d = write_kaldi_dir(tmp_path / "c", speakers=4, utts_per_speaker=2)
    out = tmp_path / "store"
    extract(d, out, ExtractConfig(jobs=1))
    before = (out / "manifest.jsonl").read_text()
    _break_missing(d)
    result = runner.invoke(app, ["extract", str(d), "--out", str(out), "--jobs", "1", "--force"])
    assert result.exit_code == 1
    assert (out / "manifest.jsonl").read_text() == before


def test_skip_bad_reports_and_continues(tmp_path):
    d = write_kaldi_dir(tmp_path / "c", speakers=4, utts_per_speaker=2)
    _break_missing(d)
    summary = extract(d, tmp_path / "s", ExtractConfig(jobs=1, skip_bad=True))
    assert summary["utterances"] == 7
    assert len(summary["skipped"]) == 1 and "spk1-utt1.wav" in summary["skipped"][0]


def test_label_outside_phone_list(tmp_path):
    d = write_kaldi_dir(tmp_path / "c", speakers=4, utts_per_speaker=2)
    phones = tmp_path / "phones.txt"
    phones.write_text("sil\naa\niy\ns\n")  # no 'm'
    result = runner.invoke(app, ["extract", str(d), "--out", str(tmp_path / "s"), "--phones", str(phones)])
    assert result.exit_code == 1
    assert "has label 'm', which is not in" in _text(result)


def test_a_synth_folder_has_the_embedded_corpus_phone_set(espeak_corpus, tmp_path):
    """A folder `asr-init synth` wrote (it holds corpus.json) is the embedded corpus: without --phones
    its store has the fixed 39-phone set in data/phones39.txt's order, as `extract --hours` gives, and
    records it as --phones (it had the training alignments' labels, sorted, or refused a dev label
    they lacked)."""
    out = tmp_path / "s"
    result = runner.invoke(app, ["extract", str(espeak_corpus), "--out", str(out), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    phones = [line.split()[1] for line in (out / "phones.txt").read_text().splitlines()]
    assert phones == list(read_label_list(DATA_DIR / "phones39.txt"))
    assert json.loads((out / "config.json").read_text())["extract"]["phones"] == "data/phones39.txt"


def test_a_corpus_json_that_synth_did_not_write_is_a_corpus_of_its_own(kaldi_dir, tmp_path):
    """Only synth's corpus.json (its generator) makes a folder the embedded corpus: a Kaldi data dir
    with a corpus.json of its own keeps its labels and its layout."""
    import shutil

    shutil.copytree(kaldi_dir, tmp_path / "mine")
    (tmp_path / "mine" / "corpus.json").write_text('{"name": "my corpus", "hours": 0.1}')
    summary = extract(tmp_path / "mine", tmp_path / "s", ExtractConfig(jobs=1))
    assert summary["layout"] == "kaldi"
    assert json.loads((tmp_path / "s" / "config.json").read_text())["extract"]["phones"] is None


def test_unknown_speaker_in_list(kaldi_dir, tmp_path):
    result = runner.invoke(app, ["extract", str(kaldi_dir), "--out", str(tmp_path / "s"), "--test-speakers", "nobody"])
    assert result.exit_code == 1 and "speaker nobody has no utterances" in _text(result)


def test_unknown_layout_cli(tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["extract", str(tmp_path / "empty"), "--out", str(tmp_path / "s")])
    assert result.exit_code == 1 and "unknown corpus layout" in _text(result)


def test_phone_map_folds_labels(tmp_path):
    d = write_kaldi_dir(tmp_path / "c", speakers=4, utts_per_speaker=2)
    fold = tmp_path / "fold.tsv"
    fold.write_text("sil sil\naa V\niy V\ns C\nm C\n")
    extract(d, tmp_path / "s", ExtractConfig(jobs=1, phone_map=str(fold)))
    store = FeatureStore(tmp_path / "s")
    assert store.phones == ["sil", "V", "C"]
    assert set(store.records[0].transcript) <= {"sil", "V", "C"}
    fold.write_text("sil sil\naa V\niy V\ns C\n")  # no 'm'
    result = runner.invoke(app, ["extract", str(d), "--out", str(tmp_path / "t"), "--phone-map", str(fold)])
    assert result.exit_code == 1 and "label 'm', which is not in the folding map" in _text(result)


# --- sample rate and mel filterbank -----------------------------------------------------


def _rewrite_at(path, sr: int) -> None:
    """Resample one audio file of a test corpus to `sr` in place (same speech, another rate)."""
    import librosa

    audio, rate = sf.read(path, dtype="float32")
    sf.write(path, librosa.resample(audio, orig_sr=rate, target_sr=sr, res_type="soxr_hq"), sr)


def _band_db(audio: np.ndarray, sr: int, high: float, bands: int = 23) -> np.ndarray:
    """Long-term power of each of Kaldi's mel bands (HTK's mel scale, unnormalised triangles) in dB
    below the strongest, computed with librosa directly (independently of asr_init)."""
    import librosa

    win = round(sr * 0.025)
    mel = librosa.feature.melspectrogram(
        y=audio,
        sr=sr,
        n_fft=1 << (win - 1).bit_length(),
        hop_length=round(sr * 0.01),
        win_length=win,
        n_mels=bands,
        fmin=20.0,
        fmax=high,
        htk=True,
        norm=None,
    )
    power = mel.mean(axis=1)
    return 10 * np.log10(power / power.max())


def test_8khz_corpus_stays_at_8khz_with_every_mel_band_filled(tmp_path):
    from conftest import kaldi_native_features

    d = write_kaldi_dir(tmp_path / "c", speakers=4, utts_per_speaker=2, sr=8000)
    summary = extract(d, tmp_path / "s", ExtractConfig(jobs=1, cmvn="none", dither=0.0))
    assert summary["sample_rate"] == 8000 and summary["low_freq"] == 20.0 and summary["high_freq"] == 4000.0
    assert summary["source_rates"] == {"8000": 8} and summary["resampled_utterances"] == 0
    features = json.loads((tmp_path / "s" / "config.json").read_text())["features"]
    assert (features["sample_rate"], features["low_freq"], features["high_freq"]) == (8000, 20.0, 4000.0)
    store = FeatureStore(tmp_path / "s")
    assert store.feature_config.sample_rate == 8000 and store.feature_config.fft_size == 256
    # Every band carries signal: within 60 dB of the strongest over the whole store ...
    assert summary["empty_mel_bands"] == [] and len(summary["mel_band_db"]) == 23
    assert min(summary["mel_band_db"]) > -50
    # ... and, recomputed from the audio of one utterance, with the store's frames being Kaldi's
    # MFCCs of exactly these bands (cmvn none, dither 0: the store holds compute-mfcc-feats' frames).
    rec = next(r for r in store.records if r.id == "spk0-utt0")
    audio, sr = sf.read(d / "wav" / "spk0-utt0.wav", dtype="float32")
    assert sr == 8000 and rec.frames == 1 + (len(audio) - 200) // 80
    assert _band_db(audio, 8000, 4000.0).min() > -60
    reference = kaldi_native_features(audio, store.feature_config)
    np.testing.assert_allclose(store.features(rec)[:, :13], reference, rtol=1e-2, atol=2e-2)


def test_upsampling_8khz_audio_empties_the_bands_above_4khz_and_warns_once(tmp_path):
    import librosa

    from asr_init.features.frontend import FeatureConfig, mel_band_edges

    d = write_kaldi_dir(tmp_path / "c", speakers=4, utts_per_speaker=2, sr=8000)
    result = runner.invoke(
        app, ["extract", str(d), "--out", str(tmp_path / "s"), "--jobs", "1", "--sample-rate", "16000"]
    )
    assert result.exit_code == 0, result.output
    text = _text(result)
    assert text.count("are upsampled") == 1
    assert (
        "8 of 8 recordings (8000 Hz) are upsampled to 16000 Hz, and their mel bands above 4000 Hz hold no signal"
        in text
    )
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["sample_rate"] == 16000 and summary["resampled_utterances"] == 8
    # Exactly the bands above the audio's own 4 kHz Nyquist frequency are empty: bands 20-23 wholly,
    # band 19 (3966-5043 Hz) all but the first 34 Hz of its rising edge.
    edges = mel_band_edges(FeatureConfig(sample_rate=16000))
    above = [k + 1 for k in range(23) if edges[k] >= 3950]
    assert len(above) == 5 and summary["empty_mel_bands"] == above
    assert all(summary["mel_band_db"][k - 1] < -60 for k in above)
    assert f"5 of 23 mel bands (bands {', '.join(map(str, above))}" in text
    # The same criterion, computed independently, finds them empty in the audio too.
    audio, _ = sf.read(d / "wav" / "spk0-utt0.wav", dtype="float32")
    up = librosa.resample(audio, orig_sr=8000, target_sr=16000, res_type="soxr_hq")
    assert [k + 1 for k, v in enumerate(_band_db(up, 16000, 8000.0)) if v < -60] == above


@pytest.mark.parametrize("majority, minority, upsampled", [(8000, 16000, False), (16000, 8000, True)])
def test_mixed_rates_resampled_to_the_majority_rate(tmp_path, majority, minority, upsampled):
    d = write_kaldi_dir(tmp_path / "c", speakers=4, utts_per_speaker=3, sr=majority)
    for utt in ("spk0-utt1", "spk2-utt0", "spk3-utt2"):
        _rewrite_at(d / "wav" / f"{utt}.wav", minority)
    result = runner.invoke(app, ["extract", str(d), "--out", str(tmp_path / "s"), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["sample_rate"] == majority
    assert summary["source_rates"] == {str(majority): 9, str(minority): 3} and summary["resampled_utterances"] == 3
    assert f"3 resampled (recordings by rate in Hz: {min(majority, minority)}: " in _text(result)
    assert ("3 of 12 recordings (8000 Hz) are upsampled to 16000 Hz" in _text(result)) == upsampled
    assert summary["empty_mel_bands"] == []  # 3 upsampled files of 12 still leave signal in every band
    store = FeatureStore(tmp_path / "s")
    for rec in store.records:  # every utterance framed at the store's rate
        assert rec.frames == 1 + (int(round(rec.duration * majority)) - majority // 40) // (majority // 100)


def test_a_file_below_the_lowest_rate_stops_extract_or_is_skipped_not_upsampled(tmp_path):
    d = write_kaldi_dir(tmp_path / "c", speakers=4, utts_per_speaker=1)
    sf.write(d / "wav" / "spk1-utt0.wav", np.zeros(100, np.float32), 1)  # "100 s" at 1 Hz
    message = f"{d}/wav/spk1-utt0.wav: audio file of utterance spk1-utt0 is at 1 Hz, below the lowest rate"
    result = runner.invoke(app, ["extract", str(d), "--out", str(tmp_path / "s"), "--jobs", "1"])
    assert result.exit_code == 1 and message in _text(result), result.output
    assert not (tmp_path / "s").exists()
    result = runner.invoke(app, ["extract", str(d), "--out", str(tmp_path / "s"), "--jobs", "1", "--skip-bad"])
    assert result.exit_code == 0, result.output
    assert "upsampled" not in _text(result)  # refused, not upsampled: no warning about its empty bands
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["utterances"] == 3 and summary["resampled_utterances"] == 0
    assert summary["source_rates"] == {"16000": 3}  # the skipped file's 1 Hz is not among the store's rates
    assert len(summary["skipped"]) == 1 and summary["skipped"][0].startswith(message)
    from asr_init.errors import UserError
    from asr_init.features.extract import resolve_sample_rate

    with pytest.raises(UserError, match=r"at 1 Hz, below the lowest rate extract reads \(8000 Hz\); resample them"):
        resolve_sample_rate({d / "a.wav": 1, d / "b.wav": 1, d / "c.wav": 16000}, None, d)  # not "upsample them"


def test_rate_ties_go_to_the_lower_rate_and_wideband_is_capped_at_16khz(tmp_path):
    from asr_init.features.extract import resolve_sample_rate

    files = {tmp_path / f"{k}.wav": rate for k, rate in enumerate([8000, 8000, 16000, 16000, 44100])}
    assert resolve_sample_rate(files, None, tmp_path) == 8000
    assert resolve_sample_rate({tmp_path / "a.wav": 44100, tmp_path / "b.wav": 48000}, None, tmp_path) == 16000
    assert resolve_sample_rate({tmp_path / "a.wav": 11025}, None, tmp_path) == 11025
    assert resolve_sample_rate({tmp_path / "a.wav": 8000}, 22050, tmp_path) == 22050


@pytest.mark.parametrize("bad", ["missing", "junk"])
def test_a_corpus_of_no_readable_audio_names_the_first_file_and_why(tmp_path, bad):
    """Where no audio file's header can be read, the error names the first tried and its problem
    (it named the corpus only)."""
    corpus = write_kaldi_dir(tmp_path / "c", speakers=2, utts_per_speaker=1)
    for wav in sorted((corpus / "wav").glob("*.wav")):
        wav.unlink() if bad == "missing" else wav.write_bytes(b"not a wav")
    first = corpus / "wav" / "spk0-utt0.wav"
    why = "does not exist" if bad == "missing" else r"cannot read audio of utterance spk0-utt0 \(.*\)"
    with pytest.raises(
        UserError, match=rf"can be read to find the corpus's sample rate \(the first: {first}: .*{why}\)"
    ):
        extract(corpus, tmp_path / "s", ExtractConfig(jobs=1))


EDGES = "invalid feature settings: the mel bands' edges must satisfy 0 <= --low-freq"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--high-freq", "5000"], f"{EDGES} (20) < --high-freq (5000) <= the Nyquist frequency 4000 Hz (at 8000 Hz, "
         "the corpus's own rate; --sample-rate sets another)"),
        (["--sample-rate", "16000", "--high-freq", "8001"], "< --high-freq (8001) <= the Nyquist frequency 8000 Hz"),
        (["--low-freq", "3000", "--high-freq", "3000"], f"{EDGES} (3000) < --high-freq (3000)"),
        (["--low-freq", "4000"], f"{EDGES} (4000) < --high-freq (4000) <= the Nyquist frequency 4000 Hz"),
        (["--low-freq", "-20"], f"{EDGES} (-20)"),
        (["--high-freq", "-4000"], f"{EDGES} (20) < --high-freq (0)"),  # Kaldi's: 4000 Hz below the Nyquist
        (["--num-ceps", "30"], "--num-ceps must be from 1 to --num-mel-bins (23)"),
        (["--num-mel-bins", "0"], "--num-mel-bins must be from 3 to 512, not 0"),  # 0 was taken for the default, 23
        (["--num-mel-bins", "0", "--features", "librosa-mfcc"], "--num-mel-bins must be from 1 to 512, not 0"),
        (["--features", "mfcc"], "invalid --features mfcc: must be one of kaldi-mfcc, kaldi-fbank, librosa-mfcc"),
        (["--cmvn", "none", "--norm-vars"], "invalid --norm-vars: needs CMVN; drop --cmvn none"),
        (["--sample-rate", "4000"], "invalid --sample-rate 4000: must be from 8,000 to 192,000 Hz"),
        (["--sample-rate", "100000000"], "invalid --sample-rate 100000000: must be from 8,000 to 192,000 Hz"),
        (["--seed", "-1"], "invalid --seed -1: must be from 0 to 4294967295"),
    ],
)  # fmt: skip
def test_bad_rate_and_filterbank_values_give_one_error_line(tmp_path, args, message):
    d = write_kaldi_dir(tmp_path / "c", speakers=4, utts_per_speaker=1, sr=8000)
    result = runner.invoke(app, ["extract", str(d), "--out", str(tmp_path / "s"), "--jobs", "1", *args])
    assert result.exit_code == 1
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("label, shown", [("", "''"), ("s\nil", "'s\\nil'"), ("sil sil", "'sil sil'"),
                                          ("a\tb", "'a\\tb'"), ("x\x01", "'x\\x01'")])  # fmt: skip
def test_a_silence_label_that_is_not_one_word_is_refused_before_the_store_is_written(kaldi_dir, tmp_path, label, shown):
    """--silence is written into phones.txt as a label: an empty one, or one holding white space or a
    control character, made a store whose phones.txt every later stage called corrupt."""
    result = runner.invoke(app, ["extract", str(kaldi_dir), "--out", str(tmp_path / "s"), "--silence", label])
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert f"invalid --silence {shown}: a label is one word, without white space or control characters" in errors[0]
    assert not (tmp_path / "s").exists()


def test_store_from_before_kaldis_features_is_still_complete(kaldi_dir, tmp_path):
    """A store made before --features recorded librosa's MFCC under "mfcc" (without its upper
    edge, before that was an option) and the CMVN in "extract": the same corpus extracted with
    --features librosa-mfcc is done, and other settings are named."""
    out = tmp_path / "s"
    extract(kaldi_dir, out, ExtractConfig(jobs=1, features="librosa-mfcc"))
    config = json.loads((out / "config.json").read_text())
    del config["versions"], config["features"]
    config["mfcc"] = {"sample_rate": 16000, "n_mfcc": 13, "n_mels": 40, "win_ms": 25.0, "hop_ms": 10.0,
                      "delta_width": 5, "fmin": 20.0}  # fmt: skip
    config["extract"] |= {"cmvn": "speaker", "sample_rate": 16000}
    (out / "config.json").write_text(json.dumps(config))
    store = FeatureStore(out)
    assert (store.feature_config.kind, store.feature_config.high_freq, store.feature_config.norm_vars) == (
        "librosa-mfcc", 8000.0, True)  # fmt: skip
    result = runner.invoke(app, ["extract", str(kaldi_dir), "--out", str(out), "--jobs", "1", "--features",
                                 "librosa-mfcc"])  # fmt: skip
    assert result.exit_code == 0 and "already complete" in _text(result), result.output
    args = ["extract", str(kaldi_dir), "--out", str(out), "--jobs", "1", "--features", "librosa-mfcc"]
    other = runner.invoke(app, [*args, "--high-freq", "7000"])
    assert other.exit_code == 1 and "made with other settings (high_freq: 8000.0 then, 7000.0 now)" in _text(other)
    kaldi = runner.invoke(app, ["extract", str(kaldi_dir), "--out", str(out), "--jobs", "1"])
    assert kaldi.exit_code == 1 and "kind: 'librosa-mfcc' then, 'kaldi-mfcc' now" in _text(kaldi), kaldi.output


def test_kaldi_config_file_sets_the_features_and_the_command_line_wins(kaldi_dir, tmp_path):
    conf = tmp_path / "mfcc.conf"
    conf.write_text("--use-energy=false\n--num-ceps=20\n--num-mel-bins=30\n--sample-frequency=8000  # telephone\n")
    args = ["extract", str(kaldi_dir), "--jobs", "1", "--mfcc-config", str(conf)]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "a"), "--num-ceps", "15"])
    assert result.exit_code == 0, result.output
    features = FeatureStore(tmp_path / "a").feature_config
    assert (features.num_ceps, features.num_mel_bins, features.use_energy, features.sample_rate) == (
        15,
        30,
        False,
        8000,
    )
    assert FeatureStore(tmp_path / "a").dim == 45
    fbank = runner.invoke(app, ["extract", str(kaldi_dir), "--jobs", "1", "--features", "kaldi-fbank", "--num-mel-bins",
                                "40", "--out", str(tmp_path / "f")])  # fmt: skip
    assert fbank.exit_code == 0 and FeatureStore(tmp_path / "f").dim == 120, fbank.output
    conf.write_text("--use-energy=false\n--vtln-warp=1.05\n")
    bad = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    errors = [ln for ln in bad.output.splitlines() if ln.startswith("error:")]
    assert bad.exit_code == 1 and len(errors) == 1 and f"{conf}:2: '--vtln-warp=1.05' is not a feature option" in (
        " ".join(bad.output.split()))  # fmt: skip
    assert not (tmp_path / "b").exists()
    conf.write_text("--sample-frequency=1e12\n")  # a rate that would ask for hundreds of GiB per block
    bad = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    errors = [ln for ln in bad.output.splitlines() if ln.startswith("error:")]
    assert bad.exit_code == 1 and errors == [
        "error: invalid feature settings: a sample rate of 1,000,000,000,000 Hz is above the highest asr-init computes "
        "features at (192,000 Hz); give --sample-rate 192000 or lower"], bad.output  # fmt: skip
    assert not (tmp_path / "b").exists()


def test_audio_shorter_than_one_frame_is_a_bad_utterance(tmp_path):
    """A recording shorter than one 25 ms frame gives no frame with --snip-edges (Kaldi's
    default): it is a bad utterance named in one line (skipped with --skip-bad), not a traceback
    from writing a shard part of 0 frames."""
    from conftest import write_fake_fsdd

    root = write_fake_fsdd(tmp_path / "fsdd", speakers=("jackson", "theo", "lucas"))
    short = root / "recordings" / "4_theo_0.wav"
    sf.write(short, np.full(100, 0.1, dtype=np.float32), 8000, subtype="PCM_16")  # 12.5 ms
    out = tmp_path / "store"
    result = runner.invoke(app, ["extract", str(root), "--out", str(out), "--jobs", "1"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert str(short) in _text(result) and "shorter than one 25 ms frame" in _text(result), result.output
    assert not out.exists()
    summary = extract(root, out, ExtractConfig(jobs=1, skip_bad=True))
    assert summary["utterances"] == 29 and "4_theo_0.wav" in summary["skipped"][0]


def test_a_stereo_file_gives_kaldis_channel_0_or_librosas_mean_with_a_warning(tmp_path):
    """A corpus of 2-channel files: kaldi-mfcc reads the left channel, as compute-mfcc-feats does
    (its frames are those of the left channel's own file), librosa-mfcc their mean, as librosa.load
    does; either way one warning says so. They were averaged for every kind, without a word."""
    mono = write_kaldi_dir(tmp_path / "mono", speakers=4, utts_per_speaker=1)
    stereo = shutil.copytree(mono, tmp_path / "stereo")
    for wav in (stereo / "wav").glob("*.wav"):
        left, rate = sf.read(wav)
        sf.write(wav, np.stack([left, np.random.default_rng(0).normal(0, 0.1, len(left))], axis=1), rate)

    def frames(corpus: Path, features: str) -> tuple[np.ndarray, str]:
        out = tmp_path / f"{corpus.name}-{features}"
        args = ["extract", str(corpus), "--out", str(out), "--jobs", "1", "--cmvn", "none", "--dither", "0"]
        result = runner.invoke(app, [*args, "--features", features])
        assert result.exit_code == 0, result.output
        store = FeatureStore(out)
        splits = [r for split in ("train", "dev", "test") for r in store.split(split)]
        return np.concatenate([store.features(r) for r in splits]), _text(result)

    (left, said), (alone, _) = frames(stereo, "kaldi-mfcc"), frames(mono, "kaldi-mfcc")
    np.testing.assert_array_equal(left, alone)
    assert "warning: 4 of 4 recordings have 2 channels: channel 0 (the left) is read, as compute-mfcc-feats" in said
    (mean, said), (alone, _) = frames(stereo, "librosa-mfcc"), frames(mono, "librosa-mfcc")
    assert np.abs(mean - alone).max() > 1 and "their channels are averaged, as librosa.load averages them" in said


def test_fsdds_folder_and_its_recordings_are_one_corpus(tmp_path):
    """FSDD's folder and its recordings/ (both read as the same recordings) make the same store:
    a re-run with the other spelling finds it complete, and so does one on a store whose record
    (as an older asr-init wrote it) names the folder. The second spelling used to be refused."""
    from conftest import write_fake_fsdd

    root = write_fake_fsdd(tmp_path / "fsdd", speakers=("jackson", "theo", "lucas"))
    out = tmp_path / "store"
    extract(root, out, ExtractConfig(jobs=1))
    assert json.loads((out / "config.json").read_text())["corpus"] == str(root.resolve() / "recordings")
    again = runner.invoke(app, ["extract", str(root / "recordings"), "--out", str(out), "--jobs", "1"])
    assert again.exit_code == 0 and "is already complete with these settings" in _text(again), again.output
    record = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(record | {"corpus": str(root.resolve())}))
    for corpus in (root, root / "recordings"):
        again = runner.invoke(app, ["extract", str(corpus), "--out", str(out), "--jobs", "1"])
        assert again.exit_code == 0 and "is already complete with these settings" in _text(again), again.output


def test_the_channel_and_upsampling_warnings_count_only_the_files_read(tmp_path):
    """With --skip-bad, a file whose every utterance is skipped is not counted by the warnings
    about several channels and upsampling: they used to count the files before extraction."""
    from conftest import write_fake_fsdd

    root = write_fake_fsdd(tmp_path / "fsdd", speakers=("jackson", "theo", "lucas"))
    for name, samples in (("4_theo_0.wav", 100), ("5_theo_0.wav", 3000)):  # 12.5 ms: shorter than a frame
        mono = np.random.default_rng(0).normal(0, 0.1, samples).astype(np.float32)
        sf.write(root / "recordings" / name, np.stack([mono, mono], axis=1), 8000, subtype="PCM_16")
    args = ["extract", str(root), "--out", str(tmp_path / "store"), "--jobs", "1", "--skip-bad"]
    result = runner.invoke(app, [*args, "--sample-rate", "16000"])
    assert result.exit_code == 0 and "1 utterances skipped" in _text(result), result.output
    assert "warning: 1 of 29 recordings have 2 channels" in _text(result), result.output
    assert "warning: 29 of 29 recordings (8000 Hz) are upsampled to 16000 Hz" in _text(result), result.output


def test_a_store_of_several_channels_records_what_was_read_of_them(tmp_path):
    """A store of audio with several channels records what was read ("channels": channel 0 for the
    Kaldi kinds, the mean for librosa-mfcc). A record without it, an older asr-init's, is another
    store for a Kaldi kind (it averaged them once, then read channel 0, and said neither), and
    the same for librosa-mfcc (always the mean). Older stereo stores used to count as the same."""
    corpus = write_kaldi_dir(tmp_path / "stereo", speakers=4, utts_per_speaker=1)
    for wav in (corpus / "wav").glob("*.wav"):
        left, rate = sf.read(wav)
        sf.write(wav, np.stack([left, left], axis=1), rate)
    for kind, read in (("kaldi-fbank", "channel 0"), ("librosa-mfcc", "mean")):
        out = tmp_path / kind
        args = ["extract", str(corpus), "--out", str(out), "--jobs", "1", "--features", kind]
        assert runner.invoke(app, args).exit_code == 0
        record = json.loads((out / "config.json").read_text())
        assert record["channels"] == read
        (out / "config.json").write_text(json.dumps({k: v for k, v in record.items() if k != "channels"}))
        again = runner.invoke(app, args)
        if kind == "librosa-mfcc":
            assert again.exit_code == 0 and "is already complete" in _text(again), again.output
        else:
            assert again.exit_code == 1 and "(channels: 'not recorded (older asr-init)' then, 'channel 0' now)" in (
                _text(again)), again.output  # fmt: skip
    mono = write_kaldi_dir(tmp_path / "mono", speakers=4, utts_per_speaker=1)
    extract(mono, tmp_path / "mono-store", ExtractConfig(jobs=1))
    assert "channels" not in json.loads((tmp_path / "mono-store" / "config.json").read_text())


def _stereo(corpus: Path, channels: dict[str, int]) -> None:
    """Each recording of `corpus` named in `channels` made a 2-channel file, its audio in that channel
    and noise in the other, with a `segments` line naming the channel (the others: mono, no channel)."""
    lines = []
    for rec in (line.split()[0] for line in (corpus / "utt2spk").read_text().splitlines()):
        wav, channel = corpus / "wav" / f"{rec}.wav", channels.get(rec)
        if channel is not None:
            audio, rate = sf.read(wav)
            noise = np.random.default_rng(channel).normal(0, 0.1, len(audio))
            sf.write(wav, np.stack([audio, noise][:: 1 - 2 * channel], axis=1), rate)
        lines.append(f"{rec} {rec} 0 -1{'' if channel is None else f' {channel}'}\n")
    (corpus / "segments").write_text("".join(lines))


def test_a_segments_channel_is_the_channel_read(tmp_path):
    """A `segments` line's fifth field, the channel, is the one read of a file of several, as
    extract-segments reads it: the store is the one the mono files give, frame for frame (channel 0
    was read whatever the line said). A store records it: a changed channel is a changed corpus."""
    config = ExtractConfig(dither=0.0, jobs=1, dev_fraction=0, test_fraction=0)
    plain, stereo = write_kaldi_dir(tmp_path / "plain", 3, 1), write_kaldi_dir(tmp_path / "stereo", 3, 1)
    _stereo(stereo, {"spk0-utt0": 0, "spk1-utt0": 1})
    stores = [FeatureStore(extract(d, tmp_path / f"{d.name}.s", config) and tmp_path / f"{d.name}.s")
              for d in (plain, stereo)]  # fmt: skip
    assert [r.id for r in stores[0].records] == [r.id for r in stores[1].records]
    for a, b in zip(stores[0].records, stores[1].records):
        np.testing.assert_array_equal(stores[0].features(a), stores[1].features(b))
    assert json.loads((tmp_path / "stereo.s" / "config.json").read_text())["channels"] == "the segments file's channel"
    (stereo / "segments").write_text((stereo / "segments").read_text().replace(" -1 1", " -1 0"))
    with pytest.raises(UserError, match=r"the corpus changed since .*stereo\.s was made from it"):
        extract(stereo, tmp_path / "stereo.s", config)
