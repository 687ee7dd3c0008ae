"""extract (and synth) killed or interrupted: their workers end with them, one line is printed, and
no half-made output stays (the next extract removes a SIGKILLed one's folder)."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import slowed_cli, write_kaldi_dir

from asr_init.features.config import ExtractConfig
from asr_init.features.extract import extract

REPO = Path(__file__).resolve().parents[2]

# extract with every utterance's feature computation slowed down, so that the test can
# kill it while its worker processes are busy (they are forked: they inherit the patch).
SLOW_EXTRACT = slowed_cli("asr_init.features.extract:frame_targets", 0.5)


def _stats() -> dict[int, list[str]]:
    """Every process's /proc/PID/stat fields after its command name: state, ppid, pgrp, ..."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
    return found


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid`."""
    return [p for p, fields in _stats().items() if int(fields[1]) == pid]


def _group(pgid: int) -> list[int]:
    """Processes of process group `pgid` that have not ended (zombies, ended but not yet reaped,
    excluded): every process the extract forked, however late, is in its group."""
    return [p for p, fields in _stats().items() if fields[0] != "Z" and int(fields[2]) == pgid]


def _wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_sigkill_leaves_no_workers_and_next_extract_removes_the_stale_folder(tmp_path):
    corpus = write_kaldi_dir(tmp_path / "c", speakers=4, utts_per_speaker=2)
    out = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", SLOW_EXTRACT, "extract", str(corpus), "--out", str(out), "--jobs", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        tmp = tmp_path / f"store.tmp-{proc.pid}"
        busy = _wait_for(lambda: len(_children(proc.pid)) >= 2 and tmp.is_dir() or proc.poll() is not None, 30)
        assert busy and proc.poll() is None, f"extract did not start its workers: {proc.stderr.read().decode()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # every process it forked (its process group), however late, ends with it
    orphans_gone = _wait_for(lambda: not _group(proc.pid), 10)
    for w in _group(proc.pid) if not orphans_gone else []:  # do not leave them behind when the test fails
        with contextlib.suppress(ProcessLookupError):
            os.kill(w, signal.SIGKILL)
    assert orphans_gone, "workers outlived the killed extract"
    assert tmp.is_dir() and not out.exists()  # what SIGKILL leaves: the half-written store

    alive = tmp_path / f"store.tmp-{os.getppid()}"  # a living process's folder is never touched
    alive.mkdir()
    extract(corpus, out, ExtractConfig(jobs=1))
    assert not tmp.exists() and alive.is_dir()
    assert (out / "summary.json").exists()


def test_stale_folders_of_ended_processes_only_are_removed(tmp_path):
    from asr_init.folders import remove_stale_temporaries

    ended = subprocess.Popen(["true"])
    ended.wait()
    names = [
        f"store.tmp-{ended.pid}",
        f"store.old-{ended.pid}",
        f"store.tmp-{os.getppid()}",
        "store.tmp-x",
        "other.tmp-1",
    ]
    for name in ["store", *names]:  # with a store in place (without one, store.old-PID would become it again)
        (tmp_path / name).mkdir()
    removed = remove_stale_temporaries(tmp_path / "store")
    assert sorted(p.name for p in removed) == sorted(names[:2])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["store", *names[2:]])


def test_workers_are_forked_whatever_the_default_start_method(tmp_path):
    """Python 3.14 starts pool workers from a forkserver by default: a worker's parent would be
    the server, not extract, and the watch on the parent would end every worker at once."""
    corpus = write_kaldi_dir(tmp_path / "c", speakers=4, utts_per_speaker=2)
    code = "import multiprocessing, sys\nmultiprocessing.set_start_method('forkserver', force=True)\n"
    code += "from asr_init.cli import app\napp(sys.argv[1:])\n"
    out = tmp_path / "store"
    cmd = [sys.executable, "-c", code, "extract", str(corpus), "--out", str(out), "--jobs", "2"]
    done = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (out / "summary.json").exists()


def _interrupted_extract(tmp_path, to_group: bool, per_speaker: int = 8, seconds: float = 2.0,
                         signum: int = signal.SIGINT) -> tuple[subprocess.CompletedProcess, float, Path]:  # fmt: skip
    """A slowed extract with --jobs 2 and 4 x `per_speaker` utterances, each slowed by `seconds` (by
    default 32 utterances, about 32 s of work), given `signum` once its workers are busy: to its whole
    process group (Ctrl-C in a terminal) or to it alone."""
    corpus = write_kaldi_dir(tmp_path / "c", speakers=4, utts_per_speaker=per_speaker)
    out = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = slowed_cli("asr_init.features.extract:frame_targets", seconds)
    cmd = [sys.executable, "-c", code, "extract", str(corpus), "--out", str(out), "--jobs", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        busy = _wait_for(lambda: len(_children(proc.pid)) >= 2 and (tmp_path / f"store.tmp-{proc.pid}").is_dir(), 30)
        assert busy and proc.poll() is None, "extract did not start its workers"
        time.sleep(0.5)
        (os.killpg if to_group else os.kill)(proc.pid, signum)
        start = time.monotonic()
        output = proc.communicate(timeout=60)[0].decode()
        return subprocess.CompletedProcess(cmd, proc.returncode, output), time.monotonic() - start, out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_ctrl_c_with_workers_prints_one_line_and_leaves_nothing(tmp_path):
    done, _, out = _interrupted_extract(tmp_path, to_group=True)
    assert done.returncode == 130, done.stdout
    assert "Traceback" not in done.stdout and "KeyboardInterrupt" not in done.stdout, done.stdout
    assert done.stdout.strip().splitlines()[-1] == "interrupted"
    assert not out.exists() and not list(tmp_path.glob("store.tmp-*"))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("signum, to_group", [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_interrupt_with_many_chunks_queued_prints_one_line(tmp_path, signum, to_group):
    """160 quick utterances (0.05 s each): ten chunks of 16, most still queued when the signal comes.
    The pool, its workers ended, failed the queued chunks that were cancelled: a traceback from its
    thread (InvalidStateError: CANCELLED) came before the 'interrupted' line."""
    done, _, out = _interrupted_extract(tmp_path, to_group, per_speaker=40, seconds=0.05, signum=signum)
    assert done.returncode == 130, done.stdout
    assert "Traceback" not in done.stdout and "Error" not in done.stdout, done.stdout
    assert done.stdout.strip().splitlines() == ["interrupted"]
    assert not out.exists() and not list(tmp_path.glob("store.tmp-*"))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_sigint_to_extract_alone_stops_its_workers_at_once(tmp_path):
    done, seconds, out = _interrupted_extract(tmp_path, to_group=False)
    assert done.returncode == 130, done.stdout
    assert seconds < 10, f"extract computed the queued utterances before it stopped ({seconds:.1f} s)"
    assert not out.exists() and not list(tmp_path.glob("store.tmp-*"))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_ctrl_c_during_synth_with_workers_prints_one_line(tmp_path):
    """synth's eSpeak workers leave Ctrl-C to it: one 'interrupted' line, no worker's traceback
    (they printed KeyboardInterrupt, from eSpeak's ctypes callback too), no half-made corpus."""
    code = slowed_cli("asr_init.corpora.synth:_synthesize_one", 0.5)
    out = tmp_path / "corpus"
    cmd = [sys.executable, "-c", code, "synth", str(out), "--hours", "0.2", "--jobs", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        busy = _wait_for(lambda: len(_children(proc.pid)) >= 2, 30)
        assert busy and proc.poll() is None, "synth did not start its workers"
        time.sleep(1.0)  # the workers past their start (SIGINT ignored) and into an utterance
        os.killpg(proc.pid, signal.SIGINT)
        output = proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert output.strip().splitlines()[-1] == "interrupted"
    assert not out.exists() and not list(tmp_path.glob("corpus.tmp-*"))


def test_a_bad_utterance_with_workers_prints_one_line(tmp_path):
    """A bad utterance (a missing file) first of 160 with --jobs 2: one error line. The chunks still
    queued were cancelled as the results were dropped, and the pool, broken as the workers were
    ended, failed them again: a traceback from its thread (InvalidStateError) came first."""
    import numpy as np
    import soundfile as sf

    (tmp_path / "c").mkdir()
    sf.write(tmp_path / "c" / "a.wav", np.random.default_rng(0).normal(0, 0.1, 2400), 8000)
    utts = [f"s{k % 4}-u{k:03d}" for k in range(160)]
    for name, line in (("wav.scp", "{} a.wav"), ("utt2spk", "{} {}"), ("phones.ctm", "{} 1 0 0.2 aa")):
        text = "".join(line.format(u, u[:2]) + "\n" for u in utts)
        (tmp_path / "c" / name).write_text(text.replace("a.wav", "missing.wav", 1))
    cmd = [sys.executable, "-m", "asr_init.cli", "extract", str(tmp_path / "c"), "--out", str(tmp_path / "store"),
           "--jobs", "2", "--dev-fraction", "0", "--test-fraction", "0"]  # fmt: skip
    done = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert (done.stdout + done.stderr).strip().splitlines() == [
        f"error: {tmp_path / 'c' / 'missing.wav'}: audio file of utterance s0-u000 does not exist (use --skip-bad "
        "to skip such utterances and report them)"
    ]


_STUCK_MID_SEND = """
import os, struct, sys, time
from asr_init.features.frontend import FeatureConfig
from asr_init.features.extract import _mapper

def stuck_mid_send(_):
    frame = sys._getframe()
    while "result_queue" not in frame.f_locals:  # the pool's worker loop, which sends the results
        frame = frame.f_back
    os.write(frame.f_locals["result_queue"]._writer.fileno(), struct.pack("!i", 1 << 20) + b"the start")
    time.sleep(600)

try:
    with _mapper(2, (FeatureConfig(), 0, {}, "sil")) as mapper:
        results = mapper(stuck_mid_send, range(2))
        time.sleep(2)  # the pool's reader has the message's start and waits for the rest
        raise RuntimeError("stopped")
except RuntimeError:
    print("stopped")
"""


def test_a_worker_ended_while_it_sends_a_result_does_not_hold_the_pool():
    """A worker ended while it sent a result left part of it in the pool's pipe, and the pool's
    reader waited for the rest for ever: an interrupted extract hung, holding --out's lock (in one
    interrupt in three of a real run). Here a worker writes the start of a result and waits."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _STUCK_MID_SEND], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "stopped", done.stderr[-2000:]
