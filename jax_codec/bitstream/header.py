"""The `.jcodec` header: the `Header` record, its byte layout and its parser.

Layout of the header (all integers little-endian; docs/bitstream.md is the normative spec)::

    fixed part (132 bytes) | L x (stride u32, codebook_size u32) | model_id
    | gain_db f32 (version 3) | crc32

`format.py` builds the container (chunks, end marker, `Writer`, `Reader`) on it. Every field
read from a file is checked against fixed bounds before anything is allocated; a malformed
header raises `BitstreamError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct
import zlib
from collections.abc import Sequence
from typing import Any, BinaryIO

import numpy as np

from jax_codec.bitstream import entropy
from jax_codec.bitstream.entropy import BitstreamError, bits_for, packed_size

MAGIC = b"JCODEC\x00\x1a"
FORMAT_VERSION = 3  # what writers write; readers read MIN_FORMAT_VERSION..FORMAT_VERSION
MIN_FORMAT_VERSION = 1

MODE_PACKED = 0
MODE_RANGE = 1
# channel_mode (header byte 18, version 2; version-1 files are all independent): how the
# audio's channels map to code streams.
CHANNELS_INDEPENDENT = 0  # one code stream per channel (mono; dual mono for stereo)
CHANNELS_JOINT = 1  # one code stream that a joint-stereo model decodes to left and right
CHANNEL_MODES = {CHANNELS_INDEPENDENT: "independent", CHANNELS_JOINT: "joint stereo"}

# magic, version, header_size, entropy_mode, num_levels, n_quantizers, model_id_len, channels,
# channel_mode (version 1: the low byte of a reserved u16), reserved, sample_rate,
# original_sample_rate, hop_length, chunk_frames, num_samples, num_frames, frame_rate,
# model_hash, priors_sha256, original_num_samples
_FIXED = struct.Struct("<8sHHBBBBHBBIIIIQQd32s32sQ")
_LEVEL = struct.Struct("<II")
_CRC = struct.Struct("<I")
_GAIN = struct.Struct("<f")  # version 3: gain_db
assert _FIXED.size == 132

# Sanity bounds: a header outside them is rejected before anything is allocated.
MAX_CHANNELS = 256
MAX_LEVELS = 32
MAX_STRIDE = 4096
MAX_CODEBOOK_SIZE = entropy.MAX_CODEBOOK_SIZE
MAX_SAMPLE_RATE = 10_000_000
MAX_HOP_LENGTH = 1 << 20
MAX_CHUNK_FRAMES = 1 << 20
MAX_NUM_FRAMES = 1 << 40
MAX_CHUNK_PAYLOAD = 256 << 20
MAX_MODEL_ID_BYTES = 255
MAX_GAIN_DB = 120.0
DEFAULT_CHUNK_FRAMES = 1024  # ~11.9 s at 44.1 kHz / hop 512, rounded up to lcm(strides)
_ZERO_HASH = bytes(32)
_READ_PIECE = 1 << 20


def _lcm(values: Sequence[int]) -> int:
    out = 1
    for v in values:
        out = out * v // math.gcd(out, v)
    return out


def _hash_bytes(value: bytes | str | None, what: str) -> bytes:
    if value is None:
        return _ZERO_HASH
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value)
        except ValueError:
            raise BitstreamError(f"{what} must be 32 bytes or 64 hex digits") from None
    value = bytes(value)
    if len(value) != 32:
        raise BitstreamError(f"{what} must be 32 bytes (sha256), got {len(value)}")
    return value


def resampled_length(num_samples: int, rate_in: int, rate_out: int) -> int:
    """Samples a resampler makes of `num_samples` at `rate_in` when converting to `rate_out`:
    ``round(num_samples * rate_out / rate_in)``, halves rounded up, in exact integer
    arithmetic (what soxr produces for a whole signal)."""
    if rate_in == rate_out or rate_in <= 0:
        return int(num_samples)
    return (2 * int(num_samples) * int(rate_out) + int(rate_in)) // (2 * int(rate_in))


@dataclasses.dataclass(frozen=True)
class Header:
    """Everything a decoder needs to know about a `.jcodec` file.

    `channels` is the audio's channel count (what a decoder writes) and `channel_mode` how
    they are coded: `CHANNELS_INDEPENDENT`, one code stream per channel, or `CHANNELS_JOINT`,
    one stream for the pair that a joint-stereo model decodes to left and right (`channels`
    1: a mono input the model saw duplicated, written back as the mean of the two; 2: stereo).
    `streams` is the number of code streams stored. `strides`/`codebook_sizes` describe all L
    levels of the model; only the first `n_quantizers` (K) are stored. `codebook_sizes` may be
    given as one int. `num_samples` is the per-channel length at the model's `sample_rate`;
    `original_sample_rate` (defaults to `sample_rate`) is the rate to resample back to and
    `original_num_samples` the exact length there (defaults to `resampled_length(num_samples,
    sample_rate, original_rate)`; it must satisfy ``resampled_length(original_num_samples,
    original_rate, sample_rate) == num_samples``, the length a resampler makes: round half up
    of n * rate_out / rate_in). `num_frames` is the number of latent frames stored (every chunk
    holds `chunk_frames` of them, the last one fewer). Left as None: `n_quantizers` = L,
    `chunk_frames` = 1024 rounded up to lcm(stored strides), `frame_rate` = sample_rate /
    hop_length, `original_sample_rate` = sample_rate. `gain_db` is the gain in dB a decoder
    applies to what the model decodes (it undoes the encoder's level normalization; 0 in
    files before version 3). `version` 1 (independent channels only) or 2 (no gain) writes the
    bytes of a file of that version, for readers that know no later one.
    """

    sample_rate: int
    channels: int
    num_samples: int
    num_frames: int
    hop_length: int
    strides: tuple[int, ...]
    codebook_sizes: tuple[int, ...]
    n_quantizers: int | None = None
    chunk_frames: int | None = None
    model_id: str = ""
    model_hash: bytes = _ZERO_HASH
    original_sample_rate: int | None = None
    original_num_samples: int | None = None
    frame_rate: float | None = None
    entropy_mode: int = MODE_PACKED
    priors_sha256: bytes = _ZERO_HASH
    channel_mode: int = CHANNELS_INDEPENDENT
    gain_db: float = 0.0
    version: int = FORMAT_VERSION

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)
        set_("strides", tuple(int(s) for s in np.atleast_1d(self.strides)))
        cbs = self.codebook_sizes
        if np.ndim(cbs) == 0:
            cbs = [int(cbs)] * len(self.strides)
        set_("codebook_sizes", tuple(int(c) for c in cbs))
        if self.n_quantizers is None:
            set_("n_quantizers", len(self.strides))
        if self.original_sample_rate is None:
            set_("original_sample_rate", self.sample_rate)
        if self.original_num_samples is None:
            set_(
                "original_num_samples",
                resampled_length(self.num_samples, self.sample_rate, self.original_sample_rate),
            )
        if self.frame_rate is None and self.hop_length:
            set_("frame_rate", self.sample_rate / self.hop_length)
        if self.chunk_frames is None:
            k = max(1, min(int(self.n_quantizers), len(self.strides)))
            lcm = _lcm(self.strides[:k]) if self.strides else 1
            set_("chunk_frames", -(-DEFAULT_CHUNK_FRAMES // lcm) * lcm)
        for name in ("sample_rate", "channels", "num_samples", "num_frames", "hop_length",
                     "n_quantizers", "chunk_frames", "original_sample_rate",
                     "original_num_samples", "entropy_mode", "channel_mode",
                     "version"):  # fmt: skip
            set_(name, int(getattr(self, name)))
        set_("frame_rate", float(self.frame_rate) if self.frame_rate is not None else 0.0)
        # stored as float32: keep the value a reader will see
        set_("gain_db", float(np.float32(self.gain_db)))
        set_("model_hash", _hash_bytes(self.model_hash, "model_hash"))
        set_("priors_sha256", _hash_bytes(self.priors_sha256, "priors_sha256"))

    # -- derived values ----------------------------------------------------------------------

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    @property
    def bits(self) -> tuple[int, ...]:
        """Bits per code of each stored level when bit packed."""
        return tuple(bits_for(c) for c in self.codebook_sizes[: self.n_quantizers])

    @property
    def stored_strides(self) -> tuple[int, ...]:
        return self.strides[: self.n_quantizers]

    @property
    def num_chunks(self) -> int:
        return -(-self.num_frames // self.chunk_frames)

    @property
    def duration_seconds(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def joint(self) -> bool:
        """True when one code stream holds both channels (`CHANNELS_JOINT`)."""
        return self.channel_mode == CHANNELS_JOINT

    @property
    def streams(self) -> int:
        """Code streams stored: one per channel, or one for a joint-stereo file."""
        return 1 if self.joint else self.channels

    @property
    def channel_mode_name(self) -> str:
        """How the channels are coded, in words: mono, dual mono, independent (more channels)
        or joint stereo."""
        if self.joint:
            return CHANNEL_MODES[CHANNELS_JOINT]
        return {1: "mono", 2: "dual mono"}.get(self.channels, "independent")

    @property
    def nominal_kbps_per_stream(self) -> float:
        """Bit-packed rate of one code stream: sum over stored levels of frame_rate/stride*bits."""
        return sum(self.frame_rate / s * b for s, b in zip(self.stored_strides, self.bits)) / 1e3

    @property
    def nominal_kbps(self) -> float:
        """Bit-packed code rate of the file: `nominal_kbps_per_stream` times `streams` (one
        stream for a joint-stereo pair, one per channel otherwise)."""
        return self.nominal_kbps_per_stream * self.streams

    @property
    def nominal_kbps_per_channel(self) -> float:
        """`nominal_kbps` shared out over the channels: a stream's rate when each channel has
        its own, half of it for a joint-stereo pair."""
        return self.nominal_kbps / self.channels if self.channels else 0.0

    def codes_per_level(self, frames: int) -> tuple[int, ...]:
        """Codes of each stored level (per stream) in a chunk of `frames` latent frames."""
        return tuple(-(-frames // s) for s in self.stored_strides)

    def packed_payload_size(self, frames: int) -> int:
        """Bytes of a bit-packed chunk payload of `frames` frames (all streams)."""
        per_stream = sum(packed_size(n, b) for n, b in zip(self.codes_per_level(frames), self.bits))
        return self.streams * per_stream

    def chunk_frames_at(self, index: int) -> int:
        """Frames in chunk `index`: chunk_frames, except the last which holds the rest."""
        return min(self.chunk_frames, self.num_frames - index * self.chunk_frames)

    # -- validation and (de)serialization --------------------------------------------------

    def validate(self) -> None:
        """Raises BitstreamError naming the first field outside the format's bounds."""

        def need(ok: bool, msg: str):
            if not ok:
                raise BitstreamError(f"invalid header: {msg}")

        need(
            MIN_FORMAT_VERSION <= self.version <= FORMAT_VERSION,
            f"version {self.version} (this code knows {MIN_FORMAT_VERSION}..{FORMAT_VERSION})",
        )
        need(1 <= self.sample_rate <= MAX_SAMPLE_RATE, f"sample_rate {self.sample_rate}")
        need(
            1 <= self.original_sample_rate <= MAX_SAMPLE_RATE,
            f"original_sample_rate {self.original_sample_rate}",
        )
        need(
            0 <= self.original_num_samples < 2**63
            and resampled_length(
                self.original_num_samples, self.original_sample_rate, self.sample_rate
            )
            == self.num_samples,
            f"original_num_samples {self.original_num_samples} at {self.original_sample_rate} Hz "
            f"does not resample to num_samples {self.num_samples} at {self.sample_rate} Hz",
        )
        need(
            1 <= self.channels <= MAX_CHANNELS, f"channels {self.channels} not in 1..{MAX_CHANNELS}"
        )
        need(
            self.channel_mode in CHANNEL_MODES,
            f"channel_mode {self.channel_mode} (0 independent, 1 joint stereo)",
        )
        if self.joint:
            need(self.version >= 2, "channel_mode 1 (joint stereo) needs format version 2")
            need(
                self.channels <= 2,
                f"joint stereo with {self.channels} channels (a joint stream decodes to 1 or 2)",
            )
        need(
            math.isfinite(self.gain_db) and abs(self.gain_db) <= MAX_GAIN_DB,
            f"gain_db {self.gain_db} (finite, at most {MAX_GAIN_DB:g} dB either way)",
        )
        need(self.version >= 3 or self.gain_db == 0.0, "gain_db needs format version 3")
        need(1 <= self.hop_length <= MAX_HOP_LENGTH, f"hop_length {self.hop_length}")
        need(
            math.isfinite(self.frame_rate) and 0 < self.frame_rate <= self.sample_rate,
            f"frame_rate {self.frame_rate}",
        )
        need(1 <= self.num_levels <= MAX_LEVELS, f"{self.num_levels} levels not in 1..{MAX_LEVELS}")
        need(
            len(self.codebook_sizes) == self.num_levels,
            f"{len(self.codebook_sizes)} codebook sizes for {self.num_levels} levels",
        )
        need(all(1 <= s <= MAX_STRIDE for s in self.strides), f"strides {self.strides}")
        need(
            all(2 <= c <= MAX_CODEBOOK_SIZE for c in self.codebook_sizes),
            f"codebook sizes {self.codebook_sizes} not in 2..{MAX_CODEBOOK_SIZE}",
        )
        need(
            1 <= self.n_quantizers <= self.num_levels,
            f"n_quantizers {self.n_quantizers} not in 1..{self.num_levels}",
        )
        lcm = _lcm(self.stored_strides)
        need(
            1 <= self.chunk_frames <= MAX_CHUNK_FRAMES and self.chunk_frames % lcm == 0,
            f"chunk_frames {self.chunk_frames} must be in 1..{MAX_CHUNK_FRAMES} and a multiple "
            f"of lcm(strides)={lcm}",
        )
        need(0 <= self.num_frames <= MAX_NUM_FRAMES, f"num_frames {self.num_frames}")
        need(
            0 <= self.num_samples <= self.num_frames * self.hop_length,
            f"num_samples {self.num_samples} exceeds num_frames*hop_length="
            f"{self.num_frames * self.hop_length}",
        )
        need(self.num_chunks < 1 << 32, f"{self.num_chunks} chunks (at most 2**32-1)")
        need(
            self.packed_payload_size(self.chunk_frames) <= MAX_CHUNK_PAYLOAD,
            f"a chunk would take {self.packed_payload_size(self.chunk_frames)} bytes "
            f"(more than {MAX_CHUNK_PAYLOAD}); use a smaller chunk_frames",
        )
        need(
            len(self.model_id.encode("utf-8")) <= MAX_MODEL_ID_BYTES,
            f"model_id longer than {MAX_MODEL_ID_BYTES} UTF-8 bytes",
        )
        need(self.entropy_mode in (MODE_PACKED, MODE_RANGE), f"entropy_mode {self.entropy_mode}")
        if self.entropy_mode == MODE_PACKED:
            need(self.priors_sha256 == _ZERO_HASH, "priors_sha256 set but entropy_mode is 0")
        else:
            need(self.priors_sha256 != _ZERO_HASH, "entropy_mode 1 without priors_sha256")
            stored = set(self.codebook_sizes[: self.n_quantizers])
            need(len(stored) == 1, "entropy_mode 1 needs one codebook size for all stored levels")

    @property
    def gain(self) -> float:
        """`gain_db` as a linear factor."""
        return float(10.0 ** (self.gain_db / 20.0))

    @property
    def header_size(self) -> int:
        return _header_size(self.version, self.num_levels, len(self.model_id.encode()))

    def to_bytes(self) -> bytes:
        """Serialized header including its CRC32 (validates first)."""
        self.validate()
        mid = self.model_id.encode("utf-8")
        body = _FIXED.pack(
            MAGIC, self.version, self.header_size, self.entropy_mode, self.num_levels,
            self.n_quantizers, len(mid), self.channels, self.channel_mode, 0, self.sample_rate,
            self.original_sample_rate, self.hop_length, self.chunk_frames, self.num_samples,
            self.num_frames, self.frame_rate, self.model_hash, self.priors_sha256,
            self.original_num_samples,
        )  # fmt: skip
        body += b"".join(_LEVEL.pack(s, c) for s, c in zip(self.strides, self.codebook_sizes))
        body += mid
        if self.version >= 3:
            body += _GAIN.pack(self.gain_db)
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> Header:
        """Parses and validates a complete serialized header (as `to_bytes` makes)."""
        return _parse_header(_ByteSource(data))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model_hash"] = self.model_hash.hex()
        d["priors_sha256"] = self.priors_sha256.hex() if self.entropy_mode else None
        d["channel_mode_name"] = self.channel_mode_name
        d["code_streams"] = self.streams
        return d


# --------------------------------------------------------------------------------------------
# Reading primitives
# --------------------------------------------------------------------------------------------


class _ByteSource:
    """Bounded reads from a file object with offset tracking and known remaining size."""

    def __init__(self, f: BinaryIO | bytes):
        if isinstance(f, (bytes, bytearray, memoryview)):
            import io

            f = io.BytesIO(bytes(f))
        self.f = f
        self.pos = 0
        self.base = 0
        self.size: int | None = None
        self.seekable = False
        try:
            if f.seekable():
                start = f.tell()
                end = f.seek(0, os.SEEK_END)
                f.seek(start)
                self.size, self.base, self.seekable = end - start, start, True
        except (OSError, AttributeError, ValueError):
            self.size = None

    def remaining(self) -> int | None:
        return None if self.size is None else self.size - self.pos

    def read_upto(self, n: int) -> bytes:
        """At most n bytes (fewer only at the end of the file)."""
        parts, got = [], 0
        try:
            while got < n:
                piece = self.f.read(min(n - got, _READ_PIECE))
                if not piece:
                    break
                if not isinstance(piece, (bytes, bytearray)):
                    raise BitstreamError("the file object must be opened in binary mode ('rb')")
                parts.append(piece)
                got += len(piece)
        except OSError as e:
            raise BitstreamError(f"read error at offset {self.pos}: {e}") from None
        self.pos += got
        return b"".join(parts)

    def read(self, n: int, what: str) -> bytes:
        """Exactly n bytes of `what`, or BitstreamError; never allocates more than is there."""
        left = self.remaining()
        if left is not None and n > left:
            raise BitstreamError(
                f"truncated file: {what} needs {n} bytes at offset {self.pos}, only {left} left"
            )
        start = self.pos
        data = self.read_upto(n)
        if len(data) != n:
            raise BitstreamError(
                f"truncated file: {what} needs {n} bytes at offset {start}, got {len(data)}"
            )
        return data

    def at_eof(self) -> bool:
        left = self.remaining()
        if left is not None:
            return left == 0
        try:
            return self.f.read(1) == b""
        except OSError:
            return False

    def seek(self, pos: int) -> None:
        self.f.seek(self.base + pos)
        self.pos = pos


def _header_size(version: int, num_levels: int, id_len: int) -> int:
    gain = _GAIN.size if version >= 3 else 0
    return _FIXED.size + _LEVEL.size * num_levels + id_len + gain + _CRC.size


def _parse_header(src: _ByteSource) -> Header:
    left = src.remaining()
    first = src.read_upto(len(MAGIC) if left is None else min(len(MAGIC), left))
    if not first:
        raise BitstreamError("empty file (0 bytes): not a .jcodec file")
    if first != MAGIC[: len(first)]:
        raise BitstreamError(f"not a .jcodec file: bad magic {first!r} (expected {MAGIC!r})")
    if len(first) < len(MAGIC):
        raise BitstreamError(f"truncated file: only {len(first)} bytes, ends inside the magic")
    head = first + src.read(_FIXED.size - len(MAGIC), "fixed header")
    (
        _magic, version, header_size, mode, num_levels, n_q, id_len, channels, channel_mode,
        reserved, sample_rate, orig_rate, hop, chunk_frames, num_samples, num_frames, frame_rate,
        model_hash, priors_hash, orig_samples,
    ) = _FIXED.unpack(head)  # fmt: skip
    if version < MIN_FORMAT_VERSION:
        raise BitstreamError(f"invalid header: format version {version}")
    if version > FORMAT_VERSION:
        raise BitstreamError(
            f"unsupported .jcodec format version {version}: this reader reads versions "
            f"{MIN_FORMAT_VERSION} to {FORMAT_VERSION}; the file was written by a newer "
            "jax_codec: upgrade jax_codec (pip install -U jax_codec) to decode it"
        )
    if not 1 <= num_levels <= MAX_LEVELS:
        raise BitstreamError(f"invalid header: {num_levels} levels not in 1..{MAX_LEVELS}")
    expect = _header_size(version, num_levels, id_len)
    if header_size != expect:
        raise BitstreamError(
            f"invalid header: header_size field {header_size} but its layout needs {expect} bytes"
        )
    rest = src.read(header_size - _FIXED.size, "header")
    body, (crc,) = head + rest[: -_CRC.size], _CRC.unpack(rest[-_CRC.size :])
    if zlib.crc32(body) != crc:
        raise BitstreamError("header CRC32 mismatch: the header is corrupt")
    if reserved != 0 or (version == 1 and channel_mode != 0):
        raise BitstreamError("invalid header: reserved field is not zero")
    if channel_mode not in CHANNEL_MODES:
        raise BitstreamError(
            f"invalid header: channel_mode {channel_mode} (0 independent, 1 joint stereo)"
        )
    levels = [_LEVEL.unpack_from(rest, i * _LEVEL.size) for i in range(num_levels)]
    try:
        model_id = rest[_LEVEL.size * num_levels : _LEVEL.size * num_levels + id_len].decode()
    except UnicodeDecodeError:
        raise BitstreamError("invalid header: model_id is not valid UTF-8") from None
    gain_db = 0.0
    if version >= 3:
        (gain_db,) = _GAIN.unpack_from(rest, _LEVEL.size * num_levels + id_len)
    h = Header(
        sample_rate=sample_rate, channels=channels, num_samples=num_samples,
        num_frames=num_frames, hop_length=hop, strides=tuple(s for s, _ in levels),
        codebook_sizes=tuple(c for _, c in levels), n_quantizers=n_q, chunk_frames=chunk_frames,
        model_id=model_id, model_hash=model_hash, original_sample_rate=orig_rate,
        original_num_samples=orig_samples, frame_rate=frame_rate, entropy_mode=mode,
        priors_sha256=priors_hash, channel_mode=channel_mode, gain_db=gain_db, version=version,
    )  # fmt: skip
    h.validate()
    return h
