"""The `.jcodec` container: header, chunks, end marker; streaming `Writer` and `Reader`.

Layout (all integers little-endian; docs/bitstream.md is the normative spec)::

    header   fixed part (132 bytes) | L x (stride u32, codebook_size u32) | model_id
             | gain_db f32 (version 3) | crc32
    chunk*   "JCCK" | index u32 | frames u32 | coding u8 | 3 reserved | payload_size u32
             | payload | crc32(chunk header + payload)
    trailer  "JCEN" | chunk_count u32 | num_frames u64 | crc32(trailer)

The header (`Header`, its layout and parser) is in `header.py`. Every malformed input makes
`Reader` raise `BitstreamError` with a one-line message. Lengths read from a file are checked
against fixed bounds, against what the header implies and against the bytes left in the file
before anything is allocated.

Format versions: 1 (every channel its own code stream); 2, which adds `channel_mode`:
independent streams as in version 1, or one joint-stereo stream for both channels; and 3, which
adds `gain_db` (float32 after the model id): the gain the decoder applies to its output, which
undoes the encoder's level normalization (`jax_codec.levels`). Writers write version 3; readers
read all three and refuse a later version with a message naming the fix.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

from jax_codec.bitstream import entropy
from jax_codec.bitstream.entropy import BitstreamError, packed_size
from jax_codec.bitstream.header import (
    _CRC,
    _ZERO_HASH,
    CHANNELS_INDEPENDENT,
    CHANNELS_JOINT,
    FORMAT_VERSION,
    MAGIC,
    MIN_FORMAT_VERSION,
    MODE_RANGE,
    Header,
    _ByteSource,
    _hash_bytes,
    _parse_header,
    resampled_length,
)

__all__ = [
    "BitstreamError",
    "CHANNELS_INDEPENDENT",
    "CHANNELS_JOINT",
    "FORMAT_VERSION",
    "MIN_FORMAT_VERSION",
    "MAGIC",
    "Header",
    "resampled_length",
    "Reader",
    "Writer",
    "check_model",
    "info",
    "read_file",
    "split_chunks",
    "write_file",
]

CHUNK_TAG = b"JCCK"
END_TAG = b"JCEN"
CODING_PACKED = 0  # a chunk's payload: fixed-width packed codes
CODING_RANGE = 1  # a chunk's payload: range-coded with the file's priors
_CHUNK = struct.Struct("<4sIIB3sI")  # tag, index, frames, coding, reserved, payload_size
_TRAILER = struct.Struct("<4sIQ")  # tag, chunk_count, num_frames (then crc32)
assert _CHUNK.size == 20 and _TRAILER.size == 16


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


def _as_levels(codes_per_stream, header: Header) -> list[list[np.ndarray]]:
    if not isinstance(codes_per_stream, (list, tuple)) or len(codes_per_stream) != header.streams:
        what = "one joint-stereo stream" if header.joint else f"{header.channels} channels"
        raise ValueError(
            f"expected a list of {header.streams} code stream(s) ({what}) of per-level codes"
        )
    out = []
    for c, levels in enumerate(codes_per_stream):
        if len(levels) < header.n_quantizers:
            raise ValueError(
                f"stream {c}: {len(levels)} levels given, header stores {header.n_quantizers}"
            )
        out.append([np.asarray(a) for a in list(levels)[: header.n_quantizers]])
    return out


class Writer:
    """Streams codes to a `.jcodec` file, chunk by chunk.

    ``Writer(path_or_fileobj, header, priors=None)``. With `priors` ([L, C] probabilities or
    a quantized table, rows >= n_quantizers) the file is range coded (entropy_mode 1) and the
    header's priors_sha256 is filled in. Call `write_chunk` once per chunk, in order: each
    chunk holds `header.chunk_frames` latent frames except the last, which holds the rest.
    `close()` writes the end marker; writing to a path is atomic (temporary file in the same
    folder, renamed over the target on close; removed if anything fails, or by `abort()`).
    Use as a context manager to get that cleanup on exceptions.
    """

    def __init__(self, file: str | os.PathLike | BinaryIO, header: Header, priors=None):
        self._closed = True
        self._models = None
        self._freqs = None
        if priors is not None:
            self._freqs = entropy.quantize_priors(priors)
            sha = entropy.priors_sha256(self._freqs)
            if header.entropy_mode == MODE_RANGE and header.priors_sha256 not in (_ZERO_HASH, sha):
                raise ValueError("header.priors_sha256 does not match the priors given")
            header = dataclasses.replace(header, entropy_mode=MODE_RANGE, priors_sha256=sha)
        elif header.entropy_mode == MODE_RANGE:
            raise ValueError("entropy_mode 1 (range coded) needs priors=")
        header.validate()
        if self._freqs is not None:
            k, cb = header.n_quantizers, header.codebook_sizes[0]
            if self._freqs.shape[0] < k or self._freqs.shape[1] != cb:
                raise ValueError(
                    f"priors have shape {self._freqs.shape}; need >= {k} levels x {cb} symbols"
                )
            self._models = entropy.make_models(self._freqs[:k])
        self.header = header
        self._frames = 0
        self._index = 0
        self._tmp = None
        self._path = None
        if isinstance(file, (str, os.PathLike)):
            self._path = os.path.abspath(os.fspath(file))
            if os.path.isdir(self._path):
                raise IsADirectoryError(f"{self._path} is a directory")
            d, base = os.path.split(self._path)
            fd, self._tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=d)
            self._f = os.fdopen(fd, "wb")
        else:
            self._f = file
        self._closed = False
        try:
            self._f.write(header.to_bytes())
        except BaseException:
            self.abort()
            raise

    @property
    def frames_written(self) -> int:
        return self._frames

    def write_chunk(self, codes_per_stream, num_frames: int | None = None) -> None:
        """Writes the next chunk: a list over code streams (`header.streams`: each channel, or
        one joint-stereo stream) of sequences over levels of int arrays.

        Each level must hold ceil(F / stride) codes, F = the chunk's frame count (derived from
        the header; pass `num_frames` to have it checked). Levels past n_quantizers are ignored.
        """
        if self._closed:
            raise ValueError("writer is closed")
        h = self.header
        frames = h.chunk_frames_at(self._index)
        if frames <= 0:
            raise ValueError(f"all {h.num_frames} frames are already written")
        if num_frames is not None and num_frames != frames:
            raise ValueError(f"chunk {self._index} must hold {frames} frames, got {num_frames}")
        levels = _as_levels(codes_per_stream, h)
        need = h.codes_per_level(frames)
        for c, lv in enumerate(levels):
            for k, a in enumerate(lv):
                if a.ndim != 1 or a.shape[0] != need[k]:
                    raise ValueError(
                        f"chunk {self._index}, stream {c}, level {k}: expected {need[k]} codes "
                        f"(1-D), got shape {a.shape}"
                    )
                if a.size and not np.issubdtype(a.dtype, np.integer):
                    raise ValueError(f"codes must be integers, got dtype {a.dtype}")
                if a.size and (a.min() < 0 or a.max() >= h.codebook_sizes[k]):
                    raise ValueError(
                        f"chunk {self._index}, stream {c}, level {k}: codes outside "
                        f"[0, {h.codebook_sizes[k]})"
                    )
        packed = b"".join(entropy.pack_codes(a, b) for lv in levels for a, b in zip(lv, h.bits))
        payload, coding = packed, CODING_PACKED
        if self._models is not None:
            blocks = [(a, k) for lv in levels for k, a in enumerate(lv)]
            ranged = entropy.range_encode(blocks, self._models)
            if len(ranged) <= len(packed):
                payload, coding = ranged, CODING_RANGE
        head = _CHUNK.pack(CHUNK_TAG, self._index, frames, coding, b"\0\0\0", len(payload))
        self._f.write(head)
        self._f.write(payload)
        self._f.write(_CRC.pack(zlib.crc32(payload, zlib.crc32(head))))
        self._index += 1
        self._frames += frames

    def close(self) -> None:
        """Writes the end marker and finishes the file (renaming it into place for paths)."""
        if self._closed:
            return
        try:
            h = self.header
            if self._frames != h.num_frames:
                raise ValueError(
                    f"only {self._frames} of the header's {h.num_frames} frames were written"
                )
            trailer = _TRAILER.pack(END_TAG, self._index, self._frames)
            self._f.write(trailer + _CRC.pack(zlib.crc32(trailer)))
            self._f.flush()
            if self._path is not None:
                os.fsync(self._f.fileno())
                self._f.close()
                os.chmod(self._tmp, 0o666 & ~_umask())
                os.replace(self._tmp, self._path)
                self._tmp = None
            self._closed = True
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Discards the output: for a path the temporary file is removed (no output exists)."""
        self._closed = True
        if self._path is not None:
            try:
                self._f.close()
            except Exception:
                pass
            if self._tmp is not None:
                try:
                    os.unlink(self._tmp)
                except FileNotFoundError:
                    pass
                self._tmp = None

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self):
        if not getattr(self, "_closed", True):
            self.abort()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------


class Reader:
    """Reads a `.jcodec` file chunk by chunk.

    ``Reader(path_or_fileobj, priors=None)`` parses and checks the header at once
    (`.header`). Iterating yields, per chunk, a list over code streams (`header.streams`:
    each channel, or one joint-stereo stream) of tuples over the stored levels of int32
    arrays; `read_all()` concatenates them. Range-coded files need `priors`
    (an array, or a path for `load_priors`) whose sha256 matches the header's. Any problem
    with the file raises BitstreamError.
    """

    def __init__(self, source: str | os.PathLike | BinaryIO, priors=None):
        self._own = False
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if os.path.isdir(path):
                raise BitstreamError(f"{path} is a directory, not a .jcodec file")
            if not os.path.exists(path):
                raise BitstreamError(f"no such file: {path}")
            try:
                f = open(path, "rb")
            except OSError as e:
                raise BitstreamError(f"cannot open {path}: {e.strerror or e}") from None
            self._own = True
            self.name = path
        else:
            if not hasattr(source, "read"):
                raise BitstreamError(f"not a path or binary file object: {type(source).__name__}")
            f = source
            self.name = getattr(source, "name", "<stream>")
        self._f = f
        try:
            self._src = _ByteSource(f)
            self.header = _parse_header(self._src)
            self._data_start = self._src.pos
            self._models = None
            self._priors_error = None
            if self.header.entropy_mode == MODE_RANGE:
                self._setup_priors(priors)
        except BaseException:
            self.close()
            raise
        self._consumed = False
        self.trailer: dict[str, int] | None = None

    def _setup_priors(self, priors) -> None:
        h = self.header
        want = h.priors_sha256.hex()
        if priors is None:
            self._priors_error = (
                f"{self.name} is range coded with priors sha256 {want[:16]}…; pass the priors "
                "file it was compressed with (priors=)"
            )
            return
        if isinstance(priors, (str, os.PathLike)):
            priors = entropy.load_priors(priors)
        try:
            freqs = entropy.quantize_priors(priors)
        except ValueError as e:
            raise BitstreamError(f"unusable priors: {e}") from None
        got = entropy.priors_sha256(freqs).hex()
        if got != want:
            raise BitstreamError(
                f"{self.name} was range coded with priors sha256 {want[:16]}…, but the priors "
                f"given have sha256 {got[:16]}…"
            )
        # A matching hash pins the shape; this guards against a (crafted) header anyway.
        k, cb = h.n_quantizers, h.codebook_sizes[0]
        if freqs.shape[0] < k or freqs.shape[1] != cb:
            raise BitstreamError(f"priors shape {freqs.shape} does not fit {k} levels x {cb}")
        self._models = entropy.make_models(freqs[:k])

    # -- raw chunk scan --------------------------------------------------------------------

    def _iter_raw(self) -> Iterator[tuple[int, int, int, bytes]]:
        """Yields (index, frames, coding, payload) of CRC-checked chunks, then checks the end."""
        h, src = self.header, self._src
        if self._consumed:
            if not src.seekable:
                raise BitstreamError("the stream was already read and cannot seek back")
            src.seek(self._data_start)
        self._consumed = True
        expected = h.num_chunks
        frames_done = 0
        index = 0
        while True:
            off = src.pos
            tag = src.read_upto(4)
            if not tag:
                raise BitstreamError(
                    f"truncated file: ends at offset {off} after {index} of {expected} chunks, "
                    "without an end marker"
                )
            if len(tag) < 4:
                raise BitstreamError(f"truncated file: ends inside chunk {index}'s header")
            if tag == END_TAG:
                body = tag + src.read(_TRAILER.size - 4, "end marker")
                (crc,) = _CRC.unpack(src.read(_CRC.size, "end marker CRC"))
                if zlib.crc32(body) != crc:
                    raise BitstreamError(f"end marker CRC32 mismatch at offset {off}")
                _, count, total = _TRAILER.unpack(body)
                if count != index or total != frames_done:
                    raise BitstreamError(
                        f"chunk count mismatch: end marker says {count} chunks / {total} frames, "
                        f"file has {index} chunks / {frames_done} frames"
                    )
                if index != expected or frames_done != h.num_frames:
                    raise BitstreamError(
                        f"chunk count mismatch: {index} chunks ({frames_done} frames) before the "
                        f"end marker, header needs {expected} ({h.num_frames} frames)"
                    )
                if not src.at_eof():
                    raise BitstreamError(f"trailing data after the end marker (offset {src.pos})")
                self.trailer = {"chunk_count": count, "num_frames": total}
                return
            if tag != CHUNK_TAG:
                raise BitstreamError(f"bad chunk tag {tag!r} at offset {off} (chunk {index})")
            head = tag + src.read(_CHUNK.size - 4, f"chunk {index} header")
            _, idx, frames, coding, reserved, size = _CHUNK.unpack(head)
            if index >= expected:
                raise BitstreamError(
                    f"chunk count mismatch: chunk {index} found but the header's num_frames="
                    f"{h.num_frames} needs only {expected} chunks"
                )
            if idx != index:
                raise BitstreamError(f"chunk {index} at offset {off} has index {idx}")
            want_frames = h.chunk_frames_at(index)
            if frames != want_frames:
                raise BitstreamError(
                    f"chunk {index} at offset {off} says {frames} frames, expected {want_frames}"
                )
            if reserved != b"\0\0\0":
                raise BitstreamError(f"chunk {index}: reserved bytes are not zero")
            packed = h.packed_payload_size(frames)
            if coding == CODING_PACKED:
                ok = size == packed
            elif coding == CODING_RANGE and h.entropy_mode == MODE_RANGE:
                ok = 0 < size <= packed and size % 4 == 0
            else:
                raise BitstreamError(f"chunk {index}: invalid coding {coding} for this file")
            if not ok:
                raise BitstreamError(
                    f"chunk {index}: payload size {size} is invalid for {frames} frames "
                    f"(bit packed: {packed} bytes)"
                )
            payload = src.read(size, f"chunk {index} payload")
            (crc,) = _CRC.unpack(src.read(_CRC.size, f"chunk {index} CRC"))
            if zlib.crc32(payload, zlib.crc32(head)) != crc:
                raise BitstreamError(f"chunk {index} CRC32 mismatch (offset {off}): data corrupt")
            yield index, frames, coding, payload
            index += 1
            frames_done += frames

    def _decode(self, index: int, frames: int, coding: int, payload: bytes):
        h = self.header
        counts = h.codes_per_level(frames)
        if coding == CODING_RANGE:
            if self._models is None:
                raise BitstreamError(self._priors_error or "range-coded chunk without priors")
            blocks = [(n, k) for _ in range(h.streams) for k, n in enumerate(counts)]
            flat = entropy.range_decode(payload, blocks, self._models)
            # The range decoder cannot tell when it decodes more or fewer codes than were
            # coded (e.g. a header that lies about strides or levels, with a valid CRC): the
            # payload must be exactly the encoding of what was decoded.
            again = entropy.range_encode([(a, k) for a, (_, k) in zip(flat, blocks)], self._models)
            if again != payload:
                raise BitstreamError(
                    f"chunk {index}: range-coded payload does not hold the {sum(counts)} codes "
                    "per stream the header implies"
                )
        else:
            flat, off, mv = [], 0, memoryview(payload)
            for _ in range(h.streams):
                for n, b in zip(counts, h.bits):
                    size = packed_size(n, b)
                    flat.append(entropy.unpack_codes(mv[off : off + size], n, b))
                    off += size
        out = []
        for c in range(h.streams):
            levels = tuple(flat[c * len(counts) : (c + 1) * len(counts)])
            for k, a in enumerate(levels):
                if a.size and (int(a.max()) >= h.codebook_sizes[k] or int(a.min()) < 0):
                    raise BitstreamError(
                        f"chunk {index}, stream {c}, level {k}: code {int(a.max())} >= "
                        f"codebook_size {h.codebook_sizes[k]}"
                    )
            out.append(levels)
        return out

    def __iter__(self) -> Iterator[list[tuple[np.ndarray, ...]]]:
        for index, frames, coding, payload in self._iter_raw():
            yield self._decode(index, frames, coding, payload)

    def read_all(self) -> list[tuple[np.ndarray, ...]]:
        """All codes: a list over code streams of tuples over stored levels of int32 arrays."""
        h = self.header
        parts: list[list[list[np.ndarray]]] = [
            [[] for _ in range(h.n_quantizers)] for _ in range(h.streams)
        ]
        for chunk in self:
            for c, levels in enumerate(chunk):
                for k, a in enumerate(levels):
                    parts[c][k].append(a)
        return [
            tuple(np.concatenate(p) if p else np.zeros((0,), np.int32) for p in ch) for ch in parts
        ]

    def verify(self) -> int:
        """Scans the whole file (structure and CRCs, no decoding); returns the chunk count."""
        n = 0
        for _ in self._iter_raw():
            n += 1
        return n

    def close(self) -> None:
        if self._own:
            self._f.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def split_chunks(codes_per_stream, header: Header) -> Iterator[list[tuple[np.ndarray, ...]]]:
    """Cuts whole-file codes (list over code streams of per-level arrays) into the header's
    chunks."""
    levels = _as_levels(codes_per_stream, header)
    for i in range(header.num_chunks):
        start = i * header.chunk_frames
        frames = header.chunk_frames_at(i)
        yield [
            tuple(
                a[start // s : start // s + n]
                for a, s, n in zip(lv, header.stored_strides, header.codes_per_level(frames))
            )
            for lv in levels
        ]


def write_file(path, header: Header, codes_per_stream, priors=None) -> Header:
    """Writes whole-file codes (list over code streams of per-level arrays) to `path`
    (atomically); returns the header as written."""
    with Writer(path, header, priors=priors) as w:
        for chunk in split_chunks(codes_per_stream, w.header):
            w.write_chunk(chunk)
    return w.header


def read_file(path, priors=None) -> tuple[Header, list[tuple[np.ndarray, ...]]]:
    """(header, codes) of a whole file."""
    with Reader(path, priors=priors) as r:
        return r.header, r.read_all()


def check_model(header: Header, model_id: str, model_hash: bytes | str) -> None:
    """Raises BitstreamError unless the file was made by the model with `model_hash`."""
    want = header.model_hash
    got = _hash_bytes(model_hash, "model_hash")
    if got != want:
        raise BitstreamError(
            f"this file was compressed with model {header.model_id or '?'} (hash "
            f"{want.hex()[:12]}…), but the loaded model is {model_id or '?'} (hash "
            f"{got.hex()[:12]}…); pass --checkpoint of the model that made it"
        )


def info(source, verify: bool = False) -> dict[str, Any]:
    """Header fields plus duration, file size, actual and nominal kbps, and chunk count.

    Reads the header and the end marker only (seekable input); `verify=True` (or a
    non-seekable stream) scans every chunk's structure and CRC instead.
    """
    with Reader(source) as r:
        h, src = r.header, r._src
        if verify or not src.seekable:
            chunks = r.verify()
            size = src.pos
        else:
            size = src.size
            if size - src.pos < _TRAILER.size + _CRC.size:
                raise BitstreamError("truncated file: no room for an end marker")
            src.seek(size - _TRAILER.size - _CRC.size)
            body = src.read(_TRAILER.size, "end marker")
            (crc,) = _CRC.unpack(src.read(_CRC.size, "end marker CRC"))
            tag, chunks, total = _TRAILER.unpack(body)
            if tag != END_TAG or zlib.crc32(body) != crc:
                raise BitstreamError("truncated or corrupt file: no valid end marker at its end")
            if chunks != h.num_chunks or total != h.num_frames:
                raise BitstreamError(
                    f"chunk count mismatch: end marker says {chunks} chunks / {total} frames, "
                    f"header needs {h.num_chunks} / {h.num_frames}"
                )
    d = h.to_dict()
    dur = h.duration_seconds
    d.update(
        format_version=h.version,
        entropy_coding="range coded (priors)" if h.entropy_mode else "bit packed",
        bits=list(h.bits),
        duration_seconds=dur,
        file_size_bytes=size,
        num_chunks=chunks,
        actual_kbps=(size * 8 / dur / 1e3) if dur > 0 else 0.0,
        nominal_kbps=h.nominal_kbps,
        nominal_kbps_per_stream=h.nominal_kbps_per_stream,
        nominal_kbps_per_channel=h.nominal_kbps_per_channel,
    )
    d["strides"] = list(h.strides)
    d["codebook_sizes"] = list(h.codebook_sizes)
    return d
