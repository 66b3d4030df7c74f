"""Joint stereo: mid/side, channel matching, shapes, errors, losses, streaming, data."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import soundfile as sf
from conftest import grow_params, louder

from jax_codec import losses as L
from jax_codec import stereo
from jax_codec.config import ConfigError, apply_overrides, load_config, validate_config
from jax_codec.data import audio, augment, pipeline
from jax_codec.data.sources import SyntheticClips
from jax_codec.data.synthetic import SyntheticMusic
from jax_codec.inference import chunked
from jax_codec.inference import streaming as st
from jax_codec.models.codec import Codec, build_codec
from jax_codec.models.discriminators import fold_channels
from jax_codec.models.quantizer import HierarchicalRVQ
from jax_codec.training.loop import listener_metrics
from jax_codec.training.step import Trainer

SR = 44100


def runlocal(**overrides):
    config = load_config("configs/base.py:runlocal")
    apply_overrides(config, {k: str(v) for k, v in overrides.items()})
    return config


def music(n, seconds, seed=0, channels=2):
    src = SyntheticMusic(SR, seconds, seed=seed, channels=channels)
    return np.stack([src[i] for i in range(n)]).astype(np.float32)


def pcm(shape, seed=0):
    """Random 16-bit PCM values as float32 (what a decoded wav file holds)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-32768, 32768, shape) / 32768.0).astype(np.float32)


@pytest.fixture(scope="module")
def stereo_model(runlocal_codec):
    """(codec, params) of base:runlocal as a mid/side stereo model."""
    codec = build_codec(runlocal(**{"model.channels": 2}).model)
    assert codec.channels == 2 and codec.stereo == "ms"
    return codec, louder(grow_params(runlocal_codec[1], codec))


# Delayed fusion is an ablation no preset uses (docs/stereo.md): its cases run in the slow suite.
@pytest.fixture(
    scope="module", params=[0, pytest.param(2, marks=pytest.mark.slow)], ids=["joint", "split2"]
)
def stereo_models(request, stereo_model, runlocal_codec):
    """`stereo_model`, and the same with delayed fusion (`model.stereo_split_blocks=2`: the
    encoder's first two blocks and the decoder's last two code mid and side apart)."""
    if not request.param:
        return stereo_model
    codec = build_codec(
        runlocal(**{"model.channels": 2, "model.stereo_split_blocks": request.param}).model
    )
    assert codec.stereo_split_blocks == request.param
    return codec, louder(grow_params(runlocal_codec[1], codec))


# --------------------------------------------------------------------------- transforms


def test_mid_side_round_trip_is_exact():
    x = pcm((3, 1000, 2))
    ms = stereo.to_mid_side(x)
    np.testing.assert_array_equal(ms[..., 0], (x[..., 0] + x[..., 1]) / 2)
    np.testing.assert_array_equal(ms[..., 1], (x[..., 0] - x[..., 1]) / 2)
    np.testing.assert_array_equal(stereo.from_mid_side(ms), x)
    np.testing.assert_array_equal(np.asarray(stereo.from_mid_side(stereo.to_mid_side(x))), x)
    got = stereo.from_mid_side(stereo.to_mid_side(jnp.asarray(x)))
    assert isinstance(got, jax.Array)
    np.testing.assert_array_equal(np.asarray(got), x)
    # Swapping left and right keeps the mid and negates the side.
    swapped = stereo.to_mid_side(x[..., ::-1])
    np.testing.assert_array_equal(swapped[..., 0], ms[..., 0])
    np.testing.assert_array_equal(swapped[..., 1], -ms[..., 1])


def test_match_channels():
    x = pcm((2, 50, 2))
    mono = stereo.match_channels(x, 1)
    np.testing.assert_array_equal(mono[..., 0], x.mean(axis=-1))
    dup = stereo.match_channels(mono, 2)
    np.testing.assert_array_equal(dup[..., 0], dup[..., 1])
    assert stereo.match_channels(x, 2) is x
    six = pcm((50, 6))
    np.testing.assert_array_equal(
        stereo.match_channels(six, 2), np.stack([six[:, 0::2].mean(1), six[:, 1::2].mean(1)], 1)
    )
    np.testing.assert_array_equal(audio.convert_channels(six, 2), stereo.match_channels(six, 2))
    np.testing.assert_array_equal(audio.convert_channels(six[:, 0], 2), six[:, :1].repeat(2, 1))
    assert isinstance(stereo.match_channels(jnp.asarray(x), 1), jax.Array)
    with pytest.raises(ValueError, match="cannot convert 2 channels to 3"):
        stereo.match_channels(x, 3)


# --------------------------------------------------------------------------- the model


def shapes(params) -> dict:
    return {
        jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(params)
    }


def test_stereo_shapes_and_codes_equal_mono(stereo_model, runlocal_codec):
    codec, params = stereo_model
    mono, mono_params = runlocal_codec
    t = 3001
    out = jax.eval_shape(codec.apply, params, jax.ShapeDtypeStruct((2, t, 2), jnp.float32))
    assert out.audio.shape == (2, t, 2)
    mono_out = jax.eval_shape(mono.apply, mono_params, jax.ShapeDtypeStruct((2, t, 1), jnp.float32))
    assert [c.shape for c in out.codes] == [c.shape for c in mono_out.codes]
    assert codec.bitrate_kbps() == mono.bitrate_kbps()
    assert codec.latency_samples == mono.latency_samples
    # Only the encoder's first and the decoder's last conv differ from the mono tree.
    ours, theirs = shapes(params), shapes(mono_params)
    assert ours.keys() == theirs.keys()
    differ = sorted(k for k in ours if ours[k] != theirs[k])
    assert differ == [
        "['params']['decoder']['WNConv1d_1']['bias']",
        "['params']['decoder']['WNConv1d_1']['weight_g']",
        "['params']['decoder']['WNConv1d_1']['weight_v']",
        "['params']['encoder']['WNConv1d_0']['weight_v']",
    ]


def test_old_configs_load_as_mono():
    config = runlocal()
    model = config.model.to_dict()
    del model["channels"], model["stereo"]  # a config.json written before the stereo fields
    codec = build_codec(ml_collections.ConfigDict(model))
    assert codec.channels == 1
    assert Codec().channels == 1 and Codec(channels=2).channels == 2  # unbound


@pytest.mark.slow  # an ablation knob no preset uses
def test_side_gain_scales_only_the_side_the_encoder_sees(stereo_model):
    """`model.side_gain` g: the encoder of a g-model sees (M, g S), so with the same weights it
    codes x exactly as a plain model codes the pair whose side is g times x's."""
    codec, params = stereo_model
    gained = build_codec(runlocal(**{"model.channels": 2, "model.side_gain": 4.0}).model)
    assert gained.side_gain == 4.0
    x = jnp.asarray(music(1, 0.2)) * 0.5
    wider = stereo.from_mid_side(stereo.to_mid_side(x) * jnp.asarray([1.0, 4.0]))
    ours = gained.apply(params, x, method=gained.encode)
    theirs = codec.apply(params, wider, method=codec.encode)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # ... and differs from the plain model's codes of x itself; the decoder is unchanged.
    plain = codec.apply(params, x, method=codec.encode)
    assert any(np.any(np.asarray(a) != np.asarray(b)) for a, b in zip(ours, plain, strict=True))
    np.testing.assert_array_equal(
        np.asarray(gained.apply(params, ours, method=gained.decode)),
        np.asarray(codec.apply(params, ours, method=codec.decode)),
    )
    with pytest.raises(ConfigError, match=r"model.side_gain=2.0 needs a mid/side model"):
        runlocal(**{"model.side_gain": 2.0})
    with pytest.raises(ConfigError, match=r"model.side_gain=0.0: use a positive gain"):
        runlocal(**{"model.channels": 2, "model.side_gain": 0.0})


def test_bad_channel_counts_give_clear_errors(stereo_model, runlocal_codec):
    codec, params = stereo_model
    with pytest.raises(
        ValueError, match=r"stereo and expects .*\[batch, samples, 2\].*match_channels"
    ):
        codec.apply(params, jnp.zeros((1, 4096, 1)))
    with pytest.raises(ValueError, match=r"stereo and expects"):
        codec.apply(params, jnp.zeros((1, 4096)), method=codec.encode)
    mono, mono_params = runlocal_codec
    with pytest.raises(ValueError, match=r"mono and expects .*match_channels.*fold the channels"):
        mono.apply(mono_params, jnp.zeros((1, 4096, 2)))
    with pytest.raises(ValueError, match="channels=3: use 1"):
        Codec(channels=3).init(jax.random.key(0), jnp.zeros((1, 4096, 3)))
    with pytest.raises(ConfigError, match="model.channels=3"):
        runlocal(**{"model.channels": 3})
    with pytest.raises(ConfigError, match="model.stereo='xy'"):
        runlocal(**{"model.stereo": "xy"})
    with pytest.raises(ConfigError, match="loss.stereo_weights"):
        runlocal(**{"loss.stereo_weights": "(1.0, 1.0)"})
    enc = st.StreamingEncoder(codec, params, 2)
    with pytest.raises(ValueError, match=r"or \(1, 1024, 2\)"):
        enc.push(np.zeros((1, 1000, 2), np.float32))


def test_split_layers_code_each_channel_apart(stereo_models):
    """Delayed fusion: a change of the side alone leaves the mid's row of every split layer
    as it was and changes the side's; from the first fused block on, both are mixed."""
    codec, params = stereo_models
    if not codec.stereo_split_blocks:
        pytest.skip("joint from the first conv")
    x = jnp.asarray(music(1, 0.2))
    d = 0.1 * jax.random.normal(jax.random.key(5), x.shape[:2])
    y = x + jnp.stack([d, -d], axis=-1)  # the same mid, another side

    def blocks(audio):
        _, state = codec.apply(
            params,
            audio,
            method=codec.encode,
            capture_intermediates=True,
            mutable=["intermediates"],
        )
        enc = state["intermediates"]["encoder"]
        return [np.asarray(enc[f"EncoderBlock_{i}"]["__call__"][0]) for i in range(4)]

    a, b = blocks(x), blocks(y)
    n = codec.stereo_split_blocks
    for i in range(n):  # rows: (mid, side) of the one item
        assert a[i].shape[0] == 2
        # (the mid is equal up to rounding: (L + R) / 2 of the shifted pair)
        np.testing.assert_allclose(a[i][0], b[i][0], rtol=1e-4, atol=2e-5)
        assert np.abs(a[i][1] - b[i][1]).max() > 1e-2
    assert a[n].shape[0] == 1 and np.abs(a[n] - b[n]).max() > 1e-2
    with pytest.raises(ConfigError, match=r"stereo_split_blocks=2 needs a stereo model"):
        runlocal(**{"model.stereo_split_blocks": 2})
    with pytest.raises(ConfigError, match=r"stereo_split_blocks=5 must be in \[0, 4\]"):
        runlocal(**{"model.channels": 2, "model.stereo_split_blocks": 5})
    with pytest.raises(ValueError, match=r"stereo_split_blocks=1 needs a stereo model"):
        Codec(stereo_split_blocks=1).init(jax.random.key(0), jnp.zeros((1, 4096, 1)))


def test_decoder_min_width_widens_only_the_narrow_blocks(stereo_model, runlocal_codec):
    """`model.decoder_min_width`: blocks narrower than it get it (runlocal's decoder, width
    96 over four blocks, has 48, 24, 12, 6 channels; with 12: 48, 24, 12, 12), the wider
    blocks keep theirs, and streaming still equals offline decoding."""
    codec = build_codec(runlocal(**{"model.channels": 2, "model.decoder_min_width": 12}).model)
    params = louder(grow_params(runlocal_codec[1], codec))
    dec, ref = params["params"]["decoder"], stereo_model[1]["params"]["decoder"]
    out = {i: dec[f"DecoderBlock_{i}"]["WNConvTranspose1d_0"]["bias"].shape[0] for i in range(4)}
    was = {i: ref[f"DecoderBlock_{i}"]["WNConvTranspose1d_0"]["bias"].shape[0] for i in range(4)}
    assert was == {0: 48, 1: 24, 2: 12, 3: 6} and out == {0: 48, 1: 24, 2: 12, 3: 12}
    x = music(1, 0.41, seed=2)
    codes = codec.apply(params, jnp.asarray(x), 2, method=codec.encode)
    offline = np.asarray(codec.apply(params, codes, x.shape[1], method=codec.decode))
    y, _ = st.stream_roundtrip(codec, params, x, 4, 2)
    assert y.shape == offline.shape == x.shape and np.abs(offline).max() > 1e-3
    assert np.abs(y - offline).max() <= 1e-5
    with pytest.raises(ConfigError, match=r"decoder_min_width=-1: use 0"):
        runlocal(**{"model.decoder_min_width": -1})


def test_side_from_mid_adds_a_side_made_from_the_decoded_mid(stereo_model):
    """`model.side_from_mid`: the decoder adds to its side a sum of learned FIR bands of its
    own decoded mid, each times a gain per frame from the latent. The mid is the plain model's;
    with the gains zeroed the output is the plain model's; streaming still equals offline."""
    plain, plain_params = stereo_model
    codec = build_codec(runlocal(**{"model.channels": 2, "model.side_from_mid": 4}).model)
    x = jax.ShapeDtypeStruct((1, codec.length_multiple, 2), jnp.float32)
    shapes = jax.eval_shape(codec.init, jax.random.key(0), x)["params"]["decoder"]
    assert shapes["side_bank"]["weight_v"].shape == (63, 1, 4)
    assert shapes["side_gains"]["weight_v"].shape == (3, 64, 4)
    rng = np.random.default_rng(0)
    decoder = dict(plain_params["params"]["decoder"])
    for name in ("side_bank", "side_gains"):
        decoder[name] = jax.tree.map(
            lambda s: jnp.asarray(rng.normal(size=s.shape), jnp.float32), shapes[name]
        )
    params = {**plain_params, "params": {**plain_params["params"], "decoder": decoder}}
    audio = jnp.asarray(music(1, 0.41, seed=2))
    codes = plain.apply(plain_params, audio, 2, method=plain.encode)
    n = audio.shape[1]
    ref = stereo.to_mid_side(np.asarray(plain.apply(plain_params, codes, n, method=plain.decode)))
    decoded = np.asarray(codec.apply(params, codes, n, method=codec.decode))
    out = stereo.to_mid_side(decoded)
    np.testing.assert_allclose(out[..., 0], ref[..., 0], atol=1e-6)  # the same mid
    assert np.abs(out[..., 1] - ref[..., 1]).max() > 1e-2  # a different side
    off = {**decoder, "side_gains": jax.tree.map(jnp.zeros_like, decoder["side_gains"])}
    zeroed = {**params, "params": {**params["params"], "decoder": off}}
    same = np.asarray(codec.apply(zeroed, codes, n, method=codec.decode))
    np.testing.assert_allclose(stereo.to_mid_side(same), ref, atol=1e-6)
    y, _ = st.stream_roundtrip(codec, params, np.asarray(audio), 4, 2)
    assert np.abs(y - decoded).max() <= 1e-5  # the encoder is the plain model's
    for bad, match in (
        ({"model.side_from_mid": -1}, r"side_from_mid=-1: use 0"),
        ({"model.side_from_mid": 4}, r"side_from_mid=4 needs a joint mid/side model"),
        ({"model.channels": 2, "model.stereo": "lr", "model.side_from_mid": 4}, "mid/side"),
    ):
        with pytest.raises(ConfigError, match=match):
            runlocal(**bad)


def test_side_decoder_decodes_the_side_apart():
    """`model.side_decoder_width`: mid and side come from two decoders over the same latent,
    so each one's weights move only its own channel; the code stream is the plain model's
    shape and streaming still equals offline."""
    config = runlocal(**{"model.channels": 2, "model.side_decoder_width": 16})
    codec = build_codec(config.model)
    audio = jnp.asarray(music(1, 0.41, seed=2))
    params = jax.jit(codec.init)({"params": jax.random.key(0)}, audio)
    decoder = params["params"]["decoder"]
    assert set(decoder) == {"mid", "side"}
    assert decoder["side"]["WNConv1d_0"]["weight_v"].shape[-1] == 16
    assert decoder["mid"]["WNConv1d_0"]["weight_v"].shape[-1] == config.model.decoder_width
    codes = jax.jit(lambda p, a: codec.apply(p, a, 2, method=codec.encode))(params, audio)
    n = audio.shape[1]
    decode = jax.jit(lambda p, c: codec.apply(p, c, n, method=codec.decode))
    frames = -(-n // codec.length_multiple) * codec.length_multiple // codec.hop_length
    assert [c.shape for c in codes] == [(1, frames // s) for s in codec.vq_strides[:2]]

    def decoded(which, seed):
        rng = np.random.default_rng(seed)
        moved = {
            **decoder,
            which: jax.tree.map(lambda a: a + 0.1 * rng.normal(size=a.shape), decoder[which]),
        }
        p = {**params, "params": {**params["params"], "decoder": moved}}
        return stereo.to_mid_side(np.asarray(decode(p, codes)))

    ref = stereo.to_mid_side(np.asarray(decode(params, codes)))
    for which, kept in (("side", 0), ("mid", 1)):
        out = decoded(which, 3)
        np.testing.assert_allclose(out[..., kept], ref[..., kept], atol=1e-6)
        assert np.abs(out[..., 1 - kept] - ref[..., 1 - kept]).max() > 1e-3
    y, _ = st.stream_roundtrip(codec, params, np.asarray(audio), 4, 2)
    assert np.abs(y - stereo.from_mid_side(ref)).max() <= 1e-5
    for bad, match in (
        ({"model.side_decoder_width": -1}, r"side_decoder_width=-1: use 0"),
        ({"model.side_decoder_width": 16}, r"side_decoder_width=16 needs a joint mid/side"),
        ({"model.channels": 2, "model.stereo": "lr", "model.side_decoder_width": 16}, "mid/side"),
        (
            {"model.channels": 2, "model.side_from_mid": 4, "model.side_decoder_width": 16},
            "side_from_mid=0",
        ),
    ):
        with pytest.raises(ConfigError, match=match):
            runlocal(**bad)


def test_side_levels_quantize_a_side_latent_of_their_own():
    """`HierarchicalRVQ(side_levels, side_dim)`: the side levels are a residual VQ of the side
    latent `[..., D:]`, the others one of the joint latent `[..., :D]`, each exactly as a
    quantizer of that part alone with those levels' weights; training output equals decode."""
    d, ds, strides = 6, 3, (2, 1, 1, 1)
    q = HierarchicalRVQ(d, strides, 16, 4, 0.0, side_levels=(1, 3), side_dim=ds)
    z = jax.random.normal(jax.random.key(1), (2, 8, d + ds))
    params = q.init(jax.random.key(0), z)
    assert params["params"]["level1"]["in_proj"]["weight_v"].shape[1] == ds
    assert params["params"]["level2"]["in_proj"]["weight_v"].shape[1] == d
    codes = q.apply(params, z, 4, method=q.encode)

    def alone(levels, dim, part):
        sub = HierarchicalRVQ(dim, tuple(strides[i] for i in levels), 16, 4, 0.0)
        p = {"params": {f"level{j}": params["params"][f"level{i}"] for j, i in enumerate(levels)}}
        return sub, p, sub.apply(p, part, len(levels), method=sub.encode)

    joint, pj, joint_codes = alone((0, 2), d, z[..., :d])
    side, ps, side_codes = alone((1, 3), ds, z[..., d:])
    for have, want in zip(codes, (joint_codes[0], side_codes[0], joint_codes[1], side_codes[1])):
        np.testing.assert_array_equal(np.asarray(have), np.asarray(want))
    latent = np.asarray(q.apply(params, codes, method=q.decode))
    np.testing.assert_allclose(latent[..., :d], joint.apply(pj, joint_codes, method=joint.decode))
    np.testing.assert_allclose(latent[..., d:], side.apply(ps, side_codes, method=side.decode))
    # Two levels: the side latent has one level, the joint one.
    two = np.asarray(q.apply(params, codes[:2], method=q.decode))
    np.testing.assert_allclose(two[..., :d], joint.apply(pj, joint_codes[:1], method=joint.decode))
    out = q.apply(params, z, 3)
    np.testing.assert_allclose(
        np.asarray(out.quantized), q.apply(params, codes[:3], method=q.decode), atol=1e-6
    )
    for kwargs, match in (
        ({"side_levels": (0,), "side_dim": ds}, "levels 1..3"),
        ({"side_levels": (1,), "side_dim": 0}, "side_dim >= 1"),
        ({"side_dim": ds}, "without side_levels"),
    ):
        with pytest.raises(ValueError, match=match):
            HierarchicalRVQ(d, strides, 16, 4, **kwargs).init(jax.random.key(0), z)


SIDE_BITS = {
    "model.channels": 2,
    "model.side_decoder_width": 16,
    "model.side_latent_dim": 8,
    "model.side_levels": "(2,)",
}


def test_side_levels_are_read_by_the_side_decoder_only():
    """`model.side_latent_dim` / `model.side_levels`: the encoder adds a side latent, a side
    level's codes change the decoded side and leave the mid bit for bit as it was; the level
    rates (so the bitrate), the code shapes and streaming are as for any model."""
    config = runlocal(**SIDE_BITS)
    codec = build_codec(config.model)
    plain = build_codec(runlocal(**{"model.channels": 2}).model)
    assert codec.side_levels == (2,) and codec.latent_channels == config.model.latent_dim + 8
    assert codec.bitrate_kbps() == plain.bitrate_kbps()
    audio = jnp.asarray(music(1, 0.41, seed=2))
    params = louder(jax.jit(codec.init)({"params": jax.random.key(0)}, audio))
    decoder = params["params"]["decoder"]
    assert decoder["mid"]["WNConv1d_0"]["weight_v"].shape[1] == config.model.latent_dim
    assert decoder["side"]["WNConv1d_0"]["weight_v"].shape[1] == config.model.latent_dim + 8
    n = audio.shape[1]
    encode = jax.jit(lambda p, a, k: codec.apply(p, a, k, method=codec.encode), static_argnums=2)
    decode = jax.jit(lambda p, c: codec.apply(p, c, n, method=codec.decode))
    codes = {k: encode(params, audio, k) for k in (2, 3, 4)}
    for a, b in zip(codes[3], codes[4][:3], strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ms = {  # the decoders' own mid and side
        k: np.asarray(codec.apply(params, c, method=lambda m, c: m.decoder(m.quantizer.decode(c))))
        for k, c in codes.items()
    }
    np.testing.assert_array_equal(ms[3][..., 0], ms[2][..., 0])  # the side level: side only
    assert np.abs(ms[3][..., 1] - ms[2][..., 1]).max() > 1e-4
    assert np.abs(ms[4][..., 0] - ms[3][..., 0]).max() > 1e-4  # the next joint level: mid too
    ref = np.asarray(decode(params, codes[3]))
    np.testing.assert_allclose(ref, stereo.from_mid_side(ms[3])[:, :n], atol=1e-6)
    out = codec.apply(params, audio, 3)
    np.testing.assert_allclose(np.asarray(out.audio), ref, atol=1e-5)
    y, _ = st.stream_roundtrip(codec, params, np.asarray(audio), 4, 3)
    assert np.abs(y - ref).max() <= 1e-5
    for bad, match in (
        ({"model.side_latent_dim": 8}, "side bits need"),
        ({"model.side_latent_dim": 8, "model.side_levels": "(2,)"}, "side bits need"),
        (
            {
                "model.side_latent_dim": 8,
                "model.side_levels": "(0,)",
                "model.side_decoder_width": 16,
            },
            "level 0 is always joint",
        ),
        (
            {
                "model.side_latent_dim": 8,
                "model.side_levels": "(2,)",
                "model.side_decoder_width": 16,
                "model.quantizer": "plain",
                "model.codebook_dim": 64,
            },
            "as wide as the joint one",
        ),
    ):
        with pytest.raises(ConfigError, match=match):
            runlocal(**{"model.channels": 2, **bad})


def test_side_gate_scales_only_the_side(stereo_model):
    """`model.side_gate`: the decoded side times sigmoid(10 a(t) + 4), a(t) per frame from
    the latent. The mid is the plain model's; a constant a gives the plain side times its gate,
    a very negative one a side ~0 (left = right) after the first frame's ramp; streaming
    still equals offline."""
    from jax_codec.models.decoder import SIDE_GATE_OFFSET, SIDE_GATE_SCALE

    plain, plain_params = stereo_model
    codec = build_codec(runlocal(**{"model.channels": 2, "model.side_gate": True}).model)
    x = jax.ShapeDtypeStruct((1, codec.length_multiple, 2), jnp.float32)
    shape = jax.eval_shape(codec.init, jax.random.key(0), x)["params"]["decoder"]["side_gate"]
    assert shape["weight_v"].shape == (3, 64, 1)
    audio = jnp.asarray(music(1, 0.41, seed=2))
    codes = plain.apply(plain_params, audio, 2, method=plain.encode)
    n = audio.shape[1]
    hop = codec.hop_length
    ref = stereo.to_mid_side(np.asarray(plain.apply(plain_params, codes, n, method=plain.decode)))

    def with_gate(weight_g, bias):
        gate = {
            "weight_v": jnp.ones(shape["weight_v"].shape, jnp.float32),
            "weight_g": jnp.full(shape["weight_g"].shape, weight_g, jnp.float32),
            "bias": jnp.full(shape["bias"].shape, bias, jnp.float32),
        }
        decoder = {**plain_params["params"]["decoder"], "side_gate": gate}
        return {**plain_params, "params": {**plain_params["params"], "decoder": decoder}}

    def decode(params):
        return np.asarray(codec.apply(params, codes, n, method=codec.decode))

    # A constant a = b (no weights): past the first frame's ramp (from a = 0), the side is the
    # plain model's times sigmoid(10 b + 4); the mid is untouched.
    for b in (0.0, -0.3):
        out = stereo.to_mid_side(decode(with_gate(0.0, b)))
        np.testing.assert_allclose(out[..., 0], ref[..., 0], atol=1e-6)
        gain = 1.0 / (1.0 + np.exp(-(SIDE_GATE_SCALE * b + SIDE_GATE_OFFSET)))
        np.testing.assert_allclose(out[:, hop:, 1], ref[:, hop:, 1] * gain, atol=1e-6)
    assert np.abs(ref[:, hop:, 1]).max() > 1e-2  # the plain side is not already silent
    shut = decode(with_gate(0.0, -6.0))
    assert np.abs(shut[:, hop:, 0] - shut[:, hop:, 1]).max() < 1e-9  # left = right
    # A gate that reads the latent (random weights) streams as it decodes offline.
    params = with_gate(0.1, -0.1)
    rng = np.random.default_rng(0)
    gate = params["params"]["decoder"]["side_gate"]
    gate["weight_v"] = jnp.asarray(rng.normal(size=shape["weight_v"].shape), jnp.float32)
    decoded = decode(params)
    assert np.abs(stereo.to_mid_side(decoded)[..., 1] - ref[..., 1]).max() > 1e-3
    y, _ = st.stream_roundtrip(codec, params, np.asarray(audio), 4, 2)
    assert np.abs(y - decoded).max() <= 1e-5
    for bad, match in (
        ({"model.side_gate": True}, r"side_gate=True needs a joint mid/side model"),
        ({"model.channels": 2, "model.stereo": "lr", "model.side_gate": True}, "mid/side"),
        (
            {"model.channels": 2, "model.side_from_mid": 4, "model.side_gate": True},
            "side_from_mid=0, model.side_decoder_width=0",
        ),
    ):
        with pytest.raises(ConfigError, match=match):
            runlocal(**bad)


def test_causality_per_channel(stereo_models):
    codec, params = stereo_models
    lat = codec.latency_samples
    t_total, t = 8 * 2048, 9000
    x = jax.random.normal(jax.random.key(3), (1, t_total, 2)) * 0.3
    fwd = jax.jit(codec.apply)
    a = np.asarray(fwd(params, x).audio)
    cut = t - lat
    for ch in (0, 1):  # new future in one channel only
        noise = jax.random.normal(jax.random.key(4 + ch), (1, t_total - t))
        b = np.asarray(fwd(params, x.at[:, t:, ch].set(noise)).audio)
        np.testing.assert_array_equal(b[:, :cut], a[:, :cut])  # both channels' past
        assert np.abs(b[:, t + lat :] - a[:, t + lat :]).max() > 1e-3  # and it was heard


def test_mono_input_to_a_stereo_model_and_back(stereo_model, runlocal_codec):
    """The public (streaming / chunked) API matches channels: mono is duplicated for a stereo
    model, stereo mixed down for a mono one; `[B, T]` is mono."""
    codec, params = stereo_model
    x = music(1, 0.2, channels=1)
    codes = chunked.chunked_encode(codec, params, x)
    dup = chunked.chunked_encode(codec, params, np.repeat(x[..., None], 2, axis=-1))
    for a, b in zip(codes, dup):
        np.testing.assert_array_equal(a, b)
    assert chunked.chunked_decode(codec, params, codes, x.shape[1]).shape == (1, x.shape[1], 2)
    mono, mono_params = runlocal_codec
    xs = music(1, 0.2)
    down = chunked.chunked_encode(mono, mono_params, xs)
    ref = chunked.chunked_encode(mono, mono_params, xs.mean(axis=-1))
    for a, b in zip(down, ref):
        np.testing.assert_array_equal(a, b)
    assert chunked.chunked_decode(mono, mono_params, down, xs.shape[1]).shape == (1, xs.shape[1])


# --------------------------------------------------------------------------- streaming


def test_stereo_stream_equals_offline(stereo_models):
    """One case (3 frames: not a divisor of the block; 2 of 4 levels; 2 streams): the chunk
    arithmetic is the mono stream's, tested at length in tests/test_streaming.py. With delayed
    fusion the split layers' caches hold a row per channel."""
    codec, params = stereo_models
    chunk_frames, k, batch = 3, 2, 2
    x = music(batch, 0.41, seed=chunk_frames)
    codes = codec.apply(params, jnp.asarray(x), k, method=codec.encode)
    ref = np.asarray(codec.apply(params, codes, x.shape[1], method=codec.decode))
    y, frame_codes = st.stream_roundtrip(codec, params, x, chunk_frames, k)
    got = st.from_frame_codes(codec, jnp.asarray(frame_codes))
    for want, have in zip(codes, got, strict=True):
        np.testing.assert_array_equal(np.asarray(have)[:, : want.shape[1]], np.asarray(want))
    assert y.shape == ref.shape == x.shape
    assert np.abs(ref[..., 1] - ref[..., 0]).max() > 1e-3  # two different channels
    assert np.abs(y - ref).max() <= 1e-5


def symmetric_params(params):
    """Weights for which the "lr" model treats left and right alike: every channel axis
    (including the audio's left|right) is read as two halves, and every weight is averaged with
    itself under the swap of the halves of all its channel axes; codebooks hold each entry and
    its half-swapped copy. Then swap(encode(x)) is a permutation of the codes (entry k <-> its
    copy), and decode(swap(x)) = swap(decode(x))."""

    def half_swap(n):
        return np.roll(np.arange(n), n // 2)

    def f(path, v):
        name, v = jax.tree_util.keystr(path), np.asarray(v)
        if name.endswith("['codebook']"):
            half = v.shape[0] // 2
            return np.concatenate([v[:half], v[:half][:, half_swap(v.shape[1])]])
        if v.ndim == 1:
            return (v + v[half_swap(len(v))]) / 2
        assert v.ndim == 3, name  # conv kernels [k, Cin, Cout]
        swapped = v[:, half_swap(v.shape[1])][:, :, half_swap(v.shape[2])]
        return (v + swapped) / 2

    return jax.tree_util.tree_map_with_path(f, params)


@pytest.mark.parametrize(
    "split", [0, pytest.param(2, marks=pytest.mark.slow)], ids=["joint", "split2"]
)
def test_lr_swap_swaps_the_output_of_a_symmetric_model(stereo_model, runlocal_codec, split):
    """A joint code stream has no built-in left/right symmetry (a trained model only learns it,
    helped by `data.augment.swap_prob`), so this is checked on a model symmetric by
    construction (`symmetric_params`): swapping L and R in the input must swap them in the
    output, offline and streaming. This catches any place that mixes up the channel axis
    (folding, caches, the final conv) while the two channels still differ. With delayed fusion
    (`split`), the halves of the fused layers' channels are the left's and the right's
    features, so this also checks the order in which they are joined and parted."""
    overrides = {"model.channels": 2, "model.stereo": "lr", "model.stereo_split_blocks": split}
    codec = build_codec(runlocal(**overrides).model)
    base = stereo_model[1] if not split else louder(grow_params(runlocal_codec[1], codec))
    params = symmetric_params(base)
    x = music(1, 0.3)
    fwd = jax.jit(codec.apply)
    a, b = fwd(params, jnp.asarray(x)), fwd(params, jnp.asarray(x[..., ::-1].copy()))
    half = codec.codebook_size // 2
    for ca, cb in zip(a.codes, b.codes, strict=True):
        np.testing.assert_array_equal(np.asarray(cb), (np.asarray(ca) + half) % codec.codebook_size)
    ya, yb = np.asarray(a.audio), np.asarray(b.audio)
    assert np.abs(ya[..., 0] - ya[..., 1]).max() > 1e-3  # the channels differ
    np.testing.assert_allclose(yb, ya[..., ::-1], atol=1e-5)
    sa, _ = st.stream_roundtrip(codec, params, x, 2)
    sb, _ = st.stream_roundtrip(codec, params, x[..., ::-1], 2)
    np.testing.assert_allclose(sb, sa[..., ::-1], atol=1e-5)
    np.testing.assert_allclose(sa, ya, atol=1e-5)


# --------------------------------------------------------------------------- losses, training


def tiny_stereo_config(**overrides):
    """A stereo model small enough to compile a train step quickly on a CPU."""
    base = {
        "model.channels": 2,
        "model.encoder_strides": "(2, 4)",
        "model.decoder_strides": "(4, 2)",
        "model.decoder_width": 32,
        "model.dilations": "(1,)",
        "model.latent_dim": 16,
        "model.vq_strides": "(2, 1)",
        "model.codebook_size": 16,
        "model.codebook_dim": 4,
        "discriminator.kinds": "('mpd', 'mrd')",
        "discriminator.periods": "(2,)",
        "discriminator.channels": 4,
        "discriminator.mrd_window_lengths": "(256,)",
        "loss.mel_window_lengths": "(64, 256)",
        "loss.mel_n_mels": "(10, 40)",
        "loss.onset_weight": 0.0,
        "train.batch_size": 2,
        "train.segment_seconds": 0.05,
        "optim.warmup_steps": 0,
    }
    base.update(overrides)
    return runlocal(**base)


def test_losses_see_left_right_mid_and_side():
    trainer = Trainer(tiny_stereo_config())
    losses = jax.jit(trainer.stereo_reconstruction_losses)
    x = jnp.asarray(music(2, 0.05))
    y = x * 0.5 + 0.01
    parts, per_signal = losses(y, x)
    assert set(parts) == {"mel", "stft"} and per_signal["mel"].shape == (4,)
    np.testing.assert_allclose(parts["mel"], per_signal["mel"].mean(), rtol=1e-6)
    # A target that differs only in its side: the mid term is unchanged, the side term is not.
    ms = stereo.to_mid_side(x)
    x2 = stereo.from_mid_side(ms.at[..., 1].set(-0.7 * ms[..., 1]))
    parts2, per2 = losses(y, x2)
    mid, side = stereo.STEREO_SIGNALS.index("mid"), stereo.STEREO_SIGNALS.index("side")
    np.testing.assert_allclose(per2["mel"][mid], per_signal["mel"][mid], rtol=1e-6)
    assert abs(float(per2["mel"][side] - per_signal["mel"][side])) > 0.05
    assert abs(float(parts2["mel"] - parts["mel"])) > 0.01
    # The objective treats left and right alike: swapping both swaps the L and R terms.
    parts_s, per_s = losses(y[..., ::-1], x[..., ::-1])
    np.testing.assert_allclose(per_s["mel"], per_signal["mel"][np.array([1, 0, 2, 3])], rtol=1e-6)
    np.testing.assert_allclose(parts_s["mel"], parts["mel"], rtol=1e-6)
    # Signals with weight 0 are not computed; the others keep a weighted mean.
    only = Trainer(tiny_stereo_config(**{"loss.stereo_weights": "(0.0, 0.0, 1.0, 3.0)"}))
    parts3, per3 = only.stereo_reconstruction_losses(y, x)
    assert only.stereo_index == (2, 3) and per3["mel"].shape == (2,)
    np.testing.assert_allclose(
        parts3["mel"], 0.25 * per_signal["mel"][mid] + 0.75 * per_signal["mel"][side], rtol=1e-5
    )


def test_fold_channels():
    x = jnp.asarray(pcm((2, 10, 2)))
    f = fold_channels(x)
    assert f.shape == (4, 10, 1)
    np.testing.assert_array_equal(f[1, :, 0], x[0, :, 1])
    np.testing.assert_array_equal(f[2, :, 0], x[1, :, 0])
    mono = x[..., :1]
    assert fold_channels(mono) is mono


def test_discriminators_see_the_stereo_pair():
    """`discriminator.stereo="channels"`: the pair enters as two input channels, so only each
    first conv differs from the mono tree and the discriminators see how the channels relate;
    "rows" (the default) keeps the mono tree (each channel its own example)."""
    from jax_codec.models.discriminators import build_discriminators

    config = tiny_stereo_config(
        **{"discriminator.kinds": "('mpd', 'msd', 'mrd')", "discriminator.stereo": "channels"}
    )
    disc = build_discriminators(config.discriminator)
    x = jnp.asarray(pcm((2, 1024, 2)))
    mono = jax.eval_shape(disc.init, jax.random.key(0), x[..., :1])
    params = jax.jit(disc.init)(jax.random.key(0), x)
    leaves = jax.tree_util.tree_leaves_with_path
    wider = [
        jax.tree_util.keystr(k)
        for (k, a), (_, b) in zip(leaves(mono), leaves(params), strict=True)
        if a.shape != b.shape
    ]
    # MPD and MSD take 2 input channels instead of 1, MRD (re, im) of both channels.
    assert wider and all("conv0" in k and "weight_v" in k for k in wider), wider
    assert {k.split("']['")[1] for k in wider} == {"mpd", "msd", "mrd"}
    apply = jax.jit(disc.apply)  # one compile for every input below
    out = apply(params, x)
    swapped = apply(params, x[..., ::-1])
    side_only = apply(params, x.at[..., 1].set(x[..., 0]))
    for (a, _), (b, _), (c, _) in zip(out, swapped, side_only, strict=True):
        assert not np.allclose(a, b) and not np.allclose(a, c)  # the image is seen
    # Peak-normalised over both channels together: halving one channel is not undone.
    quiet_right = x * jnp.asarray([1.0, 0.5])
    assert not np.allclose(apply(params, quiet_right)[0][0], out[0][0])
    np.testing.assert_allclose(apply(params, 3.0 * x)[0][0], out[0][0], rtol=1e-4)

    channels = Trainer(config)
    assert channels.disc_input(x) is x
    rows = Trainer(tiny_stereo_config())
    assert rows.config.discriminator.stereo == "rows"
    assert rows.disc_input(x).shape == (4, 1024, 1)
    # "ms": each example's mid, then its side, as mono rows (the mono tree's input).
    ms = Trainer(tiny_stereo_config(**{"discriminator.stereo": "ms"}))
    folded = np.asarray(ms.disc_input(x))
    assert folded.shape == (4, 1024, 1)
    left, right = np.asarray(x[..., 0]), np.asarray(x[..., 1])
    np.testing.assert_allclose(folded[0::2, :, 0], (left + right) / 2, atol=1e-7)
    np.testing.assert_allclose(folded[1::2, :, 0], (left - right) / 2, atol=1e-7)
    with pytest.raises(ConfigError, match="discriminator.stereo='both'.*channels"):
        Trainer(tiny_stereo_config(**{"discriminator.stereo": "both"}))


def test_ms_level_discriminators_keep_the_side_level_against_the_mid():
    """`discriminator.stereo="ms_level"`: mid and side rows normalised by one peak per example,
    so a quiet side reaches the discriminators quiet (with "ms" each row has its own peak)."""
    rng = np.random.default_rng(1)
    mid = 0.5 * rng.standard_normal((2, 1024))
    side = 0.05 * rng.standard_normal((2, 1024))
    x = stereo.from_mid_side(jnp.asarray(np.stack([mid, side], -1), jnp.float32))
    level = Trainer(tiny_stereo_config(**{"discriminator.stereo": "ms_level"}))
    ms = Trainer(tiny_stereo_config(**{"discriminator.stereo": "ms"}))
    assert not level.disc.normalize_input  # the rows are normalised before folding
    folded = np.asarray(level.disc_input(x))
    assert folded.shape == (4, 1024, 1)
    peaks = np.abs(folded).max(axis=1)[:, 0]
    np.testing.assert_allclose(peaks[0::2], 0.8, rtol=1e-5)  # the mid reaches the peak
    assert (peaks[1::2] < 0.2).all()  # its side stays about 20 dB down
    ref = np.asarray(stereo.to_mid_side(x))
    ref = ref - ref.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(
        folded[1::2, :, 0] / folded[0::2, :, 0], ref[..., 1] / ref[..., 0], rtol=1e-4
    )
    # A common gain is normalised away; a louder side is not (with "ms" it would be).
    np.testing.assert_allclose(level.disc_input(3.0 * x), folded, rtol=1e-5, atol=1e-7)
    wider = stereo.from_mid_side(stereo.to_mid_side(x) * jnp.asarray([1.0, 2.0]))
    params = jax.jit(level.disc.init)(jax.random.key(0), folded[:1])
    apply, ms_apply = jax.jit(level.disc.apply), jax.jit(ms.disc.apply)  # one compile each
    out = apply(params, level.disc_input(x))
    out_wider = apply(params, level.disc_input(wider))
    assert not np.allclose(out[0][0][1::2], out_wider[0][0][1::2])  # the side rows differ
    np.testing.assert_allclose(out[0][0][0::2], out_wider[0][0][0::2], rtol=1e-5)  # the mid's not
    assert ms.disc.normalize_input
    ms_out = ms_apply(params, ms.disc_input(x))
    ms_wider = ms_apply(params, ms.disc_input(wider))
    np.testing.assert_allclose(ms_out[0][0], ms_wider[0][0], rtol=1e-4, atol=1e-6)
    # Mono input is normalised as the discriminators would normalise it themselves.
    mono = jnp.concatenate([x, -x])[..., :1]  # as many rows as the pairs fold into
    np.testing.assert_allclose(
        apply(params, level.disc_input(mono))[0][0],
        ms_apply(params, ms.disc_input(mono))[0][0],
        rtol=1e-5,
        atol=1e-6,
    )


def test_init_from_takes_discriminators_only_with_their_input_channels():
    from jax_codec.convert.finetune import _disc_architecture

    mono = tiny_stereo_config(**{"model.channels": 1})
    stereo = tiny_stereo_config(**{"discriminator.stereo": "channels"})
    rows = tiny_stereo_config()
    assert _disc_architecture(mono)["input_channels"] == 1
    assert _disc_architecture(stereo)["input_channels"] == 2
    assert _disc_architecture(rows)["input_channels"] == 1  # a mono tree: mono ones fit
    old = json.loads(mono.to_json())
    del old["discriminator"]["stereo"]  # a config saved before the field: mono input
    assert _disc_architecture(old) == _disc_architecture(mono)


def test_stereo_image_loss_sees_level_and_correlation_cues():
    # A centred tone and two partly shared noises: a stereo image with both cues.
    rng = np.random.default_rng(0)
    t = np.arange(4410) / SR
    shared, own = rng.standard_normal((2, 4410))
    tone = np.sin(2 * np.pi * 440 * t)
    x = jnp.asarray(np.stack([tone + shared + 0.5 * own, 0.5 * tone + shared - 0.5 * own], -1))
    x = (0.1 * x[None]).astype(jnp.float32)
    ms = stereo.to_mid_side(x)
    loss = jax.jit(lambda y, t: L.stereo_image_loss(y, t, SR))
    assert float(loss(x, x)) < 1e-5
    assert float(loss(3.0 * x, x)) < 1e-4  # a common gain keeps both cues
    # Each cue alone moves it: a level shift between the channels (ILD), a wider image at
    # equal channel levels (ICC: the side louder, the mid quieter), and a swap.
    for changed in (
        x * jnp.asarray([1.0, 0.5]),
        stereo.from_mid_side(ms * jnp.asarray([0.5, 2.0])),
        x[..., ::-1],
    ):
        assert float(loss(changed, x)) > 0.05
    # Per-signal log-mel losses cannot see a decorrelated pair with the right spectra; this can.
    delayed = jnp.stack([x[..., 0], jnp.roll(x[..., 1], 1000, axis=1)], -1)
    assert float(loss(delayed, x)) > 0.1
    grad = jax.grad(lambda y: L.stereo_image_loss(y, x, SR))(0.5 * x + 0.01)
    assert np.isfinite(np.asarray(grad)).all() and float(jnp.abs(grad).max()) > 0
    with pytest.raises(ValueError, match=r"\[B, T, 2\]"):
        L.stereo_image_loss(x[..., :1], x[..., :1], SR)
    with pytest.raises(ConfigError, match="stereo_image_weight"):
        validate_config(tiny_stereo_config(**{"loss.stereo_image_weight": -1.0}))
    # The default trains it for stereo models; a mono model's losses have no such term.
    assert Trainer(tiny_stereo_config()).weights["stereo_image"] > 0
    assert "stereo_image" not in Trainer(runlocal())._active_losses()


@pytest.mark.slow
def test_stereo_train_and_eval_step():
    config = tiny_stereo_config()
    trainer = Trainer(config)
    state = jax.jit(trainer.init_state)(jax.random.key(0))
    assert state.gen_params["params"]["encoder"]["WNConv1d_0"]["weight_v"].shape[1] == 2
    batch = jnp.asarray(music(2, trainer.segment / SR))[:, : trainer.segment]
    assert batch.shape == trainer.batch_shape(2) == (2, trainer.segment, 2)
    step = jax.jit(trainer.train_step)
    for _ in range(2):
        state, metrics = step(state, batch, jax.random.key(1))
    metrics = jax.device_get(metrics)
    assert int(state.nonfinite_steps) == 0
    keys = ("loss/mel", "loss/mel/left", "loss/mel/side", "loss/stft/mid", "loss/stereo_image")
    for key in keys + ("loss/adv_g",):
        assert np.isfinite(metrics[key]), key
    out = jax.device_get(trainer.eval_step(state.gen_params, batch, None))
    assert out["audio"].shape == batch.shape
    assert np.isfinite(out["mel"]) and np.isfinite(out["mel_side"])
    long = music(2, 0.5)
    m = listener_metrics(long, 0.5 * long, SR, 2)
    assert abs(m["eval/level_error_db/2q"] + 6.02) < 0.1 and m["eval/si_sdr/2q"] > 90


@pytest.mark.slow
def test_side_levels_train_with_the_presets_codebook_update():
    """Side bits under the preset's quantizer (EnCodec's, codebook update by EMA, dead-code
    restarts): the side level's codebook, of the side latent's width, is updated from the
    side latent's vectors, and the steps stay finite."""
    config = tiny_stereo_config(
        **{
            "model.vq_strides": "(2, 1, 1)",
            "model.quantizer": "plain",
            "model.codebook_dim": 16,
            "model.quantizer_dropout": 0.0,
            "model.side_decoder_width": 32,
            "model.side_latent_dim": 16,
            "model.side_levels": "(1,)",
            "train.codebook_ema_decay": 0.9,
            "loss.codebook_weight": 0.0,
        }
    )
    trainer = Trainer(config)
    state = jax.jit(trainer.init_state)(jax.random.key(0))
    before = jax.device_get(state.gen_params["params"]["quantizer"])
    assert before["level1"]["codebook"].shape == (16, 16)
    batch = jnp.asarray(music(2, trainer.segment / SR))[:, : trainer.segment]
    step = jax.jit(trainer.train_step)
    for _ in range(2):
        state, metrics = step(state, batch, jax.random.key(1))
    assert int(state.nonfinite_steps) == 0
    assert np.isfinite(jax.device_get(metrics["loss/mel/side"]))
    after = jax.device_get(state.gen_params["params"]["quantizer"])
    for level in ("level0", "level1", "level2"):
        assert np.abs(after[level]["codebook"] - before[level]["codebook"]).max() > 1e-4, level
    assert all(np.isfinite(v).all() for v in jax.tree.leaves(after))


@pytest.mark.slow
def test_stereo_training_run(tmp_path, monkeypatch):
    """The loop end to end on stereo synthetic music: sharded steps, evaluation (listener
    metrics, TensorBoard audio), the best/ export, and loading it back."""
    from jax_codec.inference import load_codec
    from jax_codec.training import loop

    monkeypatch.setattr(loop, "EVAL_SECONDS", 0.5)  # loudness needs 0.4 s
    monkeypatch.setattr(loop, "EVAL_EXAMPLES", 2)
    config = tiny_stereo_config(
        **{
            "train.batch_size": 8,
            "train.num_steps": 2,
            "train.log_every": 1,
            "train.eval_every": 2,
            "train.checkpoint_every": 2,
            "data.num_threads": 0,
        }
    )
    metrics = loop.train_and_evaluate(config, str(tmp_path))
    assert metrics["step"] == 2
    for key in ("loss/mel/side", "eval/mel/2q", "eval/mel_side/1q", "eval/loudness_diff/2q"):
        assert np.isfinite(metrics[key]), key
    # Mono fed in: an untrained joint model adds a side of its own, well above "none" (-240).
    assert -200 < metrics["eval/mono_side_db"] < 60
    loaded = load_codec(str(tmp_path))
    assert loaded.codec.channels == 2
    assert loaded.params["params"]["decoder"]["WNConv1d_1"]["bias"].shape == (2,)


# --------------------------------------------------------------------------- data


def test_pipeline_keeps_stereo_pairs_together(tmp_path):
    sr, seg = 16000, 1600
    root = str(tmp_path / "music")
    os.makedirs(root)
    t = np.arange(sr) / sr
    left = 0.3 * np.sin(2 * np.pi * 300 * t)
    sf.write(f"{root}/stereo.wav", np.stack([left, -0.5 * left], axis=1), sr)
    sf.write(f"{root}/mono.wav", 0.3 * np.sin(2 * np.pi * 500 * t), sr)
    over = {
        "data.source": f"folder:{root}",
        "data.num_threads": 0,
        "data.index_workers": 1,
        "data.augment.enabled": False,
        "train.batch_size": 4,
    }
    config = runlocal(**over, **{"model.channels": 2})
    b = next(iter(pipeline.build_train_data(config, sr, seg).dataset))
    assert b.shape == (4, seg, 2)
    for row in b:  # every row a pair: the stereo file's, or the mono file duplicated
        if np.allclose(row[:, 0], row[:, 1]):
            np.testing.assert_array_equal(row[:, 0], row[:, 1])
        else:
            np.testing.assert_allclose(row[:, 1], -0.5 * row[:, 0], atol=1e-4)
    assert pipeline.eval_batch(config, sr, 2048, 3).shape == (3, 2048, 2)
    mono = runlocal(**over)  # a mono model still gets [B, T] (data.channels=1: mixdown)
    assert next(iter(pipeline.build_train_data(mono, sr, seg).dataset)).shape == (4, seg)


def test_synthetic_source_is_stereo_for_a_stereo_model():
    config = runlocal(**{"model.channels": 2, "data.num_threads": 0, "train.batch_size": 2})
    b = next(iter(pipeline.build_train_data(config, SR, 2048).dataset))
    assert b.shape == (2, 2048, 2)
    assert all(np.abs(row[:, 0] - row[:, 1]).max() > 1e-3 for row in b)  # panned: L != R
    # The mono source still renders mono music, as before.
    clips = SyntheticClips(SR, 1, 2048, seed=3)
    np.testing.assert_array_equal(
        clips.read(5, 0, 2048)[:, 0], SyntheticMusic(SR, 2048 / SR, seed=3)[5]
    )


def test_augment_mono_makes_both_channels_their_mean_and_nothing_else():
    x = np.stack([music(1, 0.05, channels=1)[0], 0.3 * music(1, 0.05, seed=5, channels=1)[0]], 1)
    x *= 0.5 / np.abs(x).max()  # below the peak limit, which would rescale differently
    cfg = augment.default_config()
    with cfg.unlocked():
        cfg.eq_prob = 1.0  # the other augmentations act on both channels alike, before or after
    for seed in range(4):
        plain = augment.augment(x, np.random.default_rng(seed), cfg, SR)
        with cfg.unlocked():
            cfg.mono_prob = 1.0
        mono = augment.augment(x, np.random.default_rng(seed), cfg, SR)
        with cfg.unlocked():
            cfg.mono_prob = 0.0
        np.testing.assert_array_equal(mono[:, 0], mono[:, 1])
        np.testing.assert_allclose(mono[:, 0], plain.mean(axis=1), rtol=1e-5, atol=1e-7)
        assert np.abs(plain[:, 0] - plain[:, 1]).max() > 0.05  # it was stereo
    # A mono crop is unchanged by it; a probability of 0.3 makes about that share mono.
    with cfg.unlocked():
        cfg.mono_prob = 0.3
    one = x[:, :1]
    np.testing.assert_array_equal(
        augment.augment(one, np.random.default_rng(1), cfg, SR),
        augment.augment(one, np.random.default_rng(1), _without_mono(cfg), SR),
    )
    made_mono = [
        np.array_equal(*augment.augment(x, np.random.default_rng(s), cfg, SR).T) for s in range(400)
    ]
    assert 0.22 < np.mean(made_mono) < 0.38


def _without_mono(cfg):
    c = cfg.copy_and_resolve_references()
    with c.unlocked():
        c.mono_prob = 0.0
    return c


def test_mono_side_db_is_the_side_over_the_mid():
    from jax_codec.training.loop import mono_side_db

    t = np.arange(4800) / SR
    mid = np.sin(2 * np.pi * 440 * t)
    side = 0.01 * np.sin(2 * np.pi * 1000 * t)
    y = np.stack([mid + side, mid - side], axis=-1)[None]
    assert mono_side_db(y) == pytest.approx(-40.0, abs=0.05)
    assert mono_side_db(np.repeat(y[..., :1], 2, axis=-1)) == -240.0


def test_steady_state_reports_the_side_of_a_stereo_model(stereo_model):
    """benchmarks/steady_state.py on a stereo model: the side of mono input (a random joint
    model adds one) and the side's level error on stereo music."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
    import steady_state

    codec, params = stereo_model
    loaded = type("Loaded", (), {"codec": codec, "params": params})()
    x = music(2, 8 * codec.length_multiple / SR)
    r = steady_state.measure(loaded, x[:, : 8 * codec.length_multiple], 2, window_s=0.05)
    assert -200 < r["mono_side_db"] < 60 and np.isfinite(r["side_level_error_db"])


def test_augment_swap_is_the_only_change():
    x = np.stack([music(1, 0.05, channels=1)[0], 0.3 * music(1, 0.05, seed=5, channels=1)[0]], 1)
    cfg = augment.default_config()
    plain = augment.augment(x, np.random.default_rng(4), cfg, SR)
    with cfg.unlocked():
        cfg.swap_prob = 1.0
    swapped = augment.augment(x, np.random.default_rng(4), cfg, SR)
    np.testing.assert_array_equal(swapped, plain[:, ::-1])
    mono = x[:, :1]
    np.testing.assert_array_equal(
        augment.augment(mono, np.random.default_rng(4), cfg, SR),
        augment.augment(mono, np.random.default_rng(4), augment.default_config(), SR),
    )
