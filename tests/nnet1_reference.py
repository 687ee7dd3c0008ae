"""An nnet1 reader written from Kaldi's format documentation (not asr-init's) and Kaldi's
nnet-forward redone in numpy: what the export tests hold asr-init's files against."""

import re
import struct

import numpy as np

# ------------------------------------------------------------------ an independent nnet1 reader
#
# Kaldi's formats (src/base/io-funcs.cc, src/matrix/kaldi-matrix.cc, src/nnet/nnet-*.h):
# binary: "\0B" header; token = text + " "; int32 = 0x04 + 4 bytes LE; float = 0x04 + float32;
# matrix = "FM " + int32 rows + int32 cols + row-major float32s; vector = "FV " + int32 dim +
# float32s; integer vector = 0x04 + raw int32 count + raw int32s. Text: white-space separated,
# matrix " [\n  row \n  row ]", vector " [ v ... ]", integer vector "[ i ... ]".
# A component: <Marker> out in DATA <!EndOfComponent>, between <Nnet> and </Nnet>.


class BinaryNnet:
    def __init__(self, data: bytes):
        assert data[:2] == b"\0B"
        self.data, self.i = data, 2

    def token(self) -> str:
        end = self.data.index(b" ", self.i)
        tok, self.i = self.data[self.i : end].decode(), end + 1
        return tok

    def int32(self) -> int:
        assert self.data[self.i] == 4
        (v,) = struct.unpack_from("<i", self.data, self.i + 1)
        self.i += 5
        return v

    def float32(self) -> float:
        assert self.data[self.i] == 4
        (v,) = struct.unpack_from("<f", self.data, self.i + 1)
        self.i += 5
        return v

    def floats(self, n: int) -> np.ndarray:
        v = np.frombuffer(self.data, "<f4", n, self.i)
        self.i += 4 * n
        return v

    def matrix(self) -> np.ndarray:
        assert self.token() == "FM"
        rows, cols = self.int32(), self.int32()
        return self.floats(rows * cols).reshape(rows, cols)

    def vector(self) -> np.ndarray:
        assert self.token() == "FV"
        return self.floats(self.int32())

    def ints(self) -> np.ndarray:
        assert self.data[self.i] == 4
        (n,) = struct.unpack_from("<i", self.data, self.i + 1)
        v = np.frombuffer(self.data, "<i4", n, self.i + 5)
        self.i += 5 + 4 * n
        return v


class TextNnet:
    def __init__(self, data: bytes):
        self.items = re.findall(r"\[[^\]]*\]|\S+", data.decode())
        self.i = 0

    def token(self) -> str:
        self.i += 1
        return self.items[self.i - 1]

    def int32(self) -> int:
        return int(self.token())

    float32 = lambda self: float(self.token())  # noqa: E731

    def _block(self) -> list[list[str]]:
        block = self.token()
        assert block[0] == "[" and block[-1] == "]", block[:20]
        return [line.split() for line in block[1:-1].split("\n") if line.split()]

    def matrix(self) -> np.ndarray:
        rows = self._block()  # Kaldi reads one matrix row per line
        return np.array(rows, dtype=np.float32)

    def vector(self) -> np.ndarray:
        (row,) = self._block()
        return np.array(row, dtype=np.float32)

    def ints(self) -> np.ndarray:
        (row,) = self._block()
        return np.array(row, dtype=np.int64)


def parse_nnet(data: bytes) -> list[tuple]:
    """[(marker, out, in, payload)] of an nnet1 file, checking every token Kaldi master writes."""
    r = BinaryNnet(data) if data[:2] == b"\0B" else TextNnet(data)
    assert r.token() == "<Nnet>"
    out = []
    while (marker := r.token()) != "</Nnet>":
        dim_out, dim_in = r.int32(), r.int32()
        if marker == "<AffineTransform>":
            coefs = {}
            for name in ("<LearnRateCoef>", "<BiasLearnRateCoef>", "<MaxNorm>"):
                assert r.token() == name
                coefs[name] = r.float32()
            w, b = r.matrix(), r.vector()
            assert w.shape == (dim_out, dim_in) and b.shape == (dim_out,)
            assert coefs == {"<LearnRateCoef>": 1.0, "<BiasLearnRateCoef>": 1.0, "<MaxNorm>": 0.0}
            payload = (w, b)
        elif marker in ("<AddShift>", "<Rescale>"):
            assert r.token() == "<LearnRateCoef>"
            r.float32()
            payload = r.vector()
            assert payload.shape == (dim_in,) and dim_in == dim_out
        elif marker == "<Splice>":
            payload = r.ints()
            assert len(payload) * dim_in == dim_out
        elif marker == "<ParametricRelu>":  # nnet-parametric-relu.h: two learn-rate coefficients, alpha, beta
            for name in ("<AlphaLearnRateCoef>", "<BetaLearnRateCoef>"):
                assert r.token() == name and r.float32() == 0.0
            payload = (r.vector(), r.vector())
            assert payload[0].shape == payload[1].shape == (dim_out,) and dim_in == dim_out
        else:
            assert marker in ("<Sigmoid>", "<Tanh>", "<Softmax>") and dim_in == dim_out
            payload = None
        assert r.token() == "<!EndOfComponent>"
        out.append((marker, dim_out, dim_in, payload))
    return out


def nnet_forward(transform: list[tuple], network: list[tuple], feats: np.ndarray) -> np.ndarray:
    """What nnet-forward --feature-transform computes for one utterance (float64), as log-posteriors."""
    x = feats.astype(np.float64)
    for marker, _, _, p in transform + network:
        if marker == "<Splice>":  # cu::Splice: frame t + offset, clamped to the utterance
            rows = np.clip(np.arange(len(x))[:, None] + p[None, :], 0, len(x) - 1)
            x = x[rows].reshape(len(x), -1)
        elif marker == "<AddShift>":
            x = x + p
        elif marker == "<Rescale>":
            x = x * p
        elif marker == "<AffineTransform>":
            x = x @ p[0].T.astype(np.float64) + p[1]
        elif marker == "<Sigmoid>":
            x = 1 / (1 + np.exp(-x))
        elif marker == "<Tanh>":
            x = np.tanh(x)
        elif marker == "<ParametricRelu>":  # cu-kernels.cu: alpha * x where x > 0, beta * x elsewhere
            x = np.where(x > 0, p[0] * x, p[1] * x)
        elif marker == "<Softmax>":
            e = np.exp(x - x.max(1, keepdims=True))
            x = e / e.sum(1, keepdims=True)
    return np.log(x)
