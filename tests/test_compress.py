"""`compress` / `decompress` / `info FILE` / `priors`: round trips, bitrate accounting, entropy
coding, model checks, clean errors, atomic outputs, bounded memory.

Everything runs in-process through `jax_codec.__main__.main` (one set of compiled functions for
the whole module) on a small runlocal checkpoint, with windows of 64 frames so that every file
longer than ~1.2 s reuses the same compiled shapes.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import louder, subprocess_env

from jax_codec import bitstream, levels
from jax_codec.__main__ import main
from jax_codec.config import load_config
from jax_codec.data.synthetic import render_song
from jax_codec.inference import chunked
from jax_codec.inference import compress as cz
from jax_codec.inference import streaming as st
from jax_codec.inference.api import load_codec, model_fingerprint

WINDOW = ["--window_frames", "64"]
CONFIG = "configs/base.py:runlocal"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A `best/` export of louder random runlocal weights: (workdir, codec, params)."""
    from jax_codec.training.loop import BestExporter

    config = load_config(CONFIG)
    _, params, _ = load_codec(config=config, seed=0)
    params = louder(params)
    workdir = str(tmp_path_factory.mktemp("run"))
    BestExporter(workdir).maybe_export(0, 1.0, params, config)
    codec, loaded, config2 = load_codec(workdir)
    assert model_fingerprint(config2, loaded) == model_fingerprint(config, params)
    return workdir, codec, loaded


def cli(capsys, *argv):
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, code=None, match=None):
    assert rc != 0 and (code is None or rc == code), (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    if match:
        assert re.search(match, lines[0]), lines[0]


def make_music(path, seconds, rate, channels, seed=0, subtype=None):
    n = int(round(seconds * rate))
    x = render_song(seconds + 0.05, seed, rate, channels)
    x = (x[:n] if channels > 1 else x[:n, None]).astype(np.float32)
    sf.write(path, x, rate, subtype=subtype)
    return sf.read(path, dtype="float32", always_2d=True)[0]  # as the file holds it


def loudness(x, rate):
    """BS.1770-4 integrated loudness of ``[C, T]`` (pyloudnorm, as the evaluation measures)."""
    from jax_codec.evaluation import metrics

    return metrics.loudness(x, rate)


def expected_size(h) -> int:
    """The file size from the header alone, by the format's bit accounting (docs/bitstream.md)."""
    bits = [max(1, math.ceil(math.log2(c))) for c in h.codebook_sizes[: h.n_quantizers]]
    size = h.header_size + 20  # header, end marker
    for i in range(-(-h.num_frames // h.chunk_frames)):
        frames = min(h.chunk_frames, h.num_frames - i * h.chunk_frames)
        per_channel = sum(
            math.ceil(-(-frames // s) * b / 8) for s, b in zip(h.strides[: h.n_quantizers], bits)
        )
        size += 24 + h.channels * per_channel  # chunk header + CRC, payload
    return size


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "seconds,rate,channels",
    [(1.3, 44100, 1), (2.05, 22050, 2), (3.71, 48000, 2), (1.6003, 48000, 1)],
)
def test_round_trip(ckpt, tmp_path, capsys, seconds, rate, channels):
    workdir, codec, params = ckpt
    src, jc = tmp_path / "in.flac", tmp_path / "x.jcodec"
    x = make_music(src, seconds, rate, channels, seed=channels)
    rc, out, err = cli(capsys, "compress", src, jc, "--checkpoint", workdir, *WINDOW, "--json")
    assert rc == 0, err
    report = json.loads(out)

    # Codes: exactly chunked_encode of the whole input resampled to the model rate and brought
    # to the level the model was trained at.
    xm = x if rate == codec.sample_rate else soxr.resample(x, rate, codec.sample_rate, "HQ")
    xm = np.ascontiguousarray(xm.T)
    target = load_config(CONFIG).data.normalize_db
    gain_in = levels.normalizing_gain(levels.level_db(x.T, rate), np.abs(x).max(), target)
    xn = xm * np.float32(levels.db_to_gain(gain_in))
    assert report["input_level_db"] == pytest.approx(levels.level_db(x.T, rate))
    ref_codes = chunked.chunked_encode(codec, params, xn, None, window_frames=64)
    header, codes = bitstream.read_file(jc)
    assert header.channels == channels and header.original_sample_rate == rate
    assert header.num_samples == xm.shape[1] and header.n_quantizers == codec.num_quantizers
    for ch in range(channels):
        for level, want in enumerate(ref_codes):
            np.testing.assert_array_equal(codes[ch][level], want[ch])

    # Size: bit accounting from the header; actual and nominal kbps.
    size = os.path.getsize(jc)
    assert size == expected_size(header) == report["size_bytes"] == report["packed_size_bytes"]
    facts = bitstream.info(str(jc))
    assert facts["actual_kbps"] == pytest.approx(size * 8 / facts["duration_seconds"] / 1e3)
    assert facts["nominal_kbps"] == pytest.approx(channels * codec.bitrate_kbps())
    assert report["actual_kbps"] == pytest.approx(size * 8 / (len(x) / rate) / 1e3)
    assert report["entropy_coded"] is False and report["entropy_gain"] == 0.0

    # Default decompress: original rate, channels and length.
    out_wav = tmp_path / "y.wav"
    rc, _, err = cli(capsys, "decompress", jc, out_wav, "--checkpoint", workdir, *WINDOW)
    assert rc == 0, err
    y, sr = sf.read(out_wav, dtype="float32", always_2d=True)
    assert sr == rate and y.shape == x.shape
    # The header gain gives the decoded file the input's loudness (BS.1770; 16-bit aside).
    assert report["gain_db"] == header.gain_db != -gain_in
    assert loudness(y.T, rate) == pytest.approx(loudness(x.T, rate), abs=0.05)

    # At the model rate, as float: the windowed decode of those codes times the header gain.
    decoded = chunked.chunked_decode(codec, params, ref_codes, xm.shape[1], window_frames=64)
    decoded = decoded * np.float32(header.gain)
    ref = np.clip(decoded, -1, 1)  # files are written within [-1, 1]
    assert np.abs(ref).max() > 0.05
    model_wav = tmp_path / "m.wav"
    rc, out, err = cli(
        capsys, "decompress", jc, model_wav, "--checkpoint", workdir, "--sample_rate",
        codec.sample_rate, "--subtype", "FLOAT", "--json", *WINDOW,
    )  # fmt: skip
    assert rc == 0, err
    assert json.loads(out)["num_samples"] == xm.shape[1]
    ym, sr = sf.read(model_wav, dtype="float32", always_2d=True)
    assert sr == codec.sample_rate and ym.shape == xm.T.shape
    assert np.abs(ym.T - ref).max() <= 1e-5
    if rate != codec.sample_rate:  # resampled back: close to the model-rate output resampled
        back = np.clip(soxr.resample(decoded.T, codec.sample_rate, rate, "HQ")[: len(y)], -1, 1)
        assert np.abs(back).max() < 1  # (else the 16-bit file clips where this does not)
        assert np.abs(y[: len(back)] - back).max() < 2e-4  # 16-bit output


def test_lossy_and_multichannel_inputs(ckpt, tmp_path, capsys):
    """ogg/vorbis, mp3 and opus inputs keep their length; 6 channels are mixed down to stereo."""
    workdir, _, _ = ckpt
    x = render_song(1.5, 3, 48000, 2)[:72000]
    cases = [
        ("in.ogg", dict(format="OGG", subtype="VORBIS"), 44100, 1),
        ("in.mp3", dict(format="MP3", subtype="MPEG_LAYER_III"), 44100, 2),
        ("in.opus", dict(format="OGG", subtype="OPUS"), 48000, 1),
        ("in6.wav", dict(subtype="PCM_16"), 48000, 6),
    ]
    for name, kw, rate, channels in cases:
        src, jc, out = tmp_path / name, tmp_path / f"{name}.jcodec", tmp_path / f"{name}.wav"
        audio = np.tile(x, (1, 3))[:, :channels] if channels > 1 else x[:, :1]
        sf.write(src, audio, rate, **kw)
        rc, outp, err = cli(capsys, "compress", src, jc, "--checkpoint", workdir, "--entropy",
                            "off", *WINDOW, "--json")  # fmt: skip
        assert rc == 0, (name, err)
        assert json.loads(outp)["channels"] == min(channels, 2)
        rc, _, err = cli(capsys, "decompress", jc, out, "--checkpoint", workdir, *WINDOW)
        assert rc == 0, (name, err)
        info, got = sf.info(src), sf.info(out)
        assert (got.frames, got.samplerate, got.channels) == (
            info.frames, info.samplerate, min(channels, 2),
        ), name  # fmt: skip


def test_original_length_is_restored_exactly():
    """The header's original_num_samples survives serialization for down- and upsampling,
    and a header whose original length does not resample to num_samples is refused."""
    for rate in (8000, 22050, 44100, 48000, 96000, 192000):
        for n in list(range(1, 3000)) + [10**9 + 7, 3600 * rate + 1]:
            m = cz.model_rate_length(n, rate, 44100)
            h = bitstream.Header(
                sample_rate=44100, channels=1, num_samples=m, num_frames=-(-m // 512) + 1,
                hop_length=512, strides=(1,), codebook_sizes=256, model_id="base",
                original_sample_rate=rate, original_num_samples=n,
            )  # fmt: skip
            assert bitstream.Header.from_bytes(h.to_bytes()).original_num_samples == n
    # soxr makes exactly model_rate_length samples
    x = np.zeros((1001, 1), np.float32)
    for a, b in ((48000, 44100), (22050, 44100), (8000, 44100), (96000, 44100)):
        assert soxr.resample(x, a, b).shape[0] == cz.model_rate_length(1001, a, b)
    with pytest.raises(bitstream.BitstreamError, match="original_num_samples"):
        bitstream.Header(
            sample_rate=44100, channels=1, num_samples=1000, num_frames=2, hop_length=512,
            strides=(1,), codebook_sizes=256, model_id="base", original_sample_rate=48000,
            original_num_samples=5000,
        ).to_bytes()  # fmt: skip


def test_iter_encode_decode_take_any_blocks(ckpt):
    """The generator cores give chunked_encode/decode's output whatever the block sizes."""
    _, codec, params = ckpt
    x = render_song(1.9, 5, 44100, 2).T.copy()
    codes = chunked.chunked_encode(codec, params, x, 3, window_frames=64)
    blocks = [x[:, i : i + j] for i, j in zip(range(0, x.shape[1], 7001), [7001] * 99)]
    parts = list(chunked.iter_encode(codec, params, iter(blocks), x.shape[1], 3, 64))
    assert len(parts) == -(-chunked.encoded_frames(codec, x.shape[1]) // 64)
    for level, want in enumerate(codes):
        np.testing.assert_array_equal(np.concatenate([p[level] for p in parts], axis=1), want)
    fc = np.asarray(st.to_frame_codes(codec, codes))
    y = chunked.chunked_decode(codec, params, codes, x.shape[1], window_frames=64)
    pieces = (fc[:, i : i + 50] for i in range(0, fc.shape[1], 50))
    y2 = np.concatenate(
        list(chunked.iter_decode(codec, params, pieces, fc.shape[1], x.shape[1], 64)), 1
    )
    np.testing.assert_array_equal(y, y2)
    with pytest.raises(ValueError, match="ended after"):
        list(chunked.iter_encode(codec, params, iter(blocks[:3]), x.shape[1], 3, 64))


# --------------------------------------------------------------------------- bitrate selection


def test_kbps_selects_quantizers(ckpt, tmp_path, capsys):
    workdir, codec, _ = ckpt
    rates = [codec.bitrate_kbps(k) for k in range(1, codec.num_quantizers + 1)]
    assert cz.select_quantizers(codec, rates[1], None) == 2
    assert cz.select_quantizers(codec, rates[1] - 1e-3, None) == 1
    assert cz.select_quantizers(codec, rates[2] + 1e-3, None) == 3
    assert cz.select_quantizers(codec, 1000.0, None) == codec.num_quantizers
    assert cz.select_quantizers(codec, None, None) == codec.num_quantizers
    src, jc = tmp_path / "in.wav", tmp_path / "x.jcodec"
    make_music(src, 1.3, 44100, 1)
    kbps = (rates[1] + rates[2]) / 2
    rc, out, err = cli(capsys, "compress", src, jc, "--checkpoint", workdir, "--kbps", kbps,
                       *WINDOW, "--json")  # fmt: skip
    assert rc == 0, err
    r = json.loads(out)
    assert r["n_quantizers"] == 2 and r["nominal_kbps_per_channel"] == pytest.approx(rates[1])
    rc, out, _ = cli(capsys, "info", jc, "--json")
    info = json.loads(out)
    assert rc == 0 and info["n_quantizers"] == 2 and info["gain_db"] == r["gain_db"]
    rc, text, _ = cli(capsys, "info", jc)
    assert rc == 0 and f"decoder gain: {r['gain_db']:+.2f} dB" in text
    # the text report names the input level and the gain; --no_match_loudness keeps only the
    # normalization's inverse
    rc, text, _ = cli(capsys, "compress", src, jc, "--checkpoint", workdir, "--kbps", kbps, *WINDOW)
    assert rc == 0 and "input level" in text and f"applies {r['gain_db']:+.2f} dB" in text
    rc, out, _ = cli(capsys, "compress", src, jc, "--checkpoint", workdir, "--kbps", kbps,
                     "--no_match_loudness", *WINDOW, "--json")  # fmt: skip
    raw = json.loads(out)
    assert raw["gain_db"] >= raw["input_level_db"] + 18.0 - 1e-4  # more if the peak limited
    assert raw["gain_db"] != r["gain_db"]
    rc, _, err = cli(capsys, "compress", src, jc, "--checkpoint", workdir, "--kbps", 0.1)
    assert_one_line_error(rc, err, 2, r"below this model's lowest bitrate.*0\.172 \(1 quantizer\)")


# --------------------------------------------------------------------------- entropy coding


def test_priors_and_entropy_modes(ckpt, tmp_path, capsys):
    workdir, codec, params = ckpt
    priors = os.path.join(workdir, "best", "priors.npz")
    rc, out, err = cli(capsys, "priors", "--checkpoint", workdir, "--seconds", 4,
                       "--crop_seconds", 2, "--batch", 2, *WINDOW, "--json")  # fmt: skip
    assert rc == 0, err
    r = json.loads(out)
    assert r["output"] == priors and os.path.exists(priors)
    table = bitstream.load_priors(priors)
    assert table.shape == (codec.num_quantizers, codec.codebook_size)
    assert r["sha256"] == bitstream.priors_sha256(table).hex()

    src = tmp_path / "in.flac"
    make_music(src, 3.71, 44100, 2, seed=11)
    files = {}
    for mode in ("auto", "on", "off"):
        files[mode] = tmp_path / f"{mode}.jcodec"
        rc, out, err = cli(capsys, "compress", src, files[mode], "--checkpoint", workdir,
                           "--entropy", mode, *WINDOW, "--json")  # fmt: skip
        assert rc == 0, err
        r = json.loads(out)
        assert r["entropy_coded"] is (mode != "off")
        assert r["priors"] == (None if mode == "off" else priors)
    packed = os.path.getsize(files["off"])
    coded = os.path.getsize(files["auto"])
    assert coded < packed and coded == os.path.getsize(files["on"])
    assert r["packed_size_bytes"] == packed
    h_off, codes_off = bitstream.read_file(files["off"])
    h_on, codes_on = bitstream.read_file(files["on"], priors=priors)
    assert h_on.entropy_mode == 1 and h_off.entropy_mode == 0
    for a, b in zip(codes_off, codes_on):  # bit-exact codes
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    rc, out, _ = cli(capsys, "info", files["on"], "--json")
    assert rc == 0 and json.loads(out)["entropy_mode"] == 1

    # decompress finds the priors next to the checkpoint: same audio as the packed file
    ya, yb = tmp_path / "a.wav", tmp_path / "b.wav"
    for f, y in ((files["on"], ya), (files["off"], yb)):
        rc, _, err = cli(capsys, "decompress", f, y, "--checkpoint", workdir, *WINDOW)
        assert rc == 0, err
    np.testing.assert_array_equal(sf.read(ya)[0], sf.read(yb)[0])

    # the same model without its priors: a clear error naming the priors command
    bare = str(tmp_path / "bare")
    shutil.copytree(workdir, bare, ignore=shutil.ignore_patterns("priors.npz"))
    out_wav = tmp_path / "c.wav"
    rc, _, err = cli(capsys, "decompress", files["on"], out_wav, "--checkpoint", bare)
    assert_one_line_error(rc, err, match=r"python -m jax_codec priors --checkpoint")
    assert not out_wav.exists()
    rc, _, err = cli(capsys, "compress", src, tmp_path / "z.jcodec", "--checkpoint", bare,
                     "--entropy", "on")  # fmt: skip
    assert_one_line_error(rc, err, 2, r"needs priors.*python -m jax_codec priors")
    assert not (tmp_path / "z.jcodec").exists()
    # ... auto falls back to bit packing; other priors are refused by their hash
    other = tmp_path / "other.npz"
    bitstream.save_priors(other, np.ones((codec.num_quantizers, codec.codebook_size)))
    rc, _, err = cli(capsys, "decompress", files["on"], out_wav, "--checkpoint", bare,
                     "--priors", other)  # fmt: skip
    assert_one_line_error(rc, err, 1, r"priors sha256")
    assert not out_wav.exists()


# --------------------------------------------------------------------------- errors


def test_wrong_model_is_refused(ckpt, tmp_path, capsys):
    workdir, _, _ = ckpt
    src, jc, out_wav = tmp_path / "in.wav", tmp_path / "x.jcodec", tmp_path / "y.wav"
    make_music(src, 1.3, 44100, 1)
    assert cli(capsys, "compress", src, jc, "--checkpoint", workdir, *WINDOW)[0] == 0
    rc, _, err = cli(capsys, "decompress", jc, out_wav, "--config", CONFIG, "--random_init")
    assert_one_line_error(rc, err, 1, r"compressed with model base_runlocal .*loaded model")
    assert not out_wav.exists()


def test_bad_inputs_give_one_line_errors(ckpt, tmp_path, capsys):
    workdir, _, _ = ckpt
    model = ["--checkpoint", workdir]
    good_audio = tmp_path / "in.wav"
    make_music(good_audio, 1.3, 44100, 1)
    good = tmp_path / "good.jcodec"
    assert cli(capsys, "compress", good_audio, good, *model, *WINDOW)[0] == 0
    data = good.read_bytes()
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "empty.jcodec").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio at all\n" * 100)
    (tmp_path / "truncated.jcodec").write_bytes(data[:-30])
    (tmp_path / "cut.jcodec").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    (tmp_path / "flipped.jcodec").write_bytes(bytes(flipped))
    (tmp_path / "magic.jcodec").write_bytes(b"RIFF" + data[4:])
    future = bytearray(data)
    future[8] = 9
    (tmp_path / "future.jcodec").write_bytes(bytes(future))
    nan = np.zeros((44100, 1), np.float32)
    nan[30000] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 44100, subtype="FLOAT")
    sf.write(tmp_path / "zero.wav", np.zeros((0, 1), np.float32), 44100)
    (tmp_path / "dir").mkdir()
    out = tmp_path / "out.jcodec"
    wav = tmp_path / "out.wav"
    t = lambda name: tmp_path / name  # noqa: E731
    cases = [
        # compress: input
        (["compress", t("missing.wav"), out, *model], 2, "no such file"),
        (["compress", t("dir"), out, *model], 2, "is a directory"),
        (["compress", t("empty.wav"), out, *model], 2, "empty file"),
        (["compress", t("zero.wav"), out, *model], 2, "zero length"),
        (["compress", t("text.wav"), out, *model], 2, "not usable audio"),
        (["compress", t("nan.wav"), out, *model, *WINDOW], 2, "NaN"),
        (["compress", good, out, *model], 2, "not usable audio"),  # a .jcodec is no audio
        # compress: flags and outputs
        (["compress", good_audio, out], 2, "--checkpoint"),
        (["compress", good_audio, out, "--config", CONFIG], 2, "--random_init"),
        (["compress", good_audio, out, "--checkpoint", t("nowhere")], 2, "does not exist"),
        (["compress", good_audio, out, *model, "--n_quantizers", "9"], 2, r"1\.\.4"),
        (
            ["compress", good_audio, out, *model, "--n_quantizers", "2", "--kbps", "3"],
            2,
            "not allowed",
        ),
        (["compress", good_audio, out, *model, "--kbps", "nan"], 2, "positive"),
        (["compress", good_audio, out, *model, "--bogus"], 2, "unrecognized"),
        (["compress", good_audio, out, *model, "--entropy", "maybe"], 2, "invalid choice"),
        (["compress", good_audio, out, *model, "--priors", t("nope.npz")], 2, "no such file"),
        (["compress", good_audio, t("dir"), *model], 2, "is a directory"),
        (["compress", good_audio, t("no/such/dir/x.jcodec"), *model], 2, "does not exist"),
        (["compress", good_audio, good_audio, *model], 2, "is the input"),
        # decompress and info: broken files
        (["decompress", t("missing.jcodec"), wav, *model], 2, "no such file"),
        (["decompress", t("dir"), wav, *model], 2, "is a directory"),
        (["decompress", t("empty.jcodec"), wav, *model], 2, "empty file"),
        (["decompress", good_audio, wav, *model], 1, "magic|not a .jcodec"),
        (["decompress", t("magic.jcodec"), wav, *model], 1, "magic"),
        (["decompress", t("future.jcodec"), wav, *model], 1, "unsupported .jcodec format version"),
        (["decompress", t("truncated.jcodec"), wav, *model, *WINDOW], 1, "truncated"),
        (["decompress", t("cut.jcodec"), wav, *model, *WINDOW], 1, "truncated|ends"),
        (["decompress", t("flipped.jcodec"), wav, *model, *WINDOW], 1, "CRC32"),
        (["decompress", good, t("out.mp3"), *model], 2, r"must end in \.wav"),
        (["decompress", good, wav, *model, "--sample_rate", "0"], 2, "--sample_rate"),
        (["decompress", good, wav, *model, "--subtype", "FLOAT", "--bogus"], 2, "unrecognized"),
        (["info", t("truncated.jcodec")], 1, "truncated|end marker"),
        (["info", t("flipped.jcodec"), "--json"], 1, "CRC32"),
        (["info", t("magic.jcodec")], 1, "magic"),
        (["info", t("empty.jcodec")], 2, "empty file"),
        (["info", t("dir")], 2, "is a directory"),
        (["info", good, "--config", CONFIG], 2, "not both"),
        (["priors", "--config", CONFIG, "--random_init"], 2, "--output"),
        (["priors", *model, "--data", "nonsense:x", "--output", t("p.npz")], 2, "not a source"),
    ]
    for argv, code, match in cases:
        rc, stdout, err = cli(capsys, *argv)
        assert_one_line_error(rc, err, code, match)
        assert stdout == ""
        assert not out.exists() and not wav.exists() and not t("p.npz").exists(), argv
    leftovers = [p for p in os.listdir(tmp_path) if p.startswith(".")]
    assert not leftovers  # no temporary files left behind


def test_outputs_are_atomic(ckpt, tmp_path, capsys, monkeypatch):
    """An encode or decode failing midway leaves no output (and an old one untouched)."""
    workdir, _, _ = ckpt
    src, jc = tmp_path / "in.wav", tmp_path / "x.jcodec"
    make_music(src, 3.71, 44100, 1)
    assert cli(capsys, "compress", src, jc, "--checkpoint", workdir, *WINDOW)[0] == 0
    encode, decode = chunked.iter_encode, chunked.iter_decode

    def failing(inner):
        def gen(*a, **k):
            for i, item in enumerate(inner(*a, **k)):
                if i == 2:
                    raise RuntimeError("simulated failure in window 2")
                yield item

        return gen

    monkeypatch.setattr(chunked, "iter_encode", failing(encode))
    monkeypatch.setattr(chunked, "iter_decode", failing(decode))
    out = tmp_path / "new.jcodec"
    rc, _, err = cli(capsys, "compress", src, out, "--checkpoint", workdir, *WINDOW)
    assert_one_line_error(rc, err, 1, "simulated failure")
    assert not out.exists()
    old = jc.read_bytes()
    rc, _, err = cli(capsys, "compress", src, jc, "--checkpoint", workdir, *WINDOW)
    assert rc == 1 and jc.read_bytes() == old  # the old file is intact
    wav = tmp_path / "y.wav"
    wav.write_bytes(b"old")
    rc, _, err = cli(capsys, "decompress", jc, wav, "--checkpoint", workdir, *WINDOW)
    assert_one_line_error(rc, err, 1, "simulated failure")
    assert wav.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["in.wav", "x.jcodec", "y.wav"]


def test_info_text(ckpt, tmp_path, capsys):
    workdir, _, _ = ckpt
    src, jc = tmp_path / "in.flac", tmp_path / "x.jcodec"
    x = make_music(src, 2.05, 22050, 2)
    argv = ["compress", src, jc, "--checkpoint", workdir, "--entropy", "off", *WINDOW]
    assert cli(capsys, *argv)[0] == 0
    rc, out, err = cli(capsys, "info", jc)
    assert rc == 0, err
    assert "model: base_runlocal" in out and "bit packed" in out
    assert f"{len(x)} samples at 22050 Hz" in out and "kbps actual" in out
    rc, out, _ = cli(capsys, "info", jc, "--json")
    d = json.loads(out)
    assert d["original_num_samples"] == len(x) and d["file_size_bytes"] == os.path.getsize(jc)
    assert cli(capsys, "info", "--config", CONFIG)[0] == 0  # the config form still works


# --------------------------------------------------------------------------- memory


@pytest.mark.slow
def test_long_file_in_bounded_memory(ckpt, tmp_path, request):
    """12 minutes of 48 kHz stereo through compress and decompress in subprocesses: the peak
    RSS grows by far less than the audio's size over that of a 1-minute file (same compiled
    windows; most of the ~0.5 GiB is JAX and the compiled window), and stays under 2 GiB.

    Run with `pytest -m slow` (about 5 minutes on 2 CPU cores)."""
    workdir, _, _ = ckpt
    rate, minutes = 48000, 12
    long_wav, short_wav = tmp_path / "long.wav", tmp_path / "short.wav"
    rng = np.random.default_rng(0)
    block = 10 * rate
    with sf.SoundFile(long_wav, "w", rate, 2, subtype="PCM_16") as f:
        for i in range(minutes * 6):
            t = (np.arange(block) + i * block) / rate
            tone = 0.3 * np.sin(2 * np.pi * (220 + 20 * (i % 7)) * t)
            f.write((tone[:, None] + 0.05 * rng.standard_normal((block, 2))).astype(np.float32))
    make_music(short_wav, 60, rate, 2)
    audio_mib = minutes * 60 * rate * 2 * 4 / 2**20  # the input as float32

    def peak_mib(*argv):
        # VmHWM: this process's peak RSS (ru_maxrss would include the parent's at the fork).
        code = (
            "import sys; from jax_codec.__main__ import main; rc = main(sys.argv[1:]); "
            "print('RSS', [int(line.split()[1]) for line in open('/proc/self/status') "
            "if line.startswith('VmHWM')][0]); sys.exit(rc)"
        )
        # Two malloc arenas: with one per XLA thread the peak wanders by tens of MiB from run to
        # run (which arena a burst of window buffers lands in), whatever the file's length.
        env = subprocess_env(MALLOC_ARENA_MAX="2")
        r = subprocess.run([sys.executable, "-c", code, *map(str, argv), "--checkpoint", workdir],
                           capture_output=True, text=True, env=env)  # fmt: skip
        assert r.returncode == 0, r.stderr
        return int(r.stdout.split("RSS")[-1]) / 1024

    short_c = peak_mib("compress", short_wav, tmp_path / "s.jcodec", "--entropy", "off")
    short_d = peak_mib("decompress", tmp_path / "s.jcodec", tmp_path / "s.wav")
    long_c = peak_mib("compress", long_wav, tmp_path / "l.jcodec", "--entropy", "off")
    long_d = peak_mib("decompress", tmp_path / "l.jcodec", tmp_path / "l.wav")
    print(f"peak RSS MiB: compress {short_c:.0f} (1 min) / {long_c:.0f} (12 min), decompress "
          f"{short_d:.0f} / {long_d:.0f}; audio {audio_mib:.0f}")  # fmt: skip
    assert sf.info(tmp_path / "l.wav").frames == minutes * 60 * rate
    # Loading the file would add at least its float32 size (264 MiB); measured with two arenas:
    # -4 / +20 MiB (the encode/decode loops alone are flat; with an arena per thread the peaks
    # differed by +20..+80 MiB from run to run and machine to machine).
    assert long_c - short_c < audio_mib / 3 and long_d - short_d < audio_mib / 3
    assert max(long_c, long_d) < 2048


def test_decoded_level_follows_the_input_level(ckpt, tmp_path):
    """A quiet copy of a song comes back quiet, a loud one loud: the encoder brings its input to
    the level the model was trained at (same codes for both copies) and the header gain puts
    the decoded level back on the input's. Without it a codec returns its own average level
    whatever it is fed (what a short training run did before normalization)."""
    from jax_codec.inference import codec_io

    workdir, codec, _ = ckpt
    loaded = load_codec(workdir)
    sr = codec.sample_rate
    x = render_song(1.6, 7, sr, 1)[None, : int(1.5 * sr)].astype(np.float32)
    got = {}
    for scale in (1.0, 1 / 16):
        path = str(tmp_path / f"{scale}.jcodec")
        codec_io.encode_to_jcodec(loaded, x * np.float32(scale), path, 3, window_frames=64)
        y = np.concatenate(list(codec_io.decode_jcodec(path, loaded, window_frames=64)), axis=1)
        assert loudness(y, sr) == pytest.approx(loudness(x * scale, sr), abs=0.01)
        got[scale] = (codec_io.read_jcodec(path, loaded)[1], y)
    (codes_a, y_a), (codes_b, y_b) = got.values()
    same = np.mean([np.mean(a == b) for a, b in zip(codes_a, codes_b, strict=True)])
    assert same > 0.99  # float rounding of the two gains may move a code or two
    assert levels.level_db(y_a, sr) - levels.level_db(y_b, sr) == pytest.approx(24.08, abs=0.05)
    # Without the loudness pass the gain only undoes the normalization: the model's own level
    # error shows (a random model is far off), and is the same for both copies.
    path = str(tmp_path / "raw.jcodec")
    enc = codec_io.encode_to_jcodec(loaded, x, path, 3, window_frames=64, match_loudness=False)
    target = load_config(CONFIG).data.normalize_db
    assert enc.header.gain_db == pytest.approx(levels.level_db(x, sr) - target, abs=1e-4)
