"""Hostile inputs: nothing read from a file reaches a shell, and no small file makes a command
allocate gigabytes. Every command runs in a child process under a memory limit
(resource.setrlimit) and must stop with one 'error:' line."""

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


@pytest.mark.parametrize("scp", ["feats.scp", "cmvn.scp", "pdf.scp"])
@pytest.mark.parametrize("spec", ["x; touch PWNED |:8", "x; touch PWNED |[0:5]", "touch PWNED |", "| touch PWNED"])
def test_a_script_file_never_reaches_a_shell(kaldi_data, scp, spec):
    root, _ = kaldi_data
    path = root / ("data" if scp != "pdf.scp" else "") / scp
    lines = path.read_text().splitlines()
    key = lines[0].split()[0]
    (path.parent / "x; touch PWNED |").write_bytes(b"\0B" * 64)  # the odd name exists beside it
    path.write_text("\n".join([f"{key} {spec}", *lines[1:]]) + "\n")
    args = _import(root) if scp != "pdf.scp" else [*_import(root)[:-2], "--ali", path]
    result = run_limited(args, cwd=path.parent)
    one_error(result, "asr-init runs no commands from its input")
    assert not list(root.rglob("PWNED"))


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


def test_a_gzip_bomb_alignment_is_read_as_a_stream(kaldi_data):
    """1 MB of gzip that inflates to 1 GiB: refused within the memory limit, entry named."""
    root, _ = kaldi_data
    with gzip.open(root / "bomb.gz", "wb", compresslevel=9) as fh:
        block = b"0" * (1 << 20)
        for _ in range(1024):
            fh.write(block)
    assert (root / "bomb.gz").stat().st_size < 2 << 20
    one_error(run_limited(_import(root)[:-2] + ["--ali", root / "bomb.gz"], root), "a token longer than")


def test_a_gzip_of_valid_entries_past_the_per_utterance_limit_is_refused(kaldi_data):
    root, _ = kaldi_data
    with gzip.open(root / "long.gz", "wb") as fh:
        fh.write(b"spk0-utt0 " + b"1 " * (5 << 20) + b"\n")  # 5 M frames in one utterance
    one_error(run_limited(_import(root)[:-2] + ["--ali", root / "long.gz"], root), "(at most 4,194,304 are read)")


@pytest.mark.parametrize(
    "count, message",
    [(1 << 30, "an integer vector of 1,073,741,824 entries"), (3_000_000, "bytes are left in the file")],
)
def test_a_binary_alignment_declaring_more_entries_than_its_file_holds(kaldi_data, count, message):
    root, _ = kaldi_data
    (root / "pdf.ark").write_bytes(b"spk0-utt0 \0B\x04" + struct.pack("<i", count) + b"\x04\x01\x00\x00\x00" * 4)
    one_error(run_limited(_import(root), root), message)


def test_a_feature_matrix_declaring_more_rows_than_its_archive_holds(kaldi_data):
    root, _ = kaldi_data
    ark = root / "data" / "feats.ark"
    data = bytearray(ark.read_bytes())
    at = data.index(b"FM ") + 4  # the row count after "FM \x04"
    data[at : at + 4] = struct.pack("<i", 1 << 28)
    ark.write_bytes(bytes(data))
    one_error(run_limited(_import(root), root), "x 13 matrix of 13,958,643,712 bytes, but")


@pytest.mark.parametrize(
    "top, extra, message",
    [
        (500_000, [], "pdf ids run up to 500,000"),
        (20_000_000, [], "reads pdf ids below 1,048,576"),
        (20_000_000, ["--num-pdfs", 30_000_000], "invalid num_pdfs=30000000: must be from 1 to 1,048,576"),
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


def _tiny_model(store: Path, out: Path) -> Path:
    from conftest import write_tiny_model

    return write_tiny_model(store, out)


@pytest.mark.parametrize("declared", [50_000_000, 1 << 30])
def test_a_feature_transform_declaring_huge_dimensions(blob_store, tmp_path, declared):
    from asr_init.models.export_kaldi import export_kaldi

    export_kaldi(_tiny_model(blob_store, tmp_path / "m"), tmp_path / "exp")
    (tmp_path / "exp" / "final.feature_transform").write_bytes(
        f"<Nnet> <Splice> {declared} {declared} [ 0 ] </Nnet> ".encode()
    )
    args = ["finetune", blob_store, "--out", tmp_path / "ft", "--init-from", tmp_path / "exp" / "final.nnet"]
    args += ["--reuse-layers", 1, "--layers", 1, "--hidden", 8]
    one_error(run_limited(args, tmp_path), f"gives {declared}; give the feature transform")


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


def test_a_checkpoint_whose_records_inflate_is_refused_before_loading(blob_store, tmp_path):
    from asr_init.training.config import PretrainConfig
    from asr_init.training.pretrain import pretrain

    pretrain(blob_store, PretrainConfig(layers=1, hidden=8, epochs_gauss=1, max_frames=256), tmp_path / "dbn")
    bomb = tmp_path / "bomb"
    bomb.mkdir()
    _deflated_checkpoint(tmp_path / "dbn" / "dbn.pt", bomb / "dbn.pt", 1 << 30)
    assert (bomb / "dbn.pt").stat().st_size < 4 << 20
    (bomb / "pretrain.json").write_text((tmp_path / "dbn" / "pretrain.json").read_text())
    result = run_limited(["finetune", blob_store, "--dbn", bomb, "--out", tmp_path / "ft"], tmp_path)
    one_error(result, "torch.save stores records uncompressed")
    result = run_limited(["inspect", blob_store, "--model", bomb], tmp_path)
    one_error(result, "torch.save stores records uncompressed")
    assert torch.load(tmp_path / "dbn" / "dbn.pt", weights_only=True)["format"] == "asr-init-dbn-1"
