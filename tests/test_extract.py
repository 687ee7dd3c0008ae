"""The extract stage: store contents, normalisation, splits, determinism, bad input."""

import json
import os

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from asr_init.cli import app
from asr_init.extract import ExtractConfig, extract
from asr_init.store import FeatureStore
from conftest import write_kaldi_dir

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
        feats, phones, states = store.features(rec), store.phone_targets(rec), store.state_targets(rec)
        assert feats.shape == (rec.frames, 39) and phones.shape == states.shape == (rec.frames,)
        assert isinstance(feats, np.memmap)
        assert rec.transcript[0] == "sil" and rec.transcript[-1] == "sil"
        assert rec.frames == 1 + int(round(rec.duration * 16000)) // 160


def test_per_speaker_normalisation(tiny_store):
    store = FeatureStore(tiny_store)
    for spk in {r.speaker for r in store.records}:
        x = np.concatenate([store.features(r) for r in store.records if r.speaker == spk]).astype(np.float64)
        np.testing.assert_allclose(x.mean(0), 0, atol=1e-3)
        np.testing.assert_allclose(x.std(0), 1, atol=1e-3)


def test_splits_are_speaker_disjoint(tiny_store):
    store = FeatureStore(tiny_store)
    by_split = {s: {r.speaker for r in store.split(s)} for s in ("train", "dev", "test")}
    assert all(by_split.values())
    assert not (by_split["train"] & by_split["dev"]) and not (by_split["train"] & by_split["test"]) and not (by_split["dev"] & by_split["test"])


def test_explicit_speaker_lists(kaldi_dir, tmp_path):
    summary = extract(kaldi_dir, tmp_path / "s", ExtractConfig(jobs=1, dev_speakers=["spk1"], test_speakers=["spk2", "spk3"]))
    assert summary["splits"]["dev"]["speakers"] == 1 and summary["splits"]["test"]["speakers"] == 2


def test_frame_targets_in_store_follow_ctm(kaldi_dir, tmp_path):
    extract(kaldi_dir, tmp_path / "s", ExtractConfig(jobs=1))
    store = FeatureStore(tmp_path / "s")
    rec = next(r for r in store.records if r.id == "spk0-utt0")
    phones = np.asarray(store.phone_targets(rec))
    ctm = [ln.split() for ln in (kaldi_dir / "phones.ctm").read_text().splitlines() if ln.startswith("spk0-utt0 ")]
    for prev, row in zip(ctm, ctm[1:]):
        if prev[4] == row[4]:
            continue
        t, lab = float(row[2]), store.phones.index(row[4])
        k = round(t / 0.01)
        assert lab in phones[max(k - 1, 0):k + 2], f"boundary at {t}s not at frame {k}+-1"


def test_determinism(kaldi_dir, tmp_path):
    for name in ("a", "b"):
        extract(kaldi_dir, tmp_path / name, ExtractConfig(jobs=2, shard_frames=500))
    for f in sorted((tmp_path / "a" / "shards").iterdir()):
        np.testing.assert_array_equal(np.load(f), np.load(tmp_path / "b" / "shards" / f.name))
    assert (tmp_path / "a/manifest.jsonl").read_text() == (tmp_path / "b/manifest.jsonl").read_text()
    assert len(list((tmp_path / "a" / "shards").glob("feats-*.npy"))) > 1


def test_cli_refuses_existing_output_unless_force(kaldi_dir, tmp_path):
    out = tmp_path / "s"
    assert runner.invoke(app, ["extract", str(kaldi_dir), "--out", str(out), "--jobs", "1"]).exit_code == 0
    again = runner.invoke(app, ["extract", str(kaldi_dir), "--out", str(out), "--jobs", "1"])
    assert again.exit_code == 0 and "already complete" in _text(again)
    other = runner.invoke(app, ["extract", str(kaldi_dir), "--out", str(out), "--jobs", "1", "--cmvn", "utterance"])
    assert other.exit_code == 1 and "already exists" in _text(other) and "--force" in _text(other)
    forced = runner.invoke(app, ["extract", str(kaldi_dir), "--out", str(out), "--jobs", "1", "--cmvn", "utterance", "--force"])
    assert forced.exit_code == 0
    assert json.loads((out / "config.json").read_text())["extract"]["cmvn"] == "utterance"


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


@pytest.mark.parametrize("breaker", [_break_missing, _break_unreadable, _break_empty, _break_past_end, _break_overlap,
                                     _break_unsorted, _break_speaker_without_utterances, _break_piped])
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
