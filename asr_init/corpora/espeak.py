"""A ctypes driver for the eSpeak NG synthesiser shipped in the `espeakng-loader` wheel.

eSpeak NG is initialised in synchronous mode with phoneme events on: `espeak_Synth`
calls our callback with blocks of 16-bit samples and a list of events; a phoneme event
carries the phoneme's eSpeak mnemonic and the sample index at which it starts. That gives
exact phone alignments for free, which is why the embedded corpus uses it.

The library keeps global state, so there is one `Espeak` per process.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from asr_init.errors import UserError

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # sample index in the output
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Synthesis:
    """The output of one `Espeak.synthesize` call.

    samples: (num_samples,) float32 in [-1, 1]; phonemes: (start_sample, mnemonic) in order.
    """

    samples: np.ndarray
    sample_rate: int
    phonemes: list[tuple[int, str]]


class Espeak:
    """One initialised eSpeak NG instance (the library is a per-process singleton)."""

    _instance: Espeak | None = None

    def __new__(cls) -> Espeak:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
            cls._instance._load()
        return cls._instance

    def _load(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - dependency of the package
            raise UserError(
                "the embedded corpus needs the 'espeakng-loader' package; pip install espeakng-loader"
            ) from exc
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        # espeak_Synth(text, size, position, position_type, end_position, flags, unique_identifier, user_data)
        synth_args = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint]
        self._lib.espeak_Synth.argtypes = [*synth_args, ctypes.c_void_p, ctypes.c_void_p]
        data_path = espeakng_loader.get_data_path()
        flags = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), flags)
        if rate <= 0:
            raise UserError(f"eSpeak NG failed to initialise from {data_path}")
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, str]] = []
        self._callback = _CALLBACK(self._on_synth)  # keep a reference: C holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav, num_samples, events) -> int:
        if wav and num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_PHONEME:
                self._events.append((int(events[i].sample), events[i].id.string.decode("utf-8", "replace")))
            i += 1
        return 0

    def seed(self, seed: int) -> None:
        """Seed eSpeak NG's random sources (breath noise of some voices, jitter): its own
        generator and the C library's rand()."""
        self._lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        ctypes.CDLL(None).srand(ctypes.c_uint(seed & 0xFFFFFFFF))

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int) -> Synthesis:
        """Speak `text` with `voice` (e.g. "en-us+f3"), `rate` in words/min, pitch 0-100."""
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise UserError(f"eSpeak NG has no voice {voice!r}")
        for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_RANGE, pitch_range)):
            self._lib.espeak_SetParameter(param, int(value), 0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        status = self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status} on {text!r}")
        self._lib.espeak_Synchronize()
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return Synthesis(pcm.astype(np.float32) / 32768.0, self.sample_rate, list(self._events))
