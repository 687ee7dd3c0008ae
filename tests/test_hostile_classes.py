"""Issue 22's classes of hostile input that tests/test_hostile_inputs.py leaves out: --force over
inputs outside the corpus folder, folders that merely hold a file named like an asr-init record,
keys given twice, non-finite data and target ids outside the inventory, one-line errors for
long names, the current folder and huge values, a device named as audio, a full disk while a
checkpoint is written, an interrupt while the plot is drawn, and prune and bench under a memory
limit. Every bad input gets one 'error:' line, a non-zero exit and no lost file."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
from conftest import write_kaldi_dir, write_kaldi_features, write_tiny_model
from test_hostile_inputs import LIMIT, _deflated_checkpoint, _huge_shard
from typer.testing import CliRunner

from asr_init.cli import app

runner = CliRunner()

# Tiny runs (a fraction of a second each); PRE and FT without the network's size.
PRE = ["--max-frames", "256", "--epochs-gauss", "1", "--stats-frames", "100", "--device", "cpu"]
FT = ["--max-frames", "256", "--max-epochs", "1", "--stats-frames", "100", "--device", "cpu"]
PRETRAIN, FINETUNE = ["--layers", "1", "--hidden", "8", *PRE], ["--layers", "1", "--hidden", "8", *FT]


def _sized(command: str, args: list[str]) -> list[str]:
    """The tiny run's options for `command` with `args`, --layers 1 and --hidden 8 where `args` lacks them."""
    base = list(PRE if command == "pretrain" else FT)
    base += [] if "--layers" in args else ["--layers", "1"]
    base += [] if "--hidden" in args else ["--hidden", "8"]
    return [*base, *args]


def _digests(*paths: Path) -> dict[str, str]:
    """sha256 of every file under `paths`, by path (output locks left out)."""
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    files = [f for f in files if not (f.name.startswith(".") and f.name.endswith(".lock"))]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def error_line(args: list, *inputs: Path, code: int = 1) -> str:
    """Run the CLI; check the exit status, the one error line, no traceback and the untouched
    inputs (every file under them, same bytes, none gone); return the line."""
    before = _digests(*inputs)
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output[-3000:]
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an uncaught error
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output[-3000:]
    assert _digests(*inputs) == before
    return errors[0]


def _rewrite_paths(folder: Path, old: Path, new: Path) -> None:
    """Make the .scp files under `folder` name the archives under `new` instead of `old`."""
    for scp in folder.rglob("*.scp"):
        scp.write_text(scp.read_text().replace(str(old), str(new)))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_kaldi_dir(tmp_path / "corpus", speakers=3, utts_per_speaker=1)


@pytest.fixture
def kaldi(tmp_path: Path) -> dict:
    """A Kaldi data dir (feats, cmvn, utt2spk) at KD/data with pdf alignments KD/pdf.ark."""
    kd = tmp_path / "kd"
    ref = write_kaldi_features(kd / "data", speakers=3, utts_per_speaker=2)
    kaldiio.save_ark(str(kd / "pdf.ark"), ref["pdfs"])
    return {"dir": kd, **ref}


# ------------------------------------------------------------ 1. --force over inputs outside the corpus


@pytest.mark.parametrize("out_is", ["the audio folder", "the folder above it"])
def test_extract_force_never_replaces_audio_named_by_absolute_path(corpus, tmp_path, out_is):
    audio = tmp_path / "media" / "audio"
    audio.parent.mkdir()
    shutil.move(corpus / "wav", audio)
    lines = (corpus / "wav.scp").read_text().splitlines()
    (corpus / "wav.scp").write_text("".join(f"{ln.split()[0]} {audio / Path(ln.split()[1]).name}\n" for ln in lines))
    out = audio if out_is == "the audio folder" else audio.parent
    wavs = sorted(p.name for p in audio.iterdir())
    line = error_line(["extract", corpus, "--out", out, "--force", "--jobs", "1"], corpus, audio)
    assert f"--out {out} contains the audio file {audio}" in line and "nothing was written or deleted" in line
    assert sorted(p.name for p in audio.iterdir()) == wavs and len(wavs) == 3


@pytest.mark.parametrize("where", ["phones.ctm", "alignments/phones.ctm"])
def test_extract_force_never_replaces_a_store_holding_the_ctm(corpus, tiny_store, tmp_path, where):
    """The --out folder is a real feature store (which --force may replace) that also holds the CTM."""
    out = shutil.copytree(tiny_store, tmp_path / "store")
    ctm = out / where
    ctm.parent.mkdir(exist_ok=True)
    shutil.move(corpus / "phones.ctm", ctm)
    line = error_line(["extract", corpus, "--ctm", ctm, "--out", out, "--force", "--jobs", "1"], corpus, out)
    assert f"--out {out} contains the --ctm file {ctm}" in line


@pytest.mark.parametrize(
    "option, text",
    [("--phones", "sil\naa\niy\ns\nm\n"), ("--phone-map", "aa aa\niy iy\ns s\nm m\nsil sil\n")],
)
def test_extract_force_never_replaces_a_label_file_inside_out(corpus, tiny_store, tmp_path, option, text):
    out = shutil.copytree(tiny_store, tmp_path / "store")
    labels = out / "labels.txt"
    labels.write_text(text)
    line = error_line(["extract", corpus, option, labels, "--out", out, "--force", "--jobs", "1"], corpus, out)
    assert f"--out {out} contains the {option} file {labels}" in line


# ------------------------------------------------- 2. a file named like a record is not an output


def _project(folder: Path, record: str, text: str) -> Path:
    """A user's folder: `record` (named like an asr-init record, written by someone else) and more."""
    (folder / "data").mkdir(parents=True)
    (folder / record).write_text(text)
    (folder / "README.md").write_text("# my project\n")
    (folder / "data" / "table.csv").write_text("a,b\n1,2\n")
    return folder


@pytest.mark.parametrize("text", ['{"name": "my project"}', "not JSON at all", '["a", "list"]'])
def test_extract_force_refuses_a_project_folder_with_its_own_config_json(corpus, tmp_path, text):
    project = _project(tmp_path / "project", "config.json", text)
    for force in (["--force"], []):
        line = error_line(["extract", corpus, "--out", project, "--jobs", "1", *force], corpus, project)
        assert f"output {project} exists and is not a feature store" in line


def test_import_kaldi_force_refuses_a_project_folder_with_its_own_config_json(kaldi, tmp_path):
    project = _project(tmp_path / "project", "config.json", '{"name": "my project"}')
    args = ["import-kaldi", kaldi["dir"] / "data", "--out", project, "--ali", kaldi["dir"] / "pdf.ark", "--force"]
    line = error_line(args, kaldi["dir"], project)
    assert f"output {project} exists and is not a feature store" in line


def test_evaluate_refuses_a_folder_with_another_tools_results_json(blob_store, tmp_path):
    model = write_tiny_model(blob_store, tmp_path / "model")
    out = _project(tmp_path / "scoring", "results.json", '{"wer": 12.5, "tool": "sclite"}')
    line = error_line(["evaluate", blob_store, "--model", model, "--out", out, "--frames-only", "--device", "cpu"],
                      blob_store, model, out)  # fmt: skip
    assert f"output {out} exists and is not evaluation results" in line


@pytest.mark.parametrize(
    "command, record, extra",
    [("pretrain", "pretrain.config.json", PRETRAIN), ("finetune", "finetune.config.json", FINETUNE)],
)
def test_training_force_refuses_a_folder_with_a_foreign_record(blob_store, tmp_path, command, record, extra):
    out = _project(tmp_path / "run", record, '{"lr": 0.1, "written by": "another trainer"}')
    line = error_line([command, blob_store, "--out", out, "--force", *extra], blob_store, out)
    assert f"output {out} exists and is not a {command} run" in line


# ---------------------------------------------------------------------------- 3. keys given twice


@pytest.mark.parametrize("second", ["the same line", "another region"])
def test_extract_refuses_a_segments_line_given_twice(corpus, tmp_path, second):
    recordings = [ln.split()[0] for ln in (corpus / "wav.scp").read_text().splitlines()]
    lines = [f"{r} {r} 0.00 0.50" for r in recordings]
    lines.append(lines[1] if second == "the same line" else f"{recordings[1]} {recordings[1]} 0.10 0.40")
    (corpus / "segments").write_text("\n".join(lines) + "\n")
    line = error_line(["extract", corpus, "--out", tmp_path / "store", "--jobs", "1"], corpus)
    segments = corpus / "segments"
    assert f"utterance {recordings[1]} is given twice, at {segments}:2 and at {segments}:4" in line
    assert not (tmp_path / "store").exists()


def test_import_kaldi_refuses_a_feats_scp_key_given_twice(kaldi, tmp_path):
    scp = kaldi["dir"] / "data" / "feats.scp"
    lines = scp.read_text().splitlines()
    scp.write_text("\n".join([*lines, lines[1]]) + "\n")
    args = ["import-kaldi", kaldi["dir"] / "data", "--out", tmp_path / "store", "--ali", kaldi["dir"] / "pdf.ark"]
    line = error_line(args, kaldi["dir"])
    utt = lines[1].split()[0]
    assert f"utterance {utt} is given twice, at {scp}, line 2 and at {scp}, line {len(lines) + 1}" in line
    assert not (tmp_path / "store").exists()


def test_import_kaldi_refuses_a_cmvn_speaker_given_twice(kaldi, tmp_path):
    scp = kaldi["dir"] / "data" / "cmvn.scp"
    lines = scp.read_text().splitlines()
    scp.write_text("\n".join([*lines, lines[0]]) + "\n")
    args = ["import-kaldi", kaldi["dir"] / "data", "--out", tmp_path / "store", "--ali", kaldi["dir"] / "pdf.ark"]
    line = error_line(args, kaldi["dir"])
    assert f"{lines[0].split()[0]} is given twice" in line and str(scp) in line


@pytest.mark.parametrize("form", ["binary ark", "text ark", "two --ali files that disagree"])
def test_import_kaldi_refuses_an_alignment_key_given_twice(kaldi, tmp_path, form):
    kd, pdfs = kaldi["dir"], kaldi["pdfs"]
    first = sorted(pdfs)[0]
    ali = [kd / "pdf.ark"]
    if form == "binary ark":
        with open(kd / "pdf.ark", "ab") as fh:
            kaldiio.save_ark(fh, {first: pdfs[first]})
    elif form == "text ark":
        ali = [kd / "pdf.txt"]
        entries = [*sorted(pdfs), first]
        ali[0].write_text("".join(f"{u} {' '.join(map(str, pdfs[u]))}\n" for u in entries))
    else:
        ali.append(kd / "more.ark")
        kaldiio.save_ark(str(ali[1]), {first: pdfs[first][::-1].copy()})  # identical ones are taken once
    args = ["import-kaldi", kd / "data", "--out", tmp_path / "store"] + [x for a in ali for x in ("--ali", a)]
    line = error_line(args, kd)
    if len(ali) == 2:
        assert f"utterance {first} has different pdf alignments in {ali[0]}, entry 1 and {ali[1]}, entry 1" in line
    else:
        assert f"utterance {first} is given twice, at {ali[0]}, entry 1 and at {ali[0]}, entry {len(pdfs) + 1}" in line
    assert not (tmp_path / "store").exists()


# ------------------------------------------------------------------ 4. non-finite data, ids out of range


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", ["train", "--dev"])
def test_import_kaldi_refuses_non_finite_features(kaldi, tmp_path, value, where):
    kd = kaldi["dir"]
    data = kd / "data"
    args = ["import-kaldi", data, "--out", tmp_path / "store", "--ali", kd / "pdf.ark"]
    if where == "--dev":
        dev = write_kaldi_features(kd / "dev", speakers=2, utts_per_speaker=1, prefix="dev-")
        kaldiio.save_ark(str(kd / "pdf.ark"), {**kaldi["pdfs"], **dev["pdfs"]})
        data, feats, args = kd / "dev", dev["feats"], [*args, "--dev", kd / "dev"]
    else:
        feats = kaldi["feats"]
    bad = sorted(feats)[1]
    feats = {u: f.copy() for u, f in feats.items()}
    feats[bad][5, 3] = value
    kaldiio.save_ark(str(data / "feats.ark"), feats, scp=str(data / "feats.scp"))
    line = error_line(args, kd)
    assert f"{data / 'feats.scp'}, line 2: the features of {bad} hold NaN or infinite values (first in frame 5)" in line
    assert not (tmp_path / "store").exists()


def _edited_stats(store: Path, field: str, value: float) -> Path:
    stats = json.loads((store / "stats.json").read_text())
    stats[field][2] = value
    (store / "stats.json").write_text(json.dumps(stats))
    return store


@pytest.mark.parametrize(
    "command, field, value, shown",
    [("pretrain", "mean", float("nan"), "a mean of nan"), ("pretrain", "std", float("inf"), "deviation of inf"),
     ("pretrain", "std", -1.0, "deviation of -1"), ("finetune", "mean", float("nan"), "a mean of nan")],
)  # fmt: skip
def test_training_refuses_a_store_whose_stats_are_not_finite(blob_store, tmp_path, command, field, value, shown):
    store = _edited_stats(shutil.copytree(blob_store, tmp_path / "store"), field, value)
    extra = PRETRAIN if command == "pretrain" else FINETUNE
    line = error_line([command, store, "--out", tmp_path / "run", *extra], store)
    assert f"{store / 'stats.json'} gives dimension 2" in line and shown in line
    assert "cannot be normalised" in line and "--lr" not in line
    assert not (tmp_path / "run" / "pretrain.json").exists() and not (tmp_path / "run" / "finetune.json").exists()


@pytest.mark.parametrize(
    "kind, value, labels",
    [("states", -1, 12), ("states", 12, 12), ("states", 30000, 12), ("phones", 4, 4), ("phones", -7, 4)],
)
def test_finetune_refuses_a_target_id_outside_the_inventory(blob_store, tmp_path, kind, value, labels):
    store = shutil.copytree(blob_store, tmp_path / "store")
    shard = store / "shards" / f"{kind}-00000.npy"
    ids = np.load(shard)
    ids[3] = value
    np.save(shard, ids)
    line = error_line(["finetune", store, "--out", tmp_path / "ft", "--targets", kind, *FINETUNE], store)
    assert f"store {store}: utterance u000 has {kind} id {value}, outside {kind}.txt (ids 0 to {labels - 1})" in line
    assert not (tmp_path / "ft" / "model.pt").exists()


# -------------------------------------------------------- 5. names, the current folder, huge values


@pytest.mark.parametrize(
    "command, name",
    [("pretrain", "x" * 256), ("extract", "é" * 128), ("pretrain", "y" * 256 + "/sub")],
)
def test_an_out_name_too_long_for_the_file_system(blob_store, corpus, tmp_path, command, name):
    out = tmp_path / "outs" / name
    out.parents[len(Path(name).parts) - 1].mkdir()
    args = (
        [command, corpus, "--out", out, "--jobs", "1"]
        if command == "extract"
        else [command, blob_store, "--out", out, *PRETRAIN]
    )
    line = error_line(args, corpus, blob_store)
    assert "File name too long; choose a shorter name" in line and name.split("/")[0] in line
    assert not list((tmp_path / "outs").iterdir())


@pytest.mark.parametrize(
    "args, named",
    [
        (["extract", "{corpus}", "--out", "{loop}/store", "--jobs", "1"], "--out"),
        (["pretrain", "{store}", "--out", "{loop}", *PRETRAIN], "--out"),
        (["evaluate", "{store}", "--model", "{model}", "--out", "{loop}", "--device", "cpu"], "--out"),
        (["extract", "{loop}", "--out", "{tmp}/x", "--jobs", "1"], "corpus"),
        (["import-kaldi", "{loop}", "--out", "{tmp}/x", "--ali", "{tmp}/pdf.ark"], "Kaldi data dir"),
    ],
)
def test_a_path_on_a_symlink_loop_is_one_error_line(blob_store, corpus, tmp_path, args, named):
    """Two links that name each other, as --out (or a folder above it) or as the input folder, were
    Path.resolve's RuntimeError and a traceback."""
    loop = tmp_path / "loopA"
    (tmp_path / "loopB").symlink_to(loop)
    loop.symlink_to(tmp_path / "loopB")
    model = write_tiny_model(blob_store, tmp_path / "model")
    line = error_line([a.format(corpus=corpus, store=blob_store, model=model, loop=loop, tmp=tmp_path) for a in args],
                      corpus, blob_store, model)  # fmt: skip
    assert f"error: {named} {loop}" in line and "lies on a symlink loop; remove the loop or give another path" in line
    assert not (tmp_path / "x").exists()


def test_a_memory_error_without_a_message_is_named(blob_store, tmp_path, monkeypatch):
    """Python's MemoryError() carries no message (a read that never ends, a list too long to grow):
    the line names it, where it said "a value is too large to use ()"."""
    from asr_init.features.store import FeatureStore

    def exhausted(self):
        raise MemoryError

    monkeypatch.setattr(FeatureStore, "_read_manifest", exhausted)
    line = error_line(["pretrain", blob_store, "--out", tmp_path / "dbn", *PRETRAIN], blob_store)
    assert line == (
        "error: not enough memory (MemoryError); give smaller sizes (for training --hidden, --layers, "
        "--batch-size, --splice) or run where there is more"
    ), line


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """The current folder: a temporary one holding a user's files."""
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "notes.txt").write_text("keep me\n")
    (work / "sub" / "data.bin").write_bytes(bytes(range(256)))
    monkeypatch.chdir(work)
    return work


@pytest.mark.parametrize("out", [".", "sub/..", "./sub/../."])
@pytest.mark.parametrize("command", ["pretrain", "extract"])
def test_force_never_replaces_the_current_folder(blob_store, corpus, workdir, command, out):
    args = [command, corpus, "--jobs", "1"] if command == "extract" else [command, blob_store, *PRETRAIN]
    line = error_line([*args, "--out", out, "--force"], workdir, corpus)
    assert "is the current folder or holds it; choose another --out" in line
    assert sorted(p.name for p in workdir.iterdir()) == ["notes.txt", "sub"]


@pytest.mark.parametrize("out", ["sub/..", "."])
def test_import_kaldi_force_never_replaces_the_current_folder(kaldi, workdir, out):
    args = ["import-kaldi", kaldi["dir"] / "data", "--out", out, "--force", "--ali", kaldi["dir"] / "pdf.ark"]
    line = error_line(args, workdir, kaldi["dir"])
    assert f"--out {out} is the current folder or holds it" in line
    assert sorted(p.name for p in workdir.iterdir()) == ["notes.txt", "sub"]


def test_force_never_replaces_a_folder_above_the_current_one(blob_store, workdir):
    (workdir / "sub" / "deeper").mkdir()
    os.chdir(workdir / "sub" / "deeper")  # undone by the fixture's monkeypatch.chdir
    line = error_line(["pretrain", blob_store, "--out", "../..", "--force", *PRETRAIN], workdir)
    assert "--out ../.. is the current folder or holds it" in line


_HUGE = [
    (["--hidden", "1000000000"], "invalid --hidden 1000000000: at most 65,536"),
    (["--splice", "1000000"], "invalid --splice 1000000: at most 100"),
    (["--seed", str(2**64)], f"invalid --seed {2**64}: must be from 0 to 4294967295"),
    (["--seed", str(2**32)], f"invalid --seed {2**32}: must be from 0 to 4294967295"),
    (["--layers", "100000"], "invalid --layers 100000: at most 64"),
    (["--layers", str(10**12)], f"invalid --layers {10**12}: at most 64"),  # the widths listed first: no memory
    (["--stats-frames", str(10**20)], f"invalid --stats-frames {10**20}: at most 16,777,216"),
]


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
@pytest.mark.parametrize("args, message", _HUGE)
def test_training_refuses_huge_values_in_one_line(blob_store, tmp_path, command, args, message):
    line = error_line([command, blob_store, "--out", tmp_path / "run", *_sized(command, args)], blob_store)
    assert message in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hidden", "8,1000000000"], "invalid --hidden 8,1000000000: at most 65,536"),
        (["--layers", "2", "--hidden", "8", "--splice", str(10**30)], f"invalid --splice {10**30}: at most 100"),
    ],
)
def test_pretrain_refuses_huge_values_given_otherwise(blob_store, tmp_path, args, message):
    assert message in error_line(["pretrain", blob_store, "--out", tmp_path / "run", *PRE, *args], blob_store)


@pytest.mark.parametrize(
    "args, message",
    [
        (["inspect", "{store}", "--hidden", "1000000000"], "invalid --hidden 1000000000: at most 65,536"),
        (["inspect", "{store}", "--seed", str(2**64)], f"invalid --seed {2**64}: must be from 0 to 4294967295"),
        (["extract", "{corpus}", "--out", "{tmp}/s", "--seed", str(2**64)], f"invalid --seed {2**64}: must be from 0"),
        (["optimal-d", "--samples", "10000000000"], "invalid --samples 10000000000: must be from 100 to 100,000,000"),
        (["optimal-d", "--seed", str(2**64)], f"invalid --seed {2**64}"),
    ],
)
def test_other_commands_refuse_huge_values_in_one_line(blob_store, corpus, tmp_path, args, message):
    args = [a.format(store=blob_store, corpus=corpus, tmp=tmp_path) for a in args]
    assert message in error_line(args, blob_store, corpus)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("value", ["1e10", "lots", "1.5"])
def test_optimal_d_samples_that_are_not_an_integer_are_a_usage_error_of_one_line(value):
    line = error_line(["optimal-d", "--samples", value], code=2)
    assert "invalid value for '--samples'" in line and "optimal-d --help" in line


@pytest.mark.parametrize(
    "command, args",
    [
        ("pretrain", ["--lr-gauss", "1e300"]),
        ("pretrain", ["--layers", "2", "--lr", "1e300"]),
        ("finetune", ["--lr", "1e300"]),
    ],
)
def test_a_huge_learning_rate_stops_with_one_line(blob_store, tmp_path, command, args):
    result = runner.invoke(app, [command, str(blob_store), "--out", str(tmp_path / "run"), *_sized(command, args)])
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), repr(result.exception)
    assert len(errors) == 1 and "Traceback" not in result.output, result.output[-3000:]
    assert "lr" in errors[0] and "1e+300" in errors[0] and "float32 holds" in errors[0], errors[0]


# ---------------------------------------------------------------- 7. a full disk while checkpointing


def _full_disk_at(monkeypatch, name: str, folder: Path) -> dict:
    """Make atomic_write fail with ENOSPC, half-way through, when it writes `name`; return the
    digests of `folder`, taken at that moment, in the dict returned."""
    import asr_init.io

    real, seen = asr_init.io.atomic_write, {}

    def atomic_write(path, write):
        if Path(path).name != name:
            return real(path, write)
        seen.update(_digests(folder))
        seen["names"] = sorted(p.name for p in folder.iterdir())

        def half(fh):
            fh.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")

        return real(path, half)

    monkeypatch.setattr(asr_init.io, "atomic_write", atomic_write)
    return seen


@pytest.mark.parametrize("checkpoint, layers", [("dbn.pt", "1"), ("rbm2.pt", "2")])
def test_a_full_disk_while_pretrain_writes_a_checkpoint(blob_store, tmp_path, monkeypatch, checkpoint, layers):
    out = tmp_path / "dbn"
    args = ["pretrain", blob_store, "--out", out, *_sized("pretrain", ["--layers", layers])]
    seen = _full_disk_at(monkeypatch, checkpoint, out)
    line = error_line(args, blob_store)
    assert line == f"error: {out / checkpoint}: No space left on device; free some space and run the command again"
    names = seen.pop("names")
    assert "rbm1.pt" in names and "pretrain.config.json" in names
    assert sorted(p.name for p in out.iterdir()) == names  # no temporary, no half checkpoint
    assert _digests(out) == seen  # the run's earlier files as they were
    monkeypatch.undo()
    result = runner.invoke(app, [str(a) for a in [*args, "--resume"]])  # space freed: on from rbm1.pt
    assert result.exit_code == 0, result.output[-3000:]
    assert "layer 1: finished earlier" in result.output
    assert _digests(out / "rbm1.pt") == {str(out / "rbm1.pt"): seen[str(out / "rbm1.pt")]}
    assert (out / "pretrain.json").is_file() and (out / "recon.png").is_file()


def test_a_full_disk_while_finetune_writes_its_model(blob_store, tmp_path, monkeypatch):
    out = tmp_path / "ft"
    seen = _full_disk_at(monkeypatch, "model.pt", out)
    line = error_line(["finetune", blob_store, "--out", out, *FINETUNE], blob_store)
    assert line == f"error: {out / 'model.pt'}: No space left on device; free some space and run the command again"
    names = seen.pop("names")
    assert "checkpoint.pt" in names and "model.pt" not in names
    assert sorted(p.name for p in out.iterdir()) == names and _digests(out) == seen


# ------------------------------------------------------------------- 8. an interrupt while plotting


def _interrupt_once(monkeypatch, name: str) -> list:
    """Make asr_init.plots.`name` raise KeyboardInterrupt on its first call; the list counts calls."""
    import asr_init.plots

    real, calls = getattr(asr_init.plots, name), []

    def plot(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(asr_init.plots, name, plot)
    return calls


@pytest.mark.parametrize("again", [["--resume"], []])
@pytest.mark.parametrize(
    "command, plot, summary, png",
    [
        ("pretrain", "plot_recon", "pretrain.json", "recon.png"),
        ("finetune", "plot_training", "finetune.json", "train.png"),
    ],
)
def test_an_interrupt_while_plotting_leaves_a_run_that_is_not_finished(
    blob_store, tmp_path, monkeypatch, command, plot, summary, png, again
):
    """A run is finished when its summary exists: written after the plot, so a run stopped while
    plotting is not finished, and its next run draws the plot and writes the summary."""
    out = tmp_path / "run"
    args = [command, str(blob_store), "--out", str(out), *(PRETRAIN if command == "pretrain" else FINETUNE)]
    calls = _interrupt_once(monkeypatch, plot)
    result = runner.invoke(app, args)
    assert result.exit_code == 130 and "interrupted" in result.output, result.output[-3000:]
    assert "Traceback" not in result.output and len(calls) == 1
    assert not (out / summary).exists() and not (out / png).exists()
    result = runner.invoke(app, args + again)
    if result.exit_code == 1 and not again:  # an interrupted run goes on only when asked to
        errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "re-run with --resume" in errors[0], result.output[-3000:]
        result = runner.invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output[-3000:]
    assert "already holds a finished" not in result.output and len(calls) == 2
    assert (out / summary).is_file() and (out / png).is_file()
    json.loads((out / summary).read_text())


# ---------------------------------------------- 6 and 9. devices as audio; prune and bench, memory-limited

_CHILD = """
import json, resource, signal, sys
from typer.testing import CliRunner
import asr_init.bench
from asr_init.cli import app
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
# bench's timings of random data say nothing about a store: fixed figures, so that the store is read at once
figures = {"frames_per_s": 1.0, "gflops": 0.0, "of_ceiling": 0.0, "of_ceiling_q1": 0.0, "of_ceiling_q3": 0.0,
           "ceiling_flops": 1e9}
asr_init.bench.precision_ceilings = lambda device="cpu": {"fp32": 1e9, "tf32": 1e9, "bf16": 1e9}
asr_init.bench.bench_cd1 = lambda *a, **k: dict(figures)
def late(*_):  # a read that blocks (a pipe) fails its case instead of the whole table
    raise TimeoutError("no answer within 30 s")
signal.signal(signal.SIGALRM, late)
out = []
for case in json.load(open(sys.argv[1])):
    signal.alarm(30)
    result = CliRunner().invoke(app, case["args"])
    signal.alarm(0)
    out.append({"code": result.exit_code, "output": result.output, "error": repr(result.exception)})
print(json.dumps(out))
"""


def _limited_cases(root: Path, blob: Path) -> dict:
    """{case: (args, message, files that must stay)}: each case's files made under `root`."""

    def store(name: str, change) -> Path:
        copy = shutil.copytree(blob, root / name)
        change(copy)
        return copy

    def offset(copy: Path) -> None:  # a train utterance placed 10^15 frames into its shard
        records = [json.loads(ln) for ln in (copy / "manifest.jsonl").read_text().splitlines()]
        records[1]["offset"] = 10**15
        (copy / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    def device_corpus(name: str, target: str) -> Path:
        d = write_kaldi_dir(root / name, speakers=3, utts_per_speaker=1)
        lines = (d / "wav.scp").read_text().splitlines()
        lines[1] = f"{lines[1].split()[0]} {target}"
        (d / "wav.scp").write_text("\n".join(lines) + "\n")
        return d

    model = write_tiny_model(blob, root / "model")
    bomb = shutil.copytree(model, root / "bomb-model")
    _deflated_checkpoint(model / "model.pt", bomb / "model.pt", 1 << 28)
    huge, far = store("huge-shard", _huge_shard), store("far-offset", offset)
    (root / "a-folder").mkdir()
    tiny = ["--sparsity", "0.5", "--max-frames", "256", "--max-epochs", "1"]
    bench = ["--seconds", "0.4", "--batch-size", "256", "--device", "cpu"]
    cases = {
        "prune, deflated model.pt": (["prune", bomb, "--out", root / "pr1", "--store", blob, *tiny],
                                     "torch.save stores records uncompressed", [bomb, blob]),
        "prune, npy header of 2^40 rows": (["prune", model, "--out", root / "pr2", "--store", huge, *tiny],
                                           "cannot read shard", [model, huge]),
        "bench pretrain, npy header of 2^40 rows": (["bench", "pretrain", "--store", huge, *bench],
                                                    "cannot read shard", [huge]),
        "bench pretrain, manifest offset 10^15": (["bench", "pretrain", "--store", far, *bench],
                                                  "takes frames", [far]),
    }  # fmt: skip
    for target in ("/dev/zero", "/dev/null", "/dev/urandom", root / "a-folder"):
        d = device_corpus(f"corpus-{Path(target).name}", str(target))
        what = "a folder" if target == root / "a-folder" else "not a regular file"
        message = f"audio file of utterance spk1-utt0 {target} is {what}"
        for jobs in ("1", "2"):
            args = ["extract", d, "--out", root / f"s-{Path(target).name}-{jobs}", "--jobs", jobs]
            cases[f"wav.scp names {Path(target).name}, --jobs {jobs}"] = (args, message, [d])
    return {name: ([str(a) for a in case[0]], *case[1:]) for name, case in cases.items()}


def _run_limited(root: Path, cases: dict) -> dict:
    """{case: (result, case, digests of its inputs before)}: every case of {case: (args, message, inputs)}
    run in one child process under the memory limit (_CHILD), each stopped after 30 s."""
    keep = {name: _digests(*case[2]) for name, case in cases.items()}
    (root / "cases.json").write_text(json.dumps([{"args": [str(a) for a in case[0]]} for case in cases.values()]))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(root / "cases.json"), str(LIMIT)], capture_output=True,
                          text=True, cwd=root, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return {name: (result, case, keep[name]) for (name, case), result in zip(cases.items(), results)}


def one_limited_error(result: dict, message: str, inputs: list[Path], before: dict) -> None:
    """A case of `_run_limited` stopped with one 'error:' line holding `message`, its inputs untouched."""
    errors = [ln for ln in result["output"].splitlines() if ln.startswith("error:")]
    text = " ".join(result["output"].split())
    assert result["code"] == 1 and len(errors) == 1, (result["error"], result["output"][-2000:])
    assert "Traceback" not in result["output"] and "MemoryError" not in result["error"], result["output"][-2000:]
    assert message in text, text[-1500:]
    assert _digests(*inputs) == before


@pytest.fixture(scope="module")
def limited_runs(blob_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("limited")
    return _run_limited(root, _limited_cases(root, blob_store))


LIMITED = ["prune, deflated model.pt", "prune, npy header of 2^40 rows", "bench pretrain, npy header of 2^40 rows",
           "bench pretrain, manifest offset 10^15"] + [f"wav.scp names {t}, --jobs {j}" for t in
           ("zero", "null", "urandom", "a-folder") for j in (1, 2)]  # fmt: skip


@pytest.mark.parametrize("case", LIMITED)
def test_prune_bench_and_devices_meet_hostile_files_with_one_error_line_within_the_memory_limit(limited_runs, case):
    result, (args, message, inputs), before = limited_runs[case]
    one_limited_error(result, message, inputs, before)


# --------------------------------------------- 10. run folders edited between commands: non-finite weights


def _non_finite(folder: Path, name: str, value: float) -> Path:
    """`folder`'s checkpoint `name` (model.pt or dbn.pt) saved again with one weight set to `value`."""
    import torch

    ckpt = torch.load(folder / name, map_location="cpu", weights_only=True)
    weight = ckpt["state_dict"]["hidden.0.weight"] if name == "model.pt" else ckpt["layers"][0]["W"]
    weight[0, 0] = value
    torch.save(ckpt, folder / name)
    return folder


# Every command that reads a model.pt or a dbn.pt ({src}), with {store} and {tmp} (its outputs' folder).
READS_CHECKPOINT = [
    ("model.pt", ["evaluate", "{store}", "--model", "{src}", "--device", "cpu"]),
    ("model.pt", ["export-kaldi", "{src}", "--out", "{tmp}/exp"]),
    ("model.pt", ["inspect", "{store}", "--model", "{src}", "--frames", "100"]),
    ("model.pt", ["prune", "{src}", "--out", "{tmp}/pruned", "--store", "{store}", "--sparsity", "0.5",
                  "--max-frames", "256", "--max-epochs", "1"]),
    ("model.pt", ["finetune", "{store}", "--out", "{tmp}/ft", "--init-from", "{src}", "--reuse-layers", "1",
                  *FINETUNE]),
    ("dbn.pt", ["finetune", "{store}", "--out", "{tmp}/ft", "--dbn", "{src}", *FT]),
    ("dbn.pt", ["inspect", "{store}", "--model", "{src}", "--frames", "100"]),
]  # fmt: skip


def _tiny_run(store_path: Path, src: Path, name: str) -> Path:
    """A folder holding a tiny `name`: a finetune folder's model.pt, or a pretrain folder's dbn.pt."""
    import torch

    from asr_init.features.pipeline import FeaturePipeline
    from asr_init.features.store import FeatureStore
    from asr_init.models.dbn import save_dbn

    if name == "model.pt":
        return write_tiny_model(store_path, src)
    store = FeatureStore(store_path)
    src.mkdir()
    stack = [(torch.full((8, 39), 0.01), torch.zeros(8))]
    save_dbn(src / "dbn.pt", stack, FeaturePipeline.from_store(store, 0), store.phones, store.states, "gauss")
    return src


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("name, args", READS_CHECKPOINT)
def test_a_model_or_dbn_with_non_finite_weights_is_refused_by_every_command(blob_store, tmp_path, name, args, value):
    """A NaN or an infinity written into model.pt or dbn.pt (an edited or damaged file) was read as
    weights: evaluate scored a PER of hundreds of per cent, export-kaldi wrote it into final.nnet,
    inspect showed nan, and finetune blamed the learning rate."""
    src = _tiny_run(blob_store, tmp_path / "src", name)
    _non_finite(src, name, value)
    line = error_line([a.format(store=blob_store, src=src, tmp=tmp_path) for a in args], blob_store, src)
    assert f"{src / name} is inconsistent:" in line and "holds NaN or infinite values" in line, line
    assert not (tmp_path / "exp").exists() and not (tmp_path / "pruned" / "prune.json").exists()
    assert not (tmp_path / "ft" / "model.pt").exists()


# ------------------------------------ 11. run folders edited between commands: a checkpoint from elsewhere


def _interrupted(blob_store: Path, out: Path, command: str, args: list[str]) -> Path:
    """A finished tiny run made to look interrupted: its summary, final output and last layer removed."""
    result = runner.invoke(app, [command, str(blob_store), "--out", str(out), *args])
    assert result.exit_code == 0, result.output[-3000:]
    for name in ("pretrain.json", "dbn.pt", "rbm2.pt", "finetune.json", "model.pt"):
        (out / name).unlink(missing_ok=True)
    return out


@pytest.mark.parametrize(
    "other, copy, message",
    [
        (["--hidden", "12"], ("checkpoint.pt", "checkpoint.pt"), "it was written with other settings (hidden: [12] "
                                                                  "then, [8] now)"),
        (["--lr", "0.5"], ("checkpoint.pt", "checkpoint.pt"), "it was written with other settings (lr: 0.5 then, "),
        ([], ("model.pt", "checkpoint.pt"), "is not a checkpoint of this stage (it has no 'model' record)"),
    ],
)  # fmt: skip
def test_finetune_resume_refuses_a_checkpoint_copied_from_another_run(blob_store, tmp_path, other, copy, message):
    """checkpoint.pt of another run copied into an interrupted one: of other sizes it was a
    RuntimeError traceback from load_state_dict, of the same sizes it was resumed in silence (the
    other run's weights, rate and log under this run's settings)."""
    run = _interrupted(blob_store, tmp_path / "run", "finetune", FINETUNE)
    done = runner.invoke(
        app, ["finetune", str(blob_store), "--out", str(tmp_path / "other"), *_sized("finetune", other)]
    )
    assert done.exit_code == 0, done.output[-3000:]
    shutil.copy(tmp_path / "other" / copy[0], run / copy[1])
    line = error_line(["finetune", blob_store, "--out", run, *FINETUNE, "--resume"], blob_store, tmp_path / "other")
    assert f"{run / copy[1]} {'' if copy[0] == 'model.pt' else 'is not a checkpoint of this run: '}{message}" in line
    assert not (run / "model.pt").exists() and not (run / "finetune.json").exists()


@pytest.mark.parametrize(
    "source, target, message",
    [
        ("other/rbm1.pt", "rbm1.pt", "rbm1.pt is not a checkpoint of this run: it was written with other settings "
                                     "(hidden: [12] then, [8] now)"),
        ("other/rbm2.pt", "rbm2.partial.pt", "rbm2.partial.pt is not a checkpoint of this run"),
        ("run/rbm1.pt", "rbm2.partial.pt", "rbm2.partial.pt is not a checkpoint of layer 2 (it holds layer 1)"),
        ("model/model.pt", "rbm1.pt", "rbm1.pt is not a checkpoint of this stage (it has no 'rbm' record)"),
    ],
)  # fmt: skip
def test_pretrain_resume_refuses_a_layer_checkpoint_copied_from_elsewhere(blob_store, tmp_path, source, target,
                                                                          message):  # fmt: skip
    """A layer checkpoint of another run (other sizes), another layer or another stage: a finished
    layer of other sizes was a traceback, a partial one of other sizes was resumed in silence into a
    dbn.pt whose layers do not chain, a model.pt a KeyError."""
    args = _sized("pretrain", ["--layers", "2", "--hidden", "8"])
    run = _interrupted(blob_store, tmp_path / "run", "pretrain", args)
    done = runner.invoke(app, ["pretrain", str(blob_store), "--out", str(tmp_path / "other"),
                               *_sized("pretrain", ["--layers", "2", "--hidden", "12"])])  # fmt: skip
    assert done.exit_code == 0, done.output[-3000:]
    write_tiny_model(blob_store, tmp_path / "model")
    shutil.copy(tmp_path / source, tmp_path / "copied.pt")
    shutil.copy(tmp_path / "copied.pt", run / target)
    line = error_line(["pretrain", blob_store, "--out", run, *args, "--resume"], blob_store, tmp_path / "other")
    assert message in line and str(run) in line, line
    assert not (run / "dbn.pt").exists() and not (run / "pretrain.json").exists()


# ----------------------------------------- 12. run folders edited between commands: a finished run's summary


@pytest.mark.parametrize("resume", [[], ["--resume"]])
@pytest.mark.parametrize(
    "command, summary, edit, message",
    [
        ("finetune", "finetune.json", lambda s: s.update(best_dev_acc="x"), 'best_dev_acc must be a number, not "x"'),
        ("finetune", "finetune.json", lambda s: s.pop("best_epoch"), "best_epoch must be an integer, not missing"),
        ("pretrain", "pretrain.json", lambda s: s["layers"][0].pop("n_visible"),
         "layers[0].n_visible must be an integer, not missing"),
        ("pretrain", "pretrain.json", lambda s: s.update(layers={"1": 1}), "layers must be a list, not"),
    ],
)  # fmt: skip
def test_a_finished_runs_edited_summary_is_one_line_when_the_command_is_run_again(
    blob_store, tmp_path, command, summary, edit, message, resume
):
    """The same command on a finished run reads its summary to print it: an edited field was a
    KeyError or a format error with a traceback."""
    out = tmp_path / "run"
    args = [command, str(blob_store), "--out", str(out), *(PRETRAIN if command == "pretrain" else FINETUNE)]
    assert runner.invoke(app, args).exit_code == 0
    record = json.loads((out / summary).read_text())
    edit(record)
    (out / summary).write_text(json.dumps(record))
    line = error_line([*args, *resume], blob_store, out)
    assert f"{out / summary}: {message}" in line and f"use --force to make a {command} run again" in line, line


@pytest.mark.parametrize(
    "command, name, record, weight",
    [("finetune", "checkpoint.pt", "model", "hidden.0.weight"), ("finetune", "checkpoint.pt", "best", "output.bias"),
     ("pretrain", "rbm1.pt", "rbm", "W")],
)  # fmt: skip
def test_resume_refuses_a_checkpoint_with_non_finite_weights(blob_store, tmp_path, command, name, record, weight):
    """A NaN written into a run's checkpoint was resumed and then blamed on the learning rate ("lower --lr",
    calling the damaged rbm1.pt the last good checkpoint): a run writes no checkpoint of a diverged state."""
    import torch

    args = _sized(command, ["--layers", "2"]) if command == "pretrain" else FINETUNE
    run = _interrupted(blob_store, tmp_path / "run", command, args)
    ckpt = torch.load(run / name, map_location="cpu", weights_only=True)
    ckpt[record][weight].view(-1)[0] = float("nan")
    torch.save(ckpt, run / name)
    line = error_line([command, blob_store, "--out", run, *args, "--resume"], blob_store, run)
    assert f"{run / name} is damaged: its {record} {weight} holds NaN or infinite values" in line, line
    assert "--lr" not in line


# ------------------------------ 13. a pipe or a link to /dev/zero in place of a file asr-init wrote


def _special(path: Path, kind: str) -> Path:
    """`path` made a FIFO (kind "pipe": a read blocks) or a link to /dev/zero ("zero": a read never ends)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    if kind == "pipe":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    return path


def _special_cases(root: Path, blob: Path) -> dict:
    """{case: (args, message, inputs)}: a command meeting a file asr-init wrote that is a pipe or /dev/zero."""
    cases = {}
    for kind in ("pipe", "zero"):
        for record in ("dnn/finetune.json", "dbn/pretrain.json"):
            bad = _special(root / f"report-{kind}-{record.split('/')[0]}" / record, kind)
            cases[f"report, {record} {kind}"] = (["report", bad.parent.parent], f"{bad} is not a regular file", [])
        for name, args in READS_CHECKPOINT:
            src = _tiny_run(blob, root / f"{kind}-{name}-{args[0]}", name)
            _special(src / name, kind)
            tmp = root / f"out-{kind}-{name}-{args[0]}"
            line = [a.format(store=blob, src=src, tmp=tmp) for a in args]
            cases[f"{name} {kind}, {args[0]}"] = (line, f"checkpoint {src / name} is not a regular file", [src])
        for name in STORE_FILES:
            store = shutil.copytree(blob, root / f"store-{kind}-{Path(name).name}")
            line = ["pretrain", store, "--out", root / f"dbn-{kind}-{Path(name).name}", *PRETRAIN]
            message = f"{_special(store / name, kind)} is not a regular file"
            cases[f"store's {name} {kind}, pretrain"] = (line, message, [store])
    return cases


STORE_FILES = ("manifest.jsonl", "config.json", "stats.json", "phones.txt", "states.txt", "shards/feats-00000.npy")


SPECIAL = [f"report, {record} {kind}" for kind in ("pipe", "zero") for record in ("dnn/finetune.json",
           "dbn/pretrain.json")] + [f"{name} {kind}, {args[0]}" for kind in ("pipe", "zero")
           for name, args in READS_CHECKPOINT] + [f"store's {name} {kind}, pretrain" for kind in ("pipe", "zero")
           for name in STORE_FILES]  # fmt: skip


@pytest.fixture(scope="module")
def special_runs(blob_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("special")
    return _run_limited(root, _special_cases(root, blob_store))


@pytest.mark.parametrize("case", SPECIAL)
def test_a_pipe_or_dev_zero_in_place_of_a_file_asr_init_wrote_is_one_error_line(special_runs, case):
    """A FIFO where a command reads a checkpoint, a store's record or shard, or a run's record blocked
    the command for ever; a link to /dev/zero filled the memory until "a value is too large to use ()".
    Each is refused, before it is read, as not a regular file."""
    result, (args, message, inputs), before = special_runs[case]
    one_limited_error(result, message, inputs, before)
