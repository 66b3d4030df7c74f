"""The .jcodec bitstream: round trips, entropy coding, robustness against bad files, fuzzing."""

import dataclasses
import io
import json
import os
import signal
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest

from jax_codec.bitstream import (
    CHANNELS_JOINT,
    FORMAT_VERSION,
    MAGIC,
    PRECISION,
    BitstreamError,
    Header,
    Reader,
    Writer,
    bits_for,
    check_model,
    entropy,
    estimate_priors,
    info,
    load_priors,
    pack_codes,
    priors_sha256,
    quantize_priors,
    read_file,
    save_priors,
    split_chunks,
    unpack_codes,
    write_file,
)

BASE_STRIDES = (4, 2, 1, 1, 1, 1, 1, 1)
HASH_A = bytes(range(32))
HASH_B = bytes(range(1, 33))


def make_header(T=100, strides=(4, 2, 1), K=None, channels=2, chunk_frames=16, cb=64, **kw):
    kw.setdefault("num_samples", max(0, T * 512 - 7))
    return Header(
        sample_rate=44100, channels=channels, num_frames=T, hop_length=512, strides=strides,
        codebook_sizes=cb, n_quantizers=K, chunk_frames=chunk_frames, model_id="base",
        model_hash=HASH_A, **kw,
    )  # fmt: skip


def random_codes(h, rng, p=None):
    cb = h.codebook_sizes[0]
    return [
        tuple(
            rng.choice(cb, -(-h.num_frames // s), p=p).astype(np.int32)
            if p is not None
            else rng.integers(0, h.codebook_sizes[k], -(-h.num_frames // s)).astype(np.int32)
            for k, s in enumerate(h.stored_strides)
        )
        for _ in range(h.streams)
    ]


def zipf(cb, s=1.0, seed=0):
    p = 1.0 / np.arange(1, cb + 1) ** s
    return (p / p.sum())[np.random.default_rng(seed).permutation(cb)]


def to_bytes(h, codes, priors=None) -> bytes:
    buf = io.BytesIO()
    with Writer(buf, h, priors=priors) as w:
        for chunk in split_chunks(codes, w.header):
            w.write_chunk(chunk)
    return buf.getvalue()


def assert_codes_equal(a, b):
    assert len(a) == len(b)
    for ca, cb in zip(a, b):
        assert len(ca) == len(cb)
        for x, y in zip(ca, cb):
            np.testing.assert_array_equal(x, y)


def header_size(data: bytes) -> int:
    return struct.unpack_from("<H", data, 10)[0]


def fix_header_crc(data: bytes) -> bytes:
    hs = header_size(data)
    if hs < 8 or hs > len(data):
        return data
    return data[: hs - 4] + struct.pack("<I", zlib.crc32(data[: hs - 4])) + data[hs:]


def read_bytes(data: bytes, priors=None):
    return Reader(io.BytesIO(data), priors=priors).read_all()


class NonSeekable(io.RawIOBase):
    """A pipe-like stream: read only, no seek, no size."""

    def __init__(self, data):
        self._b = io.BytesIO(data)

    def readable(self):
        return True

    def seekable(self):
        return False

    def readinto(self, buf):
        chunk = self._b.read(min(len(buf), 7))  # short reads, like a pipe
        buf[: len(chunk)] = chunk
        return len(chunk)


# ---------------------------------------------------------------------------------------------
# Bit packing, priors, range coder
# ---------------------------------------------------------------------------------------------


def test_pack_order_and_roundtrip():
    # Codes MSB first, concatenated, packed MSB first, zero padded: 01 10 11 -> 0b01101100.
    assert pack_codes(np.array([1, 2, 3]), 2) == bytes([0b01101100])
    assert pack_codes(np.array([1023, 0]), 10) == bytes([0xFF, 0xC0, 0x00])
    rng = np.random.default_rng(0)
    for bits in (1, 3, 7, 8, 10, 13, 16, 20):
        for n in (0, 1, 5, 64, 1001):
            codes = rng.integers(0, 2**bits, n)
            data = pack_codes(codes, bits)
            assert len(data) == (n * bits + 7) // 8
            np.testing.assert_array_equal(unpack_codes(data, n, bits), codes)
    assert [bits_for(c) for c in (2, 3, 4, 1000, 1024, 1025)] == [1, 2, 2, 10, 10, 11]


def test_quantize_priors_properties():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(1024, 0.05), size=3)
    p[0, :10] = 0.0  # zero probability still gets frequency >= 1
    f = quantize_priors(p)
    assert f.dtype == np.uint32 and f.min() >= 1
    assert (f.sum(axis=1, dtype=np.int64) == 1 << PRECISION).all()
    # freq / 2**24 is a fixed point; integer tables pass through; the hash follows the table.
    np.testing.assert_array_equal(quantize_priors(f / 2.0**PRECISION), f)
    np.testing.assert_array_equal(quantize_priors(f), f)
    assert priors_sha256(p) == priors_sha256(f) == priors_sha256(f / 2.0**PRECISION)
    assert priors_sha256(p) != priors_sha256(p[::-1])
    with pytest.raises(ValueError):
        quantize_priors(np.ones((2, 1)))
    with pytest.raises(ValueError):
        quantize_priors(-np.ones((2, 4)))


def test_priors_save_load(tmp_path):
    rng = np.random.default_rng(0)
    codes = [(rng.integers(0, 16, 100), rng.integers(0, 4, 50)) for _ in range(3)]
    pri = estimate_priors(codes, num_levels=2, codebook_size=16)
    assert pri.shape == (2, 16) and np.allclose(pri.sum(1), 1) and pri.min() > 0
    assert pri[1, 4:].max() < pri[1, :4].min()  # level 1 only used 0..3
    # Reader chunks (list over channels) are accepted too.
    assert np.allclose(estimate_priors([list(codes)], 2, 16), pri)
    for name in ("p.npz", "p.json"):
        digest = save_priors(tmp_path / name, pri)
        back = load_priors(tmp_path / name)
        assert priors_sha256(back).hex() == digest == priors_sha256(pri).hex()
    with pytest.raises(BitstreamError, match="not found"):
        load_priors(tmp_path / "missing.npz")
    with pytest.raises(BitstreamError, match="directory"):
        load_priors(tmp_path)
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(BitstreamError):
        load_priors(tmp_path / "bad.npz")
    doc = json.loads((tmp_path / "p.json").read_text())
    doc["freqs"][0][0] -= 1  # still a valid table, but not the one the sha256 names
    doc["freqs"][0][1] += 1
    (tmp_path / "t.json").write_text(json.dumps(doc))
    with pytest.raises(BitstreamError, match="sha256 does not match"):
        load_priors(tmp_path / "t.json")


def _ref_range_decode(words, freqs, blocks):
    """Pure-Python range decoder exactly as docs/bitstream.md describes it."""
    mask = (1 << 64) - 1
    words = [int(w) for w in words]
    pos = 0

    def next_word():
        nonlocal pos
        pos += 1
        return words[pos - 1] if pos - 1 < len(words) else 0

    point = (next_word() << 32) | next_word()
    lower, rng = 0, mask
    out = []
    for n, k in blocks:
        f = [int(x) for x in freqs[k]]
        cdf = np.concatenate([[0], np.cumsum(f)])
        for _ in range(n):
            scale = rng >> PRECISION
            q = ((point - lower) & mask) // scale
            assert q < 1 << PRECISION
            s = int(np.searchsorted(cdf, q, side="right")) - 1
            lower = (lower + scale * int(cdf[s])) & mask
            rng = scale * f[s]
            if rng < 1 << 32:
                lower, rng = (lower << 32) & mask, rng << 32
                point = ((point << 32) & mask) | next_word()
            out.append(s)
    return out


def _ref_range_encode(freqs, blocks):
    """Pure-Python range encoder exactly as docs/bitstream.md describes it."""
    mask, out = (1 << 64) - 1, []
    lower, rng, inverted = 0, mask, None  # inverted: [count, first_word] while undecided
    for codes, k in blocks:
        f = [int(x) for x in freqs[k]]
        cdf = np.concatenate([[0], np.cumsum(f)])
        for s in codes:
            scale = rng >> PRECISION
            rng = scale * f[s]
            new_lower = (lower + scale * int(cdf[s])) & mask
            if inverted and (new_lower + rng) & mask > new_lower:
                n, first = inverted
                carry = new_lower < lower
                out += [(first + carry) & 0xFFFFFFFF] + [0 if carry else 0xFFFFFFFF] * (n - 1)
                inverted = None
            lower = new_lower
            if rng < 1 << 32:
                rng <<= 32
                word, lower = lower >> 32, (lower << 32) & mask
                if inverted:
                    inverted[0] += 1
                elif (lower + rng) & mask > lower:
                    out.append(word)
                else:
                    inverted = [1, word]
    if rng != mask:  # seal (nothing at all for an empty message)
        point = (lower + (1 << 32) - 1) & mask
        if inverted:
            n, first = inverted
            carry = point < lower
            out += [(first + carry) & 0xFFFFFFFF] + [0 if carry else 0xFFFFFFFF] * (n - 1)
        out.append(point >> 32)
        if ((lower + rng) & mask) >> 32 == point >> 32:
            out.append(0)
    return out


def test_range_coder_is_the_documented_integer_model():
    """constriction with our models codes exactly with the integer frequency table."""
    rng = np.random.default_rng(1)
    for trial in range(40):
        c = int(rng.integers(2, 300)) if trial % 2 else 2  # binary: long runs, carries

        p = rng.dirichlet(np.full(c, 0.1), size=2)
        f = quantize_priors(p)
        models = entropy.make_models(f)
        blocks = [
            (rng.choice(c, int(rng.integers(1, 150)), p=0.5 * p[k] + 0.5 / c), k) for k in (0, 1, 0)
        ]
        data = entropy.range_encode(blocks, models)
        assert _ref_range_encode(f, blocks) == np.frombuffer(data, "<u4").tolist()
        ref = _ref_range_decode(np.frombuffer(data, "<u4"), f, [(len(b), k) for b, k in blocks])
        assert ref == [int(x) for b, _ in blocks for x in b]
        dec = entropy.range_decode(data, [(len(b), k) for b, k in blocks], models)
        assert_codes_equal([tuple(dec)], [tuple(b for b, _ in blocks)])


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "T,strides,K,channels,chunk_frames,cb",
    [
        (100, (4, 2, 1), None, 2, 16, 64),
        (101, (4, 2, 1), 2, 1, 8, 1000),  # K < L, codebook not a power of two
        (7, (4, 2, 1), 1, 3, 4, 2),  # one chunk, shorter than chunk_frames, 1-bit codes
        (333, BASE_STRIDES, 5, 2, 1024, 1024),
        (1, (1,), None, 1, 1, 4096),
        (64, (8, 4), None, 2, 64, 33),  # exactly one full chunk
        (0, (2, 1), None, 2, 2, 16),  # empty audio: no chunks
    ],
)
@pytest.mark.parametrize("mode", [0, 1])
def test_roundtrip(T, strides, K, channels, chunk_frames, cb, mode, tmp_path):
    h = make_header(T, strides, K, channels, chunk_frames, cb)
    rng = np.random.default_rng(T)
    codes = random_codes(h, rng, p=zipf(cb) if mode else None)
    priors = estimate_priors([codes], h.num_levels, cb) if mode else None
    path = tmp_path / "x.jcodec"
    written = write_file(path, h, codes, priors=priors)
    assert written.entropy_mode == mode
    back_header, back = read_file(path, priors=priors)
    assert back_header == written
    assert_codes_equal(back, codes)
    # Streaming: chunk by chunk, through a pipe-like stream, equal to split_chunks.
    with Reader(NonSeekable(path.read_bytes()), priors=priors) as r:
        for got, want in zip(r, split_chunks(codes, h), strict=True):
            assert_codes_equal(got, want)
    assert sorted(os.listdir(tmp_path)) == ["x.jcodec"]


def test_writer_accepts_extra_levels_and_checks_input():
    h = make_header(T=20, K=2, chunk_frames=8)
    rng = np.random.default_rng(0)
    full = [tuple(rng.integers(0, 64, -(-20 // s)) for s in h.strides) for _ in range(2)]
    data = to_bytes(h, full)  # all 3 levels given, the first 2 stored
    assert_codes_equal(read_bytes(data), [c[:2] for c in full])
    w = Writer(io.BytesIO(), h)
    good = next(split_chunks(full, h))
    bad_value = [tuple(a.copy() for a in c) for c in good]
    bad_value[1][0][0] = 64
    for bad in (good[:1], [(c[0],) for c in good], [(c[0][:-1], c[1]) for c in good], bad_value):
        with pytest.raises(ValueError):
            w.write_chunk(bad)
    with pytest.raises(ValueError):
        w.write_chunk(good, num_frames=7)
    w.write_chunk(good)
    with pytest.raises(ValueError, match="frames were written"):
        w.close()


def test_entropy_coding_smaller_on_skewed_codes():
    h = make_header(T=2048, strides=BASE_STRIDES, cb=1024, chunk_frames=512)
    rng = np.random.default_rng(0)
    p = zipf(1024, s=1.0)
    priors = estimate_priors([random_codes(h, rng, p)], 8, 1024)  # from other "training" data
    codes = random_codes(h, rng, p)
    packed, ranged = to_bytes(h, codes), to_bytes(h, codes, priors)
    assert_codes_equal(read_bytes(ranged, priors), codes)
    gain = 1 - len(ranged) / len(packed)
    assert gain > 0.2, gain  # measured ~25% at s=1.0 (10 bits -> ~7.5 bits/code)
    # Uniform codes: every chunk falls back to bit packing, so the file is no larger.
    uni = random_codes(h, rng)
    assert len(to_bytes(h, uni, priors)) <= len(to_bytes(h, uni)) + 0


def test_info_values(tmp_path):
    h = make_header(T=300, strides=BASE_STRIDES, K=4, cb=1024, chunk_frames=64)
    codes = random_codes(h, np.random.default_rng(0))
    path = tmp_path / "a.jcodec"
    write_file(path, h, codes)
    d = info(path)
    size = path.stat().st_size
    dur = h.num_samples / 44100
    assert d["file_size_bytes"] == size and d["num_chunks"] == 5
    assert d["duration_seconds"] == pytest.approx(dur)
    assert d["actual_kbps"] == pytest.approx(size * 8 / dur / 1000)
    per_channel = 44100 / 512 * (1 / 4 + 1 / 2 + 1 + 1) * 10 / 1000
    assert d["nominal_kbps_per_channel"] == pytest.approx(per_channel)
    assert d["nominal_kbps"] == pytest.approx(2 * per_channel)
    assert d["actual_kbps"] > d["nominal_kbps"]  # container overhead and padding
    assert d["model_id"] == "base" and d["model_hash"] == HASH_A.hex()
    assert d["entropy_mode"] == 0 and d["priors_sha256"] is None and d["bits"] == [10] * 4
    assert d["strides"] == list(BASE_STRIDES) and d["n_quantizers"] == 4
    assert info(path, verify=True) == d
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(BitstreamError):
        info(path)


def test_check_model():
    h = make_header()
    check_model(h, "base", HASH_A)
    check_model(h, "renamed", HASH_A.hex())
    with pytest.raises(
        BitstreamError, match=r"model base \(hash 000102030405….*loaded model is big .*--checkpoint"
    ):
        check_model(h, "big", HASH_B)


# ---------------------------------------------------------------------------------------------
# Bad files
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_files():
    """(header, codes, packed file, priors, range-coded file): small, several chunks."""
    h = make_header(T=40, strides=(4, 2, 1), channels=2, chunk_frames=16, cb=16)
    rng = np.random.default_rng(0)
    codes = random_codes(h, rng, p=zipf(16, 1.5))
    priors = estimate_priors([codes], 3, 16)
    return h, codes, to_bytes(h, codes), priors, to_bytes(h, codes, priors)


def test_bad_paths(tmp_path):
    with pytest.raises(BitstreamError, match="no such file"):
        Reader(tmp_path / "nope.jcodec")
    with pytest.raises(BitstreamError, match="directory"):
        Reader(tmp_path)
    with pytest.raises(BitstreamError, match="directory"):
        info(tmp_path)
    (tmp_path / "empty.jcodec").write_bytes(b"")
    with pytest.raises(BitstreamError, match="empty file"):
        Reader(tmp_path / "empty.jcodec")


def test_bad_headers(small_files):
    h, codes, data, _, _ = small_files
    with pytest.raises(BitstreamError, match="bad magic"):
        read_bytes(b"RIFF" + data[4:])
    with pytest.raises(BitstreamError, match="empty"):
        read_bytes(b"")
    future = bytearray(data)
    future[8:10] = struct.pack("<H", FORMAT_VERSION + 1)
    with pytest.raises(
        BitstreamError, match=f"unsupported .jcodec format version {FORMAT_VERSION + 1}"
    ):
        read_bytes(fix_header_crc(bytes(future)))
    flipped = bytearray(data)
    flipped[20] ^= 0x10  # sample_rate
    with pytest.raises(BitstreamError, match="header CRC32 mismatch"):
        read_bytes(bytes(flipped))
    # Every single-bit flip in the header is caught.
    hs = header_size(data)
    for i in range(hs * 8):
        bad = bytearray(data)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(BitstreamError):
            read_bytes(bytes(bad))


def test_truncated_anywhere(small_files):
    _, _, data, priors, ranged = small_files
    for d, pri in ((data, None), (ranged, priors)):
        for n in range(len(d)):
            with pytest.raises(BitstreamError):
                read_bytes(d[:n], pri)
            with pytest.raises(BitstreamError):
                Reader(NonSeekable(d[:n]), priors=pri).read_all()
        for n in (0, 3, 50, len(d) - 1):
            with pytest.raises(BitstreamError, match="truncated|empty"):
                read_bytes(d[:n], pri)


def _with_header(data, **changes):
    """The file with header fields replaced (valid CRC), bypassing Header validation."""
    h = Header.from_bytes(data[: header_size(data)])
    h2 = dataclasses.replace(h, **changes)
    object.__setattr__(h2, "validate", lambda: None)
    return h2.to_bytes() + data[header_size(data) :]


@pytest.mark.parametrize(
    "changes",
    [
        {"num_frames": 1 << 40, "num_samples": 1},
        {"num_frames": (1 << 40) + 1},
        {"chunk_frames": 1 << 20},
        {"chunk_frames": 3},  # not a multiple of lcm(strides)
        {"channels": 256, "chunk_frames": 1 << 20},
        {"codebook_sizes": (1 << 20,) * 3, "chunk_frames": 1 << 20, "channels": 256},
        {"channels": 0},
        {"sample_rate": 0},
        {"hop_length": 0},
        {"frame_rate": float("nan")},
        {"n_quantizers": 4},
        {"strides": (0, 2, 1)},
        {"num_samples": 10**12},
        {"entropy_mode": 7},
        {"entropy_mode": 1},  # without priors hash
        {"num_frames": 39},  # chunk frame counts no longer agree
        {"num_frames": 200, "num_samples": 1},  # more chunks promised than present
        {"num_frames": 16, "num_samples": 1},  # fewer chunks promised than present
    ],
)
def test_header_lying_about_lengths(small_files, changes):
    data = small_files[2]
    bad = _with_header(data, **changes)
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 30.0)  # a hang guard, not a speed test
    tracemalloc.start()
    try:
        with pytest.raises(BitstreamError):
            read_bytes(bad)
        with pytest.raises(BitstreamError):
            Reader(NonSeekable(bad)).read_all()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    # A lying length must not make the reader allocate what the header promises.
    assert peak < 4 << 20, peak


def _chunk_offsets(data):
    """Offsets of every chunk header (walking the valid file)."""
    off, out = header_size(data), []
    while data[off : off + 4] == b"JCCK":
        out.append(off)
        off += 20 + struct.unpack_from("<I", data, off + 16)[0] + 4
    return out, off


def test_bad_chunks(small_files):
    h, codes, data, priors, ranged = small_files
    offs, end = _chunk_offsets(data)
    assert len(offs) == 3 and data[end : end + 4] == b"JCEN"
    # Flipped payload bit -> chunk CRC.
    bad = bytearray(data)
    bad[offs[1] + 25] ^= 1
    with pytest.raises(BitstreamError, match="chunk 1 CRC32 mismatch"):
        read_bytes(bytes(bad))
    # Chunk header lying about its payload size (up to 4 GiB) -> rejected before reading it.
    for size in (0, 1, 2**31, 2**32 - 1):
        bad = bytearray(data)
        bad[offs[0] + 16 : offs[0] + 20] = struct.pack("<I", size)
        with pytest.raises(BitstreamError, match="payload size"):
            read_bytes(bytes(bad))
    # A chunk dropped, duplicated or swapped; trailer count wrong; trailing garbage.
    dropped = data[: offs[1]] + data[offs[2] :]
    with pytest.raises(BitstreamError, match="chunk 1 .*index 2"):
        read_bytes(dropped)
    with pytest.raises(BitstreamError):
        read_bytes(data[: offs[2]] + data[offs[1] : offs[2]] + data[offs[2] :])
    trailer = struct.pack("<4sIQ", b"JCEN", 2, 40)
    with pytest.raises(BitstreamError, match="chunk count mismatch"):
        read_bytes(data[:end] + trailer + struct.pack("<I", zlib.crc32(trailer)))
    no_last = struct.pack("<4sIQ", b"JCEN", 2, 32)
    with pytest.raises(BitstreamError, match="chunk count mismatch"):
        read_bytes(data[: offs[2]] + no_last + struct.pack("<I", zlib.crc32(no_last)))
    with pytest.raises(BitstreamError, match="trailing data"):
        read_bytes(data + b"\0")
    with pytest.raises(BitstreamError, match="without an end marker"):
        read_bytes(data[:end])


def test_code_out_of_range(small_files):
    """A well-formed file (valid CRCs) whose codes do not fit the header's codebook size."""
    h = make_header(T=8, strides=(1,), channels=1, chunk_frames=8, cb=1024)
    codes = [(np.array([0, 1, 999, 1000, 1023, 5, 6, 7], np.int32),)]
    data = to_bytes(h, codes)
    bad = _with_header(data, codebook_sizes=(1000,))  # still 10 bits per code
    with pytest.raises(BitstreamError, match="code 1023 >= codebook_size 1000"):
        read_bytes(bad)


def test_priors_missing_or_wrong(small_files, tmp_path):
    h, codes, _, priors, ranged = small_files
    d = info(io.BytesIO(ranged), verify=True)  # structure and CRCs need no priors
    assert d["entropy_mode"] == 1 and d["priors_sha256"] == priors_sha256(priors).hex()
    assert d["file_size_bytes"] == len(ranged) and d["num_chunks"] == 3
    r = Reader(io.BytesIO(ranged))  # header is readable without priors
    assert r.header.entropy_mode == 1 and r.header.priors_sha256 == priors_sha256(priors)
    with pytest.raises(BitstreamError, match="range coded with priors sha256 .*priors="):
        r.read_all()
    other = estimate_priors([codes], 3, 16, pseudo_count=5.0)
    with pytest.raises(BitstreamError, match="but the priors given have sha256"):
        Reader(io.BytesIO(ranged), priors=other)
    save_priors(tmp_path / "p.npz", priors)
    assert_codes_equal(Reader(io.BytesIO(ranged), priors=tmp_path / "p.npz").read_all(), codes)
    with pytest.raises(BitstreamError, match="not found"):
        Reader(io.BytesIO(ranged), priors=tmp_path / "missing.npz")
    # Range-coded garbage with valid CRCs -> BitstreamError (decoder error or code range).
    offs, _ = _chunk_offsets(ranged)
    size = struct.unpack_from("<I", ranged, offs[0] + 16)[0]
    payload = np.random.default_rng(0).bytes(size)
    head = ranged[offs[0] : offs[0] + 20]
    chunk = head + payload + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head)))
    garbled = ranged[: offs[0]] + chunk + ranged[offs[0] + 24 + size :]
    try:
        out = read_bytes(garbled, priors)
        assert not all(np.array_equal(a, b) for ca, cb in zip(out, codes) for a, b in zip(ca, cb))
    except BitstreamError:
        pass


def test_atomic_write(tmp_path):
    h = make_header(T=40, chunk_frames=16)
    codes = random_codes(h, np.random.default_rng(0))
    path = tmp_path / "out.jcodec"
    with pytest.raises(RuntimeError, match="boom"):
        with Writer(path, h) as w:
            w.write_chunk(next(split_chunks(codes, h)))
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    # Too few frames: close fails, nothing is left.
    w = Writer(path, h)
    w.write_chunk(next(split_chunks(codes, h)))
    with pytest.raises(ValueError):
        w.close()
    assert os.listdir(tmp_path) == []
    # An existing file survives a failed rewrite and is replaced by a successful one.
    path.write_bytes(b"old")
    with pytest.raises(ValueError):
        with Writer(path, h) as w:
            w.write_chunk([(np.zeros(3, np.int32),)] * 2)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.jcodec"]
    # An abandoned writer (never closed) leaves no temporary file behind.
    w = Writer(path, h)
    del w
    assert os.listdir(tmp_path) == ["out.jcodec"]
    write_file(path, h, codes)
    assert_codes_equal(read_file(path)[1], codes)
    assert os.listdir(tmp_path) == ["out.jcodec"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0o600


# ---------------------------------------------------------------------------------------------
# Fuzzing
# ---------------------------------------------------------------------------------------------

# (offset, struct format) of every header field after the magic.
_HEADER_FIELDS = [
    (8, "<H"), (10, "<H"), (12, "<B"), (13, "<B"), (14, "<B"), (15, "<B"), (16, "<H"),
    (18, "<B"), (19, "<B"), (20, "<I"), (24, "<I"), (28, "<I"), (32, "<I"), (36, "<Q"), (44, "<Q"),
    (52, "<d"), (60, "32s"), (92, "32s"), (124, "<Q"), (132, "<I"), (136, "<I"), (140, "<I"),
    (144, "<I"),
]  # fmt: skip
_CHUNK_FIELDS = [(0, "4s"), (4, "<I"), (8, "<I"), (12, "<B"), (13, "3s"), (16, "<I")]


def _random_value(fmt, rng):
    size = struct.calcsize(fmt)
    choice = rng.integers(4)
    if choice == 0:
        return bytes(size)
    if choice == 1:
        return b"\xff" * size
    if choice == 2 and fmt[-1] in "BHIQ":
        bits = size * 8
        return struct.pack(fmt, int(rng.integers(0, 1 << min(bits, 63))) >> int(rng.integers(bits)))
    return rng.bytes(size)


def _mutate(data: bytes, rng) -> bytes:
    d = bytearray(data)
    op = rng.integers(9)
    if op == 0:  # bit flips
        for _ in range(rng.integers(1, 4)):
            i = int(rng.integers(len(d) * 8))
            d[i // 8] ^= 1 << (i % 8)
    elif op == 1:  # byte insert
        d[int(rng.integers(len(d) + 1)) : 0] = rng.bytes(int(rng.integers(1, 5)))
    elif op == 2:  # byte delete
        i = int(rng.integers(len(d)))
        del d[i : i + int(rng.integers(1, 5))]
    elif op == 3:  # truncation
        del d[int(rng.integers(len(d))) :]
    elif op in (4, 5):  # header field overwrite; op 5 also repairs the header CRC
        off, fmt = _HEADER_FIELDS[int(rng.integers(len(_HEADER_FIELDS)))]
        d[off : off + struct.calcsize(fmt)] = _random_value(fmt, rng)
        if op == 5:
            return fix_header_crc(bytes(d))
    elif op == 6:  # chunk header field overwrite, sometimes with the chunk CRC repaired
        offs, _ = _chunk_offsets(data)
        c = offs[int(rng.integers(len(offs)))]
        size = struct.unpack_from("<I", data, c + 16)[0]
        off, fmt = _CHUNK_FIELDS[int(rng.integers(len(_CHUNK_FIELDS)))]
        d[c + off : c + off + struct.calcsize(fmt)] = _random_value(fmt, rng)
        if rng.integers(2):
            d[c + 20 + size : c + 24 + size] = struct.pack(
                "<I", zlib.crc32(bytes(d[c : c + 20 + size]))
            )
    elif op == 7:  # duplicate or move a slice
        i, j = sorted(int(x) for x in rng.integers(0, len(d), 2))
        d[int(rng.integers(len(d))) : 0] = d[i:j]
    else:  # random overwrite of a run of bytes
        i = int(rng.integers(len(d)))
        n = int(rng.integers(1, 9))
        d[i : i + n] = rng.bytes(len(d[i : i + n]))
    return bytes(d)


_LAYOUT_FIELDS = (
    "channels",
    "channel_mode",
    "num_frames",
    "strides",
    "codebook_sizes",
    "n_quantizers",
    "chunk_frames",
)


class _Hang(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Hang("a read took more than 30 s: a hang")


def test_fuzz_mutations(small_files):
    h, codes, data, priors, ranged = small_files
    rng = np.random.default_rng(1234)
    old = signal.signal(signal.SIGALRM, _on_alarm)
    n, raised, slowest = 5000, 0, 0.0
    try:
        for i in range(n):
            src, pri = (data, None) if i % 2 else (ranged, priors)
            bad = _mutate(src, rng)
            t0 = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, 30.0)  # a hang guard, not a speed test
            try:
                stream = NonSeekable(bad) if i % 5 == 0 else io.BytesIO(bad)
                r = Reader(stream, priors=pri)
                out = r.read_all()
                # Accepted: a header edit with a repaired CRC makes a valid file. If it kept the
                # fields that define the code layout, the codes must have survived.
                if all(getattr(r.header, f) == getattr(h, f) for f in _LAYOUT_FIELDS):
                    assert_codes_equal(out, codes)
            except BitstreamError as e:
                raised += 1
                assert "\n" not in str(e)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            slowest = max(slowest, time.perf_counter() - t0)
    finally:
        signal.signal(signal.SIGALRM, old)
    # Mutations that keep the file valid exist (e.g. a repaired header with another model_id
    # byte, or a no-op overwrite), but nearly all must be rejected.
    assert raised > 0.85 * n, raised
    print(f"slowest read {slowest:.3f} s")  # reported, not asserted (the alarm catches hangs)


def test_magic_constant():
    assert MAGIC == b"JCODEC\x00\x1a" and len(MAGIC) == 8


# ---------------------------------------------------------------------------------------------
# Joint stereo (format version 2) and version compatibility
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("mode", [0, 1])
def test_joint_roundtrip(channels, mode, tmp_path):
    """One code stream, whatever the channel count; the bit accounting counts it once."""
    h = make_header(T=101, strides=BASE_STRIDES, K=5, channels=channels, chunk_frames=32,
                    cb=1024, channel_mode=CHANNELS_JOINT)  # fmt: skip
    assert h.joint and h.streams == 1 and h.version == FORMAT_VERSION == 3
    rng = np.random.default_rng(channels)
    codes = random_codes(h, rng, p=zipf(1024) if mode else None)
    assert len(codes) == 1
    priors = estimate_priors([codes], 8, 1024) if mode else None
    path = tmp_path / "j.jcodec"
    written = write_file(path, h, codes, priors=priors)
    back, got = read_file(path, priors=priors)
    assert back == written and back.channel_mode == CHANNELS_JOINT and back.channels == channels
    assert_codes_equal(got, codes)
    with Reader(NonSeekable(path.read_bytes()), priors=priors) as r:
        for chunk, want in zip(r, split_chunks(codes, h), strict=True):
            assert len(chunk) == 1
            assert_codes_equal(chunk, want)
    per_stream = 44100 / 512 * (1 / 4 + 1 / 2 + 3) * 10 / 1000
    d = info(path)
    assert d["nominal_kbps"] == pytest.approx(per_stream)  # one stream, not x channels
    assert d["nominal_kbps_per_stream"] == pytest.approx(per_stream)
    assert d["nominal_kbps_per_channel"] == pytest.approx(per_stream / channels)
    assert d["channel_mode"] == 1 and d["code_streams"] == 1
    assert d["channel_mode_name"] == "joint stereo" and d["format_version"] == 3
    if not mode:  # bit packed: the payloads hold one stream
        dual = dataclasses.replace(h, channel_mode=0)
        assert path.stat().st_size - h.header_size - 20 == sum(
            24 + h.packed_payload_size(h.chunk_frames_at(i)) for i in range(h.num_chunks)
        )
        assert dual.packed_payload_size(32) == channels * h.packed_payload_size(32)


def test_joint_header_rules():
    with pytest.raises(BitstreamError, match="joint stereo with 3 channels"):
        make_header(channels=3, channel_mode=CHANNELS_JOINT).to_bytes()
    with pytest.raises(BitstreamError, match="needs format version 2"):
        make_header(channel_mode=CHANNELS_JOINT, version=1).to_bytes()
    with pytest.raises(BitstreamError, match="channel_mode 2"):
        make_header(channel_mode=2).to_bytes()
    with pytest.raises(BitstreamError, match="version 4"):
        make_header(version=4).to_bytes()
    h = make_header(T=20, channel_mode=CHANNELS_JOINT)
    rng = np.random.default_rng(0)
    w = Writer(io.BytesIO(), h)
    two = next(split_chunks(random_codes(make_header(T=20), rng), make_header(T=20)))
    with pytest.raises(ValueError, match=r"1 code stream\(s\) \(one joint-stereo stream\)"):
        w.write_chunk(two)  # dual-mono codes given to a joint header
    w.abort()
    # A file whose channel_mode byte says something unknown (valid CRC) is refused.
    data = bytearray(to_bytes(h, random_codes(h, rng)))
    data[18] = 2
    with pytest.raises(BitstreamError, match="channel_mode 2"):
        read_bytes(fix_header_crc(bytes(data)))
    data[18], data[19] = 1, 1  # the reserved byte after it
    with pytest.raises(BitstreamError, match="reserved"):
        read_bytes(fix_header_crc(bytes(data)))


# A version-1 file as the version-1 writer (commit 2817257) made it: 2 channels, strides (2, 1),
# 16 codes, 9 frames in chunks of 4, resampled from 48 kHz.
V1_FILE = bytes.fromhex(
    "4a434f444543001a01009a00000202020200000044ac000080bb00000002000004000000fb110000000000"
    "0009000000000000000000000080885540000102030405060708090a0b0c0d0e0f101112131415161718"
    "191a1b1c1d1e1f0000000000000000000000000000000000000000000000000000000000000000921300"
    "0000000000020000001000000001000000100000007631058046e84a43434b0000000004000000000000"
    "0006000000ac8a4f20f3ac0f2f34204a43434b010000000400000000000000060000000c0469003464db"
    "e9c68c4a43434b02000000010000000000000004000000706020f02ffc024f4a43454e03000000090000"
    "0000000000dbdb5007"
)
V1_CODES = [
    ([10, 12, 0, 12, 7], [8, 10, 4, 15, 0, 4, 6, 9, 6]),
    ([2, 0, 0, 0, 2], [15, 3, 10, 12, 3, 4, 6, 4, 15]),
]


def test_version_1_files_still_decode():
    h = Header.from_bytes(V1_FILE[: header_size(V1_FILE)])
    assert h.version == 1 and h.channel_mode == 0 and h.streams == 2
    assert h.original_sample_rate == 48000 and h.model_id == "v1"
    assert_codes_equal(read_bytes(V1_FILE), [tuple(np.array(a) for a in c) for c in V1_CODES])
    assert info(io.BytesIO(V1_FILE))["format_version"] == 1
    # Writing version 1 (independent channels only) gives the old bytes back.
    codes = [tuple(np.array(a, np.int32) for a in c) for c in V1_CODES]
    assert to_bytes(h, codes) == V1_FILE
    # ... and a version-1 header with the old reserved field non-zero is still refused.
    bad = bytearray(V1_FILE)
    bad[18] = 1
    with pytest.raises(BitstreamError, match="reserved field is not zero"):
        read_bytes(fix_header_crc(bytes(bad)))


def test_newer_version_is_refused_with_the_fix(monkeypatch):
    """A reader given a version above the one it knows names the problem and the fix; the
    version-1 reader (simulated by lowering the version this code knows) refuses a joint file
    the same way, before reading anything it cannot understand."""
    from jax_codec.bitstream import header as hdr

    h = make_header(T=20, channel_mode=CHANNELS_JOINT, version=2)
    data = to_bytes(h, random_codes(h, np.random.default_rng(0)))
    h3 = make_header(T=20, gain_db=-6.5)
    data3 = to_bytes(h3, random_codes(h3, np.random.default_rng(1)))
    future = bytearray(data)
    future[8:10] = struct.pack("<H", FORMAT_VERSION + 1)
    with pytest.raises(BitstreamError) as e:
        read_bytes(fix_header_crc(bytes(future)))
    msg = str(e.value)
    assert f"unsupported .jcodec format version {FORMAT_VERSION + 1}" in msg
    assert "upgrade jax_codec" in msg and "\n" not in msg
    monkeypatch.setattr(hdr, "FORMAT_VERSION", 1)
    with pytest.raises(
        BitstreamError, match=r"version 2: this reader reads versions 1 to 1.*upgrade"
    ):
        read_bytes(data)
    with pytest.raises(BitstreamError, match="unsupported .jcodec format version 2"):
        info(io.BytesIO(data))
    assert_codes_equal(read_bytes(V1_FILE), [tuple(np.array(a) for a in c) for c in V1_CODES])
    # A version-2 reader refuses a version-3 file (one with a gain) the same way.
    monkeypatch.setattr(hdr, "FORMAT_VERSION", 2)
    with pytest.raises(BitstreamError, match=r"version 3: this reader reads versions 1 to 2"):
        read_bytes(data3)


def test_gain_round_trips_and_needs_version_3(tmp_path):
    """Version 3 stores the decoder's gain (float32 after the model id, inside the header CRC);
    version-2 files read back with gain 0; a gain is refused in an older version, and a
    non-finite or absurd one anywhere."""
    h = make_header(T=50, channels=2, gain_db=-7.25)
    codes = random_codes(h, np.random.default_rng(2))
    data = to_bytes(h, codes)
    back = Header.from_bytes(data[: h.header_size])
    assert back.version == 3 and back.gain_db == -7.25 and back == h
    assert back.gain == pytest.approx(10 ** (-7.25 / 20))
    assert info(io.BytesIO(data))["gain_db"] == -7.25
    assert_codes_equal(read_bytes(data), codes)
    # the gain sits just before the header CRC, and is covered by it
    at = h.header_size - 8
    assert struct.unpack("<f", data[at : at + 4])[0] == -7.25
    bad = bytearray(data)
    bad[at + 3] ^= 0x01
    with pytest.raises(BitstreamError, match="header CRC32 mismatch"):
        read_bytes(bytes(bad))
    bad[at : at + 4] = struct.pack("<f", float("nan"))
    with pytest.raises(BitstreamError, match="gain_db nan"):
        read_bytes(fix_header_crc(bytes(bad)))
    # version 2: 4 bytes shorter, gain 0, still read
    h2 = make_header(T=50, channels=2, version=2)
    data2 = to_bytes(h2, codes)
    assert h2.header_size == h.header_size - 4
    back2 = Header.from_bytes(data2[: h2.header_size])
    assert back2.version == 2 and back2.gain_db == 0.0
    assert_codes_equal(read_bytes(data2), codes)
    with pytest.raises(BitstreamError, match="gain_db needs format version 3"):
        make_header(gain_db=1.0, version=2).to_bytes()
    with pytest.raises(BitstreamError, match="gain_db 200"):
        make_header(gain_db=200.0).to_bytes()
    # the value a reader sees is the float32 one, from the start
    assert make_header(gain_db=0.1).gain_db == float(np.float32(0.1))


def test_fuzz_joint_mutations():
    """The fuzzing of `test_fuzz_mutations` on a joint-stereo file, packed and range coded."""
    h = make_header(T=40, strides=(4, 2, 1), channels=2, chunk_frames=16, cb=16,
                    channel_mode=CHANNELS_JOINT)  # fmt: skip
    rng = np.random.default_rng(7)
    codes = random_codes(h, rng, p=zipf(16, 1.5))
    priors = estimate_priors([codes], 3, 16)
    files = ((to_bytes(h, codes), None), (to_bytes(h, codes, priors), priors))
    n, raised = 1500, 0
    for i in range(n):
        src, pri = files[i % 2]
        bad = _mutate(src, rng)
        try:
            r = Reader(NonSeekable(bad) if i % 5 == 0 else io.BytesIO(bad), priors=pri)
            out = r.read_all()
            assert len(out) == r.header.streams
            if all(getattr(r.header, f) == getattr(h, f) for f in _LAYOUT_FIELDS):
                assert_codes_equal(out, codes)
        except BitstreamError as e:
            raised += 1
            assert "\n" not in str(e)
    assert raised > 0.85 * n, raised
