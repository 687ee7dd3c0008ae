"""Shared fixtures: tiny corpora made on the fly (synthetic audio, no downloads)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

# make test runs one pytest-xdist worker a core: each computes on one thread, and so do the
# commands its tests start (two workers of two threads each would fight over two cores).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
import soundfile as sf

PHONES = ("sil", "aa", "iy", "s", "m")
# Each phone gets a distinct tone or noise so frames are separable.
_TONE = {"sil": 0.0, "aa": 700.0, "iy": 2300.0, "m": 250.0}


def make_audio(segments: list[tuple[float, float, str]], sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Audio whose content changes at each segment: tones for vowels, noise for 's'."""
    rng = np.random.default_rng(seed)
    total = segments[-1][1]
    x = 0.001 * rng.standard_normal(int(round(total * sr)))
    for a, b, lab in segments:
        i, j = int(round(a * sr)), int(round(b * sr))
        t = np.arange(j - i) / sr
        if lab == "s":
            x[i:j] += 0.3 * rng.standard_normal(j - i)
        elif _TONE.get(lab):
            x[i:j] += 0.5 * np.sin(2 * np.pi * _TONE[lab] * t)
    return x.astype(np.float32)


def random_segments(rng: np.random.Generator, n: int = 8) -> list[tuple[float, float, str]]:
    segs, t = [(0.0, 0.2, "sil")], 0.2
    for _ in range(n):
        d = float(rng.uniform(0.05, 0.2))
        segs.append((t, t + d, str(rng.choice(PHONES[1:]))))
        t += d
    segs.append((t, t + 0.2, "sil"))
    return [(round(a, 4), round(b, 4), lab) for a, b, lab in segs]


def write_kaldi_dir(root: Path, speakers: int = 5, utts_per_speaker: int = 3, sr: int = 16000, seed: int = 0) -> Path:
    """A Kaldi-style data dir with wav.scp, utt2spk, spk2utt and phones.ctm."""
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    scp, u2s, ctm = [], [], []
    for s in range(speakers):
        spk = f"spk{s}"
        for u in range(utts_per_speaker):
            utt = f"{spk}-utt{u}"
            segs = random_segments(rng)
            sf.write(root / "wav" / f"{utt}.wav", make_audio(segs, sr, seed=s * 100 + u), sr)
            scp.append(f"{utt} wav/{utt}.wav")
            u2s.append(f"{utt} {spk}")
            ctm += [f"{utt} 1 {a:.4f} {b - a:.4f} {lab}" for a, b, lab in segs]
    (root / "wav.scp").write_text("\n".join(scp) + "\n")
    (root / "utt2spk").write_text("\n".join(u2s) + "\n")
    (root / "phones.ctm").write_text("\n".join(ctm) + "\n")
    return root


def kaldi_native_features(audio: np.ndarray, c) -> np.ndarray:
    """Kaldi's MFCC or fbank of `audio` (float, +-1) with FeatureConfig `c`'s options, dither 0,
    computed by kaldi-native-fbank (k2-fsa's C++ copy of Kaldi's feature code)."""
    import kaldi_native_fbank as knf

    c = c.resolved()
    opts = knf.MfccOptions() if c.kind == "kaldi-mfcc" else knf.FbankOptions()
    if c.kind == "kaldi-mfcc":
        opts.num_ceps, opts.cepstral_lifter = c.num_ceps, c.cepstral_lifter
    opts.use_energy, opts.raw_energy = c.use_energy, c.raw_energy
    opts.mel_opts.num_bins, opts.mel_opts.low_freq, opts.mel_opts.high_freq = c.num_mel_bins, c.low_freq, c.high_freq
    frame = opts.frame_opts
    frame.dither, frame.snip_edges, frame.samp_freq, frame.window_type = 0.0, c.snip_edges, c.sample_rate, c.window
    computer = (knf.OnlineMfcc if c.kind == "kaldi-mfcc" else knf.OnlineFbank)(opts)
    computer.accept_waveform(c.sample_rate, (audio * 32768).tolist())
    computer.input_finished()
    return np.array([computer.get_frame(i) for i in range(computer.num_frames_ready)], dtype=np.float32)


# The files that take longest (seconds on 2 cores, measured with --durations=0), run first:
# under pytest-xdist (make test) a worker that starts one late would finish alone, long after
# the others have run out of tests.
LONGEST_FIRST = ("test_recipes.py", "test_hostile_inputs.py", "test_recipe_scripts.py", "test_distributed.py",
                 "test_pretrain.py", "test_bench.py", "test_synth.py", "test_hostile_classes.py")  # fmt: skip


def pytest_collection_modifyitems(items: list) -> None:
    """The end-to-end recipe runs (marked slow, minutes each) first, then the longest files,
    then the rest in their order."""

    def cost(item) -> tuple[bool, int]:
        name = item.path.name
        return item.get_closest_marker("slow") is None, LONGEST_FIRST.index(name) if name in LONGEST_FIRST else 99

    items.sort(key=cost)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Generated corpora go to a per-session cache, never the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ASR_INIT_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture
def kaldi_dir(tmp_path: Path) -> Path:
    return write_kaldi_dir(tmp_path / "corpus")


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> Path:
    """A feature store extracted from a small Kaldi-style corpus (shared, read-only)."""
    from asr_init.features.config import ExtractConfig
    from asr_init.features.extract import extract

    root = tmp_path_factory.mktemp("tiny")
    corpus = write_kaldi_dir(root / "corpus", speakers=6, utts_per_speaker=4)
    extract(corpus, root / "store", ExtractConfig(jobs=1, dev_fraction=0.2, test_fraction=0.2))
    return root / "store"


@pytest.fixture(scope="session")
def espeak_corpus(tmp_path_factory) -> Path:
    """A 2-minute embedded corpus with 4 speakers."""
    from asr_init.corpora.config import SynthConfig
    from asr_init.corpora.synth import synthesize_corpus

    root = tmp_path_factory.mktemp("espeak")
    return synthesize_corpus(root / "corpus", SynthConfig(hours=2 / 60, speakers=4, seed=3, jobs=2))


def write_blob_store(
    path: Path, phones=("sil", "a", "b", "c"), dim: int = 39, utts: int = 30, seed: int = 0, spread: float = 0.3
) -> Path:
    """A feature store whose frames are Gaussian blobs around one mean per HMM state.

    Each utterance is a random phone sequence; every phone lasts 6-12 frames split into
    three states, and a frame is its state's mean plus N(0, spread^2) noise: a small
    problem a frame classifier can solve almost perfectly.
    """
    import json

    from asr_init.features.store import StoreWriter

    rng = np.random.default_rng(seed)
    means = rng.standard_normal((3 * len(phones), dim)) * 2
    writer = StoreWriter(path, shard_frames=400)
    for u in range(utts):
        seq = [0] + list(rng.integers(1, len(phones), size=6)) + [0]
        states = []
        for p in seq:
            n = int(rng.integers(6, 13))
            states += [3 * p + (3 * k) // n for k in range(n)]
        states = np.array(states, dtype=np.int16)
        feats = (means[states] + spread * rng.standard_normal((len(states), dim))).astype(np.float32)
        split = "train" if u < utts * 0.6 else "dev" if u < utts * 0.8 else "test"
        transcript = tuple(phones[p] for p in seq)
        writer.add(
            f"u{u:03d}",
            f"spk{u % 10}",
            split,
            len(states) / 100,
            feats,
            (states // 3).astype(np.int16),
            states,
            transcript,
        )
    writer.close()
    (path / "phones.txt").write_text("".join(f"{i} {p}\n" for i, p in enumerate(phones)))
    (path / "states.txt").write_text("".join(f"{3 * i + k} {p}_{k}\n" for i, p in enumerate(phones) for k in range(3)))
    allf = np.concatenate([np.load(f) for f in sorted((path / "shards").glob("feats-*.npy"))])
    (path / "stats.json").write_text(json.dumps({"mean": allf.mean(0).tolist(), "std": allf.std(0).tolist()}))
    (path / "config.json").write_text(json.dumps({"corpus": "blobs"}))
    (path / "summary.json").write_text(json.dumps({"layout": "blobs"}))
    return path


@pytest.fixture(scope="session")
def blob_store(tmp_path_factory) -> Path:
    return write_blob_store(tmp_path_factory.mktemp("blobs") / "store")


@pytest.fixture(scope="session")
def kaldi_stores(tmp_path_factory) -> dict:
    """import-kaldi stores of the same data dir: pdfs only, and pdfs with phones."""
    import kaldiio

    from asr_init.features.config import KaldiImportConfig
    from asr_init.features.kaldi import import_kaldi

    root = tmp_path_factory.mktemp("kaldi")
    ref = write_kaldi_features(root / "data", speakers=5, utts_per_speaker=4)
    kaldiio.save_ark(str(root / "pdf.ark"), ref["pdfs"])
    kaldiio.save_ark(str(root / "phones.ark"), ref["phones"])
    pdfs = KaldiImportConfig(ali=[str(root / "pdf.ark")], num_pdfs=8, dev_fraction=0.2)
    import_kaldi(root / "data", root / "pdfs", pdfs)
    both = KaldiImportConfig(**(pdfs.to_dict() | {"phone_ali": [str(root / "phones.ark")]}))
    import_kaldi(root / "data", root / "both", both)
    return {"pdfs": root / "pdfs", "pdfs+phones": root / "both"}


def write_fake_timit(root: Path, utts_per_speaker: int = 2) -> Path:
    """A tiny TIMIT tree: NIST SPHERE audio and .PHN sample alignments.

    TRAIN has three speakers; TEST has one core-test speaker (FELC0), one dev speaker
    (FAKS0) and one speaker in neither list (MXYZ0). Every speaker also has an SA file.
    """
    rng = np.random.default_rng(1)
    speakers = [
        ("TRAIN", "DR1", "FCJF0"),
        ("TRAIN", "DR1", "MDAC0"),
        ("TRAIN", "DR2", "FAEM0"),
        ("TEST", "DR1", "FELC0"),
        ("TEST", "DR1", "FAKS0"),
        ("TEST", "DR3", "MXYZ0"),
    ]
    timit_of = {"sil": "h#", "aa": "ao", "iy": "iy", "s": "s", "m": "m"}
    for part, dr, spk in speakers:
        d = root / part / dr / spk
        d.mkdir(parents=True, exist_ok=True)
        for k, utt in enumerate(["SA1"] + [f"SX{10 * i + k}" for i, k in enumerate(range(utts_per_speaker))]):
            segs = random_segments(rng, n=6)
            audio = make_audio(segs, seed=k)
            sf.write(d / f"{utt}.WAV", audio, 16000, format="NIST", subtype="PCM_16")
            lines = []
            for a, b, lab in segs:
                lines.append(f"{int(round(a * 16000))} {int(round(b * 16000))} {timit_of[lab]}")
            (d / f"{utt}.PHN").write_text("\n".join(lines) + "\n")
    return root


def write_tiny_model(store_path: Path, model_dir: Path, hidden: int = 8) -> Path:
    """A model folder as 'asr-init finetune' writes it (untrained: one small hidden layer,
    no splicing), for tests of the stages that read models."""
    from asr_init.features.pipeline import FeaturePipeline
    from asr_init.features.store import FeatureStore
    from asr_init.models.dnn import DNN, save_model

    store = FeatureStore(store_path)
    pipeline = FeaturePipeline.from_store(store, splice=0)
    model = DNN(pipeline.dim, [hidden], len(store.states), "sigmoid")
    meta = {
        "config": {"activation": "sigmoid"},
        "pipeline": pipeline.to_dict(),
        "input_dim": pipeline.dim,
        "hidden_sizes": [hidden],
        "targets": "states",
        "outputs": store.states,
        "phones": store.phones,
        "states": store.states,
        "priors": [1 / len(store.states)] * len(store.states),
        "layers": [],
    }
    model_dir.mkdir(parents=True, exist_ok=True)
    save_model(model_dir, model, meta)
    return model_dir


def write_kaldi_features(
    root: Path,
    speakers: int = 5,
    utts_per_speaker: int = 3,
    dim: int = 13,
    num_pdfs: int = 8,
    seed: int = 0,
    prefix: str = "",
) -> dict:
    """A Kaldi data dir made of Kaldi's own files, written with kaldiio, and its alignments.

    Frames are Gaussian blobs around one mean per pdf plus a per-speaker offset (which CMVN
    removes); each pdf belongs to phone 1 + pdf // 2. Writes feats.ark/.scp (binary),
    cmvn.ark/.scp (per-speaker stats), utt2spk and spk2utt into ROOT, and returns the arrays:
    {"feats", "pdfs", "phones", "utt2spk", "cmvn"} keyed by utterance (cmvn by speaker)."""
    import kaldiio

    rng = np.random.default_rng(seed)
    means = np.random.default_rng(1234).standard_normal((num_pdfs, dim)) * 2  # shared by every data dir
    root.mkdir(parents=True, exist_ok=True)
    feats, pdfs, utt2spk, cmvn = {}, {}, {}, {}
    for s in range(speakers):
        spk = f"{prefix}spk{s}"
        offset = rng.standard_normal(dim) * 3
        for u in range(utts_per_speaker):
            utt = f"{spk}-utt{u}"
            seq = []
            while len(seq) < 40:
                seq += [int(rng.integers(num_pdfs))] * int(rng.integers(4, 10))
            ids = np.array(seq, dtype=np.int32)
            feats[utt] = (means[ids] + offset + 0.3 * rng.standard_normal((len(ids), dim))).astype(np.float32)
            pdfs[utt], utt2spk[utt] = ids, spk
    for spk in sorted(set(utt2spk.values())):
        x = np.concatenate([feats[u] for u in feats if utt2spk[u] == spk]).astype(np.float64)
        stats = np.zeros((2, dim + 1))
        stats[0, :dim], stats[1, :dim], stats[0, dim] = x.sum(0), (x**2).sum(0), len(x)
        cmvn[spk] = stats
    kaldiio.save_ark(str(root / "feats.ark"), feats, scp=str(root / "feats.scp"))
    kaldiio.save_ark(str(root / "cmvn.ark"), cmvn, scp=str(root / "cmvn.scp"))
    (root / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(utt2spk.items())))
    spk2utt = {}
    for u, s in sorted(utt2spk.items()):
        spk2utt.setdefault(s, []).append(u)
    (root / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in spk2utt.items()))
    phones = {u: (1 + p // 2).astype(np.int32) for u, p in pdfs.items()}
    return {"feats": feats, "pdfs": pdfs, "phones": phones, "utt2spk": utt2spk, "cmvn": cmvn}


class ThreadSum:
    """all_reduce over threads standing for processes: every thread's tensor becomes the
    sum, added in rank order (as a collective would)."""

    def __init__(self, world: int):
        self.parts: list = [None] * world
        self.barrier = threading.Barrier(world)

    def for_rank(self, rank: int):
        def all_reduce_(t):
            self.parts[rank] = t.clone()
            self.barrier.wait()
            total = sum(self.parts[1:], self.parts[0].clone())
            self.barrier.wait()  # everyone has read the parts before the next call writes them
            return t.copy_(total)

        return all_reduce_


@pytest.fixture
def thread_sum():
    """The ThreadSum class: `thread_sum(world).for_rank(r)` is rank r's all_reduce_."""
    return ThreadSum


def write_fake_fsdd(root: Path, speakers=("jackson", "theo", "lucas", "nicolas"), per_digit: int = 1) -> Path:
    """FSDD's layout: ROOT/recordings/{digit}_{speaker}_{index}.wav at 8 kHz, one tone per digit
    (the digit sets its pitch, the speaker shifts it), 0.3-0.5 s each."""
    rng = np.random.default_rng(0)
    folder = root / "recordings"
    folder.mkdir(parents=True, exist_ok=True)
    for s, speaker in enumerate(speakers):
        for digit in range(10):
            for index in range(per_digit):
                n = int(8000 * rng.uniform(0.3, 0.5))
                t = np.arange(n) / 8000
                audio = 0.3 * np.sin(2 * np.pi * (300 + 150 * digit + 20 * s) * t) + 0.01 * rng.standard_normal(n)
                sf.write(folder / f"{digit}_{speaker}_{index}.wav", audio.astype(np.float32), 8000, subtype="PCM_16")
    return root


def recipe_env(tmp_path: Path, **extra) -> dict:
    """The environment of a QUICK recipe run writing under `tmp_path`, with this venv's commands first."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # asr-init and python of this venv
    env.update({"QUICK": "1", "RESULTS": str(tmp_path / "results"), "ASR_INIT_CACHE": str(tmp_path / "cache")} | extra)
    return env


def slowed_cli(target: str, seconds: float) -> str:
    """Python code that runs asr-init's command line (its arguments from sys.argv) with `target`,
    "module:function" or "module:Class.method", sleeping `seconds` before each call: so that a
    test can signal or kill a run while it works. Forked workers inherit the patch."""
    return f"""
import importlib, sys, time
module, _, path = {target!r}.partition(":")
*parents, name = path.split(".")
owner = importlib.import_module(module)
for part in parents:
    owner = getattr(owner, part)
real = getattr(owner, name)
def slow(*args, **kwargs):
    time.sleep({seconds!r})
    return real(*args, **kwargs)
setattr(owner, name, slow)
from asr_init.cli import app
app(sys.argv[1:])
"""


def terminated_cli(target: str, nth: int = 1) -> str:
    """Python code that runs asr-init's command line (its arguments from sys.argv) with `target`,
    "module:function" (a name in that module), sending this process SIGTERM at its `nth` call,
    just before the call: a real signal at a known point of a run."""
    return f"""
import importlib, os, signal, sys
module, _, name = {target!r}.partition(":")
owner, calls = importlib.import_module(module), []
real = getattr(owner, name)
def terminated(*args, **kwargs):
    calls.append(1)
    if len(calls) == {nth!r}:
        os.kill(os.getpid(), signal.SIGTERM)
    return real(*args, **kwargs)
setattr(owner, name, terminated)
from asr_init.cli import app
app(sys.argv[1:])
"""
