"""import-kaldi: a store from Kaldi's own files (written here with kaldiio), checked against them."""

import gzip
import json

import kaldiio
import numpy as np
import pytest
from conftest import write_kaldi_features
from typer.testing import CliRunner

from asr_init.cli import app
from asr_init.errors import UserError
from asr_init.features.config import KaldiImportConfig
from asr_init.features.kaldi import import_kaldi
from asr_init.features.store import FeatureStore

runner = CliRunner()


def _text(result) -> str:
    return " ".join(result.output.split())


def _kaldi_text_ark(path, alignments: dict) -> None:
    """A text archive as Kaldi's ali-to-pdf ark,t: writes it: 'utt id id id' per line."""
    path.write_text("".join(f"{u} {' '.join(map(str, a))}\n" for u, a in alignments.items()))


def _cmvn(x: np.ndarray, stats: np.ndarray, norm_vars: bool) -> np.ndarray:
    """apply-cmvn on one utterance, written out from transform/cmvn.cc's ApplyCmvn."""
    dim = stats.shape[1] - 1
    count = stats[0, dim]
    mean = stats[0, :dim] / count
    if not norm_vars:
        return x - mean
    var = np.maximum(stats[1, :dim] / count - mean**2, 1e-20)
    return (x - mean) / np.sqrt(var)


@pytest.fixture
def kaldi_data(tmp_path):
    return tmp_path, write_kaldi_features(tmp_path / "data" / "train", speakers=5)


def test_store_holds_the_kaldi_features_cmvn_and_alignments(kaldi_data):
    root, ref = kaldi_data
    kaldiio.save_ark(str(root / "pdf.ark"), ref["pdfs"], text=True)  # text archive
    with gzip.open(root / "phones.1.gz", "wb") as fh:  # gzipped binary archive, as Kaldi's ali.N.gz
        kaldiio.save_ark(fh, ref["phones"])
    (root / "phones.txt").write_text("<eps> 0\nSIL 1\nAA 2\nIY 3\nS 4\nM 5\n#0 6\n")
    cfg = KaldiImportConfig(
        ali=[str(root / "pdf.ark")],
        phone_ali=[str(root / "phones.1.gz")],
        phones=str(root / "phones.txt"),
        num_pdfs=10,
        dev_fraction=0.2,
    )
    summary = import_kaldi(root / "data" / "train", root / "store", cfg)
    store = FeatureStore(root / "store")
    assert store.target_kinds == ("pdfs", "phones") and store.dim == 13
    assert store.labels("pdfs") == [str(i) for i in range(10)]  # --num-pdfs: the tree's, not the highest seen
    assert store.phones == ["<eps>", "SIL", "AA", "IY", "S", "M", "#0"]
    assert len(store.records) == 15 and summary["skipped"] == []
    assert {r.split for r in store.records} == {"train", "dev"}
    assert len({r.speaker for r in store.split("dev")}) == 1  # 20 % of 5 speakers, none shared with train
    assert not {r.speaker for r in store.split("dev")} & {r.speaker for r in store.split("train")}
    for rec in store.records:
        expected = _cmvn(ref["feats"][rec.id], ref["cmvn"][rec.speaker], norm_vars=False)
        np.testing.assert_allclose(store.features(rec), expected, atol=1e-5)
        np.testing.assert_array_equal(store.targets("pdfs", rec), ref["pdfs"][rec.id])
        np.testing.assert_array_equal(store.targets("phones", rec), ref["phones"][rec.id])
        merged = [p for i, p in enumerate(ref["phones"][rec.id]) if i == 0 or p != ref["phones"][rec.id][i - 1]]
        assert rec.transcript == tuple(store.phones[p] for p in merged)
        assert rec.duration == pytest.approx(rec.frames * 0.01)
    train = np.concatenate([store.features(r) for r in store.split("train")]).astype(np.float64)
    stats = json.loads((root / "store" / "stats.json").read_text())
    np.testing.assert_allclose(stats["mean"], train.mean(0), atol=1e-5)
    np.testing.assert_allclose(stats["std"], train.std(0), rtol=1e-4)
    config = json.loads((root / "store" / "config.json").read_text())
    assert config["cmvn_opts"] == "--norm-means=true --norm-vars=false" and config["num_pdfs"] == 10
    with pytest.raises(UserError, match="has no states targets .* choose --targets pdfs"):
        store.targets("states", store.records[0])


def test_separate_dev_dir_norm_vars_and_every_alignment_form(kaldi_data):
    """train.sh's separate cv dir; alignments as a script file, Kaldi's own text lines, and a
    binary archive behind an rspecifier, pooled over both dirs."""
    root, ref = kaldi_data
    dev = write_kaldi_features(root / "data" / "cv", speakers=2, seed=1, prefix="cv")
    kaldiio.save_ark(str(root / "pdf.ark"), ref["pdfs"], scp=str(root / "pdf.scp"))  # binary ark + scp
    _kaldi_text_ark(root / "pdf_cv.txt", dev["pdfs"])
    cfg = KaldiImportConfig(
        ali=[str(root / "pdf.scp"), f"ark,t:{root / 'pdf_cv.txt'}"], dev=str(root / "data" / "cv"), norm_vars=True
    )
    import_kaldi(root / "data" / "train", root / "store", cfg)
    store = FeatureStore(root / "store")
    assert store.target_kinds == ("pdfs",) and store.phones == [] and len(store.labels("pdfs")) == 8
    assert {r.id for r in store.split("train")} == set(ref["feats"])
    assert {r.id for r in store.split("dev")} == set(dev["feats"])
    for rec in store.records:
        source = ref if rec.split == "train" else dev
        expected = _cmvn(source["feats"][rec.id], source["cmvn"][rec.speaker], norm_vars=True)
        np.testing.assert_allclose(store.features(rec), expected, atol=1e-4)
        np.testing.assert_array_equal(store.targets("pdfs", rec), source["pdfs"][rec.id])
    for spk in {r.speaker for r in store.records}:  # stats of exactly these frames: N(0, 1) per speaker
        x = np.concatenate([store.features(r) for r in store.records if r.speaker == spk]).astype(np.float64)
        np.testing.assert_allclose(x.mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(x.std(0), 1, atol=1e-4)


def test_no_cmvn_keeps_the_features_and_missing_alignments_are_left_out(kaldi_data):
    root, ref = kaldi_data
    partial = {u: a for i, (u, a) in enumerate(ref["pdfs"].items()) if i != 4}
    kaldiio.save_ark(str(root / "pdf.ark"), partial)
    res = runner.invoke(
        app,
        ["import-kaldi", str(root / "data" / "train"), "--ali", str(root / "pdf.ark"), "--no-cmvn"]
        + ["--out", str(root / "store")],
    )
    assert res.exit_code == 0, res.output
    skipped = list(ref["pdfs"])[4]
    assert f"1 utterance(s) have no alignment and were left out (first: {skipped})" in _text(res)
    assert "--num-pdfs" in _text(res)  # the note that the pdf count came from the alignments
    store = FeatureStore(root / "store")
    assert skipped not in {r.id for r in store.records} and len(store.records) == 14
    for rec in store.records:
        np.testing.assert_array_equal(store.features(rec), ref["feats"][rec.id])
    assert json.loads((root / "store" / "config.json").read_text())["cmvn_opts"] is None
    again = runner.invoke(
        app,
        ["import-kaldi", str(root / "data" / "train"), "--ali", str(root / "pdf.ark"), "--no-cmvn"]
        + ["--out", str(root / "store")],
    )
    assert again.exit_code == 0 and "already complete" in _text(again)
    kaldiio.save_ark(str(root / "pdf.ark"), {u: (a + 1) % 8 for u, a in partial.items()})  # aligned again
    realigned = runner.invoke(app, ["import-kaldi", str(root / "data" / "train"), "--ali", str(root / "pdf.ark"),
                                    "--no-cmvn", "--out", str(root / "store")])  # fmt: skip
    assert realigned.exit_code == 1 and "the Kaldi lists and alignments changed since" in _text(realigned)
    kaldiio.save_ark(str(root / "pdf.ark"), partial)
    data = root / "data" / "train"  # the features made again (add-deltas into a new archive): the same scp text
    feats = {u: np.tile(x, (1, 3)) for u, x in kaldiio.load_scp(str(data / "feats.scp")).items()}
    kaldiio.save_ark(str(root / "deltas.ark"), feats)
    (root / "deltas.ark").replace(next(iter({p for p in data.glob("*.ark") if p.name.startswith("feats")})))
    remade = runner.invoke(app, ["import-kaldi", str(data), "--ali", str(root / "pdf.ark"), "--no-cmvn", "--out",
                                 str(root / "store")])  # fmt: skip
    assert remade.exit_code == 1 and "the archives the script files name changed since" in _text(remade), remade.output


def test_lengths_that_differ_are_cut_or_left_out_as_nnet_train_frmshuff_does(kaldi_data):
    """An alignment a frame or more shorter than its features stopped the import, where Kaldi's
    nnet-train-frmshuff (--length-tolerance 5) cuts both to the shorter under 5 frames apart, and
    leaves the utterance out at 5 or more: import-kaldi does the same, with a warning for each."""
    root, ref = kaldi_data
    utts = list(ref["pdfs"])
    pdfs, phones = dict(ref["pdfs"]), dict(ref["phones"])
    pdfs[utts[1]], phones[utts[1]] = pdfs[utts[1]][:-3], phones[utts[1]][:-1]  # 4 frames apart: cut to the shortest
    pdfs[utts[2]] = pdfs[utts[2]][:-5]  # 5 apart: left out
    kaldiio.save_ark(str(root / "pdf.ark"), pdfs)
    kaldiio.save_ark(str(root / "ph.ark"), phones)
    args = ["import-kaldi", str(root / "data" / "train"), "--ali", str(root / "pdf.ark"), "--phone-ali",
            str(root / "ph.ark"), "--no-cmvn", "--out", str(root / "store")]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    n, said = len(ref["feats"][utts[1]]), "".join(res.output.split())  # rich breaks a long path anywhere
    cut = (f"1 utterance(s) were cut to the shortest of their features and alignments, which differ by fewer than 5 "
           f"frames (--length-tolerance 5, as nnet-train-frmshuff cuts them) (first: {utts[1]}: features {n} frames, "
           f"pdf alignment in {root / 'pdf.ark'}, entry 2 {n - 3}, phone alignment in")  # fmt: skip
    assert "".join(cut.split()) in said
    assert "1utterance(s)wereleftout:theirfeaturesandalignmentsdifferby5framesormore" in said
    store = FeatureStore(root / "store")
    assert utts[2] not in {r.id for r in store.records} and json.loads(
        (root / "store" / "summary.json").read_text())["skipped"] == [utts[2]]  # fmt: skip
    cut = next(r for r in store.records if r.id == utts[1])
    np.testing.assert_array_equal(store.features(cut), ref["feats"][utts[1]][: n - 3])
    np.testing.assert_array_equal(store.targets("phones", cut), ref["phones"][utts[1]][: n - 3])
    strict = runner.invoke(app, [*args[:-1], str(root / "strict"), "--length-tolerance", "0"])
    assert strict.exit_code == 1 and f"utterance {utts[1]}: " in _text(strict) and not (root / "strict").exists()


def test_a_store_made_before_length_tolerance_is_complete_for_any_tolerance(kaldi_data):
    """Every length had to match then, as any --length-tolerance keeps it: its record is not other settings."""
    root, ref = kaldi_data
    kaldiio.save_ark(str(root / "pdf.ark"), ref["pdfs"])
    args = ["import-kaldi", str(root / "data" / "train"), "--ali", str(root / "pdf.ark"), "--out", str(root / "s")]
    assert runner.invoke(app, args).exit_code == 0
    record = json.loads((root / "s" / "config.json").read_text())
    del record["kaldi"]["length_tolerance"]
    (root / "s" / "config.json").write_text(json.dumps(record))
    for tolerance in ("5", "0"):
        again = runner.invoke(app, [*args, "--length-tolerance", tolerance])
        assert again.exit_code == 0 and "already complete" in _text(again), again.output


def test_a_rerun_giving_the_inferred_num_pdfs_finds_the_store_complete(kaldi_data):
    """--num-pdfs N makes the store that inferred N pdfs; another N, or none after a given one, is other settings."""
    root, ref = kaldi_data
    kaldiio.save_ark(str(root / "pdf.ark"), ref["pdfs"])
    args = ["import-kaldi", str(root / "data" / "train"), "--ali", str(root / "pdf.ark"), "--out", str(root / "store")]
    assert runner.invoke(app, args).exit_code == 0
    inferred = json.loads((root / "store" / "config.json").read_text())["num_pdfs"]
    again = runner.invoke(app, [*args, "--num-pdfs", str(inferred)])
    assert again.exit_code == 0 and "already complete" in _text(again), again.output
    other = runner.invoke(app, [*args, "--num-pdfs", str(inferred + 1)])
    assert other.exit_code == 1 and f"other settings (num_pdfs: {inferred} then, {inferred + 1} now)" in _text(other)
    assert runner.invoke(app, [*args, "--num-pdfs", str(inferred + 1), "--force"]).exit_code == 0
    dropped = runner.invoke(app, args)  # inferring could give fewer than the N given: not known before reading
    assert dropped.exit_code == 1, dropped.output
    assert f"other settings (num_pdfs: {inferred + 1} then, None now)" in _text(dropped)


def test_a_rerun_with_another_alignment_option_names_the_option_not_a_changed_input(kaldi_data):
    """Phone alignments added, or another pdf archive given, to a finished store's command: the
    refusal names the option that differs; it used to say that the Kaldi lists and alignments
    had changed since the store was made, though no file had."""
    root, ref = kaldi_data
    kaldiio.save_ark(str(root / "pdf.ark"), ref["pdfs"])
    kaldiio.save_ark(str(root / "phones.ark"), ref["phones"])
    args = ["import-kaldi", str(root / "data" / "train"), "--ali", str(root / "pdf.ark"), "--out", str(root / "store")]
    assert runner.invoke(app, args).exit_code == 0
    before = (root / "store" / "config.json").read_text()
    added = _text(runner.invoke(app, [*args, "--phone-ali", str(root / "phones.ark")]))
    assert (
        "other settings (phone_ali: [] then, ['ark:/" in added
        and "targets: ['pdfs'] then, ['pdfs', 'phones'] now" in added
    )
    assert "changed since" not in added
    kaldiio.save_ark(str(root / "tri4.ark"), {u: (a + 1) % 8 for u, a in ref["pdfs"].items()})  # another system's
    other = runner.invoke(app, [*args[:2], "--ali", str(root / "tri4.ark"), *args[4:]])
    assert other.exit_code == 1 and "other settings (ali: " in _text(other) and "changed since" not in _text(other)
    assert (root / "store" / "config.json").read_text() == before


def _truncate_one(root, ref):
    ali = dict(ref["pdfs"])
    ali["spk2-utt1"] = ali["spk2-utt1"][:-3]
    kaldiio.save_ark(str(root / "bad.ark"), ali)
    return ["--ali", str(root / "bad.ark"), "--length-tolerance", "0"], "utterance spk2-utt1:"


def _truncated_archive(root, ref):
    """The message named the feats.scp line and "the file", not the archive that ended early."""
    _kaldi_text_ark(root / "pdf.txt", ref["pdfs"])
    ark = next((root / "data" / "train").glob("feats*.ark"))
    ark.write_bytes(ark.read_bytes()[: ark.stat().st_size // 2])
    return ["--ali", str(root / "pdf.txt")], f" of {ark} (a 42 x 13 matrix of 2,184 bytes, but 1,235 bytes are left"


def _lengths_all_apart(root, ref):
    kaldiio.save_ark(str(root / "bad.ark"), {u: a[::3] for u, a in ref["pdfs"].items()})  # subsampled
    return ["--ali", str(root / "bad.ark")], "was imported: 15 have features and alignments whose lengths differ by"


def _transition_ids(root, ref):
    kaldiio.save_ark(str(root / "bad.ark"), {u: a * 50 + 2 for u, a in ref["pdfs"].items()})
    return ["--ali", str(root / "bad.ark"), "--num-pdfs", "8"], "are these transition ids?"


def _piped(root, ref):
    return ["--ali", "ark:gunzip -c exp/tri3_ali/ali.1.gz |"], "runs no commands"


def _piped_feats(root, ref):
    scp = root / "data" / "train" / "feats.scp"
    scp.write_text(scp.read_text() + "spk9-utt0 compute-mfcc-feats scp:wav.scp ark:- |\n")
    kaldiio.save_ark(str(root / "pdf.ark"), ref["pdfs"])
    return ["--ali", str(root / "pdf.ark")], "is read through a command"


def _alignment_dir(root, ref):
    (root / "exp" / "tri3_ali").mkdir(parents=True)
    return ["--ali", str(root / "exp" / "tri3_ali")], "hold transition ids: convert them first"


def _garbage(root, ref):
    (root / "bad.ark").write_bytes(b"spk0-utt0 \0B\x07\x01\x02garbage")
    return ["--ali", str(root / "bad.ark")], "is not a readable Kaldi archive"


def _bad_gzip(root, ref):
    (root / "ali.1.gz").write_bytes(b"not gzip at all")
    return ["--ali", str(root / "ali.1.gz")], "cannot decompress"


def _features_as_alignments(root, ref):
    return ["--ali", str(root / "data" / "train" / "feats.ark")], "not a vector of integers; give ali-to-pdf"


def _no_utt2spk(root, ref):
    lines = (root / "data" / "train" / "utt2spk").read_text().splitlines()
    (root / "data" / "train" / "utt2spk").write_text("\n".join(lines[1:]) + "\n")
    kaldiio.save_ark(str(root / "pdf.ark"), ref["pdfs"])
    return ["--ali", str(root / "pdf.ark")], "spk0-utt0 of"


def _cmvn_missing(root, ref):
    (root / "data" / "train" / "cmvn.scp").unlink()
    kaldiio.save_ark(str(root / "pdf.ark"), ref["pdfs"])
    return ["--ali", str(root / "pdf.ark"), "--cmvn"], "has no cmvn.scp"


def _no_alignments(root, ref):
    return [], "give --ali"


def _missing_file(root, ref):
    return ["--ali", str(root / "nowhere.ark")], "does not exist"


def _negative_seed(root, ref):
    _kaldi_text_ark(root / "pdf.txt", ref["pdfs"])
    return ["--ali", str(root / "pdf.txt"), "--seed", "-1"], "invalid --seed -1: must be from 0 to 4294967295"


def _phones_without_phone_ali(root, ref):
    _kaldi_text_ark(root / "pdf.txt", ref["pdfs"])
    (root / "phones.txt").write_text("<eps> 0\nSIL 1\n")
    return ["--ali", str(root / "pdf.txt"), "--phones", str(root / "phones.txt")], "give --phone-ali too"


def _phone_id_not_ascii_digits(root, ref):
    """'²' passes str.isdigit() but not int(): it stopped in a ValueError traceback."""
    _kaldi_text_ark(root / "ph.txt", ref["phones"])
    (root / "phones.txt").write_text("<eps> 0\nSIL 1\nAA \u00b2\n")
    args = ["--phone-ali", str(root / "ph.txt"), "--phones", str(root / "phones.txt")]
    return args, "phones.txt, line 3: expected 'symbol id' as in Kaldi's phones.txt, found 'AA \u00b2'"


def _phone_id_of_5000_digits(root, ref):
    """An id past int()'s 4,300-digit limit stopped in a ValueError traceback."""
    _kaldi_text_ark(root / "ph.txt", ref["phones"])
    (root / "phones.txt").write_text(f"<eps> 0\nSIL 1\nAA {'1' * 5000}\n")
    args = ["--phone-ali", str(root / "ph.txt"), "--phones", str(root / "phones.txt")]
    return args, "phones.txt, line 3: phone id of 5000 digits is not below 32,768, the most read"


def _phones_line_numbered_as_in_the_file(root, ref):
    """Lines were numbered without the blank ones, and a U+2028 inside a line (a line break to
    str.splitlines, not to Kaldi) made two: the line named was not the file's; a Windows line end is
    not quoted as part of the line."""
    _kaldi_text_ark(root / "ph.txt", ref["phones"])
    (root / "phones.txt").write_bytes("<eps> 0\r\n\r\nSIL 1\r\nA\u2028A 2\r\nAA two\r\n".encode())  # saved on Windows
    args = ["--phone-ali", str(root / "ph.txt"), "--phones", str(root / "phones.txt")]
    return args, "phones.txt, line 5: expected 'symbol id' as in Kaldi's phones.txt, found 'AA two'"


def _pdf_id_beyond_int32(root, ref):
    """2**32 + 3 in a text archive was cast to pdf 3 and imported."""
    _kaldi_text_ark(root / "pdf.txt", ref["pdfs"])
    text = (root / "pdf.txt").read_text().split(" ", 2)
    (root / "pdf.txt").write_text(f"{text[0]} 4294967299 {text[2]}")
    return ["--ali", str(root / "pdf.txt")], "(entry 1: the integer 4294967299 is out of the int32 range"


def _frame_shift_a_fifo(root, ref):
    """A pipe named frame_shift was passed over (is_file() is False for it): its frame shift unread and unsaid."""
    import os

    _kaldi_text_ark(root / "pdf.txt", ref["pdfs"])
    os.mkfifo(root / "data" / "train" / "frame_shift")
    return ["--ali", str(root / "pdf.txt")], "frame_shift is not a regular file (a pipe or a device?)"


def _absolute_missing_archive(root, ref):
    scp = root / "data" / "train" / "feats.scp"
    first = scp.read_text().splitlines()[0].split()[0]
    scp.write_text(f"{first} /nowhere/raw.ark:12\n")
    _kaldi_text_ark(root / "pdf.txt", ref["pdfs"])
    return ["--ali", str(root / "pdf.txt")], "line 1: /nowhere/raw.ark does not exist"


def _feature_archive_a_fifo(root, ref):
    """A pipe at the archive a feats.scp line names was reported as missing (is_file() is False for it)."""
    import os

    scp = root / "data" / "train" / "feats.scp"
    first = scp.read_text().splitlines()[0].split()[0]
    os.mkfifo(root / "pipe.ark")
    scp.write_text(f"{first} {root / 'pipe.ark'}:12\n")
    _kaldi_text_ark(root / "pdf.txt", ref["pdfs"])
    return ["--ali", str(root / "pdf.txt")], f"line 1: file {root / 'pipe.ark'} is not a regular file (a pipe"


def _one_edit(root, ref, name: str, old: str, new: str, said: str):
    """The data dir's NAME with its first `old` made `new`, and a text archive of the alignments:
    the import-kaldi arguments and what its one error line says."""
    path = root / "data" / "train" / name
    path.write_text(path.read_text().replace(old, new, 1))
    _kaldi_text_ark(root / "pdf.txt", ref["pdfs"])
    return ["--ali", str(root / "pdf.txt")], said


def _nul_in_a_speaker(root, ref):
    """A speaker 'sp\\0k0' was reported as having no CMVN stats, the NUL printed unseen."""
    return _one_edit(root, ref, "utt2spk", " spk0\n", " sp\0k0\n",
                     "utt2spk, line 1: speaker 'sp\\x00k0' holds '\\x00', which Kaldi does not take")  # fmt: skip


def _nul_in_a_feats_key(root, ref):
    """An utterance id holding a NUL (in feats.scp and utt2spk) was imported, rc 0: here in feats.scp."""
    return _one_edit(root, ref, "feats.scp", "spk0-utt0 ", "spk0\0utt0 ",
                     "feats.scp, line 1: key 'spk0\\x00utt0' holds '\\x00', which Kaldi")  # fmt: skip


def _escape_in_an_alignment_key(root, ref):
    pdfs = {(f"\x1b[2J{u}" if i == 0 else u): a for i, (u, a) in enumerate(ref["pdfs"].items())}
    _kaldi_text_ark(root / "pdf.txt", pdfs)
    return ["--ali", str(root / "pdf.txt")], "(entry 1: key '\\x1b[2Jspk0-utt0' holds '\\x1b', which Kaldi does not"


def _separator_in_a_feats_key(root, ref):
    """ "spk0\\x1cutt0" is one key to Kaldi, which refuses it (copy-feats: "Using invalid key"); str.split()
    made it the key "spk0" and the file "utt0 ...feats.ark:N", reported missing."""
    return _one_edit(root, ref, "feats.scp", "spk0-utt0 ", "spk0\x1cutt0 ",
                     "feats.scp, line 1: key 'spk0\\x1cutt0' holds '\\x1c', which Kaldi")  # fmt: skip


def _separator_in_a_speaker(root, ref):
    return _one_edit(root, ref, "utt2spk", " spk0\n", " spk\x1d0\n",
                     "utt2spk, line 1: speaker 'spk\\x1d0' holds '\\x1d', which Kaldi")  # fmt: skip


def _form_feed_after_a_key_in_utt2spk(root, ref):
    """Kaldi reads utt2spk as an archive, whose key must end at a space or a tab: apply-cmvn --utt2spk says
    "Invalid archive file format: expected space after key spk0-utt0, got character [character 12]"."""
    return _one_edit(root, ref, "utt2spk", "spk0-utt0 spk0\n", "spk0-utt0\fspk0\n",
                     "utt2spk, line 1: expected a space or a tab after the key 'spk0-utt0'")  # fmt: skip


def _wrong_keys(root, ref):
    kaldiio.save_ark(str(root / "pdf.ark"), {f"other-{u}": a for u, a in ref["pdfs"].items()})
    return ["--ali", str(root / "pdf.ark")], "keyed by the same utterance ids"


def _zero_dim_features(root, ref):
    feats = {u: np.zeros((len(a), 0), np.float32) for u, a in ref["pdfs"].items()}
    kaldiio.save_ark(str(root / "data" / "train" / "feats.ark"), feats, scp=str(root / "data" / "train" / "feats.scp"))
    _kaldi_text_ark(root / "pdf.txt", ref["pdfs"])
    return ["--ali", str(root / "pdf.txt"), "--no-cmvn"], "is not a (frames, dim) feature matrix of at least 1 x 1"


@pytest.mark.parametrize("odd", ["\u00a0", "\u3000", "\u00e9"])
def test_ids_and_phone_symbols_are_split_at_ascii_white_space_only(kaldi_data, odd):
    """An utterance id or a phone symbol holding U+00A0 or U+3000 is one field to Kaldi (isspace in the C
    locale; copy-feats scp:feats.scp ark,t:- writes the key "spk0\\u00a0utt0" whole), two to str.split():
    utt2spk's line was refused. The alignment archives' keys are UTF-8 as the data dir's lines are (a key
    "spk0\\u00e9utt0" was read as latin-1 and the utterance left out), and the store reads its labels back."""
    root, ref = kaldi_data
    rename = {u: u.replace("spk0-utt0", f"spk0{odd}utt0") for u in ref["feats"]}
    train = root / "data" / "train"
    kaldiio.save_ark(str(train / "feats.ark"), {rename[u]: x for u, x in ref["feats"].items()},
                     scp=str(train / "feats.scp"))  # fmt: skip
    (train / "utt2spk").write_text("".join(f"{rename[u]} {s}\n" for u, s in ref["utt2spk"].items()))
    _kaldi_text_ark(root / "pdf.txt", {rename[u]: a for u, a in ref["pdfs"].items()})
    kaldiio.save_ark(str(root / "phones.ark"), {rename[u]: a for u, a in ref["phones"].items()})
    (root / "phones.txt").write_text(f"<eps> 0\nSIL 1\nA{odd}A 2\nIY 3\nS 4\nM 5\n")
    args = [
        "--ali",
        str(root / "pdf.txt"),
        "--phone-ali",
        str(root / "phones.ark"),
        "--phones",
        str(root / "phones.txt"),
    ]
    res = runner.invoke(app, ["import-kaldi", str(train), "--out", str(root / "store"), "--no-cmvn", *args])
    assert res.exit_code == 0 and "0 utterance(s) left out" in _text(res), res.output
    store = FeatureStore(root / "store")
    assert store.phones == ["<eps>", "SIL", f"A{odd}A", "IY", "S", "M"] and len(store.records) == 15
    rec = next(r for r in store.records if r.id == f"spk0{odd}utt0")
    np.testing.assert_array_equal(store.targets("pdfs", rec), ref["pdfs"]["spk0-utt0"])
    assert f"A{odd}A" in rec.transcript and set(rec.transcript) <= set(store.phones)


@pytest.mark.parametrize("shift", ["nan", "-1", "0", "1e308", "0.0_1", "0.0\u0661"])  # strtod: ASCII digits only
def test_a_frame_shift_that_is_not_a_duration_is_refused(kaldi_data, shift):
    """Each made hours NaN, negative or infinite in summary.json and manifest.jsonl (not JSON)."""
    root, ref = kaldi_data
    (root / "data" / "train" / "frame_shift").write_text(f"{shift}\n")
    _kaldi_text_ark(root / "pdf.txt", ref["pdfs"])
    res = runner.invoke(app, ["import-kaldi", str(root / "data" / "train"), "--out", str(root / "store"), "--ali",
                              str(root / "pdf.txt")])  # fmt: skip
    assert res.exit_code == 1 and "frame_shift does not hold a frame shift in seconds (over 0, at most 1)" in _text(res)
    assert not (root / "store").exists()


@pytest.mark.parametrize(
    "breaker",
    [
        _zero_dim_features,
        _truncate_one,
        _lengths_all_apart,
        _truncated_archive,
        _transition_ids,
        _piped,
        _piped_feats,
        _alignment_dir,
        _garbage,
        _bad_gzip,
        _features_as_alignments,
        _no_utt2spk,
        _cmvn_missing,
        _no_alignments,
        _missing_file,
        _wrong_keys,
        _negative_seed,
        _phones_without_phone_ali,
        _phone_id_not_ascii_digits,
        _phone_id_of_5000_digits,
        _phones_line_numbered_as_in_the_file,
        _pdf_id_beyond_int32,
        _frame_shift_a_fifo,
        _absolute_missing_archive,
        _feature_archive_a_fifo,
        _nul_in_a_speaker,
        _nul_in_a_feats_key,
        _escape_in_an_alignment_key,
        _separator_in_a_feats_key,
        _separator_in_a_speaker,
        _form_feed_after_a_key_in_utt2spk,
    ],
)
def test_bad_input_gives_one_error_line_and_no_store(kaldi_data, breaker):
    root, ref = kaldi_data
    args, message = breaker(root, ref)
    res = runner.invoke(app, ["import-kaldi", str(root / "data" / "train"), "--out", str(root / "store"), *args])
    assert res.exit_code == 1, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.output, res.output
    assert message in _text(res) and "relative names" not in _text(res)
    assert not (root / "store").exists() and not list(root.glob("store.tmp-*"))


@pytest.mark.parametrize("span", ["[3]", "[3:]", "[]", "[0:5,]", "[a:b]"])
def test_a_feature_range_not_in_kaldis_form_is_refused_naming_its_line(kaldi_data, span):
    root, ref = kaldi_data
    scp = root / "data" / "train" / "feats.scp"
    lines = scp.read_text().splitlines()
    scp.write_text("\n".join([lines[0], lines[1] + span, *lines[2:]]) + "\n")
    _kaldi_text_ark(root / "pdf.txt", ref["pdfs"])
    res = runner.invoke(app, ["import-kaldi", str(root / "data" / "train"), "--out", str(root / "store"), "--ali",
                              str(root / "pdf.txt")])  # fmt: skip
    assert res.exit_code == 1 and len([ln for ln in res.output.splitlines() if ln.startswith("error:")]) == 1
    assert "feats.scp, line 2: cannot read features at byte " in _text(res), res.output
    assert f"(range {span} is not Kaldi's" in _text(res), res.output


def test_a_range_on_an_alignment_entry_is_refused_as_kaldi_refuses_it(kaldi_data):
    """Kaldi reads no range of an integer vector ("ExtractRange is not defined for this type of
    holder"): an alignment script entry with one was cut to the range in silence."""
    root, ref = kaldi_data
    kaldiio.save_ark(str(root / "pdf.ark"), ref["pdfs"], scp=str(root / "pdf.scp"))
    lines = (root / "pdf.scp").read_text().splitlines()
    (root / "pdf.scp").write_text("\n".join([lines[0], lines[1] + "[0:4]", *lines[2:]]) + "\n")
    res = runner.invoke(app, ["import-kaldi", str(root / "data" / "train"), "--out", str(root / "store"), "--ali",
                              str(root / "pdf.scp")])  # fmt: skip
    assert res.exit_code == 1 and len([ln for ln in res.output.splitlines() if ln.startswith("error:")]) == 1
    assert "pdf.scp, line 2: cannot read pdf alignments (a range [0:4] of an alignment: Kaldi takes" in _text(res)
    assert not (root / "store").exists()


def _snapshot(root) -> dict:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _out_holds_alignments(root, ref):
    (root / "ali").mkdir()
    _kaldi_text_ark(root / "ali" / "pdf.txt", ref["pdfs"])
    return root / "data" / "train", ["--ali", str(root / "ali" / "pdf.txt"), "--out", str(root / "ali")], "--ali file"


def _out_holds_feature_archive(root, ref):
    """feats.scp names an archive in another folder (mfcc/, as steps/make_mfcc.sh writes)."""
    write_kaldi_features(root / "mfcc", speakers=2)
    data = root / "kdata"
    data.mkdir()
    for name in ("feats.scp", "cmvn.scp", "utt2spk"):
        (data / name).write_text((root / "mfcc" / name).read_text())
    _kaldi_text_ark(root / "pdf.txt", ref["pdfs"])
    return data, ["--ali", str(root / "pdf.txt"), "--out", str(root / "mfcc")], "archive named in"


def _out_holds_phones(root, ref):
    (root / "lang").mkdir()
    (root / "lang" / "phones.txt").write_text("<eps> 0\nSIL 1\nAA 2\nIY 3\nS 4\nM 5\n")
    _kaldi_text_ark(root / "ph.txt", ref["phones"])
    args = ["--phone-ali", str(root / "ph.txt"), "--phones", str(root / "lang" / "phones.txt")]
    return root / "data" / "train", [*args, "--out", str(root / "lang")], "--phones file"


def _out_is_a_file(root, ref):
    _kaldi_text_ark(root / "pdf.txt", ref["pdfs"])
    (root / "notes.txt").write_text("mine")
    args = ["--ali", str(root / "pdf.txt"), "--out", str(root / "notes.txt")]
    return root / "data" / "train", args, "is a file, not a folder"


@pytest.mark.parametrize("case", [_out_holds_alignments, _out_holds_feature_archive, _out_holds_phones, _out_is_a_file])
def test_force_refuses_an_out_over_any_input(kaldi_data, case):
    root, ref = kaldi_data
    data, args, message = case(root, ref)
    before = _snapshot(root)
    res = runner.invoke(app, ["import-kaldi", str(data), *args, "--force"])
    assert res.exit_code == 1, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.output, res.output
    assert message in _text(res)
    assert _snapshot(root) == before


def test_force_refuses_a_store_another_run_holds(kaldi_data):
    import fcntl

    root, ref = kaldi_data
    _kaldi_text_ark(root / "pdf.txt", ref["pdfs"])
    (root / "store").mkdir()
    (root / "store" / "summary.json").write_text("{}")
    with open(root / ".store.lock", "w") as held:
        held.write("4242\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        before = _snapshot(root)
        args = [str(root / "data" / "train"), "--ali", str(root / "pdf.txt"), "--out", str(root / "store")]
        res = runner.invoke(app, ["import-kaldi", *args, "--force"])
    assert res.exit_code == 1, res.output
    assert [ln for ln in res.output.splitlines() if ln.startswith("error:")], res.output
    assert "is being written by another asr-init run (pid 4242)" in _text(res)
    assert _snapshot(root) == before


def test_stats_keyed_by_utterance_under_a_speakers_utt2spk_are_counted_and_warned_of_at_export(kaldi_data):
    """cmvn.scp made per utterance (compute-cmvn-stats without --spk2utt) while utt2spk names speakers:
    each utterance takes its own stats, and the import and the export both say that train.sh and
    decode.sh (apply-cmvn --utt2spk) would give no frames for them."""
    root, ref = kaldi_data
    train = root / "data" / "train"
    own = {}
    for utt, x in ref["feats"].items():
        x = x.astype(np.float64)
        own[utt] = np.zeros((2, x.shape[1] + 1))
        own[utt][0, :-1], own[utt][1, :-1], own[utt][0, -1] = x.sum(0), (x**2).sum(0), len(x)
    kaldiio.save_ark(str(root / "own.ark"), own, scp=str(train / "cmvn.scp"))
    kaldiio.save_ark(str(root / "pdf.ark"), ref["pdfs"])
    res = runner.invoke(app, ["import-kaldi", str(train), "--ali", str(root / "pdf.ark"), "--out", str(root / "st")])
    hint = "apply-cmvn --utt2spk, which gives no frames for such utterances: for per-utterance CMVN make utt2spk"
    assert res.exit_code == 0, res.output
    assert "warning: 15 utterance(s) were normalised with their own stats in cmvn.scp" in _text(res), res.output
    assert hint in _text(res) and json.loads((root / "st" / "config.json").read_text())["cmvn_own_stats"] == 15
    store = FeatureStore(root / "st")
    for rec in store.records:
        np.testing.assert_allclose(store.features(rec), _cmvn(ref["feats"][rec.id], own[rec.id], False), atol=1e-5)
    args = ["--layers", "1", "--hidden", "8", "--max-epochs", "1", "--batch-size", "64"]
    assert runner.invoke(app, ["finetune", str(root / "st"), "--out", str(root / "dnn"), *args]).exit_code == 0
    res = runner.invoke(app, ["export-kaldi", str(root / "dnn"), "--out", str(root / "exp")])
    assert res.exit_code == 0 and "warning: 15 of the store's utterances were normalised" in _text(res), res.output
    assert hint in _text(res)
    kaldiio.save_ark(str(root / "spk.ark"), ref["cmvn"], scp=str(train / "cmvn.scp"))  # per speaker: no warning
    res = runner.invoke(app, ["import-kaldi", str(train), "--ali", str(root / "pdf.ark"), "--out", str(root / "st2")])
    assert res.exit_code == 0 and "own stats" not in _text(res), res.output
    assert json.loads((root / "st2" / "config.json").read_text())["cmvn_own_stats"] == 0


def test_an_alignment_of_no_listed_utterance_whose_key_is_not_utf8_is_read_past(kaldi_data):
    """Alignments made for a larger set than the data dir: an entry whose key is not UTF-8 (Kaldi's tools take
    any bytes) names no utterance of the data dir and is passed over, as any other such entry is."""
    root, ref = kaldi_data
    _kaldi_text_ark(root / "pdf.txt", ref["pdfs"])
    with open(root / "pdf.txt", "ab") as fh:
        fh.write(b"extra\xe9 1 2 3\n")
    res = runner.invoke(app, ["import-kaldi", str(root / "data" / "train"), "--ali", str(root / "pdf.txt"),
                              "--num-pdfs", "10", "--out", str(root / "st")])  # fmt: skip
    assert res.exit_code == 0 and "0 utterance(s) left out" in _text(res), res.output
    assert len(FeatureStore(root / "st").records) == 15


@pytest.mark.parametrize("option", ["--ali", "--phone-ali"])
@pytest.mark.parametrize(
    "spec", ["ark:", "scp:", "ark,t:", "ark: "]
)  # only white space: refused as a path (test_cli_errors)
def test_an_alignment_specifier_naming_no_file_is_refused_naming_the_option(kaldi_data, option, spec):
    """--ali ark: (or scp:, ark,t:) was taken for the current folder: "--ali file ark: is a folder"."""
    root, ref = kaldi_data
    kaldiio.save_ark(str(root / "pdf.ark"), ref["pdfs"])
    args = ["--ali", str(root / "pdf.ark"), "--phone-ali", spec] if option == "--phone-ali" else ["--ali", spec]
    res = runner.invoke(app, ["import-kaldi", str(root / "data" / "train"), "--out", str(root / "store"), *args])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: invalid {option} "), res.output
    assert "names no file: give an alignment file as PATH, ark:PATH or scp:PATH" in _text(res), res.output
    assert "folder" not in res.output and not (root / "store").exists()


@pytest.mark.parametrize("field", ["dev", "test", "phones"])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_path_is_refused_naming_the_option(field, value):
    """KaldiImportConfig(dev="") passed validate() and imported the current folder as the dev set."""
    config = KaldiImportConfig(ali=["pdf.ark"], phone_ali=["phones.ark"], **{field: value})
    with pytest.raises(UserError) as caught:
        config.validate()
    assert str(caught.value) == f"invalid --{field} {value!r}: an empty path names no file or folder"


@pytest.mark.parametrize("field", ["ali", "phone_ali"])
def test_an_alignment_naming_no_file_is_refused_by_the_config(field):
    config = KaldiImportConfig(**({"ali": ["pdf.ark"]} | {field: ["pdf.ark", "ark,t: "]}))
    with pytest.raises(UserError, match="names no file: give an alignment file as PATH, ark:PATH or scp:PATH"):
        config.validate()


@pytest.mark.parametrize("option", ["--dev", "--test"])
def test_a_split_data_dir_on_a_symlink_loop_is_one_error_line(kaldi_data, option):
    """--dev LOOP (a link to itself) failed with "RuntimeError: Symlink loop" where its path was resolved."""
    import os

    root, ref = kaldi_data
    kaldiio.save_ark(str(root / "pdf.ark"), ref["pdfs"])
    os.symlink(root / "loop", root / "loop")
    args = ["--ali", str(root / "pdf.ark"), option, str(root / "loop")]
    res = runner.invoke(app, ["import-kaldi", str(root / "data" / "train"), "--out", str(root / "store"), *args])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    said = f"error: {option} {root / 'loop'} lies on a symlink loop; remove the loop or give another path"
    assert _text(res) == said and not (root / "store").exists()
