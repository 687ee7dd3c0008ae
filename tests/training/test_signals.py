"""A real SIGTERM to a running `asr-init pretrain`: checkpoint, exit 130, then --resume."""

import signal
import subprocess
import sys
import time
from pathlib import Path

from asr_init.io import load_checkpoint


def test_sigterm_writes_resumable_checkpoint(tiny_store, tmp_path):
    out = tmp_path / "pt"
    asr_init = str(Path(sys.executable).parent / "asr-init")
    args = [
        asr_init,
        "pretrain",
        str(tiny_store),
        "--out",
        str(out),
        "--layers",
        "1",
        "--hidden",
        "64",
        "--epochs-gauss",
        "400",
        "--batch-size",
        "32",
        "--report-every",
        "200",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (out / "rbm1.partial.pt").exists() and time.time() < deadline:  # an epoch has ended: mid-training
        time.sleep(0.2)
    assert (out / "rbm1.partial.pt").exists(), "training did not start"
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "continue with --resume" in " ".join(output.split())
    state = load_checkpoint(out / "rbm1.partial.pt")
    assert state["position"]["frames"] > 0 and not state["finished"]
    assert not (out / "dbn.pt").exists()
    # --resume continues from the saved position (stopped again here to keep the test short).
    inode = (out / "rbm1.partial.pt").stat().st_ino  # each checkpoint is a new file moved in place
    resumed = subprocess.Popen(args + ["--resume"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while (out / "rbm1.partial.pt").stat().st_ino == inode and time.time() < deadline and resumed.poll() is None:
        time.sleep(0.2)  # a new epoch-end checkpoint: the resumed run is training, its handler set
    assert resumed.poll() is None and (out / "rbm1.partial.pt").stat().st_ino != inode, "the resumed run did not train"
    resumed.send_signal(signal.SIGTERM)
    output, _ = resumed.communicate(timeout=60)
    assert resumed.returncode == 130 and "resuming at epoch" in " ".join(output.split())
    later = load_checkpoint(out / "rbm1.partial.pt")
    assert later["position"]["frames"] > state["position"]["frames"]


def test_sigterm_outside_the_training_loop_says_interrupted(tiny_store, tmp_path):
    """SIGTERM while pretrain or finetune writes its outputs, after its loop's own signal handling:
    one 'interrupted' line, no traceback, exit status 130 (it ended with 143 and nothing said), and
    the same command with --resume finishes the run."""
    from conftest import terminated_cli

    repo = Path(__file__).resolve().parents[2]
    env = {"PYTHONPATH": str(repo), "COLUMNS": "200", "PATH": "/usr/bin:/bin"}
    tiny = ["--layers", "1", "--hidden", "8"]
    for stage, extra in (("pretrain", ["--epochs", "1"]), ("finetune", ["--max-epochs", "1", "--splice", "0"])):
        args = [stage, str(tiny_store), "--out", str(tmp_path / stage), *tiny, *extra]
        code = terminated_cli(f"asr_init.training.{stage}:_write_outputs")
        done = subprocess.run([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 130 and "Traceback" not in done.stdout, (stage, done.returncode, done.stdout)
        assert [ln for ln in done.stdout.splitlines() if ln.startswith("interrupted")] == ["interrupted"], done.stdout
        again = subprocess.run([sys.executable, "-m", "asr_init.cli", *args, "--resume"], env=env, text=True,
                               capture_output=True, timeout=300)  # fmt: skip
        assert again.returncode == 0, again.stdout + again.stderr


def test_a_process_of_a_torchrun_group_keeps_sigterms_default_action(monkeypatch):
    """Every command holds SIGTERM as Ctrl-C, except under torchrun (WORLD_SIZE > 1): a Python
    handler runs only between bytecodes, so a rank blocked in a collective whose peer died would
    live on until torchrun's SIGKILL 30 s later, where the default action ends it at once."""
    import signal

    from asr_init.cli import user_errors

    @user_errors
    def handler_inside():
        return signal.getsignal(signal.SIGTERM)

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert callable(handler_inside())
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert handler_inside() == signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_run_local_ends_its_processes_when_interrupted(tmp_path):
    """SIGTERM to a process running run_local (bench distributed) ends its worker processes too,
    at once: they are not left running (nor joined at exit) after it has said it was interrupted."""
    code = (
        "import time\nfrom asr_init.folders import terminate_as_interrupt\n"
        "from asr_init.training.distributed import run_local\n"
        "with terminate_as_interrupt():\n    run_local(2, time.sleep, 120)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", code], env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.time() + 60
    while time.time() < deadline and len(children.read_text().split()) < 3:  # 2 workers, multiprocessing's tracker
        time.sleep(0.2)
    workers = [p for p in children.read_text().split() if "resource_tracker" not in _cmdline(p)]
    assert len(workers) == 2, "the workers did not start"
    time.sleep(2)  # inside run_local's wait
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert "KeyboardInterrupt" in output, output
    assert not [w for w in workers if Path(f"/proc/{w}").exists()], "worker processes outlived run_local"


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_a_signal_after_the_loops_last_look_is_not_lost(monkeypatch):
    """Ctrl-C or SIGTERM in a training stage's last moments, after its loop last read the flag, was
    swallowed: the stage ended as if none had come (and `make recipes` went on to the next command).
    The block's end raises KeyboardInterrupt, so the command says 'interrupted' and exits 130."""
    import os

    import pytest

    from asr_init.training.interrupts import StopFlag, catch_signals

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), catch_signals(StopFlag()):
        os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
    with catch_signals(StopFlag()):  # no signal: nothing raised
        pass
