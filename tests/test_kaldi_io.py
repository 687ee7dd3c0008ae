"""asr_init.kaldi_io against what Kaldi's own readers make of the same bytes (util/kaldi-holder.cc,
matrix/compressed-matrix.cc); tests/test_real_kaldi.py checks the same with Kaldi's binaries."""

import struct

import numpy as np
import pytest

from asr_init.kaldi_io import KaldiFormatError, Reader, apply_range

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
    ],
)
def test_a_script_range_selects_what_kaldi_selects(spec, rows, cols):
    np.testing.assert_array_equal(apply_range(MATRIX, spec), MATRIX[rows, cols])


@pytest.mark.parametrize("spec", ["2:13", "10:11", "0:9,1:5", "5:4"])
def test_a_range_kaldi_refuses_is_refused(spec):
    with pytest.raises(KaldiFormatError, match="lies outside"):
        apply_range(MATRIX, spec)


def test_a_two_byte_compressed_matrix_expands_to_kaldis_values():
    """copy-feats --compress=true --compression-method=4 (whole numbers in int16's range): Kaldi
    expands 32704 to exactly -64; a float32 product of 32704 and 65535 first gave -64.00195."""
    values = np.array([[32704, 32768, 0], [65535, 32767, 1]], dtype="<u2")
    data = b"\0BCM2 " + struct.pack("<ffii", -32768.0, 65535.0, 2, 3) + values.tobytes()
    reader = Reader.of_bytes(data)
    reader.take(2)
    reader.binary = True
    np.testing.assert_array_equal(reader.matrix(), [[-64.0, 0.0, -32768.0], [32767.0, -1.0, -32767.0]])
