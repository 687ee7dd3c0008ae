"""Kaldi's archives, script files and network files, read without a shell or a trusted size.

Kaldi's tools read a script-file entry "key rxfilename" through a shell when the name ends in
"|", and kaldiio also opens names that merely contain one ("x; cmd |:8") and unpickles
entries marked "PKL". asr-init reads them itself:

- a script-file entry is resolved here to a plain file, a byte offset and a row/column range,
  and the file is opened directly; an entry read through a command ("cmd |", "| cmd", "-") is
  refused with a message that says how to write it to an archive;
- only Kaldi's numeric types are read: matrices and vectors (FM, FV, DM, DV, the compressed
  CM, CM2, CM3, and their text forms) and integer vectors; a file holding anything else is an
  error, so no file can run code when it is read;
- every count written in a file (rows, columns, a vector's length) is compared with the bytes
  left in the file before anything is allocated; in a gzipped archive, whose length is not
  known until it is read, with MAX_STREAM_OBJECT; an integer vector (an alignment) with more
  than MAX_FRAMES entries is refused wherever it is.

Compressed matrices are expanded with Kaldi's own arithmetic (CompressedMatrix::CopyToMat), on
bytes whose size was checked first.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import struct
import warnings
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from asr_init.io import MAX_FILE_OFFSET, read_count, read_number

MAX_TOKEN = 4096  # bytes in a key or a token
MAX_FRAMES = 1 << 22  # entries of one integer vector: 4,194,304 frames, 11.6 hours at 10 ms
MAX_STREAM_OBJECT = 1 << 30  # bytes of one object in a gzipped archive
ROW_TOLERANCE = 3  # rows a script-file range may run past the end (kaldi-holder.cc)
_TEXT_INT_BYTES = 12  # the longest int32 written as text, with its separator
_MATRIX_TYPES = {"FM": "<f4", "DM": "<f8", "FV": "<f4", "DV": "<f8"}
_SPACES = re.compile(rb"\s*")  # bytes.isspace()'s characters
SPACES = " \t\n\v\f\r"  # isspace() in the C locale: the white space Kaldi splits text files at
SEGMENTS_SPACES = " \t\r"  # what extract-segments splits a segments line at (featbin/extract-segments.cc)
_ALI_HINT = "; give ali-to-pdf or ali-to-phones --per-frame output"
_SCP = re.compile(r"^(?P<path>.+?)(?::(?P<offset>[0-9]+))?(?:\[(?P<range>[^\[\]]*)\])?$")  # Kaldi: any [...] ends it
_RANGE_END = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")  # what strtoll reads whole (SplitStringToIntegers)


class KaldiFormatError(ValueError):
    """A malformed Kaldi object; the caller names the file it came from."""


class Reader:
    """Kaldi's tokens and basic types read forward from a binary file object.

    `size` is the number of bytes in the stream (None: not known, as for a gzip stream); every
    count read from the stream is checked against the bytes left before it is used. Bytes
    looked at ahead are kept here, so that any file object (gzip's too) can be read. Float
    matrices are read as `dtype` (float32; float64 keeps a double matrix's values, as Kaldi's
    Matrix<double> readers of CMVN stats do)."""

    def __init__(self, fh, size: int | None, pos: int = 0, dtype=np.float32):
        self.fh, self.size, self.binary, self.dtype = fh, size, False, np.dtype(dtype)
        self._ahead = bytearray()  # read, not consumed: consumed from the front in place, never copied whole
        self._pos = pos  # where the stream is, in bytes

    @classmethod
    def of_bytes(cls, data: bytes) -> Reader:
        return cls(io.BytesIO(data), len(data))

    def room(self) -> int:
        """The most bytes the next object may take."""
        return MAX_STREAM_OBJECT if self.size is None else self.size - self._pos

    def peek(self, n: int = 1) -> bytes:
        """The next `n` bytes (fewer at the end of the stream), not consumed."""
        self._fill(n)
        return bytes(self._ahead[:n])

    def _fill(self, n: int) -> int:
        """Read ahead until `n` bytes are looked at (or the stream ends); how many are."""
        while len(self._ahead) < n:
            more = self.fh.read(max(n - len(self._ahead), 1 << 16))
            if not more:
                break
            self._ahead += more
        return len(self._ahead)

    def _consume(self, n: int) -> bytes:
        self._fill(n)
        with memoryview(self._ahead) as ahead:  # one copy of the bytes, not a slice and then a copy of it
            out = bytes(ahead[:n])
        del self._ahead[:n]
        self._pos += len(out)
        return out

    def take(self, n: int, what: str = "an object") -> bytes:
        if n < 0 or n > self.room():
            where = "the stream allows" if self.size is None else "are left in the file"
            raise KaldiFormatError(f"{what} of {n:,} bytes, but {self.room():,} bytes {where}")
        if len(self._ahead) >= n:
            return self._consume(n)
        head = self._consume(len(self._ahead))
        data = head + self.fh.read(n - len(head))
        self._pos += len(data) - len(head)
        if len(data) < n:
            raise KaldiFormatError(f"unexpected end of file in {what}")
        return data

    def skip_space(self) -> None:
        while True:
            c = self.peek(1)
            if not c or not c.isspace():
                return
            self._consume(_SPACES.match(self._ahead).end())  # every space looked at ahead, at once

    def at_end(self) -> bool:
        self.skip_space()
        return not self.peek(1)

    def token(self) -> str:
        """A token: the bytes up to the next white space, which is consumed (Kaldi's ReadToken)."""
        text = self.peek_token()
        if text is None:
            raise KaldiFormatError("unexpected end of file")
        self._consume(len(text.encode("latin-1")) + 1)
        return text

    def peek_token(self) -> str | None:
        """The next token without consuming it (None at the end of the stream)."""
        self.skip_space()
        head = self.peek(MAX_TOKEN + 1)
        if not head:
            return None
        text = head.split(None, 1)[0]
        if len(text) > MAX_TOKEN:
            raise KaldiFormatError(f"a token longer than {MAX_TOKEN} bytes (not a Kaldi file?)")
        return text.decode("latin-1")

    # --- basic types ----------------------------------------------------------------------

    def int32(self) -> int:
        if not self.binary:
            token = self.token()
            _parse(int, token, "an integer")
            return int(_text_int32s(token.encode("latin-1"))[0])
        if self.take(1) != b"\x04":
            raise KaldiFormatError("expected a 32-bit integer")
        return struct.unpack("<i", self.take(4))[0]

    def float(self) -> float:
        if not self.binary:
            return _parse(read_number, self.token(), "a number")
        size = self.take(1)
        if size not in (b"\x04", b"\x08"):
            raise KaldiFormatError(f"expected a float, found size byte {size!r}")
        return struct.unpack("<f" if size == b"\x04" else "<d", self.take(ord(size)))[0]

    def count(self, what: str, width: int) -> int:
        """A length or dimension from the file, checked against the bytes left for `width` bytes each."""
        n = self.int32()
        if n < 0 or n * width > self.room():
            raise KaldiFormatError(f"{what} of {n:,}, more than the {self.room():,} bytes left can hold")
        return n

    # --- vectors and matrices -------------------------------------------------------------

    def matrix(self, shape: tuple[int, int] | None = None, kind: str | None = None) -> np.ndarray:
        """A float matrix as `dtype` (rows, cols); `shape`, where known, is checked before
        reading; `kind` is the binary type token where the caller has read it."""
        if not self.binary:
            return _text_matrix(self._bracketed(), shape, self.dtype)
        kind = kind or self.token()
        if kind in ("CM", "CM2", "CM3"):
            out = self._compressed(kind)
        elif kind in ("FM", "DM"):
            width = np.dtype(_MATRIX_TYPES[kind]).itemsize
            rows = self.count("a matrix's row count", 0)
            cols = self.count("a matrix's column count", 0)
            if shape is not None and (rows, cols) != tuple(shape):
                raise KaldiFormatError(f"a {rows} x {cols} matrix where {shape[0]} x {shape[1]} is expected")
            data = self.take(rows * cols * width, f"a {rows:,} x {cols:,} matrix")
            out = np.frombuffer(data, _MATRIX_TYPES[kind]).reshape(rows, cols).astype(self.dtype)
        else:
            raise KaldiFormatError(f"expected a matrix (FM, DM, CM, CM2, CM3), found {kind[:20]!r}")
        if shape is not None and out.shape != tuple(shape):
            raise KaldiFormatError(f"a {out.shape} matrix where {tuple(shape)} is expected")
        return out

    def vector(self, kind: str | None = None) -> np.ndarray:
        if not self.binary:
            return _text_numbers(self._bracketed(), np.float32)
        kind = kind or self.token()
        if kind not in ("FV", "DV"):
            raise KaldiFormatError(f"expected a vector (FV or DV), found {kind[:20]!r}")
        width = np.dtype(_MATRIX_TYPES[kind]).itemsize
        dim = self.count("a vector's dimension", width)
        return np.frombuffer(self.take(dim * width), _MATRIX_TYPES[kind]).astype(np.float32)

    def int_vector(self) -> np.ndarray:
        """An integer vector as nnet1 components write it (WriteIntegerVector: raw int32s)."""
        if not self.binary:
            return _text_int32s(self._bracketed())
        if self.take(1) != b"\x04":
            raise KaldiFormatError("expected a vector of 32-bit integers")
        n = struct.unpack("<i", self.take(4))[0]
        if n < 0 or 4 * n > self.room():
            raise KaldiFormatError(f"an integer vector of {n:,} values, more than the bytes left can hold")
        return np.frombuffer(self.take(4 * n), "<i4").astype(np.int32)

    def _compressed(self, kind: str) -> np.ndarray:
        """A compressed matrix expanded as Kaldi's CompressedMatrix::CopyToMat does, operation by
        operation in float32 (and float64 where Kaldi's constants are doubles), so that the values
        are Kaldi's to the bit."""
        lo, span, rows, cols = struct.unpack("<ffii", self.take(16, "a compressed matrix header"))
        if rows < 0 or cols < 0:
            raise KaldiFormatError(f"a compressed matrix of {rows} x {cols}")
        lo, span = np.float32(lo), np.float32(span)
        if kind == "CM":  # per column: 4 uint16 percentiles, then one byte per value, column-major
            heads = np.frombuffer(self.take(8 * cols, "a compressed matrix"), "<u2").reshape(cols, 4)
            p0, p25, p75, p100 = (lo + span * np.float32(1.52590218966964e-05) * heads.astype(np.float32)).T
            data = np.frombuffer(self.take(rows * cols, f"a {rows:,} x {cols:,} compressed matrix"), "u1")
            return _char_to_float(data.reshape(cols, rows).T, p0, p25, p75, p100)
        width = 2 if kind == "CM2" else 1
        data = self.take(rows * cols * width, f"a {rows:,} x {cols:,} compressed matrix")
        values = np.frombuffer(data, "<u2" if width == 2 else "u1").reshape(rows, cols)
        increment = np.float32(np.float64(span) * (1.0 / (65535.0 if width == 2 else 255.0)))
        return lo + values.astype(np.float32) * increment

    def _bracketed(self, limit: int | None = None) -> bytes:
        """The text between the next "[" and its "]", at most `room()` bytes (and `limit`)."""
        self.skip_space()
        if self.take(1) != b"[":
            raise KaldiFormatError("expected '['")
        return self._until(b"]", "a bracketed matrix or vector", min(self.room(), limit or self.room()))

    def _until(self, stop: bytes, what: str, limit: int) -> bytes:
        """The bytes up to `stop` (consumed, not returned; or to the end of the stream for a
        line), at most `limit` bytes."""
        scanned = 0
        while True:
            end = self._ahead.find(stop, scanned)
            if end >= 0:
                if end > limit:
                    break
                out = self._consume(end)
                self._consume(1)
                return out
            scanned = len(self._ahead)
            if scanned > limit:
                break
            if self._fill(min(2 * scanned + 1, limit + 2)) <= scanned:  # the end (doubling: linear time)
                if stop == b"\n":
                    return self._consume(scanned)
                raise KaldiFormatError(f"{what} without its {stop.decode()!r}")
        raise KaldiFormatError(f"{what} longer than the {limit:,} bytes allowed")

    # --- archive and script-file objects ----------------------------------------------

    def kaldi_object(self, ints: bool = False) -> np.ndarray:
        """One object of an archive or script file: a matrix, a vector or an integer vector,
        binary ("\\0B" first) or text. With `ints` (alignments) only an integer vector of at most
        MAX_FRAMES entries is read: anything else is refused before its data is read."""
        if self.peek(2) == b"\0B":
            self.take(2)
            self.binary = True
            if self.peek(1) == b"\x04":  # an integer vector, as Kaldi's int32 vector holder writes it
                return self._holder_int_vector()
            kind = self.token()
            if ints:
                raise KaldiFormatError(f"a {kind[:20]!r} object, not a vector of integers{_ALI_HINT}")
            return self.vector(kind) if kind in ("FV", "DV") else self.matrix(kind=kind)
        self.binary = False
        while self.peek(1) in (b" ", b"\t"):
            self._consume(1)
        if self.peek(1) == b"[":
            body = self._bracketed(MAX_FRAMES * _TEXT_INT_BYTES if ints else None)
            if self.peek(1) == b"\n":
                self._consume(1)
            # Kaldi writes a matrix " [" and a line per row (one row too), a vector " [ v1 v2 ]"
            matrix = body.lstrip(b" \t\r").startswith(b"\n") or b"\n" in body.strip()
            integers = not matrix and re.fullmatch(rb"[\s0-9+-]*", body)  # an integer vector, as kaldiio writes one
            if ints and not integers:
                raise KaldiFormatError(f"a text matrix or float vector, not a vector of integers{_ALI_HINT}")
            if integers:
                return _text_int32s(body, MAX_FRAMES)
            return _text_matrix(body, None, self.dtype) if matrix else _text_numbers(body, np.float32)
        line = self._until(b"\n", "a text line", min(self.room(), MAX_FRAMES * _TEXT_INT_BYTES))
        return _text_int32s(line, MAX_FRAMES)

    def _holder_int_vector(self) -> np.ndarray:
        n = self.int32()
        if n < 0 or n > MAX_FRAMES:
            raise KaldiFormatError(f"an integer vector of {n:,} entries (at most {MAX_FRAMES:,} are read)")
        data = np.frombuffer(self.take(5 * n, f"an integer vector of {n:,} entries"), [("size", "u1"), ("v", "<i4")])
        if n and (data["size"] != 4).any():
            raise KaldiFormatError("an integer vector whose entries are not 32-bit integers")
        return data["v"].astype(np.int32)


def _char_to_float(data: np.ndarray, p0, p25, p75, p100) -> np.ndarray:
    """Kaldi's CompressedMatrix::CharToFloat of (rows, cols) bytes with each column's percentiles:
    the float product of the step and the byte's offset, scaled and added in double, rounded to float.
    Rows are expanded in blocks, so that the temporaries stay small beside the matrix."""
    out = np.empty(data.shape, np.float32)
    block = max(1, (1 << 18) // max(1, data.shape[1]))
    for start in range(0, data.shape[0], block):
        rows, into = data[start : start + block], out[start : start + block]
        for low, high, base, top, scale in ((0, 64, p0, p25, 1 / 64.0), (64, 192, p25, p75, 1 / 128.0),
                                            (192, 255, p75, p100, 1 / 63.0)):  # fmt: skip
            part = (rows >= low + (low > 0)) & (rows <= high)
            step = (top - base) * (rows.astype(np.float32) - np.float32(low))  # float32, as Kaldi's float * int
            exact = base.astype(np.float64) + step.astype(np.float64) * scale
            into[part] = np.broadcast_to(exact, rows.shape)[part]
    return out


def _parse(kind, text: str, what: str):
    try:
        return kind(text)
    except ValueError:
        raise KaldiFormatError(f"expected {what}, found {text[:40]!r}") from None


def _text_numbers(body: bytes, dtype, limit: int | None = None) -> np.ndarray:
    """White-space separated numbers (C parsing of the bytes as they are: no Python object per
    number, no copy of the text)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            values = np.fromstring(body, dtype=dtype, sep=" ") if body and not body.isspace() else np.zeros(0, dtype)
        except (ValueError, DeprecationWarning):
            raise KaldiFormatError(f"expected numbers, found {body.strip()[:40].decode('latin-1')!r}") from None
    if limit is not None and len(values) > limit:
        raise KaldiFormatError(f"a vector of {len(values):,} entries (at most {limit:,} are read)")
    return values


def _text_int32s(body: bytes, limit: int | None = None) -> np.ndarray:
    """White-space separated integers as int32 (Kaldi's int32 type); one beyond its range, which a
    cast would wrap (2**32 + 3 to 3), is a KaldiFormatError naming it as written."""
    values = _text_numbers(body, np.int64, limit)  # an integer beyond int64 reads as int64's extreme
    info = np.iinfo(np.int32)
    bad = np.flatnonzero((values < info.min) | (values > info.max))
    if len(bad):
        number = body.split()[bad[0]].decode("latin-1")
        raise KaldiFormatError(f"the integer {number[:40]} is out of the int32 range ({info.min} to {info.max})")
    return values.astype(np.int32)


def _text_matrix(body: bytes, shape: tuple[int, int] | None, dtype=np.float32) -> np.ndarray:
    """A text matrix body, one row per line (blank lines aside); the rows are counted one at a
    time, not held as a list beside the body."""
    values = _text_numbers(body, dtype)
    rows = cols = 0
    for line in io.BytesIO(body):  # shares the body's buffer; one line at a time
        n = len(line.split())
        if n and rows and n != cols:  # each row's count (their sum is len(values))
            raise KaldiFormatError("a text matrix whose rows differ in length")
        rows, cols = rows + (n > 0), n or cols
    out = values.reshape(rows, cols)
    if shape is not None and out.shape != tuple(shape):
        raise KaldiFormatError(f"a {out.shape[0]} x {out.shape[1]} matrix where {shape[0]} x {shape[1]} is expected")
    return out


class Writer:
    """Kaldi's tokens and basic types, binary (after "\\0B") or text, as Kaldi writes them
    (text numbers with 9 significant digits, so that a float32 reads back exactly)."""

    def __init__(self, binary: bool):
        self.binary, self.parts = binary, [b"\0B" if binary else b""]

    def _text(self, text: str, newline: bool = False) -> None:
        self.parts.append((text + ("\n" if newline and not self.binary else "")).encode())

    def token(self, text: str, newline: bool = False) -> None:
        self._text(text + " ", newline)

    def int32(self, value: int, newline: bool = False) -> None:
        self.parts.append(b"\x04" + struct.pack("<i", value)) if self.binary else self._text(f"{value} ", newline)

    def float(self, value: float, newline: bool = False) -> None:
        self.parts.append(b"\x04" + struct.pack("<f", value)) if self.binary else self._text(f"{value:.9g} ", newline)

    def matrix(self, m: np.ndarray) -> None:
        m = np.ascontiguousarray(m, dtype="<f4")
        if not self.binary:
            return self._text(" [" + "".join(f"\n  {_numbers(row)} " for row in m) + "]", newline=True)
        self.token("FM")
        self.int32(m.shape[0])
        self.int32(m.shape[1])
        self.parts.append(m.tobytes())

    def vector(self, v: np.ndarray) -> None:
        if not self.binary:
            return self._text(f" [ {_numbers(v)} ]", newline=True)
        self.token("FV")
        self.int32(len(v))
        self.parts.append(np.asarray(v, dtype="<f4").tobytes())

    def int_vector(self, v: np.ndarray) -> None:
        if not self.binary:
            return self._text("[ " + "".join(f"{int(i)} " for i in v) + "]", newline=True)
        self.parts.append(b"\x04" + struct.pack("<i", len(v)) + np.asarray(v, dtype="<i4").tobytes())

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


def _numbers(values: np.ndarray) -> str:
    """float32 values as text that reads back to the same float32s (9 significant digits)."""
    return " ".join(f"{v:.9g}" for v in np.asarray(values, dtype=np.float32).tolist())


# ------------------------------------------------------------------------------ archives


def open_stream(path: Path) -> tuple[io.IOBase, int | None]:
    """A binary file object and its size in bytes; a .gz file is decompressed as it is read
    (its size is then unknown: None)."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rb"), None
    fh = open(path, "rb", buffering=0)  # noqa: SIM115 - the caller closes it
    return fh, os.fstat(fh.fileno()).st_size


def read_archive(path: Path, ints: bool = False) -> Iterator[tuple[str, int, np.ndarray]]:
    """(key, entry number from 1, object) of every entry of an archive, binary or text, plain
    or gzipped (`ints`: of integer vectors only); raises KaldiFormatError (with the entry number)
    on a malformed one."""
    fh, size = open_stream(path)
    with fh:
        reader, n = Reader(fh, size), 0
        try:
            while not reader.at_end():
                n += 1
                yield _utf8_key(reader.token()), n, reader.kaldi_object(ints)
        except KaldiFormatError as exc:
            raise KaldiFormatError(f"entry {n}: {exc}") from None
        except (OSError, EOFError, zlib.error) as exc:
            if size is not None:
                raise
            raise KaldiFormatError(f"cannot decompress entry {n} ({exc}); is it a gzipped Kaldi archive?") from None


def _utf8_key(token: str) -> str:
    """An archive's key (a token read as latin-1, byte for byte) as UTF-8 text, as the data dir's files
    are read, so that a key such as "utt\u00e9" matches its line in utt2spk; checked by check_token. Bytes
    that are not UTF-8 are kept as surrogates (surrogateescape): such a key matches no id of the data
    dir, so its entry is passed over as any other entry of no utterance there is."""
    return check_token(token.encode("latin-1").decode("utf-8", errors="surrogateescape"))


def check_token(text: str, what: str = "key") -> str:
    """`text`, if Kaldi's IsToken takes it (util/text-utils.cc: no ASCII control character or white space;
    other characters, UTF-8 letters among them, pass), else a KaldiFormatError showing it with repr(): a
    NUL or an escape in an utterance or speaker id would print unseen, and match no other file's id."""
    bad = next((c for c in text if ord(c) <= 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise KaldiFormatError(f"{what} {text!r} holds {bad!r}, which Kaldi does not take in a key (IsToken)")
    return text


def fields(line: str, spaces: str = SPACES, maxsplit: int = 0) -> list[str]:
    """The fields of a line of a Kaldi text file, split as Kaldi splits them: at runs of the ASCII
    `spaces` only (util/text-utils.cc, SplitStringToVector and SplitStringOnFirstSpace), not at the
    other characters str.split() takes for white space (U+00A0, U+3000, U+0085, \\x1c-\\x1f ...),
    which are part of a field to Kaldi. [] for a blank line. With `maxsplit` 1, [key, rest]: the
    rest keeps its inner spaces and loses those at its ends, as in a script file's "key rxfilename"."""
    text = line.strip(spaces)
    return re.split(f"[{re.escape(spaces)}]+", text, maxsplit=maxsplit) if text else []


def table_fields(line: str) -> list[str]:
    """The fields of a line of a text table Kaldi reads as an archive ("ark:utt2spk"): split as `fields`
    splits them, but the key must end at a space or a tab (its table reader's "expected space after key"
    refuses a \\v or a \\f there, which a script file's reader takes); a KaldiFormatError otherwise."""
    parts = fields(line)
    if len(parts) > 1 and (after := line.lstrip(SPACES)[len(parts[0])]) not in " \t":
        raise KaldiFormatError(f"expected a space or a tab after the key {parts[0]!r}, found {after!r}")
    return parts


def parse_script_line(line: str) -> tuple[str, str, int | None, str | None]:
    """(key, file, byte offset or None, range or None) of a script-file line "key rxfilename";
    a command ("cmd |", "| cmd") or standard input ("-") is a KaldiFormatError."""
    parts = fields(line, maxsplit=1)
    if len(parts) != 2:
        raise KaldiFormatError(f"expected 'key rxfilename', found {line[:60]!r}")
    key, spec = check_token(parts[0]), parts[1]
    m = _SCP.match(spec)
    name = m.group("path").strip(SPACES) if m else spec
    if spec.endswith("|") or name.startswith("|") or name.endswith("|") or name == "-":
        raise KaldiFormatError(
            f"{key} is read through a command or standard input ({spec[:60]!r}); asr-init runs no commands from "
            "its input: write the data to an archive first (e.g. copy-feats scp:IN ark,scp:OUT.ark,OUT.scp)"
        )
    offset = read_count(m.group("offset"), MAX_FILE_OFFSET) if m.group("offset") else None
    if offset is not None and offset > MAX_FILE_OFFSET:
        raise KaldiFormatError(f"{key}: a byte offset of {len(m.group('offset'))} digits lies past the end of any file")
    return key, name, offset, m.group("range")


def apply_range(value: np.ndarray, spec: str) -> np.ndarray:
    """Kaldi's "[r1:r2]" / "[r1:r2,c1:c2]" selection (inclusive ends; a part ":" is the whole axis),
    in the forms Kaldi's ParseMatrixRangeSpecifier reads: each part ":" or two integers, nothing
    else ("3", "3:", an empty part). As Kaldi's ExtractObjectRange, a row range may end up to
    ROW_TOLERANCE rows past the last row (segments cut at 10 ms from 25 ms frames) and then stops
    at the last row."""
    parts = [None if p == ":" else [_range_end(x) for x in p.split(":")] for p in spec.split(",")]
    if any(p is not None and (len(p) != 2 or None in p) for p in parts):
        raise KaldiFormatError(f"range [{spec}] is not Kaldi's [r1:r2] or [r1:r2,c1:c2] (a part may be ':', all)")
    if len(parts) > value.ndim:
        raise KaldiFormatError(f"range [{spec}] has more parts than the object has dimensions")
    index = []
    for axis, (part, length) in enumerate(zip(parts, value.shape)):
        if part is None:
            index.append(slice(None))
            continue
        a, b = part
        if not (0 <= a < length and a <= b < length + (ROW_TOLERANCE if axis == 0 else 0)):
            raise KaldiFormatError(f"range [{spec}] lies outside the object's {length} rows or columns")
        index.append(slice(a, min(b, length - 1) + 1))
    return value[tuple(index)]


def _range_end(text: str) -> int | None:
    """An end of a range as Kaldi's SplitStringToIntegers reads it (strtoll: white space, a sign, digits)
    into an int32, or None where it does not (another form, or a number beyond the int32 range)."""
    if not _RANGE_END.fullmatch(text):
        return None
    signed = text.lstrip(" \t\n\v\f\r")
    value = read_count(signed.lstrip("+-"), 2**31 - 1)
    return None if value is None or value > 2**31 - 1 else -value if signed.startswith("-") else value


class ObjectFiles:
    """Reads objects at byte offsets of files, keeping the most recent files open."""

    def __init__(self, keep: int = 8):
        self._open: OrderedDict[Path, tuple] = OrderedDict()
        self.keep = keep

    def read(self, path: Path, offset: int | None, ints: bool = False, dtype=np.float32) -> np.ndarray:
        if path not in self._open:
            if len(self._open) >= self.keep:
                self._open.popitem(last=False)[1][0].close()
            fh, size = open_stream(path)
            if size is None:
                fh.close()
                raise KaldiFormatError(f"{path} is gzipped; a script file must name plain archives")
            self._open[path] = (fh, size)
        self._open.move_to_end(path)
        fh, size = self._open[path]
        if offset is not None and offset > size:
            raise KaldiFormatError(f"offset {offset:,} lies past the end of {path} ({size:,} bytes)")
        fh.seek(offset or 0)
        return Reader(fh, size, offset or 0, dtype).kaldi_object(ints)

    def close(self) -> None:
        for fh, _ in self._open.values():
            fh.close()
        self._open.clear()
