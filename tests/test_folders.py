"""Output folders, one protocol for every command: one writer at a time, readers' locks,
inputs never written over, settings compared and named, atomic swaps, stale temporaries."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from conftest import write_blob_store
from typer.testing import CliRunner

from asr_init.cli import app
from asr_init.errors import UserError
from asr_init.folders import lock_path, output_folder, reading
from asr_init.io import load_checkpoint
from asr_init.training.config import FinetuneConfig, PretrainConfig
from asr_init.training.finetune import finetune
from asr_init.training.interrupts import Interrupted
from asr_init.training.pretrain import pretrain

PRE = dict(layers=2, hidden=16, splice=1, epochs=1, batch_size=32, stats_frames=100)
FT = dict(layers=1, hidden=16, splice=1, batch_size=32, max_epochs=1, stats_frames=100)


def _sums(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def _one_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    return " ".join(result.output.split())


def test_a_re_extracted_store_is_not_reused_by_a_finished_or_resumed_run(tmp_path):
    store = write_blob_store(tmp_path / "store", seed=0)
    pretrain(store, PretrainConfig(**PRE), tmp_path / "dbn")
    finetune(store, FinetuneConfig(**FT), tmp_path / "dnn")
    write_blob_store(tmp_path / "store2", seed=1)  # the same folder extracted again, with other data
    shutil.rmtree(store)
    shutil.copytree(tmp_path / "store2", store)
    dbn_before, dnn_before = _sums(tmp_path / "dbn"), _sums(tmp_path / "dnn")
    with pytest.raises(UserError, match="the feature store changed since .*dbn was made from it"):
        pretrain(store, PretrainConfig(**PRE), tmp_path / "dbn")
    with pytest.raises(UserError, match="the feature store changed since .*dnn was made from it"):
        finetune(store, FinetuneConfig(**FT), tmp_path / "dnn", resume=True)
    assert _sums(tmp_path / "dbn") == dbn_before and _sums(tmp_path / "dnn") == dnn_before
    pretrain(store, PretrainConfig(**PRE), tmp_path / "dbn", force=True)  # --force starts over


def test_fine_tuning_refuses_a_dbn_that_was_trained_again(tmp_path):
    store = write_blob_store(tmp_path / "store")
    pretrain(store, PretrainConfig(**PRE), tmp_path / "dbn")
    cfg = FinetuneConfig(**(FT | {"max_epochs": 2, "layers": 6, "dbn": str(tmp_path / "dbn")}))
    with pytest.raises(Interrupted):  # leaves checkpoint.pt behind
        finetune(store, cfg, tmp_path / "dnn", interrupt_after=3)
    pretrain(store, PretrainConfig(**(PRE | {"seed": 1})), tmp_path / "dbn", force=True)
    with pytest.raises(UserError, match=r"the --dbn DBN changed since .*dnn was made from it"):
        finetune(store, cfg, tmp_path / "dnn", resume=True)


def test_a_changed_input_is_named_beside_the_settings_it_changed(tmp_path):
    """A setting read from an input changes with it (a --sparsity run's batch norm is its --init-from
    model's): the refusal names the input beside the setting; the setting alone ('batch_norm: False
    then, True now') named an option the same command had not given."""
    out, record = tmp_path / "pruned", "finetune.config.json"

    def run(batch_norm: bool, model: str) -> None:
        settings = {"config": {"batch_norm": batch_norm}, "inputs": {"--init-from model": model}}
        with output_folder(out, settings, record=record, finished=("model.pt",), force=False, in_place=True):
            (out / "model.pt").write_bytes(b"")

    run(False, "4741aaea")
    with pytest.raises(UserError) as err:
        run(True, "b81bc14f")
    assert str(err.value) == (
        f"{out} holds output made with other settings (batch_norm: False then, True now) from other inputs "
        "(--init-from model: identity 4741aaea then, b81bc14f now); use --force to replace it or choose another --out"
    )
    with pytest.raises(UserError, match="the --init-from model changed since .* \\(identity 4741aaea then, b81bc14f"):
        run(False, "b81bc14f")  # the input alone: named as ever


def test_other_settings_are_named_whole_so_two_long_store_paths_can_be_told_apart(tmp_path):
    """The refusal cut each value to 40 characters: two stores under one long folder read the same
    ('.../features/store-... then, .../features/store-... now')."""
    folder = tmp_path / "experiments" / "a-project-with-a-long-name" / "features"
    stores = [write_blob_store(folder / name, utts=12) for name in ("store-mfcc-a", "store-mfcc-b")]
    args = ["--out", str(tmp_path / "dbn"), "--layers", "1", "--hidden", "8", "--epochs", "1"]
    assert CliRunner().invoke(app, ["pretrain", str(stores[0]), *args]).exit_code == 0
    result = CliRunner().invoke(app, ["pretrain", str(stores[1]), *args])
    assert result.exit_code == 1, result.output
    assert f"(store: '{stores[0]}' then, '{stores[1]}' now)" in result.output, result.output


def test_a_second_run_on_a_locked_folder_is_refused_and_a_dead_owner_is_taken_over(blob_store, tmp_path):
    out = tmp_path / "dbn"
    settings = {"store": str(blob_store), "config": {}}
    with output_folder(out, settings, record="pretrain.config.json", finished=("dbn.pt",), force=False, in_place=True):
        assert lock_path(out).read_text().strip() == str(os.getpid())
        result = CliRunner().invoke(app, ["pretrain", str(blob_store), "--out", str(out), "--force", "--hidden", "8"])
        text = _one_error(result)
        assert f"--out {out} is being written by another asr-init run (pid {os.getpid()})" in text
        assert (out / "pretrain.config.json").exists()  # --force deleted nothing
    # A killed owner leaves its pid in the lock file but no flock: the next run takes the folder over.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(out).write_text(f"{dead.pid}\n")
    pretrain(blob_store, PretrainConfig(**PRE), out)
    assert (out / "dbn.pt").exists()


def test_a_forked_child_keeps_none_of_its_parents_locks(tmp_path):
    """A flock belongs to the open file, which fork shares: a pool worker of a SIGKILLed extract,
    ending a moment after it, held the --out lock and the next extract was refused. A child
    forked while a lock is held does not hold it: the lock is free as soon as its holder ends it,
    the child still running, and the child's copy of the block leaves the lock file alone."""
    import multiprocessing

    out, settings, parent = tmp_path / "out", {"store": "s", "config": {}}, os.getpid()
    try:
        with output_folder(out, settings, record="r.json", finished=("done",), force=False, in_place=True):
            child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
            child.start()
            leaving = os.fork()  # a child that leaves the block, as the parent will
            if leaving:
                assert os.waitpid(leaving, 0)[1] == 0
                assert lock_path(out).read_text().strip() == str(parent)
    finally:
        if os.getpid() != parent:
            os._exit(0)
    try:
        with output_folder(out, settings, record="r.json", finished=("done",), force=False, in_place=True):
            assert child.is_alive()
    finally:
        child.kill()
        child.join()


def test_a_lock_file_that_is_a_link_or_a_fifo_is_refused_and_what_it_names_is_untouched(blob_store, tmp_path):
    """A link planted where a lock goes would have had its target truncated (or, dangling,
    created); a FIFO could block. Writers and readers both refuse it in one line."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious data\n")
    (tmp_path / "runs").mkdir()
    lock_path(tmp_path / "runs" / "ft").symlink_to(victim)
    lock_path(tmp_path / "runs" / "dangling").symlink_to(tmp_path / "created-by-lock")
    os.mkfifo(lock_path(tmp_path / "runs" / "fifo"))
    for name, what in (
        ("ft", "is a symbolic link"),
        ("dangling", "is a symbolic link"),
        ("fifo", "is not a regular file"),
    ):
        args = ["pretrain", str(blob_store), "--out", str(tmp_path / "runs" / name), "--hidden", "8"]
        assert f"lock file {lock_path(tmp_path / 'runs' / name)} {what}; remove it" in _one_error(
            CliRunner().invoke(app, args)
        )
    (tmp_path / "runs" / "store").mkdir()
    lock_path(tmp_path / "runs" / "store").symlink_to(victim)
    with pytest.raises(UserError, match="is a symbolic link; remove it"), reading(tmp_path / "runs" / "store"):
        pass
    assert victim.read_text() == "precious data\n" and not (tmp_path / "created-by-lock").exists()
    assert not (tmp_path / "runs" / "ft").exists()


def test_force_cannot_replace_a_store_a_running_stage_reads(blob_store, tmp_path):
    """A stage holds a shared lock on what it reads: --force on that store (extract, or
    pretrain --out over it) is refused while it runs, and allowed after."""
    store = tmp_path / "store"
    shutil.copytree(blob_store, store)
    with reading(store):
        result = CliRunner().invoke(app, ["extract", str(tmp_path / "nowhere"), "--out", str(store), "--force"])
        assert "nowhere is not a folder" in _one_error(result)  # the corpus is checked first
        with pytest.raises(UserError, match=f"--out {store} is being read by another asr-init run"):
            output_folder(store, {}, record="config.json", finished=("summary.json",), force=True).__enter__()
    with output_folder(store, {}, record="config.json", finished=("summary.json",), force=True) as output:
        assert output.path.name.startswith("store.tmp-")
        (output.path / "summary.json").write_text("{}")
    assert sorted(p.name for p in store.iterdir()) == ["summary.json"]  # swapped in whole


def test_a_folder_named_through_a_link_is_the_folder_it_names(blob_store, tmp_path):
    """Locks were named after the path given: --force on a store replaced it while a stage read it
    through a link. --force on --out a link swapped the link for a folder and left the old store
    and a stale OUT.old-PID link; --out a dangling link failed after the work, naming its temporary."""
    store, link = tmp_path / "store", tmp_path / "link"
    shutil.copytree(blob_store, store)
    link.symlink_to(store)
    assert lock_path(link) == lock_path(store) == tmp_path / ".store.lock"
    with reading(link), pytest.raises(UserError, match="is being read by another asr-init run"):
        output_folder(store, {}, record="config.json", finished=("summary.json",), force=True).__enter__()
    with output_folder(link, {}, record="config.json", finished=("summary.json",), force=True) as output:
        (output.path / "summary.json").write_text("{}")
    assert link.is_symlink() and sorted(p.name for p in store.iterdir()) == ["summary.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".store.lock", "link", "store"]
    (tmp_path / "dangling").symlink_to(tmp_path / "made")
    with output_folder(tmp_path / "dangling", {}, record="r.json", finished=("r.json",), force=False) as output:
        (output.path / "r.json").write_text("{}")
    assert (tmp_path / "dangling" / "r.json").is_file() and (tmp_path / "made" / "r.json").is_file()


def test_stale_temporaries_of_a_name_with_glob_characters_go(tmp_path):
    """OUT.tmp-PID of a killed run was found by a glob of OUT's name: 'st[1]' matched nothing."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"st[1].tmp-{dead.pid}").mkdir()
    with output_folder(tmp_path / "st[1]", {}, record="r.json", finished=("r.json",), force=False) as output:
        (output.path / "r.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".st[1].lock", "st[1]"]


def test_a_failed_build_leaves_the_old_output_whole_and_stale_temporaries_go(tmp_path):
    out = tmp_path / "out"
    with output_folder(out, {"a": 1}, record="r.json", finished=("r.json",), force=False) as output:
        (output.path / "r.json").write_text('{"a": 1}')
    with pytest.raises(RuntimeError), output_folder(out, {"a": 2}, record="r.json", finished=(), force=True) as o:
        (o.path / "r.json").write_text('{"a": 2}')
        raise RuntimeError("killed half way")
    assert (out / "r.json").read_text() == '{"a": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    kept = [f"out.tmp-{os.getpid()}x", "out.tmp-\u00b2"]  # not a PID: '²' passes str.isdigit(), not int()
    for stale in (f"out.tmp-{dead.pid}", f"out.old-{dead.pid}", *kept):
        (tmp_path / stale).mkdir()
    with output_folder(out, {"a": 1}, record="r.json", finished=("r.json",), force=False) as output:
        assert output.done == {"a": 1}  # the same settings: nothing to do
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out", *kept]
    message = r"holds a test output made with other settings \(a: 1 then, 3 now\)"
    with (
        pytest.raises(UserError, match=message),
        output_folder(out, {"a": 3}, record="r.json", finished=("r.json",), force=False, what="a test output"),
    ):
        pass


def test_two_processes_on_one_folder(blob_store, tmp_path):
    out = tmp_path / "dnn"
    code = (
        "import sys; from asr_init.cli import main; sys.argv = ['asr-init', 'finetune', sys.argv[1], '--out', "
        "sys.argv[2], '--layers', '1', '--hidden', '16', '--splice', '1', '--max-epochs', '200', "
        "'--schedule', 'constant', '--batch-size', '8']; "
        "main()"
    )
    first = subprocess.Popen([sys.executable, "-c", code, str(blob_store), str(out)], stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while not (out / "finetune.config.json").exists() and time.time() < deadline:
            time.sleep(0.1)
        assert first.poll() is None, first.stderr.read().decode()  # 200 epochs at a constant rate: still training
        second = subprocess.run(
            [sys.executable, "-c", code, str(blob_store), str(out)], capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 1
        assert f"is being written by another asr-init run (pid {first.pid})" in " ".join(second.stderr.split())
    finally:
        first.kill()
        first.wait()


def test_a_run_that_failed_before_its_first_checkpoint_does_not_block_the_corrected_one(blob_store, tmp_path):
    finetune(blob_store, FinetuneConfig(**FT), tmp_path / "a")
    out = tmp_path / "dnn"
    wrong = FinetuneConfig(**(FT | {"init_from": str(tmp_path / "a"), "reuse_layers": 3}))
    with pytest.raises(UserError, match="has only 1 hidden layers"):
        finetune(blob_store, wrong, out)
    assert (out / "finetune.config.json").exists() and not (out / "checkpoint.pt").exists()
    right = FinetuneConfig(**(FT | {"init_from": str(tmp_path / "a"), "reuse_layers": 1}))
    finetune(blob_store, right, out)  # other settings, no --force needed
    assert (out / "model.pt").exists()


def test_out_that_is_a_file_is_refused(blob_store, tmp_path):
    target = tmp_path / "x"
    target.write_text("keep me\n")
    result = CliRunner().invoke(app, ["finetune", str(blob_store), "--out", str(target)])
    assert f"--out {target} is a file, not a folder" in _one_error(result)
    assert target.read_text() == "keep me\n"


def test_each_layer_checkpoint_stores_one_layer_and_outputs_follow_the_umask(blob_store, tmp_path):
    old = os.umask(0o022)
    try:
        pretrain(blob_store, PretrainConfig(**(PRE | {"layers": 3})), tmp_path / "a")
        os.umask(0o027)
        pretrain(blob_store, PretrainConfig(**PRE), tmp_path / "b")
    finally:
        os.umask(old)
    rbm3 = load_checkpoint(tmp_path / "a" / "rbm3.pt")
    assert "stack_below" not in rbm3 and rbm3["rbm"]["W"].shape == (16, 16)
    for name in ("dbn.pt", "rbm1.pt", "pretrain.json", "recon.csv"):
        assert (tmp_path / "a" / name).stat().st_mode & 0o777 == 0o644, name
        assert (tmp_path / "b" / name).stat().st_mode & 0o777 == 0o640, name


def test_a_kill_between_the_swaps_two_renames_loses_neither_output(tmp_path):
    """Killed after OUT -> OUT.old-PID and before OUT.tmp-PID -> OUT: no OUT is left, and the
    next command puts the old output back instead of deleting both."""
    out = tmp_path / "out"
    with output_folder(out, {"a": 1}, record="r.json", finished=("r.json",), force=False) as output:
        (output.path / "r.json").write_text('{"a": 1}')
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.replace(out, tmp_path / f"out.old-{dead.pid}")  # the first rename of a swap ...
    (tmp_path / f"out.tmp-{dead.pid}").mkdir()  # ... whose new output was never renamed in
    (tmp_path / f"out.tmp-{dead.pid}" / "r.json").write_text('{"a": 2}')
    with output_folder(out, {"a": 1}, record="r.json", finished=("r.json",), force=False) as output:
        assert output.done == {"a": 1}  # the old output, back in place and complete: nothing to do
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


def test_sigterm_while_an_output_is_built_removes_its_temporary_and_keeps_the_old(tmp_path):
    """SIGTERM (what `timeout`, `kill` and job schedulers send) stops the build as Ctrl-C does:
    OUT.tmp-PID is removed, OUT stays as it was, and a process forked meanwhile still ends by SIGTERM."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("kept")
    (out / "r.json").write_text("{}")
    code = f"""
import multiprocessing, signal, sys, time
from pathlib import Path
from asr_init.folders import output_folder
def nap(ready):
    ready.set()  # after the fork's own signal set-up, which drops a signal that arrives during it
    time.sleep(60)
fork = multiprocessing.get_context("fork")
with output_folder(Path({str(out)!r}), {{}}, record="r.json", finished=("r.json",), force=True) as o:
    (o.path / "half").write_text("x")
    ready = fork.Event()
    child = fork.Process(target=nap, args=(ready,))
    child.start()
    ready.wait(60)
    print(child.pid, flush=True)
    child.terminate()
    child.join()
    print(child.exitcode, flush=True)
    time.sleep(60)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdout.readline()
        assert int(proc.stdout.readline()) == -15  # the forked child ended by SIGTERM, as by default
        proc.terminate()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not list(tmp_path.glob("out.tmp-*"))
    assert sorted(p.name for p in out.iterdir()) == ["old.txt", "r.json"] and (out / "old.txt").read_text() == "kept"
    assert "KeyboardInterrupt" in proc.stderr.read().decode()


@pytest.mark.parametrize(
    "record, summary, message",
    [
        ({"config": {}, "inputs": "feature store"}, {}, "exists and is not output; choose another --out"),
        ({"config": {}}, [], "summary.json is damaged (not a JSON object); use --force"),
        ({"config": {}}, "[" * 100_000 + "]" * 100_000, "not a record asr-init wrote (JSON nested too deeply)"),
    ],
)
def test_records_of_another_shape_than_asr_init_writes_are_one_error(tmp_path, record, summary, message):
    """A finished folder whose record or summary is JSON of another shape (an "inputs" that is
    not a dict, a summary that is not an object, nesting past Python's recursion) is refused in
    one line; it raised TypeError, KeyError or RecursionError in the command that used it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "record.json").write_text(json.dumps(record))
    (out / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))
    held = output_folder(out, {"config": {}}, record="record.json", finished=("summary.json",), force=False,
                         summary="summary.json")  # fmt: skip
    with pytest.raises(UserError, match=re.escape(message)), held:
        pass
