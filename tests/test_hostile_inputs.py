"""Hostile inputs: nothing read from a file reaches a shell, and no small file makes a command
allocate gigabytes. Commands run in child processes under a memory limit (resource.setrlimit)
and must stop with one 'error:' line naming the problem: a few cases one process each, and a
table of every command against small hostile files of every kind it reads (scp, ark, gz, nnet1
transform and network, pt, npy, manifest, label lists, JSON) in one child process."""

from __future__ import annotations

import gzip
import resource
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import kaldiio
import pytest
import torch
from conftest import write_kaldi_features

LIMIT = 2 << 30  # address space of the child: torch and asr-init take ~0.7 GiB of it


def run_limited(args: list, cwd: Path, limit: int = LIMIT) -> subprocess.CompletedProcess:
    """`asr-init ARGS` in a child process whose address space is capped at `limit` bytes."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "asr_init.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        preexec_fn=cap,
        timeout=300,
    )


def one_error(result: subprocess.CompletedProcess, message: str) -> str:
    """The run stopped with status 1 and exactly one 'error:' line holding `message`."""
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    text = " ".join(result.stderr.split())
    assert result.returncode == 1, result.stderr[-3000:]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert message in text, text[-2000:]
    return text


@pytest.fixture
def kaldi_data(tmp_path):
    """A Kaldi data dir (binary feats.ark/.scp, cmvn.ark/.scp) and its pdf alignments as pdf.ark."""
    ref = write_kaldi_features(tmp_path / "data", speakers=4, utts_per_speaker=2)
    kaldiio.save_ark(str(tmp_path / "pdf.ark"), ref["pdfs"], scp=str(tmp_path / "pdf.scp"))
    return tmp_path, ref


def _import(root: Path, *extra) -> list:
    return ["import-kaldi", root / "data", "--out", root / "store", "--ali", root / "pdf.ark", *extra]


# ------------------------------------------------------------------------- no shell


# Every script file import-kaldi reads, with every way a command can be written in an entry: cases of
# the table below (one process for all), each with a file of the odd name beside the script.
SHELL_SPECS = ["x; touch PWNED |:8", "x; touch PWNED |[0:5]", "touch PWNED |", "| touch PWNED"]
SHELL_CASES = {
    f"{scp} entry {spec!r}": (scp, spec) for scp in ("feats.scp", "cmvn.scp", "pdf.scp") for spec in SHELL_SPECS
}


def test_a_script_entry_naming_an_odd_file_reads_the_file_itself(kaldi_data):
    """A file whose name merely contains '|' is opened as a file: the same numbers, no shell."""
    root, ref = kaldi_data
    feats = root / "data" / "feats.scp"
    first = feats.read_text().splitlines()[0]
    key, target = first.split()
    odd = root / "data" / "x; touch PWNED"
    odd.write_bytes((root / "data" / "feats.ark").read_bytes())
    feats.write_text(feats.read_text().replace(first, f"{key} {odd}:{target.rsplit(':', 1)[1]}"))
    result = run_limited(_import(root, "--num-pdfs", 8), cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not list(root.rglob("PWNED"))


# ------------------------------------------------------------------ sizes from files


def _gzip_bomb(path: Path) -> None:
    """1 MB of gzip that inflates to 1 GiB of "0": 1,024 members of one compressed MiB each."""
    member = gzip.compress(b"0" * (1 << 20), compresslevel=9)
    path.write_bytes(member * 1024)
    assert path.stat().st_size < 2 << 20


def test_a_gzip_of_valid_entries_past_the_per_utterance_limit_is_refused(kaldi_data):
    root, _ = kaldi_data
    with gzip.open(root / "long.gz", "wb") as fh:
        fh.write(b"spk0-utt0 " + b"1 " * (5 << 20) + b"\n")  # 5 M frames in one utterance
    one_error(run_limited(_import(root)[:-2] + ["--ali", root / "long.gz"], root), "(at most 4,194,304 are read)")


def test_a_binary_alignment_declaring_more_entries_than_its_file_holds(kaldi_data):
    """(Past the 4,194,304 entries read: the table's "ark alignment of 2^30 ids".)"""
    root, _ = kaldi_data
    (root / "pdf.ark").write_bytes(b"spk0-utt0 \0B\x04" + struct.pack("<i", 3_000_000) + b"\x04\x01\x00\x00\x00" * 4)
    one_error(run_limited(_import(root), root), "bytes are left in the file")


@pytest.mark.parametrize(
    "top, extra, message",
    [
        (500_000, [], "pdf ids run up to 500,000"),
        (20_000_000, [], "reads pdf ids below 1,048,576"),
        (20_000_000, ["--num-pdfs", 30_000_000], "invalid --num-pdfs 30000000: must be from 1 to 1,048,576"),
    ],
)
def test_a_pdf_id_far_beyond_the_ids_seen_needs_num_pdfs(kaldi_data, top, extra, message):
    root, ref = kaldi_data
    pdfs = dict(ref["pdfs"])
    first = next(iter(pdfs))
    pdfs[first] = pdfs[first].copy()
    pdfs[first][0] = top
    kaldiio.save_ark(str(root / "pdf.ark"), pdfs)
    one_error(run_limited(_import(root, *extra), root), message)
    assert not (root / "store").exists()


@pytest.mark.parametrize("line, message", [("zz 20000000", "is not below 32,768"), ("SIL 1", "phone symbol SIL")])
def test_a_phones_txt_line_is_bounded_and_unique(kaldi_data, line, message):
    root, ref = kaldi_data
    kaldiio.save_ark(str(root / "phones.ark"), ref["phones"])
    (root / "phones.txt").write_text(f"<eps> 0\nSIL 1\nAA 2\nIY 3\nS 4\nM 5\n{line}\n")
    args = [*_import(root), "--phone-ali", root / "phones.ark", "--phones", root / "phones.txt", "--num-pdfs", 8]
    one_error(run_limited(args, root), message)


def _deflated_checkpoint(src: Path, dst: Path, inflate_to: int) -> None:
    """`src` (a torch.save zip) with its largest record replaced by `inflate_to` deflated bytes."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        infos = zin.infolist()
        big = max(infos, key=lambda i: i.file_size)
        for info in infos:
            if info is big:
                zout.writestr(info.filename, b"\0" * inflate_to, compress_type=zipfile.ZIP_DEFLATED)
            else:
                zout.writestr(info, zin.read(info))


# ------------------------------------------------- every command x every kind of file it reads

_CHILD = """
import json, resource, sys
from typer.testing import CliRunner
from asr_init.cli import app
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
out = []
for case in json.load(open(sys.argv[1])):
    result = CliRunner().invoke(app, case["args"])
    out.append({"code": result.exit_code, "output": result.output, "error": repr(result.exception)})
print(json.dumps(out))
"""


def _corrupt(path: Path, find: bytes, replace: bytes) -> None:
    data = path.read_bytes()
    assert find in data, (path, find)
    path.write_bytes(data.replace(find, replace, 1))


def _table(root: Path, blob: Path, tiny: Path) -> dict:
    """{case: (args, message)}: each case's files made under `root`."""
    import json
    import os
    import shutil

    from conftest import write_kaldi_dir, write_tiny_model

    from asr_init.models.export_kaldi import export_kaldi
    from asr_init.training.config import PretrainConfig
    from asr_init.training.pretrain import pretrain

    def store(name: str, change) -> Path:
        copy = root / name
        shutil.copytree(blob, copy)
        change(copy)
        return copy

    def manifest(edit):
        def change(copy):
            lines = [json.loads(ln) for ln in (copy / "manifest.jsonl").read_text().splitlines()]
            (copy / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in edit(lines)))

        return change

    def corpus(name: str, change) -> Path:
        d = write_kaldi_dir(root / name, speakers=4, utts_per_speaker=1)
        change(d)
        return d

    ref = write_kaldi_features(root / "kd" / "data", speakers=3, utts_per_speaker=2)
    kaldiio.save_ark(str(root / "kd" / "pdf.ark"), ref["pdfs"])
    kd = root / "kd"
    model = write_tiny_model(blob, root / "model")
    export_kaldi(model, root / "exp")
    pretrain(blob, PretrainConfig(layers=1, hidden=8, epochs_gauss=1, max_frames=256, stats_frames=100), root / "dbn")
    bomb_dbn, bomb_model = root / "bomb-dbn", root / "bomb-model"
    for src, dst, name in ((root / "dbn", bomb_dbn, "dbn.pt"), (model, bomb_model, "model.pt")):
        shutil.copytree(src, dst)
        _deflated_checkpoint(src / name, dst / name, 1 << 28)
    kaldi = ["import-kaldi", kd / "data", "--out", root / "ks", "--ali", kd / "pdf.ark"]
    fifo, pipe = root / "fifo.wav", root / "pipe.nnet"
    os.mkfifo(fifo)
    os.mkfifo(pipe)
    cases = {
        "scp through a shell": (kaldi, "asr-init runs no commands from its input"),
        "ark matrix of 2^28 rows": (kaldi, "x 13 matrix of 13,958,643,712 bytes, but"),
        "ark alignment of 2^30 ids": (kaldi, "integer vector of 1,073,741,824"),
        "gz that inflates to 1 GiB": ([*kaldi[:3], root / "ks-gz", "--ali", root / "bomb.gz"], "a token longer than"),
        "gz alignment holding a CM matrix": (
            [*kaldi[:3], root / "ks-cm", "--ali", kd / "pdf.ark", "--ali", root / "cm.ark.gz"],
            "entry 1: a 'CM' object, not a vector of integers",
        ),  # fmt: skip
        "gz alignment, [ text ] of 5M ids": (
            [*kaldi[:3], root / "ks-tv", "--ali", kd / "pdf.ark", "--ali", root / "tv.ark.gz"],
            "(at most 4,194,304 are read)",
        ),  # fmt: skip
        "phones.txt id 20000000": (
            [
                *kaldi[:3],
                root / "ks-ph",
                "--ali",
                kd / "pdf.ark",
                "--phone-ali",
                kd / "pdf.ark",
                "--phones",
                root / "ph.txt",
            ],
            "is not below 32,768",
        ),  # fmt: skip
        "NaN CMVN stats": (kaldi, "hold NaN or infinite values"),
        "wav.scp line twice": (
            ["extract", corpus("c1", lambda d: _append(d / "wav.scp", 0)), "--out", root / "x1"],
            "is given twice",
        ),  # fmt: skip
        "utt2spk line twice": (
            ["extract", corpus("c2", lambda d: _append(d / "utt2spk", 1)), "--out", root / "x2"],
            "utterance spk1-utt0 is given twice",
        ),  # fmt: skip
        "wav.scp names a pipe": (
            ["extract", corpus("c3", lambda d: _replace_wav(d, fifo)), "--out", root / "x3"],
            "is not a regular file",
        ),  # fmt: skip
        "phones.ctm is /dev/zero": (
            ["extract", corpus("c6", lambda d: _link(d / "phones.ctm", "/dev/zero")), "--out", root / "x6"],
            "phones.ctm is not a regular file",
        ),  # fmt: skip
        "--mfcc-config /dev/zero": (
            ["extract", corpus("c7", lambda d: None), "--out", root / "x7", "--mfcc-config", "/dev/zero"],
            "Kaldi feature config /dev/zero is not a regular file",
        ),  # fmt: skip
        "import-kaldi --phones /dev/zero": (
            [
                *kaldi[:3],
                root / "ks-zero",
                "--ali",
                kd / "pdf.ark",
                "--phone-ali",
                kd / "pdf.ark",
                "--phones",
                "/dev/zero",
            ],
            "/dev/zero is not a regular file",
        ),  # fmt: skip
        "label list twice": (
            [
                "extract",
                corpus("c4", lambda d: None),
                "--out",
                root / "x4",
                "--phones",
                _write(root / "list.txt", "sil\naa\niy\ns\nm\naa\n"),
            ],
            "label aa is given twice",
        ),  # fmt: skip
        "label map conflict": (
            [
                "extract",
                corpus("c5", lambda d: None),
                "--out",
                root / "x5",
                "--phone-map",
                _write(root / "map.txt", "aa aa\niy iy\ns s\nm m\nsil sil\naa iy\n"),
            ],
            "label aa is given twice",
        ),  # fmt: skip
        "transform <Splice> 50000000": (
            [
                "finetune",
                blob,
                "--out",
                root / "f1",
                "--init-from",
                root / "t1" / "final.nnet",
                "--reuse-layers",
                1,
                "--layers",
                1,
                "--hidden",
                8,
            ],
            "gives 50000000",
        ),  # fmt: skip
        "transform <Splice> 2^30": (
            [
                "finetune",
                blob,
                "--out",
                root / "f5",
                "--init-from",
                root / "t2" / "final.nnet",
                "--reuse-layers",
                1,
                "--layers",
                1,
                "--hidden",
                8,
            ],
            "gives 1073741824; give the feature transform",
        ),  # fmt: skip
        "nnet1 layer of 0 rows, 20M columns": (
            ["finetune", blob, "--out", root / "f4", "--dbn", root / "zero" / "zero.dbn"],
            "component 1 (<AffineTransform>) is 0 x 20000000",
        ),  # fmt: skip
        "nnet1 matrix without data": (
            ["finetune", blob, "--out", root / "f2", "--init-from", root / "big.nnet", "--reuse-layers", 1],
            "bytes, but",
        ),  # fmt: skip
        "--init-from names a pipe": (
            ["finetune", blob, "--out", root / "f6", "--init-from", pipe, "--reuse-layers", 1],
            f"Kaldi network {pipe} is not a regular file",
        ),  # fmt: skip
        "--dbn /dev/zero": (
            ["finetune", blob, "--out", root / "f7", "--dbn", "/dev/zero"],
            "Kaldi network /dev/zero is not a regular file",
        ),  # fmt: skip
        "final.feature_transform a pipe": (
            ["finetune", blob, "--out", root / "f8", "--init-from", root / "t3" / "final.nnet", "--reuse-layers", 1],
            "final.feature_transform is not a regular file",
        ),  # fmt: skip
        "--feature-transform /dev/zero": (
            [
                "finetune",
                blob,
                "--out",
                root / "f9",
                "--init-from",
                root / "exp" / "final.nnet",
                "--reuse-layers",
                1,
                "--feature-transform",
                "/dev/zero",
            ],
            "Kaldi network /dev/zero is not a regular file",
        ),  # fmt: skip
        "inspect --model names a pipe": (["inspect", blob, "--model", pipe], "is not a regular file"),
        "deflated dbn.pt": (["finetune", blob, "--out", root / "f3", "--dbn", bomb_dbn], "records uncompressed"),
        "deflated model.pt, evaluate": (["evaluate", blob, "--model", bomb_model], "records uncompressed"),
        "deflated model.pt, export": (["export-kaldi", bomb_model, "--out", root / "e"], "records uncompressed"),
        "model.pt recording 30,000-unit layers": (
            ["evaluate", blob, "--model", _inflated_sizes(model, root / "sizes")],
            "weight hidden.0.weight has shape",
        ),  # fmt: skip
        "deflated dbn.pt, inspect": (["inspect", blob, "--model", bomb_dbn], "records uncompressed"),
        "npy header of 2^40 rows": (["pretrain", store("s1", _huge_shard), "--out", root / "p1"], "cannot read shard"),
        "feature shard of strings": (
            [
                "pretrain",
                store("s8", lambda c: _corrupt(c / "shards" / "feats-00000.npy", b"'<f4'", b"'<U1'")),
                "--out",
                root / "p8",
            ],
            "(it holds values of type <U1)",
        ),  # fmt: skip
        "target shard that is an .npz": (
            ["finetune", store("s9", _npz_targets), "--out", root / "p9"],
            "(it holds no single array)",
        ),  # fmt: skip
        "manifest id twice": (
            ["pretrain", store("s2", manifest(lambda r: r + r[:1])), "--out", root / "p2"],
            "is given twice",
        ),  # fmt: skip
        "manifest id a list": (
            ["pretrain", store("s10", manifest(lambda r: [r[0] | {"id": ["x"]}] + r[1:])), "--out", root / "p10"],
            "manifest.jsonl:1 is corrupt (an utterance's id, speaker and split are strings)",
        ),  # fmt: skip
        "stats.json nested 100,000 deep": (
            [
                "pretrain",
                store("s11", lambda c: (c / "stats.json").write_text("[" * 100_000 + "]" * 100_000)),
                "--out",
                root / "p11",
            ],
            "is not a record asr-init wrote (JSON nested too deeply)",
        ),  # fmt: skip
        "manifest 0 frames": (
            ["finetune", store("s3", manifest(lambda r: [r[0] | {"frames": 0}] + r[1:])), "--out", root / "p3"],
            "at least 1 frame",
        ),  # fmt: skip
        "manifest offset 10^15": (
            ["evaluate", store("s4", manifest(lambda r: r[:-1] + [r[-1] | {"offset": 10**15}])), "--model", model],
            "takes frames",
        ),  # fmt: skip
        "stats.json NaN": (["pretrain", store("s5", _nan_stats), "--out", root / "p5"], "cannot be normalised"),
        "states.txt one line short": (
            ["finetune", store("s6", _short_states), "--out", root / "p6"],
            "outside states.txt",
        ),  # fmt: skip
        "NaN frame": (["evaluate", store("s7", _nan_frame), "--model", model], "NaN or infinite features"),
        "truncated results JSON": (["report", _truncated_results(root / "r")], "is not valid JSON"),
        "finetune.json accuracy a string": (
            ["report", _wrong_typed_finetune(root / "r2")],
            'dnn/finetune.json: best_dev_acc must be a number, not "x"',
        ),  # fmt: skip
    }
    _prepare(root, kd, cases)
    return {name: ([str(a) for a in args], message) for name, (args, message) in cases.items()}


def _append(path: Path, line: int) -> None:
    path.write_text(path.read_text() + path.read_text().splitlines()[line] + "\n")


def _replace_wav(d: Path, target: Path) -> None:
    first = (d / "wav.scp").read_text().splitlines()[0].split()
    (d / "wav.scp").write_text((d / "wav.scp").read_text().replace(" ".join(first), f"{first[0]} {target}"))


def _link(path: Path, target: str) -> None:
    path.unlink()
    path.symlink_to(target)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _npz_targets(store: Path) -> None:
    import numpy as np

    shard = next((store / "shards").glob("states-00000.npy"))
    np.savez(shard.with_suffix(".tmp.npz"), np.load(shard))
    shard.with_suffix(".tmp.npz").replace(shard)


def _huge_shard(store: Path) -> None:
    _corrupt(store / "shards" / "feats-00000.npy", b"'shape': (", b"'shape': (1099511627776, 39), 'x': (")


def _nan_stats(store: Path) -> None:
    import json

    stats = json.loads((store / "stats.json").read_text())
    stats["std"][3] = 0.0
    (store / "stats.json").write_text(json.dumps(stats))


def _short_states(store: Path) -> None:
    (store / "states.txt").write_text("".join((store / "states.txt").read_text().splitlines(keepends=True)[:-1]))


def _nan_frame(store: Path) -> None:
    import numpy as np

    for shard in sorted((store / "shards").glob("feats-*.npy")):
        x = np.load(shard)
        x[-3, 2] = np.nan
        np.save(shard, x)


def _inflated_sizes(model: Path, out: Path) -> Path:
    """A copy of `model` whose records claim two 30,000-unit layers (3.6 GB of weights) over its small weights."""
    import shutil

    shutil.copytree(model, out)
    ckpt = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    ckpt["meta"]["hidden_sizes"] = [30_000, 30_000]
    torch.save(ckpt, out / "model.pt")
    return out


def _truncated_results(root: Path) -> Path:
    (root / "paper").mkdir(parents=True)
    (root / "paper" / "optimal_d.json").write_text('{"d_star": 1.40')
    return root


def _wrong_typed_finetune(root: Path) -> Path:
    (root / "dnn").mkdir(parents=True)
    (root / "dnn" / "finetune.json").write_text(
        '{"epochs": 2, "seconds": 1.0, "best_epoch": 2, "best_dev_acc": "x", "best_dev_loss": 1.0}'
    )
    return root


def _prepare(root: Path, kd: Path, cases: dict) -> None:
    """The Kaldi files the import-kaldi and nnet1 cases read, each made hostile for its case."""
    import os
    import shutil

    def kaldi_copy(name: str) -> Path:
        shutil.copytree(kd, root / name)
        for scp in (root / name).rglob("*.scp"):  # naming the copy's archives, not the original's
            scp.write_text(scp.read_text().replace(str(kd), str(root / name)))
        return root / name

    def retarget(name: str, new: Path) -> None:
        swap = {kd / "data": new / "data", kd / "pdf.ark": new / "pdf.ark", root / "ks": new / "store"}
        cases[name] = ([swap.get(a, a) if isinstance(a, Path) else a for a in cases[name][0]], cases[name][1])

    for n, (name, (scp, spec)) in enumerate(SHELL_CASES.items()):
        copy = kaldi_copy(f"sh{n}")
        path = copy / ("data" if scp != "pdf.scp" else "") / scp
        if scp == "pdf.scp":
            kaldiio.save_ark(str(copy / "pdf.ark"), dict(kaldiio.load_ark(str(copy / "pdf.ark"))), scp=str(path))
        lines = path.read_text().splitlines()
        (path.parent / "x; touch PWNED |").write_bytes(b"\0B" * 64)  # the odd name exists beside it
        path.write_text("\n".join([f"{lines[0].split()[0]} {spec}", *lines[1:]]) + "\n")
        ali = path if scp == "pdf.scp" else copy / "pdf.ark"
        cases[name] = (["import-kaldi", copy / "data", "--out", copy / "store", "--ali", ali],
                       "asr-init runs no commands from its input")  # fmt: skip
    k1 = kaldi_copy("k1")
    lines = (k1 / "data" / "feats.scp").read_text().splitlines()
    (k1 / "data" / "feats.scp").write_text("\n".join([f"{lines[0].split()[0]} touch PWNED |", *lines[1:]]) + "\n")
    retarget("scp through a shell", k1)
    k2 = kaldi_copy("k2")
    data = bytearray((k2 / "data" / "feats.ark").read_bytes())
    at = data.index(b"FM ") + 4
    data[at : at + 4] = struct.pack("<i", 1 << 28)
    (k2 / "data" / "feats.ark").write_bytes(bytes(data))
    retarget("ark matrix of 2^28 rows", k2)
    k3 = kaldi_copy("k3")
    (k3 / "pdf.ark").write_bytes(b"spk0-utt0 \0B\x04" + struct.pack("<i", 1 << 30) + b"\x04\x01\x00\x00\x00")
    retarget("ark alignment of 2^30 ids", k3)
    _gzip_bomb(root / "bomb.gz")
    with gzip.open(root / "cm.ark.gz", "wb", compresslevel=1) as fh:  # 100,000 x 1,000 bytes: 3 GB as float32 sums
        fh.write(b"another-utt \0BCM " + struct.pack("<ffii", 0.0, 1.0, 100_000, 1000) + b"\0" * 8000)
        for _ in range(100):
            fh.write(b"\x05" * 1_000_000)
    with gzip.open(root / "tv.ark.gz", "wb") as fh:  # was read in quadratic time, with no limit on its length
        fh.write(b"another-utt [ " + b"0 " * (5 << 20) + b"]\n")
    (root / "ph.txt").write_text("<eps> 0\nzz 20000000\n")
    k4 = kaldi_copy("k4")
    stats = {spk: s.copy() for spk, s in kaldiio.load_scp(str(k4 / "data" / "cmvn.scp")).items()}
    next(iter(stats.values()))[0, 0] = float("nan")
    kaldiio.save_ark(str(k4 / "data" / "cmvn.ark"), stats, scp=str(k4 / "data" / "cmvn.scp"))
    retarget("NaN CMVN stats", k4)
    shutil.copytree(root / "exp", root / "t1")
    (root / "t1" / "final.feature_transform").write_bytes(b"<Nnet> <Splice> 50000000 50000000 [ 0 ] </Nnet> ")
    shutil.copytree(root / "exp", root / "t2")
    (root / "t2" / "final.feature_transform").write_bytes(b"<Nnet> <Splice> 1073741824 1073741824 [ 0 ] </Nnet> ")
    shutil.copytree(root / "exp", root / "t3")
    (root / "t3" / "final.feature_transform").unlink()
    os.mkfifo(root / "t3" / "final.feature_transform")
    (root / "big.nnet").write_bytes(b"\0B<Nnet> <AffineTransform> \x04" + struct.pack("<i", 1000000) + b"\x04"
                                    + struct.pack("<i", 1000000) + b" FM \x04" + struct.pack("<i", 1000000) + b"\x04"
                                    + struct.pack("<i", 1000000))  # fmt: skip
    shutil.copy(root / "exp" / "final.feature_transform", root / "final.feature_transform")
    (root / "zero").mkdir()  # 170 bytes that made the transform's 20M dimensions allocate 2.5 GB
    i32 = lambda v: b"\x04" + struct.pack("<i", v)  # noqa: E731
    layer = b"<AffineTransform> " + i32(0) + i32(20_000_000) + b"FM " + i32(0) + i32(20_000_000) + b"FV " + i32(0)
    end = b"<!EndOfComponent> "
    sigmoid = b"<Sigmoid> " + i32(0) + i32(0)
    (root / "zero" / "zero.dbn").write_bytes(b"\0B<Nnet> " + layer + end + sigmoid + end + b"</Nnet> ")
    (root / "zero" / "final.feature_transform").write_text("<Nnet> <Splice> 20000000 20000000 [ 0 ] </Nnet>\n")


@pytest.fixture(scope="module")
def table_runs(blob_store, tiny_store, tmp_path_factory):
    import json

    root = tmp_path_factory.mktemp("hostile")
    table = _table(root, blob_store, tiny_store)
    (root / "cases.json").write_text(json.dumps([{"args": args} for args, _ in table.values()]))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(root / "cases.json"), str(LIMIT)], capture_output=True,
                          text=True, cwd=root, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return {name: (result, message) for (name, (_, message)), result in zip(table.items(), results)}, root


CASES = ["scp through a shell", "ark matrix of 2^28 rows", "ark alignment of 2^30 ids", "gz that inflates to 1 GiB",
         "gz alignment holding a CM matrix", "gz alignment, [ text ] of 5M ids", "phones.txt id 20000000",
         "NaN CMVN stats", "wav.scp line twice", "utt2spk line twice", "wav.scp names a pipe",
         "phones.ctm is /dev/zero", "--mfcc-config /dev/zero", "import-kaldi --phones /dev/zero", "label list twice",
         "label map conflict", "transform <Splice> 50000000", "transform <Splice> 2^30",
         "nnet1 layer of 0 rows, 20M columns", "nnet1 matrix without data", "--init-from names a pipe",
         "--dbn /dev/zero", "final.feature_transform a pipe", "--feature-transform /dev/zero",
         "inspect --model names a pipe", "deflated dbn.pt",
         "deflated model.pt, evaluate", "deflated model.pt, export", "model.pt recording 30,000-unit layers",
         "deflated dbn.pt, inspect", "npy header of 2^40 rows", "feature shard of strings",
         "target shard that is an .npz", "manifest id twice", "manifest id a list", "stats.json nested 100,000 deep",
         "manifest 0 frames", "manifest offset 10^15", "stats.json NaN", "states.txt one line short", "NaN frame",
         "truncated results JSON", "finetune.json accuracy a string"]  # fmt: skip


@pytest.mark.parametrize("case", CASES + list(SHELL_CASES))
def test_every_command_meets_hostile_files_with_one_error_line_within_the_memory_limit(table_runs, case):
    results, root = table_runs
    result, message = results[case]
    errors = [ln for ln in result["output"].splitlines() if ln.startswith("error:")]
    text = " ".join(result["output"].split())
    assert result["code"] == 1 and len(errors) == 1, (result["error"], result["output"][-2000:])
    assert message in text and "MemoryError" not in result["error"], text[-1500:]
    assert not list(root.rglob("PWNED"))


def test_sizes_within_the_limits_that_memory_cannot_hold_are_one_error_line(blob_store, tmp_path):
    """--hidden 65536 is within the stated limits, but a 65536 x 65536 layer (16 GiB) is more than
    the memory there is: one 'not enough memory' line naming the sizes to give, not torch's
    allocator traceback; nothing is left in --out."""
    args = ["finetune", blob_store, "--out", tmp_path / "ft", "--hidden", "65536", "--layers", "2", "--splice", "0",
            "--max-epochs", "1"]  # fmt: skip
    text = one_error(run_limited(args, tmp_path), "not enough memory (")
    assert (
        "can't allocate memory" in text and "give smaller sizes (for training --hidden, --layers, --batch-size" in text
    )
    assert not (tmp_path / "ft" / "model.pt").exists()
