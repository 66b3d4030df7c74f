"""Joint stereo downstream of the model: the `.jcodec` channel mode, `compress` / `decompress`
/ `info` / `stream` / `priors`, the evaluation's stereo metrics and rows, the demo, and the
classic baselines' stereo modes.

One small joint-stereo checkpoint (base:runlocal with `model.channels=2`, its weights grown
from the session's mono runlocal weights, as tests/test_stereo.py does, so no second `init`
compiles) and one mono checkpoint with the same weights; windows of 64 frames, so files of a
second or two share compiled shapes. Everything runs in-process.
"""

import json
import math
import os
import re
import struct
import zlib

import numpy as np
import pytest
import soundfile as sf
from conftest import grow_params, louder, model_input

from jax_codec import bitstream
from jax_codec.__main__ import main
from jax_codec.cli_errors import CliError
from jax_codec.config import apply_overrides, load_config
from jax_codec.data.synthetic import render_song
from jax_codec.inference import chunked, codec_io
from jax_codec.inference.api import load_codec
from jax_codec.models.codec import build_codec

CONFIG = "configs/base.py:runlocal"
WINDOW = ["--window_frames", "64"]
SR = 44100
STEREO_METRICS = "si_sdr,mel_distance_mid,mel_distance_side,ild_difference,icc_difference"


@pytest.fixture(scope="module")
def ckpts(runlocal_codec, tmp_path_factory):
    """`best/` exports: (stereo workdir, mono workdir), and the loaded stereo model."""
    from jax_codec.training.loop import BestExporter

    mono_params = louder(runlocal_codec[1])
    stereo_config = load_config(CONFIG)
    apply_overrides(stereo_config, {"model.channels": "2", "name": "stereo_runlocal"})
    codec = build_codec(stereo_config.model)
    stereo_params = grow_params(mono_params, codec)
    stereo = str(tmp_path_factory.mktemp("stereo"))
    BestExporter(stereo).maybe_export(0, 1.0, stereo_params, stereo_config)
    mono = str(tmp_path_factory.mktemp("mono"))
    BestExporter(mono).maybe_export(0, 1.0, mono_params, load_config(CONFIG))
    loaded = load_codec(stereo)
    assert loaded.codec.channels == 2 and loaded.name == "stereo_runlocal"
    return stereo, mono, loaded


def cli(capsys, *argv):
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, code, match):
    assert rc == code, (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and re.search(match, lines[0]), lines[0]


def make_music(path, seconds, rate, channels, seed=0):
    n = int(round(seconds * rate))
    x = render_song(seconds + 0.05, seed, rate, 2)[:n].astype(np.float32)
    x = x if channels == 2 else x[:, :1]
    sf.write(path, x, rate)
    return sf.read(path, dtype="float32", always_2d=True)[0]  # [T, C] as the file holds it


def expected_size(h) -> int:
    """The file size by the format's bit accounting (docs/bitstream.md): streams, not channels."""
    bits = [max(1, math.ceil(math.log2(c))) for c in h.codebook_sizes[: h.n_quantizers]]
    size = h.header_size + 20
    for i in range(-(-h.num_frames // h.chunk_frames)):
        frames = min(h.chunk_frames, h.num_frames - i * h.chunk_frames)
        per_stream = sum(
            math.ceil(-(-frames // s) * b / 8) for s, b in zip(h.strides[: h.n_quantizers], bits)
        )
        size += 24 + h.streams * per_stream
    return size


# --------------------------------------------------------------------------- compress


def test_stereo_round_trip_is_one_joint_stream(ckpts, tmp_path, capsys):
    stereo, _, loaded = ckpts
    codec, params = loaded.codec, loaded.params
    src, jc = tmp_path / "in.wav", tmp_path / "x.jcodec"
    x = make_music(src, 1.6, SR, 2, seed=4)
    rc, out, err = cli(capsys, "compress", src, jc, "--checkpoint", stereo, *WINDOW, "--json")
    assert rc == 0, err
    r = json.loads(out)
    assert (r["channels"], r["channel_mode"], r["code_streams"]) == (2, "joint stereo", 1)

    # The codes: one stream, exactly the windowed encode of the pair [1, T, 2] (at the level
    # the model was trained at).
    ref_codes = chunked.chunked_encode(
        codec, params, model_input(x, SR)[0][None], None, window_frames=64
    )
    header, codes = bitstream.read_file(jc)
    assert header.version == 3 and header.joint and header.streams == 1
    assert header.channels == 2 and header.model_id == "stereo_runlocal"
    assert len(codes) == 1
    for level, want in enumerate(ref_codes):
        np.testing.assert_array_equal(codes[0][level], want[0])

    # Bits: one stream for the pair.
    size = os.path.getsize(jc)
    assert size == expected_size(header) == r["size_bytes"]
    assert r["nominal_kbps"] == pytest.approx(codec.bitrate_kbps())  # not x 2
    assert r["nominal_kbps_per_channel"] == pytest.approx(codec.bitrate_kbps() / 2)
    assert r["actual_kbps"] == pytest.approx(size * 8 / (len(x) / SR) / 1e3)
    rc, text, _ = cli(capsys, "compress", src, jc, "--checkpoint", stereo, *WINDOW)
    assert rc == 0 and "stereo in one joint-stereo code stream" in text

    # Decompress: stereo again, the decode of those codes (float output, 1e-5).
    wav = tmp_path / "y.wav"
    rc, out, err = cli(capsys, "decompress", jc, wav, "--checkpoint", stereo, "--subtype",
                       "FLOAT", "--json", *WINDOW)  # fmt: skip
    assert rc == 0, err
    assert json.loads(out)["channel_mode"] == "joint stereo"
    y, sr = sf.read(wav, dtype="float32", always_2d=True)
    want = chunked.chunked_decode(codec, params, ref_codes, len(x), window_frames=64)[0]
    want = np.clip(want * np.float32(header.gain), -1, 1)  # files are written within [-1, 1]
    assert sr == SR and y.shape == x.shape == want.shape
    assert np.abs(want).max() > 0.05 and np.abs(want[:, 0] - want[:, 1]).max() > 1e-3
    assert np.abs(y - want).max() <= 1e-5

    # info names the mode and counts one stream.
    rc, text, _ = cli(capsys, "info", jc)
    assert rc == 0 and "channel mode: joint stereo (1 code stream)" in text
    assert "1 x " in text and "per code stream" in text
    rc, out, _ = cli(capsys, "info", jc, "--json")
    d = json.loads(out)
    assert d["channel_mode_name"] == "joint stereo" and d["code_streams"] == 1
    assert d["nominal_kbps"] == pytest.approx(codec.bitrate_kbps())


def test_mono_file_in_a_stereo_model_comes_back_mono(ckpts, tmp_path, capsys):
    """Duplicated into the joint stream, decoded as the mean of left and right."""
    stereo, _, loaded = ckpts
    codec, params = loaded.codec, loaded.params
    src, jc, wav = tmp_path / "m.wav", tmp_path / "m.jcodec", tmp_path / "m_out.wav"
    x = make_music(src, 1.3, SR, 1, seed=5)
    rc, out, err = cli(capsys, "compress", src, jc, "--checkpoint", stereo, *WINDOW, "--json")
    assert rc == 0, err
    assert json.loads(out)["channel_mode"] == "joint stereo"
    header, codes = bitstream.read_file(jc)
    assert header.joint and header.channels == 1 and len(codes) == 1
    pair = np.repeat(model_input(x, SR)[0], 2, axis=1)[None]  # [1, T, 2]: L = R
    ref_codes = chunked.chunked_encode(codec, params, pair, None, window_frames=64)
    for level, want in enumerate(ref_codes):
        np.testing.assert_array_equal(codes[0][level], want[0])
    rc, _, err = cli(capsys, "decompress", jc, wav, "--checkpoint", stereo, "--subtype", "FLOAT",
                     *WINDOW)  # fmt: skip
    assert rc == 0, err
    y = sf.read(wav, dtype="float32", always_2d=True)[0]
    decoded = chunked.chunked_decode(codec, params, ref_codes, len(x), window_frames=64)[0]
    assert y.shape == x.shape
    want = np.clip(decoded.mean(axis=1) * np.float32(header.gain), -1, 1)
    np.testing.assert_allclose(y[:, 0], want, atol=1e-5)
    rc, text, _ = cli(capsys, "info", jc)
    assert "mono input duplicated" in text


def test_mono_model_keeps_dual_mono_at_twice_the_bits(ckpts, tmp_path, capsys):
    stereo, mono, loaded = ckpts
    src = tmp_path / "in.wav"
    make_music(src, 1.6, SR, 2, seed=6)
    files = {}
    for name, ckpt in (("joint", stereo), ("dual", mono)):
        files[name] = tmp_path / f"{name}.jcodec"
        rc, out, err = cli(capsys, "compress", src, files[name], "--checkpoint", ckpt,
                           "--n_quantizers", 2, "--entropy", "off", *WINDOW, "--json")  # fmt: skip
        assert rc == 0, err
    dual, _ = bitstream.read_file(files["dual"])
    joint, _ = bitstream.read_file(files["joint"])
    assert (dual.channel_mode, dual.streams, dual.channel_mode_name) == (0, 2, "dual mono")
    assert dual.nominal_kbps == pytest.approx(2 * joint.nominal_kbps)
    for h, f in ((dual, files["dual"]), (joint, files["joint"])):
        assert os.path.getsize(f) == expected_size(h)
    # Same header size, same chunking: the payload of the dual-mono file is twice the joint one.
    payload = lambda f, h: os.path.getsize(f) - h.header_size - 20 - 24 * h.num_chunks  # noqa: E731
    assert payload(files["dual"], dual) == 2 * payload(files["joint"], joint)
    rc, text, _ = cli(capsys, "info", files["dual"])
    assert "dual mono (2 code streams)" in text
    # The joint file needs the stereo model (the hash names it), the dual-mono file the mono one.
    rc, _, err = cli(capsys, "decompress", files["joint"], tmp_path / "a.wav", "--checkpoint", mono)
    assert_one_line_error(rc, err, 1, r"compressed with model stereo_runlocal")
    assert not (tmp_path / "a.wav").exists()


def test_kbps_counts_the_joint_stream(ckpts, tmp_path, capsys):
    stereo, _, loaded = ckpts
    codec = loaded.codec
    rates = [codec.bitrate_kbps(k) for k in range(1, codec.num_quantizers + 1)]
    src, jc = tmp_path / "in.wav", tmp_path / "k.jcodec"
    make_music(src, 1.3, SR, 2)
    kbps = (rates[1] + rates[2]) / 2  # the pair's rate: 2 quantizers fit, 3 do not
    rc, out, err = cli(capsys, "compress", src, jc, "--checkpoint", stereo, "--kbps", kbps,
                       *WINDOW, "--json")  # fmt: skip
    assert rc == 0, err
    r = json.loads(out)
    assert r["n_quantizers"] == 2 and r["nominal_kbps"] == pytest.approx(rates[1])
    rc, _, err = cli(capsys, "compress", src, jc, "--checkpoint", stereo, "--kbps", 0.1)
    assert_one_line_error(rc, err, 2, r"lowest bitrate; kbps for the stereo pair \(one joint")


def test_priors_and_range_coding_of_a_joint_stream(ckpts, tmp_path, capsys):
    stereo, _, loaded = ckpts
    codec = loaded.codec
    priors = tmp_path / "priors.npz"
    rc, out, err = cli(capsys, "priors", "--checkpoint", stereo, "--seconds", 2,
                       "--crop_seconds", 1, "--batch", 2, "--output", priors, *WINDOW, "--json")  # fmt: skip
    assert rc == 0, err
    table = bitstream.load_priors(priors)
    assert table.shape == (codec.num_quantizers, codec.codebook_size)
    src = tmp_path / "in.wav"
    make_music(src, 1.3, SR, 2, seed=8)
    packed, ranged = tmp_path / "p.jcodec", tmp_path / "r.jcodec"
    for f, flags in ((packed, ["--entropy", "off"]), (ranged, ["--priors", priors])):
        rc, _, err = cli(capsys, "compress", src, f, "--checkpoint", stereo, *flags, *WINDOW)
        assert rc == 0, err
    h, codes_r = bitstream.read_file(ranged, priors=priors)
    assert h.joint and h.entropy_mode == 1
    _, codes_p = bitstream.read_file(packed)
    for a, b in zip(codes_p[0], codes_r[0]):
        np.testing.assert_array_equal(a, b)
    assert os.path.getsize(ranged) <= os.path.getsize(packed)


# --------------------------------------------------------------------------- errors


def _patch_header(data: bytes, offset: int, value: bytes) -> bytes:
    """`data` with header bytes at `offset` replaced and the header CRC repaired."""
    d = bytearray(data)
    d[offset : offset + len(value)] = value
    hs = struct.unpack_from("<H", d, 10)[0]
    d[hs - 4 : hs] = struct.pack("<I", zlib.crc32(bytes(d[: hs - 4])))
    return bytes(d)


def test_newer_files_and_bad_channel_counts_are_refused_cleanly(
    ckpts, tmp_path, capsys, monkeypatch
):
    stereo, mono, loaded = ckpts
    src, jc = tmp_path / "in.wav", tmp_path / "x.jcodec"
    make_music(src, 1.3, SR, 2)
    assert cli(capsys, "compress", src, jc, "--checkpoint", stereo, *WINDOW)[0] == 0
    data = jc.read_bytes()
    future = tmp_path / "future.jcodec"
    future.write_bytes(_patch_header(data, 8, struct.pack("<H", bitstream.FORMAT_VERSION + 1)))
    wav = tmp_path / "out.wav"
    for argv in (["decompress", future, wav, "--checkpoint", stereo], ["info", future]):
        rc, out, err = cli(capsys, *argv)
        assert_one_line_error(
            rc, err, 1, r"unsupported \.jcodec format version 4: .*upgrade jax_codec"
        )
        assert out == "" and not wav.exists()
    # A joint header claiming 3 channels (a crafted file with a valid CRC) is a bad file.
    three = tmp_path / "three.jcodec"
    three.write_bytes(_patch_header(data, 16, struct.pack("<H", 3)))
    for argv in (["decompress", three, wav, "--checkpoint", stereo], ["info", three]):
        rc, out, err = cli(capsys, *argv)
        assert_one_line_error(rc, err, 1, r"invalid header: joint stereo with 3 channels")
        assert out == "" and not wav.exists()
    # A reader that knows only version 1 (this code, told so) refuses the joint file the same
    # way instead of decoding one stream as two channels.
    from jax_codec.bitstream import header as hdr

    with monkeypatch.context() as m:
        m.setattr(hdr, "FORMAT_VERSION", 1)
        rc, _, err = cli(capsys, "decompress", jc, wav, "--checkpoint", stereo)
        assert_one_line_error(rc, err, 1, r"format version 3: this reader reads versions 1 to 1")
        assert not wav.exists()

    # A joint file and a mono model of the same weights hash (crafted): the channel mode is
    # checked against the model too.
    header = bitstream.Reader(jc).header
    mono_codec = load_codec(mono).codec
    with pytest.raises(bitstream.BitstreamError, match="joint stereo .* loaded model is mono"):
        codec_io.check_architecture(header, mono_codec)
    codec_io.check_architecture(header, loaded.codec)

    # A joint-stereo model takes 1 or 2 channels: the API says how to mix down.
    six = np.zeros((6, 4096), np.float32)
    with pytest.raises(CliError, match=r"6 channels: a joint-stereo model codes mono or stereo"):
        codec_io.encode_to_jcodec(loaded, six, str(tmp_path / "six.jcodec"), 1)
    assert not (tmp_path / "six.jcodec").exists()
    # ... while the commands mix more channels down to stereo first, as for mono models.
    src6, jc6 = tmp_path / "six.wav", tmp_path / "six.jcodec"
    sf.write(src6, np.tile(render_song(1.0, 2, SR, 2), (1, 3)), SR)
    rc, out, err = cli(capsys, "compress", src6, jc6, "--checkpoint", stereo, *WINDOW, "--json")
    assert rc == 0, err
    r = json.loads(out)
    assert (r["input_channels"], r["channels"], r["code_streams"]) == (6, 2, 1)
    # Codes for the wrong number of streams.
    codes = [np.zeros((2, 8), np.int32)] * 2
    with pytest.raises(
        ValueError, match=r"codes for 2 stream\(s\); this joint stereo file takes 1"
    ):
        codec_io.encode_to_jcodec(loaded, np.zeros((2, 4096), np.float32),
                                  str(tmp_path / "c.jcodec"), 2, codes=codes)  # fmt: skip


# --------------------------------------------------------------------------- stream


def _stream(capsys, ckpts, tmp_path, channels):
    from jax_codec.inference.cli import format_stream

    stereo, _, loaded = ckpts
    src, out = tmp_path / f"in{channels}.wav", tmp_path / f"out{channels}.wav"
    x = make_music(src, 1.0, SR, channels, seed=channels)
    rc, stdout, err = cli(capsys, "stream", src, out, "--checkpoint", stereo,
                          "--n_quantizers", 3, "--json")  # fmt: skip
    assert rc == 0, err
    r = json.loads(stdout)
    assert r["streaming"] and r["channel_mode"] == "joint stereo"
    assert (r["channels"], r["code_streams"]) == (channels, 1)
    assert r["kbps"] == pytest.approx(loaded.codec.bitrate_kbps(3))  # one stream for the pair
    assert r["max_abs_diff_vs_offline"] < 1e-4
    y, sr = sf.read(out, dtype="float32", always_2d=True)
    assert sr == SR and y.shape == x.shape and np.abs(y).max() > 0.01
    assert f"{channels} channel(s) (joint stereo)" in format_stream(r)


def test_stream_command_on_a_stereo_model(ckpts, tmp_path, capsys):
    """A stereo file streams as one joint stream and comes out stereo."""
    _stream(capsys, ckpts, tmp_path, 2)


@pytest.mark.slow
def test_stream_command_mono_file_on_a_stereo_model(ckpts, tmp_path, capsys):
    """A mono file streams duplicated and comes out mono (compiles the steps again: slow)."""
    _stream(capsys, ckpts, tmp_path, 1)


# --------------------------------------------------------------------------- evaluation


def test_stereo_metrics():
    from jax_codec.evaluation import metrics as mt
    from jax_codec.evaluation import stats

    x = render_song(1.0, 2, SR, 2).T.astype(np.float64)  # panned instruments: L != R
    names = mt.STEREO_METRICS
    values = lambda est: {n: mt.compute_all(x, est, SR, [n])[n] for n in names}  # noqa: E731
    assert all(v == 0.0 for v in values(x).values())
    collapsed = values(np.repeat(x.mean(axis=0, keepdims=True), 2, axis=0))
    assert collapsed["mel_distance_mid"] == 0.0  # the mid is kept...
    assert collapsed["mel_distance_side"] > 1.0 and collapsed["ild_difference"] > 0.5  # not L/R
    swapped = values(x[::-1])
    assert swapped["mel_distance_side"] == 0.0 and swapped["ild_difference"] > 1.0
    inverted = values(x * np.array([[1.0], [-1.0]]))
    assert inverted["icc_difference"] > 1.5 and inverted["ild_difference"] == 0.0
    # Only for stereo: an error for mono signals, skipped by compute_all's default and by the
    # evaluation's `measure` (NaN, no problem reported).
    with pytest.raises(ValueError, match="needs stereo"):
        mt.ild_difference(x[:1], x[:1], SR)
    assert not set(names) & set(mt.compute_all(x[:1], x[:1], SR))
    assert set(names) <= set(mt.compute_all(x[:, :SR], x[:, :SR], SR, list(names)))
    got, problems = stats.measure(x[:1], x[:1], SR, ["mel_distance", *names])
    assert got["mel_distance"] == 0.0 and all(math.isnan(got[n]) for n in names)
    assert problems == []
    with pytest.raises(ValueError, match="silent"):
        mt.icc_difference(np.zeros((2, SR)), np.zeros((2, SR)), SR)


def _ffmpeg():
    from jax_codec.evaluation import baselines

    try:
        return baselines.ffmpeg_path()
    except baselines.FFmpegNotFoundError:
        return None


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    """A mono and a stereo song, long enough for the fixed 64-frame windows."""
    data = tmp_path_factory.mktemp("songs")
    sf.write(data / "a_mono.wav", render_song(1.3, 0, SR, 1), SR)
    sf.write(data / "b_stereo.wav", render_song(1.3, 1, SR, 2), SR)
    return data


def _evaluate(capsys, *argv):
    from jax_codec.evaluation import __main__ as ev

    capsys.readouterr()
    rc = ev.main([str(a) for a in argv] + ["--spectrograms", "0", *WINDOW])
    assert rc == 0, capsys.readouterr().err


def test_evaluate_joint_stereo_with_stereo_metrics(ckpts, songs, tmp_path, capsys):
    """Every row gets the stereo metrics of a stereo file (empty for a mono one); Opus and MP3
    are matched to the joint stream's actual bitrate and code the pair jointly too."""
    stereo, _, _ = ckpts
    have_ffmpeg = _ffmpeg() is not None
    out = tmp_path / "eval"
    _evaluate(capsys, "--checkpoint", stereo, "--data", songs, "--n_quantizers", "2",
              "--baselines", "opus,mp3" if have_ffmpeg else "none", "--metrics",
              STEREO_METRICS, "--output", out)  # fmt: skip
    rows = json.load(open(out / "results.json"))
    by = {(r["file"], r["codec"]): r for r in rows}
    codecs = ["stereo_runlocal"] + (["opus", "mp3"] if have_ffmpeg else [])
    assert sorted(by) == sorted((f, c) for f in ("a_mono.wav", "b_stereo.wav") for c in codecs)
    ours = by["b_stereo.wav", "stereo_runlocal"]
    assert (ours["channel_coding"], ours["code_streams"]) == ("joint stereo", 1)
    assert ours["channels"] == 2
    assert by["a_mono.wav", "stereo_runlocal"]["channel_coding"] == "joint stereo"
    assert ours["actual_kbps"] == pytest.approx(ours["size_bytes"] * 8 / 1.3 / 1e3)
    for r in rows:  # stereo metrics on every stereo row, empty on mono ones
        for m in STEREO_METRICS.split(",")[1:]:
            if r["file"] == "b_stereo.wav":
                assert r[m] is not None and math.isfinite(r[m]), (r["codec"], m)
            else:
                assert r[m] is None, (r["codec"], m)
    if have_ffmpeg:
        for name in ("opus", "mp3"):
            b = by["b_stereo.wav", name]
            assert b["channel_coding"] == "joint stereo" and b["kind"] == "baseline"
            assert b["target_kbps"] == pytest.approx(ours["actual_kbps"])  # matched to ours
        assert by["a_mono.wav", "opus"]["channel_coding"] == "mono"
    summary = json.load(open(out / "summary.json"))
    assert summary["run"]["stereo_files"] == 1 and summary["run"]["joint"]
    group = next(g for g in summary["summary"] if g["codec"] == "stereo_runlocal")
    assert group["metrics"]["ild_difference"]["n"] == 1  # the stereo file only
    assert group["metrics"]["si_sdr"]["n"] == 2
    md = open(out / "summary.md").read()
    assert "joint stereo (one code stream for both channels)" in md
    assert "## ild_difference (lower is better)" in md and "stereo image (" in md
    assert "not finite" not in md  # mono rows' empty stereo metrics are not problems
    assert "rd_icc_difference.png" in os.listdir(out)

    # Mono-only data: the stereo metrics are left out of the outputs altogether.
    out2 = tmp_path / "eval_mono"
    _evaluate(capsys, "--checkpoint", stereo, "--data", songs / "a_mono.wav", "--n_quantizers",
              "2", "--baselines", "none", "--metrics", STEREO_METRICS, "--output", out2)  # fmt: skip
    assert json.load(open(out2 / "summary.json"))["run"]["metrics"] == ["si_sdr"]
    assert "ild_difference" not in open(out2 / "results.csv").readline()


def test_evaluate_against_dual_mono(ckpts, songs, tmp_path, capsys):
    """A mono model in --compare codes the same pair as dual mono: two streams, twice the code
    bits, each row's bitrate the bits it really spent."""
    stereo, mono, _ = ckpts
    out = tmp_path / "eval"
    _evaluate(capsys, "--checkpoint", stereo, "--compare", mono, "--data",
              songs / "b_stereo.wav", "--n_quantizers", "2", "--baselines", "none",
              "--metrics", STEREO_METRICS, "--output", out)  # fmt: skip
    rows = json.load(open(out / "results.json"))
    assert [(r["codec"], r["kind"]) for r in rows] == [
        ("stereo_runlocal", "ours"),
        ("base_runlocal", "neural"),
    ]
    ours, dual = rows
    assert (dual["channel_coding"], dual["code_streams"]) == ("dual mono", 2)
    assert ours["nominal_kbps"] == pytest.approx(dual["nominal_kbps"] / 2)
    assert ours["actual_kbps"] < dual["actual_kbps"]
    assert dual["actual_kbps"] == pytest.approx(dual["size_bytes"] * 8 / 1.3 / 1e3)
    for m in STEREO_METRICS.split(","):
        assert math.isfinite(dual[m]) and math.isfinite(ours[m])
    md = open(out / "summary.md").read()
    assert "| base_runlocal | 2 |" in md and "dual mono" in md


@pytest.mark.skipif(_ffmpeg() is None, reason="no ffmpeg: the baselines' stereo modes")
def test_opus_and_mp3_code_stereo_jointly(tmp_path):
    """The encoders as the evaluation runs them: Opus puts a stereo pair in one coupled stream
    (OpusHead channel mapping family 0, 2 channels), LAME marks every audio frame joint stereo
    (MPEG header mode 01)."""
    import subprocess

    from jax_codec.evaluation import baselines as bl

    src = tmp_path / "in.wav"
    sf.write(src, render_song(2.0, 1, 48000, 2), 48000, subtype="FLOAT")
    ffmpeg = _ffmpeg()

    def encode(name, rate, kbps):
        spec = bl.CODECS[name]
        out = tmp_path / f"coded.{spec.extension}"
        subprocess.run(
            [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(src), "-ac", "2", "-ar",
             str(rate), "-c:a", spec.encoder, "-b:a", str(kbps * 1000), *spec.extra_args, str(out)],
            check=True,
        )  # fmt: skip
        return out.read_bytes()

    ogg = encode("opus", 48000, 24)
    head = ogg.index(b"OpusHead")
    assert (ogg[head + 9], ogg[head + 18]) == (2, 0)  # channels, mapping family 0: one stream

    mp3 = encode("mp3", 24000, 24)
    i = 10 + ((mp3[6] << 21) | (mp3[7] << 14) | (mp3[8] << 7) | mp3[9]) if mp3[:3] == b"ID3" else 0
    kbps_table = {3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
                  2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}  # fmt: skip
    rates = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
    modes = []
    while i + 4 <= len(mp3):
        h = mp3[i : i + 4]
        assert h[0] == 0xFF and h[1] & 0xE0 == 0xE0, f"lost frame sync at {i}"
        version = (h[1] >> 3) & 3
        kbps = kbps_table[3 if version == 3 else 2][h[2] >> 4]
        rate = rates[version][(h[2] >> 2) & 3]
        tag = mp3[i + 4 : i + 40]
        if b"Info" not in tag and b"Xing" not in tag:  # the LAME tag frame carries no audio
            modes.append(h[3] >> 6)
        i += (144 if version == 3 else 72) * kbps * 1000 // rate + ((h[2] >> 1) & 1)
    assert len(modes) > 50 and set(modes) == {1}  # 1 = joint stereo
    assert bl.channel_coding("opus", 2) == bl.channel_coding("mp3", 2) == "joint stereo"
    assert bl.channel_coding("mp3", 1) == "mono"


# --------------------------------------------------------------------------- demo


def test_demo_on_a_stereo_model(ckpts, tmp_path):
    from jax_codec.demo import process
    from jax_codec.demo.engine import DemoModel

    _, _, loaded = ckpts
    model = DemoModel(loaded, max_seconds=2.0)
    assert model.joint and model.streams(2) == 1
    for channels in (2, 1):
        x = render_song(1.3, 3, SR, 2).T[:channels].astype(np.float32)
        r = process.run_codec(model, x, 2, str(tmp_path / f"run{channels}"), opus=False,
                              figures=channels == 2)  # fmt: skip
        t = x.shape[1]
        assert r["reconstruction"].shape == (channels, t) and len(r["codes"][0]) == 1
        assert r["channel_coding"] == "joint stereo"
        header, codes = bitstream.read_file(r["jcodec_path"])
        assert header.joint and header.channels == channels and len(codes) == 1
        # The page plays what `decompress` makes of the file.
        wav = str(tmp_path / f"d{channels}.wav")
        from jax_codec.inference import compress

        compress.decompress_file(r["jcodec_path"], wav, loaded, subtype="FLOAT")
        decoded = sf.read(wav, dtype="float32", always_2d=True)[0].T
        np.testing.assert_allclose(decoded, r["reconstruction"], atol=1e-5)
        text = process.format_metrics(r)
        assert ("one joint-stereo code stream" in text) == (channels == 2)


@pytest.mark.slow
def test_demo_streams_a_stereo_model(ckpts, tmp_path):
    from jax_codec.demo import process
    from jax_codec.demo.engine import DemoModel

    _, _, loaded = ckpts
    model = DemoModel(loaded, max_seconds=2.0)
    for channels in (2, 1):
        x = render_song(1.3, 3, SR, 2).T[:channels].astype(np.float32)
        s = process.run_stream(model, x, 2, str(tmp_path / f"stream{channels}"))
        assert s["output"].shape == x.shape and s["max_abs_diff_vs_offline"] < 1e-4
        assert s["kbps"] == pytest.approx(loaded.codec.bitrate_kbps(2))
        assert s["channels"] == channels
