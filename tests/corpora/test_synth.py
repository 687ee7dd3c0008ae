"""The embedded eSpeak NG corpus: alignments, speakers, determinism, default use."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from asr_init.cli import app
from asr_init.config import DATA_DIR
from asr_init.corpora.config import SynthConfig
from asr_init.corpora.readers import read_kaldi_dir, read_label_list
from asr_init.corpora.synth import make_speakers, phone_segments, synthesize_corpus
from asr_init.errors import UserError


def test_phone_segments_from_events():
    pm = {"D": "dh", "@": "ah", "_": "sil", ";": "-"}
    events = [(100, "D"), (300, ";"), (500, "'@"), (900, "_:")]
    segs = phone_segments(events, 1000, 1000, offset=50, phone_map=pm)
    assert segs == [(0.0, 0.15, "sil"), (0.15, 0.55, "dh"), (0.55, 0.95, "ah"), (0.95, 1.0, "sil")]
    with pytest.raises(UserError, match=r"eSpeak phoneme 'Q9'.*espeak_phones\.tsv"):
        phone_segments([(10, "Q9")], 100, 1000, 0, pm)


def test_phone_map_targets_are_in_phone_set():
    phones = set(read_label_list(DATA_DIR / "phones39.txt"))
    from asr_init.corpora.synth import load_phone_map

    assert {v for v in load_phone_map().values()} - {"-"} <= phones


def test_speakers_are_distinct_and_balanced():
    spk = make_speakers(40, seed=0)
    assert len({(s.voice, s.rate, s.pitch, s.pitch_range) for s in spk}) == 40
    assert sum(s.gender == "f" for s in spk) == 20
    assert make_speakers(40, seed=0) == spk and make_speakers(40, seed=1) != spk


def test_corpus_is_readable_and_aligned(espeak_corpus):
    corpus = read_kaldi_dir(espeak_corpus)
    info = json.loads((espeak_corpus / "corpus.json").read_text())
    assert info["hours"] * 60 == pytest.approx(2.0, abs=0.2)
    assert len({u.speaker for u in corpus.utterances}) == 4
    phones = set(read_label_list(DATA_DIR / "phones39.txt"))
    used = {s.label for u in corpus.utterances for s in u.segments}
    assert used <= phones and len(used) >= 30  # phonetically varied
    for utt in corpus.utterances:
        audio, sr = sf.read(utt.audio)
        assert utt.segments[0].label == "sil" and utt.segments[0].end >= 0.1  # leading silence
        assert utt.segments[-1].end == pytest.approx(len(audio) / sr, abs=1e-4)
        # Speech energy sits inside the phones, not the leading silence.
        lead = audio[: int(0.08 * sr)]
        body = audio[int(utt.segments[1].start * sr) : int(utt.segments[-2].end * sr)]
        assert np.sqrt(np.mean(body**2)) > 3 * np.sqrt(np.mean(lead**2))


def test_synthesis_is_deterministic(tmp_path, espeak_corpus):
    again = synthesize_corpus(tmp_path / "again", SynthConfig(hours=2 / 60, speakers=4, seed=3, jobs=1))
    assert (again / "phones.ctm").read_text() == (espeak_corpus / "phones.ctm").read_text()
    first = sorted((espeak_corpus / "wav").iterdir())[:3]
    for f in first:
        np.testing.assert_array_equal(sf.read(f)[0], sf.read(again / "wav" / f.name)[0])


def test_extract_default_corpus_via_cli(tmp_path):
    runner = CliRunner()
    out = tmp_path / "store"
    result = runner.invoke(app, ["extract", "--out", str(out), "--hours", "0.02", "--jobs", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["layout"] == "embedded" and summary["hours"] == pytest.approx(0.02, abs=0.003)
    assert all(summary["splits"][s]["utterances"] > 0 for s in ("train", "dev", "test"))
    assert (out / "phones.txt").read_text().splitlines()[-1] == "38 sil"
    # eSpeak NG speaks at 22,050 Hz; the default rate (the corpus's own, at most 16 kHz)
    # extracts it at 16 kHz with Kaldi's filterbank, 20-8000 Hz.
    assert (
        summary["source_rates"] == {"22050": summary["utterances"]}
        and summary["resampled_utterances"] == summary["utterances"]
    )
    features = json.loads((out / "config.json").read_text())["features"]
    assert (features["kind"], features["sample_rate"], features["low_freq"], features["high_freq"]) == (
        "kaldi-mfcc", 16000, 20.0, 8000.0)  # fmt: skip
    assert summary["empty_mel_bands"] == []


def test_an_extract_waits_for_the_embedded_corpus_another_command_is_making(tmp_path):
    """The second of two extracts of a corpus not made yet failed, naming the cache as its --out
    ("being written by another asr-init run"): it waits for the other (here the test, holding the
    turn) and then goes on."""
    import subprocess
    import sys

    from asr_init.folders import taking_turns

    cache = tmp_path / "cache"
    env = {**os.environ, "ASR_INIT_CACHE": str(cache), "PYTHONPATH": str(Path(__file__).parents[2])}
    cmd = [
        sys.executable,
        "-m",
        "asr_init.cli",
        "extract",
        "--hours",
        "0.02",
        "--jobs",
        "1",
        "--out",
        str(tmp_path / "a"),
    ]
    with taking_turns(cache / "espeak-0.02h-40spk-snr20-seed0.making", "test"):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen = ""
        while "waiting for another asr-init run" not in " ".join(seen.split()) and proc.poll() is None:
            seen += proc.stdout.readline()
    output = seen + proc.communicate(timeout=300)[0]
    assert proc.returncode == 0 and "waiting for another asr-init run to make" in " ".join(seen.split()), output
    assert (cache / "espeak-0.02h-40spk-snr20-seed0" / "corpus.json").is_file()


def test_a_cache_under_a_file_is_one_error_line(tmp_path, monkeypatch):
    """The line names the cache folder and ASR_INIT_CACHE, which sets it; it named the cache as --out,
    an option the command was not given (or given for another folder)."""
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("ASR_INIT_CACHE", str(tmp_path / "afile" / "sub"))
    result = CliRunner().invoke(app, ["extract", "--out", str(tmp_path / "store"), "--hours", "0.02"])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert " ".join(result.output.split()) == (
        f"error: cache folder (ASR_INIT_CACHE) {tmp_path / 'afile' / 'sub'}: {tmp_path / 'afile'} is a file, not a "
        "folder; choose another cache folder (ASR_INIT_CACHE)"
    )
    assert not (tmp_path / "store").exists()


def test_synthesis_is_deterministic_across_processes(tmp_path):
    """Female voices add breath noise from eSpeak's random sources: they must be seeded."""
    import subprocess
    import sys
    import time

    script = (
        "import sys; from asr_init.corpora.synth import SynthConfig, make_speakers, _synthesize_one\n"
        "cfg = SynthConfig(hours=0.01, seed=4, speakers=4)\n"
        "_synthesize_one((1, make_speakers(4, 4)[1], cfg, sys.argv[1]))\n"
    )
    outs = []
    for k in range(2):
        folder = tmp_path / f"run{k}"
        folder.mkdir()
        subprocess.run([sys.executable, "-c", script, str(folder)], check=True, timeout=60)
        outs.append(sorted(folder.iterdir()))
        time.sleep(1.1)  # a time-seeded generator would now differ
    assert make_speakers(4, 4)[1].gender == "f"
    (a,), (b,) = outs
    np.testing.assert_array_equal(sf.read(a)[0], sf.read(b)[0])


_POOLS = """
import multiprocessing, os, signal, sys
from asr_init.corpora.synth import _terminate

def same(x):
    return x

owner = os.getpid()

def handler(signum, frame):  # as output_folder's: a forked worker dies of it
    if os.getpid() != owner:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise KeyboardInterrupt

signal.signal(signal.SIGTERM, handler)
for _ in range(150):
    pool = multiprocessing.get_context("fork").Pool(2, maxtasksperchild=1)
    list(pool.imap(same, range(8), chunksize=1))
    _terminate(pool)
print("ended")
"""


def test_an_interrupted_synth_pool_ends_whatever_worker_it_was_starting():
    """Pool.terminate with maxtasksperchild can wait for ever on a worker its worker thread starts after
    the others were stopped (it hung within 16 to 92 pools of these); synth's _terminate kills what is left."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", _POOLS], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "ended", run.stderr[-2000:]
