"""Coding layer of the `.jcodec` format: bit packing, range coding, priors.

Pure numpy (plus `constriction` for range coding, imported lazily). See docs/bitstream.md for
the normative description of everything here.

* Mode 0, bit packing: each code is written as ``bits = ceil(log2(codebook_size))`` bits,
  most significant bit first; the codes' bits are concatenated and packed into bytes, most
  significant bit first, the last byte padded with zero bits.
* Mode 1, range coding: `constriction`'s range coder (32-bit words, 64-bit state, 24-bit
  probability precision) with one static categorical prior per level. A prior is identified by
  its quantized form: integer frequencies, each >= 1, summing to 2**24 per level, and the
  sha256 of that table (`priors_sha256`).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "BitstreamError",
    "PRECISION",
    "bits_for",
    "estimate_priors",
    "load_priors",
    "pack_codes",
    "priors_sha256",
    "quantize_priors",
    "range_decode",
    "range_encode",
    "save_priors",
    "unpack_codes",
]

#: Probability precision of the range coder: frequencies sum to 2**PRECISION.
PRECISION = 24
TOTAL = 1 << PRECISION
#: Largest alphabet this module accepts (bit packing would allow more; priors would be huge).
MAX_CODEBOOK_SIZE = 1 << 20
PRIORS_FORMAT = "jcodec-priors"
PRIORS_VERSION = 1
_PRIORS_HASH_PREFIX = b"JCODEC-PRIORS\x00"


class BitstreamError(ValueError):
    """A `.jcodec` file (or priors file) is missing, malformed, corrupt or does not match."""


def bits_for(codebook_size: int) -> int:
    """Bits per code when bit packing: ceil(log2(codebook_size)), at least 1."""
    return max(1, (int(codebook_size) - 1).bit_length())


# --------------------------------------------------------------------------------------------
# Bit packing (mode 0)
# --------------------------------------------------------------------------------------------


def packed_size(num_codes: int, bits: int) -> int:
    """Bytes taken by `num_codes` codes of `bits` bits, padded to a whole byte."""
    return (num_codes * bits + 7) // 8


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Packs non-negative integer codes (< 2**bits) MSB-first into bytes.

    Vectorized: every code becomes a big-endian uint32, its 32 bits are unpacked, the low
    `bits` of each are kept and the whole bit matrix is packed again.
    """
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be in [1, 32], got {bits}")
    v = np.ascontiguousarray(np.asarray(codes).reshape(-1), dtype=">u4")
    if v.size == 0:
        return b""
    bitmat = np.unpackbits(v.view(np.uint8).reshape(-1, 4), axis=1)  # [n, 32], MSB first
    return np.packbits(bitmat[:, 32 - bits :]).tobytes()


def unpack_codes(data: bytes | memoryview, num_codes: int, bits: int) -> np.ndarray:
    """Inverse of `pack_codes`: returns `num_codes` codes as int32 (needs enough bytes)."""
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be in [1, 32], got {bits}")
    need = packed_size(num_codes, bits)
    buf = np.frombuffer(data, dtype=np.uint8, count=need)
    if num_codes == 0:
        return np.zeros((0,), np.int32)
    bitmat = np.unpackbits(buf, count=num_codes * bits).reshape(num_codes, bits)
    full = np.zeros((num_codes, 32), np.uint8)
    full[:, 32 - bits :] = bitmat
    return np.packbits(full, axis=1).view(">u4").reshape(num_codes).astype(np.int32)


# --------------------------------------------------------------------------------------------
# Priors
# --------------------------------------------------------------------------------------------


def quantize_priors(priors: np.ndarray) -> np.ndarray:
    """Quantizes priors [L, C] to integer frequencies (uint32, each >= 1, rows sum to 2**24).

    * Integer input must already be such a table and is returned unchanged.
    * Float input whose entries are exactly ``freq / 2**24`` for such a table (e.g. the output
      of `load_priors`) maps back to exactly that table.
    * Other float input (non-negative, finite, rows with a positive sum) is normalized per row,
      each symbol gets ``1 + floor(p * (2**24 - C))`` and the remainder is given, one each, to
      the symbols with the largest fractional parts (ties: lowest index first).
    """
    a = np.asarray(priors)
    if a.ndim != 2 or a.shape[0] < 1 or not 2 <= a.shape[1] <= MAX_CODEBOOK_SIZE:
        raise ValueError(
            f"priors must have shape [num_levels >= 1, codebook_size in 2..{MAX_CODEBOOK_SIZE}], "
            f"got {a.shape}"
        )
    num_levels, c = a.shape
    if np.issubdtype(a.dtype, np.integer):
        f = a.astype(np.int64)
        if f.min() < 1 or np.any(f.sum(axis=1) != TOTAL):
            raise ValueError(
                f"integer priors must be frequency tables: every entry >= 1, rows summing to 2**{PRECISION}"
            )
        return f.astype(np.uint32)
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"priors must be a float or integer array, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)) or a.min() < 0:
        raise ValueError("priors must be finite and non-negative")
    scaled = a * TOTAL  # exact: multiplication by a power of two
    if np.all(scaled >= 1) and np.all(scaled < TOTAL) and np.all(scaled == np.floor(scaled)):
        f = scaled.astype(np.int64)
        if np.all(f.sum(axis=1) == TOTAL):
            return f.astype(np.uint32)
    sums = a.sum(axis=1, keepdims=True)
    if np.any(sums <= 0):
        raise ValueError("every level of the priors needs a positive total probability")
    x = a / sums * (TOTAL - c)
    fl = np.floor(x)
    frac = x - fl
    f = fl.astype(np.int64) + 1
    for r in range(num_levels):  # loop over levels only, never over symbols
        d = TOTAL - int(f[r].sum())
        if d > 0:
            q, rem = divmod(d, c)
            f[r] += q
            if rem:
                f[r, np.argsort(-frac[r], kind="stable")[:rem]] += 1
        while d < 0:  # float rounding pushed the sum over: take from the largest entries
            idx = np.argsort(-f[r], kind="stable")[: min(-d, c)]
            take = np.minimum(f[r, idx] - 1, 1)
            f[r, idx] -= take
            d += int(take.sum())
    return f.astype(np.uint32)


def priors_sha256(priors: np.ndarray) -> bytes:
    """The 32-byte identity of priors: sha256 of their quantized table (see docs/bitstream.md)."""
    f = quantize_priors(priors)
    h = hashlib.sha256()
    h.update(_PRIORS_HASH_PREFIX)
    h.update(struct.pack("<III", PRECISION, f.shape[0], f.shape[1]))
    h.update(np.ascontiguousarray(f, dtype="<u4").tobytes())
    return h.digest()


def _level_arrays(item) -> list:
    """An item of `estimate_priors`' iterable as a list of per-channel level sequences."""
    if isinstance(item, list) and item and isinstance(item[0], (list, tuple)):
        return item  # list over channels of tuples over levels
    return [item]  # one tuple/list over levels


def estimate_priors(
    code_iter: Iterable,
    num_levels: int,
    codebook_size: int,
    pseudo_count: float = 1.0,
) -> np.ndarray:
    """Per-level categorical priors [num_levels, codebook_size] (float64) from code counts.

    `code_iter` yields codes of one piece of audio: either a tuple over levels of integer
    arrays (any shape; one channel), or a list over channels of such tuples (what `Reader`
    yields). Levels past `num_levels` are ignored. Every symbol gets `pseudo_count` extra
    counts (add-one smoothing by default), so no probability is zero.
    """
    if num_levels < 1 or not 2 <= codebook_size <= MAX_CODEBOOK_SIZE:
        raise ValueError("need num_levels >= 1 and 2 <= codebook_size <= 2**20")
    if not pseudo_count > 0:
        raise ValueError("pseudo_count must be > 0 so that every symbol stays codable")
    counts = np.zeros((num_levels, codebook_size), np.float64)
    for item in code_iter:
        for levels in _level_arrays(item):
            for k, arr in enumerate(levels):
                if k >= num_levels:
                    break
                a = np.asarray(arr).reshape(-1)
                if a.size == 0:
                    continue
                if not np.issubdtype(a.dtype, np.integer):
                    raise ValueError(f"codes must be integers, got {a.dtype}")
                if a.min() < 0 or a.max() >= codebook_size:
                    raise ValueError(f"level {k} has codes outside [0, {codebook_size})")
                counts[k] += np.bincount(a, minlength=codebook_size)
    counts += pseudo_count
    return counts / counts.sum(axis=1, keepdims=True)


def save_priors(path: str | os.PathLike, priors: np.ndarray) -> str:
    """Saves priors (quantized) to .npz, or .json if the name ends so; returns the sha256 hex."""
    f = quantize_priors(priors)
    digest = priors_sha256(f).hex()
    path = os.fspath(path)
    if path.lower().endswith(".json"):
        doc = {
            "format": PRIORS_FORMAT,
            "version": PRIORS_VERSION,
            "precision": PRECISION,
            "num_levels": int(f.shape[0]),
            "codebook_size": int(f.shape[1]),
            "sha256": digest,
            "freqs": f.tolist(),
        }
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
    else:
        with open(path, "wb") as fh:  # a file handle: np.savez would append ".npz" to names
            np.savez(
                fh,
                format=np.array(PRIORS_FORMAT),
                version=np.array(PRIORS_VERSION),
                precision=np.array(PRECISION),
                sha256=np.array(digest),
                freqs=f,
            )
    return digest


def load_priors(path: str | os.PathLike) -> np.ndarray:
    """Loads priors saved by `save_priors`: float64 [L, C], exactly ``freq / 2**24``.

    Raises BitstreamError if the file is missing, unreadable, malformed or its stored sha256
    does not match its table.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise BitstreamError(f"priors path {path} is a directory, not a priors file")
    if not os.path.exists(path):
        raise BitstreamError(f"priors file not found: {path}")
    try:
        if path.lower().endswith(".json"):
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
            fmt, precision, digest = doc["format"], doc["precision"], doc["sha256"]
            freqs = np.asarray(doc["freqs"], dtype=np.int64)
        else:
            with np.load(path, allow_pickle=False) as z:
                fmt, precision = str(z["format"]), int(z["precision"])
                digest, freqs = str(z["sha256"]), np.asarray(z["freqs"], dtype=np.int64)
    except BitstreamError:
        raise
    except Exception as e:  # any parse failure is a bad priors file
        raise BitstreamError(f"cannot read priors file {path}: {type(e).__name__}: {e}") from None
    if fmt != PRIORS_FORMAT or precision != PRECISION:
        raise BitstreamError(f"{path} is not a jcodec priors file (precision {PRECISION})")
    try:
        f = quantize_priors(freqs)
    except ValueError as e:
        raise BitstreamError(f"priors file {path} is malformed: {e}") from None
    if priors_sha256(f).hex() != digest:
        raise BitstreamError(f"priors file {path} is corrupt: its sha256 does not match its table")
    return f.astype(np.float64) / TOTAL


# --------------------------------------------------------------------------------------------
# Range coding (mode 1)
# --------------------------------------------------------------------------------------------


def _constriction():
    try:
        import constriction
    except ImportError as e:  # pragma: no cover - it is a dependency
        raise ImportError(
            "entropy-coded .jcodec files need the `constriction` package: pip install constriction"
        ) from e
    return constriction


def make_models(freqs: np.ndarray) -> list:
    """One constriction categorical model per row of a quantized table (see `quantize_priors`).

    constriction's fast quantizer gives symbol i the left cumulative
    ``floor(cum_i * (2**24 - C) / sum(w)) + i`` for weights w; with ``w = freq - 1`` the
    scale is exactly 1.0 and every partial sum is an exact integer, so the model it builds is
    exactly the integer table `freqs` (checked by a pure-Python decoder in the tests).
    """
    cs = _constriction()
    f = np.asarray(freqs)
    return [cs.stream.model.Categorical((row.astype(np.float64) - 1.0), perfect=False) for row in f]


def range_encode(blocks: Sequence[tuple[np.ndarray, int]], models: Sequence) -> bytes:
    """Range codes `(codes, model index)` blocks, in order, into one stream of LE uint32 words."""
    cs = _constriction()
    enc = cs.stream.queue.RangeEncoder()
    for codes, k in blocks:
        enc.encode(np.ascontiguousarray(codes, dtype=np.int32).reshape(-1), models[k])
    return np.asarray(enc.get_compressed(), dtype="<u4").tobytes()


def range_decode(
    data: bytes | memoryview, counts: Sequence[tuple[int, int]], models: Sequence
) -> list[np.ndarray]:
    """Inverse of `range_encode` for blocks of `(number of codes, model index)`."""
    cs = _constriction()
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    try:
        dec = cs.stream.queue.RangeDecoder(words)
        return [np.asarray(dec.decode(models[k], n), dtype=np.int32) for n, k in counts]
    except Exception as e:  # constriction reports invalid data in several ways
        raise BitstreamError(
            f"range decoder rejected the payload ({type(e).__name__}: {e})"
        ) from None
