"""asr_init.kaldi_io against what Kaldi's own readers make of the same bytes (util/kaldi-holder.cc,
matrix/compressed-matrix.cc); tests/test_real_kaldi.py checks the same with Kaldi's binaries."""

import struct

import numpy as np
import pytest

from asr_init.kaldi_io import KaldiFormatError, Reader, apply_range, parse_script_line

MATRIX = np.arange(50, dtype=np.float32).reshape(10, 5)


@pytest.mark.parametrize(
    "spec,rows,cols",
    [
        ("0:9", slice(0, 10), slice(None)),
        ("2:11", slice(2, 10), slice(None)),  # up to 3 rows past the end: a segment's edge frames; cut at the end
        ("2:12", slice(2, 10), slice(None)),
        ("0:9,1:3", slice(0, 10), slice(1, 4)),
        (":,1:3", slice(None), slice(1, 4)),  # ":" is the whole axis
        (":", slice(None), slice(None)),
        ("3:3", slice(3, 4), slice(None)),
        (" 2:+3, 1:3", slice(2, 4), slice(1, 4)),  # what strtoll reads whole: leading blanks, a sign
    ],
)
def test_a_script_range_selects_what_kaldi_selects(spec, rows, cols):
    np.testing.assert_array_equal(apply_range(MATRIX, spec), MATRIX[rows, cols])


@pytest.mark.parametrize(
    "spec",
    [
        "3",
        "3:",
        ":3",
        "",
        "0:9,",
        ",1:3",
        ":,",
        "3:5:7",
        " :",
        "0:9 ,1:3",
        "a:b",
        "1:2x",
        "0:2147483648",
        "0:" + "1" * 4400,
    ],
)
def test_a_range_not_in_kaldis_form_is_refused(spec):
    """ParseMatrixRangeSpecifier takes one or two parts, each ':' or two integers r1:r2 that an int32 holds
    (4,400 digits stopped in int()'s 4,300-digit limit, a traceback); nothing else."""
    with pytest.raises(KaldiFormatError, match=r"is not Kaldi's \[r1:r2\] or \[r1:r2,c1:c2\]"):
        apply_range(MATRIX, spec)


@pytest.mark.parametrize("spec", ["2:13", "10:11", "0:9,1:5", "5:4"])
def test_a_range_kaldi_refuses_is_refused(spec):
    with pytest.raises(KaldiFormatError, match="lies outside"):
        apply_range(MATRIX, spec)


@pytest.mark.parametrize("offset", [str(2**63), "1" * 5000])
def test_a_script_offset_no_file_can_reach_is_refused(offset):
    """feats.scp's `raw.ark:OFFSET` past the largest offset a file can have; 5000 digits stopped in int()'s
    digit limit (a traceback)."""
    with pytest.raises(KaldiFormatError, match=f"utt1: a byte offset of {len(offset)} digits lies past the end of any"):
        parse_script_line(f"utt1 raw.ark:{offset}")
    assert parse_script_line(f"utt1 raw.ark:{2**63 - 1}[0:3]") == ("utt1", "raw.ark", 2**63 - 1, "0:3")


def test_a_two_byte_compressed_matrix_expands_to_kaldis_values():
    """copy-feats --compress=true --compression-method=4 (whole numbers in int16's range): Kaldi
    expands 32704 to exactly -64; a float32 product of 32704 and 65535 first gave -64.00195."""
    values = np.array([[32704, 32768, 0], [65535, 32767, 1]], dtype="<u2")
    data = b"\0BCM2 " + struct.pack("<ffii", -32768.0, 65535.0, 2, 3) + values.tobytes()
    reader = Reader.of_bytes(data)
    reader.take(2)
    reader.binary = True
    np.testing.assert_array_equal(reader.matrix(), [[-64.0, 0.0, -32768.0], [32767.0, -1.0, -32767.0]])


def test_a_ragged_text_matrix_is_refused_even_when_its_count_fits():
    """2 + 1 + 3 values are 3 rows of 2 in total, but not row by row: no value may move between frames."""
    with pytest.raises(KaldiFormatError, match="rows differ in length"):
        Reader.of_bytes(b"[\n 1 2\n 3\n 4 5 6 ]\n").kaldi_object()


@pytest.mark.parametrize(
    "data", [b"\0BFM \x04" + struct.pack("<i", 1 << 28) + b"\x04\x02\x00\x00\x00", b"[\n 1 2\n 3 4 ]\n", b"[ 1.5 2 ]\n"]
)
def test_an_alignment_reader_refuses_other_objects_before_reading_them(data):
    """With ints (alignments) a matrix or float vector is refused from its type, unread and unexpanded."""
    assert Reader.of_bytes(b"[ 1 2 3 ]\n").kaldi_object(ints=True).tolist() == [1, 2, 3]
    with pytest.raises(KaldiFormatError, match="not a vector of integers; give ali-to-pdf"):
        Reader.of_bytes(data).kaldi_object(ints=True)


def test_a_large_compressed_matrix_expands_block_by_block_to_the_values_of_its_rows_alone():
    """Rows across the expansion's block boundary (2**18 values) expand as the same rows do in a small matrix."""
    rows, cols = 300_000, 2
    heads = struct.pack("<8H", 0, 20000, 40000, 65535, 100, 30000, 50000, 60000)
    values = np.random.default_rng(0).integers(0, 256, (cols, rows), dtype=np.uint8)  # column-major

    def expand(part: np.ndarray) -> np.ndarray:
        data = b"\0BCM " + struct.pack("<ffii", -3.0, 7.5, part.shape[1], cols) + heads + part.tobytes()
        return Reader.of_bytes(data).kaldi_object()

    whole = expand(values)
    at = (1 << 18) // cols
    np.testing.assert_array_equal(whole[at - 5 : at + 5], expand(np.ascontiguousarray(values[:, at - 5 : at + 5])))
    assert whole.shape == (rows, cols) and whole.dtype == np.float32


def test_entries_after_a_long_text_line_are_read_from_the_look_ahead_exactly(tmp_path):
    """The look-ahead grows by doubling to find a long line's end and then holds the entries after
    it: they are read from it, in order, to the last byte of the file."""
    from asr_init.kaldi_io import read_archive

    path = tmp_path / "ali.ark"
    path.write_bytes(b"big " + b"1 " * 300_000 + b"\n" + b"".join(b"u%d \t %d 2 3\n" % (i, i) for i in range(5000)))
    entries = list(read_archive(path, ints=True))
    assert len(entries) == 5001 and len(entries[0][2]) == 300_000
    assert [(k, v.tolist()) for k, _, v in entries[1:]] == [(f"u{i}", [i, 2, 3]) for i in range(5000)]


@pytest.mark.parametrize("row", [b"0.5 -1.25 3", b"1 2 3"])
def test_a_one_row_text_matrix_is_a_matrix(row):
    """Kaldi writes a text matrix as " [", then a line per row, and a vector as " [ v1 v2 ]" on
    one line: a matrix of one row (a one-frame utterance in copy-feats ark,t:) is a 1 x 3
    matrix of floats, not a vector, whether or not its values are whole numbers."""
    value = Reader.of_bytes(b" [\n  " + row + b" ]\n").kaldi_object()
    assert value.shape == (1, 3) and value.dtype == np.float32
    np.testing.assert_array_equal(value[0], np.array(row.split(), dtype=np.float32))
    assert Reader.of_bytes(b" [ " + row + b" ]\n").kaldi_object().shape == (3,)


@pytest.mark.parametrize("number", [b"4294967299", b"99999999999999999999999", b"-2147483649", b"2147483648"])
@pytest.mark.parametrize("form", [b"u %s 2 3\n", b"u [ 1 %s 3 ]\n"])
def test_a_text_integer_beyond_int32_is_refused_not_wrapped(tmp_path, number, form):
    """Kaldi's ids are int32: 2**32 + 3 read as 64 bits and cast was pdf 3, and a number beyond
    64 bits was -1; the range's ends themselves read as they are."""
    from asr_init.kaldi_io import read_archive

    path = tmp_path / "ali.ark"
    path.write_bytes(b"v 2147483647 -2147483648\n" + form % number)
    entries = read_archive(path, ints=True)
    assert next(entries)[2].tolist() == [2147483647, -2147483648]
    message = rf"the integer {number.decode()} is out of the int32 range \(-2147483648 to 2147483647\)"
    with pytest.raises(KaldiFormatError, match="entry 2: " + message):
        next(entries)
    with pytest.raises(KaldiFormatError, match=message):
        Reader.of_bytes(number + b" ").int32()  # a dimension in a text nnet1 file
    assert Reader.of_bytes(b"-2147483648 ").int32() == -2147483648


def test_a_text_matrix_is_read_without_a_python_object_per_row_held(tmp_path):
    """A text feature matrix (copy-feats ark,t:) is parsed from its bytes as they are: the rows
    are counted one at a time and the look-ahead is copied once, so reading it takes about twice
    its size (it took over 4 times: a list of its rows, a decoded copy, slices copied twice)."""
    import tracemalloc

    from asr_init.kaldi_io import read_archive

    values = np.random.default_rng(0).normal(0, 3, (40_000, 13)).astype(np.float32)
    rows = b"\n".join(b"  " + b" ".join(b"%.9g" % v for v in row) for row in values)
    path = tmp_path / "feats.ark"
    path.write_bytes(b"utt1  [\n" + rows + b" ]\nutt2  [\n  1 2\n\n  3 4 ]\n")
    tracemalloc.start()
    try:
        entries = [(key, m) for key, _, m in read_archive(path)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [key for key, _ in entries] == ["utt1", "utt2"] and peak < 3 * path.stat().st_size
    np.testing.assert_array_equal(entries[0][1], values)
    np.testing.assert_array_equal(entries[1][1], [[1, 2], [3, 4]])


def test_fields_split_at_ascii_white_space_only_as_kaldi_splits_a_line():
    """Kaldi's SplitStringToVector / SplitStringOnFirstSpace split at " \\t\\n\\r\\f\\v" (isspace in the C
    locale); U+00A0, U+3000 and \\x1c-\\x1f, white space to str.split(), are part of a field."""
    from asr_init.kaldi_io import SEGMENTS_SPACES, fields

    line = " a\u00a0b\tc\x1cd \x0b e\u3000f \r"
    assert fields(line) == ["a\u00a0b", "c\x1cd", "e\u3000f"] and fields(" \t\r\x0c") == []
    assert fields(line, maxsplit=1) == ["a\u00a0b", "c\x1cd \x0b e\u3000f"]  # the rest trimmed at its ends
    assert fields("u\x0bv r 0 1", SEGMENTS_SPACES) == ["u\x0bv", "r", "0", "1"]  # extract-segments: " \t\r"
    assert parse_script_line("utt\u00a01 a\u00a0b.ark:7 \u00a0") == ("utt\u00a01", "a\u00a0b.ark:7 \u00a0", None, None)
    with pytest.raises(KaldiFormatError, match=r"key 'utt\\x1c1' holds '\\x1c'"):
        parse_script_line("utt\x1c1 feats.ark:7")


def test_archive_keys_are_utf8_text_as_the_data_dirs_lines(tmp_path):
    """A key's bytes read as UTF-8, as utt2spk and feats.scp are: "spk\\u00e9" read as latin-1 matched no line
    of them. A key that is not UTF-8 (Kaldi's tools take any bytes) keeps its bytes as surrogates, so it
    matches no id of a data dir: it is read past, not refused."""
    from asr_init.kaldi_io import read_archive

    path = tmp_path / "ali.ark"
    path.write_bytes("spk\u00e9 1 2\nspk\u00a0x 3\n".encode())
    assert [(k, v.tolist()) for k, _, v in read_archive(path, ints=True)] == [
        ("spk\u00e9", [1, 2]),
        ("spk\u00a0x", [3]),
    ]
    path.write_bytes(b"ok 1\nspk\xe9 1 2\n")
    assert [(k, n) for k, n, _ in read_archive(path, ints=True)] == [("ok", 1), ("spk\udce9", 2)]


def test_a_text_float_is_read_as_strtod_reads_it():
    """A scalar of a text nnet1 file (a <LearnRateCoef>): Python's float() also takes digit separators,
    which Kaldi's reader refuses."""
    assert Reader.of_bytes(b"0.5 ").float() == 0.5 and Reader.of_bytes(b"-1e-3 ").float() == -1e-3
    for token in (b"1_0", b"2_5e-1"):
        with pytest.raises(KaldiFormatError, match="expected a number"):
            Reader.of_bytes(token + b" ").float()
