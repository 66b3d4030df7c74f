"""SpectroStream import: the converted preset equals magenta-rt's JAX SpectroStream exactly.

The reference (`magenta_rt.jax.spectrostream.SpectroStream`, built from our preset by
`convert.spectrostream.reference_config`) gets random weights (no download): every kernel and
bias drawn, and codebooks drawn around the residuals of other audio, as trained ones sit, so
that codes vary. Converted in memory and run beside ours on the same stereo audio: codes
identical at every depth, decoded audio within 1e-4 (fp32; ours matches bit for bit on this
CPU). The tiny preset (the full structure, narrow) runs by default, the full-size one (62M
parameters, a few frames) in the slow suite. Needs magenta-rt (CI installs it, see .ci/run);
skipped without it. The file layout and the command line are tested without it.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_codec.config import load_config
from jax_codec.convert import ConversionError
from jax_codec.convert.core import abstract_params
from jax_codec.convert.spectrostream import convert_params
from jax_codec.models.codec import build_codec

TOL = 1e-4


def _stereo(frames: int, seed: int) -> np.ndarray:
    """Two different, music-like channels `[1, frames * 1920, 2]`."""
    t = np.arange(frames * 1920) / 48000.0
    rng = np.random.default_rng(seed)
    chans = []
    for _ in range(2):
        f = rng.uniform(80, 2000, 4)
        x = sum(np.sin(2 * np.pi * fi * t + rng.uniform(0, 6)) for fi in f) / 4
        chans.append(0.5 * x + 0.05 * rng.standard_normal(t.shape))
    return np.stack(chans, -1)[None].astype(np.float32)


def _random_reference(reference_shapes, seed: int) -> dict:
    """Reference `{encoder, decoder, quantizer}` params: kernels ~ N(0, 1 / fan_in), biases
    ~ N(0, 0.1), the codebooks for now N(0, 1) (`_codebooks_from_audio` replaces them)."""
    rng = np.random.default_rng(seed)

    def draw(path, s):
        name = getattr(path[-1], "key", "")
        if name == "kernel":
            return rng.standard_normal(s.shape).astype(np.float32) / np.sqrt(np.prod(s.shape[:-1]))
        scale = 0.1 if name == "bias" else 1.0
        return (scale * rng.standard_normal(s.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, reference_shapes)


def _reference_params(config, seed: int = 0):
    """(reference module, its random `{"params": ...}`)."""
    import flax.linen as nn
    import sequence_layers.jax as sl

    from jax_codec.convert.spectrostream import reference_config

    module = reference_config(config.model).make()
    x = sl.Sequence(jnp.zeros((1, 1920 * 2, 2)), jnp.ones((1, 1920 * 2), bool))
    shapes = nn.unbox(jax.eval_shape(lambda: module.init(jax.random.key(0), x, training=False)))
    params = _random_reference(shapes["params"], seed)
    # Codebooks around the residuals of other audio: level i's codes are level-i residual
    # frames of random audio, scaled, plus noise.
    embed = jax.jit(lambda p, a: module.apply(p, _seq(a), False, method="waveform_to_embeddings"))
    z = np.asarray(embed({"params": params}, jnp.asarray(_stereo(16, seed + 1))).values)[0]
    table = np.array(params["quantizer"]["embedding"])
    rng = np.random.default_rng(seed + 2)
    residual = z.copy()
    for i in range(table.shape[0]):
        pick = residual[rng.integers(0, len(residual), table.shape[1])]
        table[i] = pick * rng.uniform(0.5, 1.2, (table.shape[1], 1)) + 0.1 * rng.standard_normal(
            pick.shape
        ) * np.std(residual)
        d = -2 * residual @ table[i].T + np.sum(table[i] ** 2, -1)
        residual = residual - table[i][np.argmin(d, -1)]
    params["quantizer"]["embedding"] = table.astype(np.float32)
    return module, {"params": params}


def _seq(a):
    import sequence_layers.jax as sl

    return sl.Sequence(a, jnp.ones(a.shape[:2], bool))


def _compare(preset: str, frames: int, depths):
    pytest.importorskip(
        "magenta_rt.jax.spectrostream",
        reason="magenta-rt (SpectroStream's reference) is not installed; CI installs it: .ci/run",
    )
    config = load_config(preset)
    module, ref_params = _reference_params(config)
    audio = _stereo(frames, seed=5)
    ref_codes = jax.jit(
        lambda p, a: module.apply(p, _seq(a), False, method="waveform_to_codes").values
    )(ref_params, jnp.asarray(audio))
    decode_ref = jax.jit(
        lambda p, c: module.apply(p, _seq(c), False, method="codes_to_waveform").values
    )

    codec = build_codec(config.model, dtype="float32")
    params = convert_params(ref_params, config)
    codes = jax.jit(lambda p, a: codec.apply(p, a, method=codec.encode))(params, audio)
    k = len(codes)
    ours = np.stack([np.asarray(c) for c in codes], -1)
    theirs = np.asarray(ref_codes)
    assert ours.shape == (1, frames + 1, k)  # one more: the decoder's lookahead frame
    assert theirs.shape == (1, frames, k)
    np.testing.assert_array_equal(ours[:, :frames], theirs)
    assert len(np.unique(theirs[..., 0])) > 1 and len(np.unique(theirs[0, 0])) > 1, (
        "the test's codes do not vary; it would not catch a wrong mapping"
    )
    decode = jax.jit(lambda p, c: codec.apply(p, c, method=codec.decode))
    for depth in depths(k):
        want = np.asarray(decode_ref(ref_params, ref_codes[:, :, :depth]))
        have = np.asarray(decode(params, [c[:, :frames] for c in codes[:depth]]))
        assert want.shape == (1, (frames - 1) * 1920, 2)
        assert have.shape == (1, frames * 1920, 2)
        assert np.abs(want).max() > 1e-3
        np.testing.assert_allclose(have[:, : want.shape[1]], want, atol=TOL, rtol=0)
        np.testing.assert_array_equal(have[:, want.shape[1] :], 0.0)


def test_tiny_preset_matches_reference():
    _compare("spectrostream_48khz:tiny", frames=4, depths=lambda k: [k])


@pytest.mark.slow
def test_full_preset_matches_reference():
    _compare("spectrostream_48khz", frames=3, depths=lambda k: [1, k // 2, k])


# ------------------------------------------------------------------ file layout, command line


def _reference_tree(params: dict) -> dict:
    """Our params -> the reference's tree (the inverse of the conversion, for the layout tests):
    a `conv` level under every conv, the codebooks stacked into one embedding."""

    def nest(tree):
        if "kernel" in tree:
            return {"conv": dict(tree)}
        return {k: nest(v) for k, v in tree.items()}

    p = params["params"]
    levels = [p["quantizer"][f"level{i}"]["codebook"] for i in range(len(p["quantizer"]))]
    return {
        "encoder": nest(p["encoder"]),
        "decoder": nest(p["decoder"]),
        "quantizer": {"embedding": np.stack(levels)},
    }


def _flat(tree, prefix):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}/{k}"))
        else:
            out[f"{prefix}/{k}"] = np.asarray(v)
    return out


@pytest.fixture(scope="module")
def tiny():
    config = load_config("spectrostream_48khz:tiny")
    rng = np.random.default_rng(0)

    def draw(path, s):  # kernels ~ N(0, 1 / fan_in): activations stay finite through 30 convs
        fan = np.prod(s.shape[:-1]) if getattr(path[-1], "key", "") == "kernel" else 10.0
        return (rng.standard_normal(s.shape) / np.sqrt(fan)).astype(np.float32)

    return config, jax.tree_util.tree_map_with_path(draw, abstract_params(config))


def _save_release(folder, params, encoder: bool = True) -> str:
    """magenta_rt's layout: the checkpoint with `params/soundstream/{decoder, quantizer}` (and a
    language model), `encoder.safetensors` beside it with `params/encoder`."""
    from safetensors.numpy import save_file

    tree = _reference_tree(params)
    main = _flat({"decoder": tree["decoder"], "quantizer": tree["quantizer"]}, "params/soundstream")
    main["params/depthformer/embed/embedding"] = np.zeros((4, 3), np.float32)
    path = os.path.join(folder, "mrt2_base.safetensors")
    save_file(main, path)
    if encoder:
        save_file(
            _flat(tree["encoder"], "params/encoder"), os.path.join(folder, "encoder.safetensors")
        )
    return path


def test_in_memory_conversion_is_the_inverse_of_the_layout(tiny):
    config, params = tiny
    back = convert_params(_reference_tree(params), config)
    jax.tree.map(np.testing.assert_array_equal, back, params)


def test_conversion_errors_name_the_array(tiny):
    config, params = tiny
    tree = _reference_tree(params)
    del tree["encoder"]
    with pytest.raises(ConversionError, match="no encoder.*encoder.safetensors"):
        convert_params(tree, config)
    tree = _reference_tree(params)
    tree["decoder"]["decoder_0"]["conv2d_3x3"]["conv"]["bias"] = np.zeros(3, np.float32)
    with pytest.raises(ConversionError, match="decoder/decoder_0/conv2d_3x3/conv/bias has shape"):
        convert_params(tree, config)
    tree = _reference_tree(params)
    tree["encoder"]["extra"] = {"conv": {"kernel": np.zeros(2, np.float32)}}
    with pytest.raises(ConversionError, match="unused array encoder/extra/conv/kernel"):
        convert_params(tree, config)
    with pytest.raises(ConversionError, match="quantizer/embedding has shape"):
        convert_params(_reference_tree(params), load_config("spectrostream_48khz"))


def test_convert_command_reads_the_release_layout(tiny, tmp_path, capsys):
    from jax_codec.convert.__main__ import main
    from jax_codec.inference import load_codec

    config, params = tiny
    weights = _save_release(str(tmp_path), params)
    out = tmp_path / "converted"
    args = ["--from", "spectrostream", "--weights", weights]
    args += ["--config", "configs/spectrostream_48khz.py:tiny"]
    assert main(args + ["--output", str(out)]) == 0, capsys.readouterr().err
    info = json.loads((out / "converted.json").read_text())
    assert len(info["checkpoint"]) == 2  # the checkpoint and encoder.safetensors beside it
    loaded = load_codec(str(out))
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, loaded.params), params)

    os.remove(tmp_path / "encoder.safetensors")
    capsys.readouterr()
    assert main(args + ["--output", str(tmp_path / "again")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "encoder.safetensors" in lines[0], lines
    assert not (tmp_path / "again").exists()


@pytest.mark.slow  # ~2-4 min on 2 shared cores, compilation mostly
def test_init_from_finetunes_converted_spectrostream(tiny, tmp_path, monkeypatch):
    """`train --init_from=<converted>`: a few steps of our recipe (stereo losses and
    discriminators) on SpectroStream's architecture, from converted weights."""
    from jax_codec.config import apply_overrides
    from jax_codec.convert.core import save_converted
    from jax_codec.inference import load_codec
    from jax_codec.training import loop

    monkeypatch.setattr(loop, "EVAL_SECONDS", 0.1)
    monkeypatch.setattr(loop, "EVAL_EXAMPLES", 2)
    _, params = tiny
    config = load_config("spectrostream_48khz:runlocal,tiny")
    converted = save_converted(params, config, str(tmp_path / "converted"))
    apply_overrides(config, {"train.num_steps": "2", "train.batch_size": "8"})  # 8 test devices
    wd = str(tmp_path / "run")
    metrics = loop.train_and_evaluate(config, wd, init_from=converted)
    assert metrics["step"] == 2 and np.isfinite(metrics["loss/mel"])
    assert metrics["train/nonfinite_steps"] == 0
    trained = load_codec(wd, which="latest").params
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), trained, params)
    assert 0 < max(jax.tree.leaves(moved)) < 1.0  # started from the converted weights, trained


def test_compress_decompress_evaluate(tiny, tmp_path, capsys):
    """SpectroStream downstream, in-process on the tiny preset's weights and 1 s of stereo
    48 kHz music: `compress` (the batched --output_dir form) -> `decompress` gives
    `Codec.decode` of the file's codes (one frame more than the audio's: the decoder's
    lookahead), `evaluate` codes the same file, and so does the demo's engine."""
    import soundfile as sf

    from jax_codec import bitstream
    from jax_codec.__main__ import main
    from jax_codec.convert.core import save_converted
    from jax_codec.data.synthetic import render_song
    from jax_codec.demo.engine import DemoModel
    from jax_codec.export.artifact import ExportError, check
    from jax_codec.inference import load_codec

    config, params = tiny
    ckpt = save_converted(params, config, str(tmp_path / "converted"))
    model = ["--checkpoint", ckpt]
    song = tmp_path / "song.wav"
    x = render_song(1.0, 3, 48000, 2)
    sf.write(song, x, 48000, subtype="FLOAT")
    codes, dec = tmp_path / "codes", tmp_path / "dec"
    assert main(["compress", str(song), "--output_dir", str(codes), *model]) == 0
    argv = ["decompress", str(codes), "--output_dir", str(dec), "--subtype", "FLOAT", *model]
    assert main(argv) == 0, capsys.readouterr().err

    header, file_codes = bitstream.read_file(str(codes / "song.jcodec"))
    assert header.channel_mode_name == "joint stereo" and header.num_frames == 25 + 1
    codec = build_codec(config.model, dtype="float32")
    levels = [jnp.asarray(c)[None] for c in file_codes[0]]
    want = np.asarray(codec.apply(params, levels, len(x), method=codec.decode))[0]
    y, rate = sf.read(dec / "song.wav", dtype="float32")
    assert rate == 48000 and y.shape == x.shape and np.abs(y).max() > 1e-3
    np.testing.assert_allclose(y, np.clip(want, -1, 1), atol=1e-5, rtol=0)

    out = tmp_path / "eval"
    argv = ["evaluate", "--data", str(song), "--baselines", "none", "--n_quantizers", "4"]
    argv += ["--metrics", "mel_distance,si_sdr", "--spectrograms", "0", "--output", str(out)]
    assert main(argv + model) == 0, capsys.readouterr().err
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 1 and np.isfinite(rows[0]["mel_distance"])
    assert rows[0]["size_bytes"] == os.path.getsize(codes / "song.jcodec")

    # The demo's offline codes (what its stream panel compares against) are the file's too.
    loaded = load_codec(ckpt)
    demo = DemoModel(loaded, max_seconds=1.0)
    for have, c in zip(demo.encode(x.T), file_codes[0], strict=True):
        np.testing.assert_array_equal(have[0], c)
    # StableHLO exports it (checked by hand: docs/pretrained.md); the others say they cannot.
    with pytest.raises(ExportError, match="exports to StableHLO only"):
        check(loaded, "decoder", None, fmt="onnx")
