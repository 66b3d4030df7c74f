"""The 48 kHz stereo flagship preset (configs/music48.py): its stated properties, `info --json`,
and a forward pass of its CPU variant. Speed is measured in benchmarks/streaming.py, not here."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_codec.__main__ import main
from jax_codec.config import load_config
from jax_codec.models.codec import build_codec
from jax_codec.models.summary import format_summary

SPECS = ("configs/music48.py", "configs/music48.py:runlocal")


@pytest.mark.parametrize("spec", SPECS)
def test_preset_is_48khz_joint_stereo_causal_hierarchical_and_low_latency(spec):
    config = load_config(spec)
    assert (
        config.to_dict() == load_config(spec.replace("configs/", "").replace(".py", "")).to_dict()
    )
    codec = build_codec(config.model)
    assert codec.sample_rate == 48000
    assert codec.channels == 2
    assert codec.causal
    strides = codec.vq_strides
    assert max(strides) > 1 and strides[-1] == 1  # coarse levels, then full-rate ones
    assert list(strides) == sorted(strides, reverse=True)
    assert codec.latency_ms <= 60.0
    assert codec.latency_samples == max(strides) * codec.hop_length
    # A few kbps for the pair, clearly less than the mono flagship's dual-mono stereo.
    assert 1.0 <= codec.bitrate_kbps() <= 6.0
    base = build_codec(load_config("base").model)
    assert codec.bitrate_kbps() < 0.6 * (2 * base.bitrate_kbps())


@pytest.mark.parametrize("variant", ["", ":runlocal"])
def test_flagship_differs_from_base_only_where_stated(variant):
    """The recipe is base.py's: the rate, the channels and the hop change, and the quantizer
    is EnCodec's with its codebook update (codes in the latent, no codebook loss), and a
    quarter of the crops get a quiet span."""
    base = load_config("base" + variant).to_dict()
    music = load_config("music48" + variant).to_dict()
    changed = {
        f"{section}.{k}"
        for section in base
        if isinstance(base[section], dict)
        for k in base[section]
        if base[section][k] != music[section][k]
    }
    assert changed == {
        "model.sample_rate",
        "model.channels",
        "model.encoder_strides",
        "model.decoder_strides",
        "model.quantizer",
        "model.codebook_dim",
        "model.quantizer_dropout",
        "train.codebook_ema_decay",
        "train.dead_code_min_hits",
        "loss.codebook_weight",
        "data.augment",
    }
    augment = {
        k
        for k in base["data"]["augment"]
        if base["data"]["augment"][k] != music["data"]["augment"][k]
    }
    assert augment == {"gap_prob", "gap_depth_db"}
    assert (music["data"]["augment"]["gap_prob"], music["data"]["augment"]["gap_depth_db"]) == (
        0.25,
        -40.0,
    )
    model, train = music["model"], music["train"]
    assert model["stereo"] == "ms"
    assert (model["quantizer"], model["codebook_dim"]) == ("plain", model["latent_dim"])
    assert 0 < train["codebook_ema_decay"] < 1 and music["loss"]["codebook_weight"] == 0


def test_info_json_reports_sample_rate_and_channels(capsys):
    """(A mono preset's `"channels": 1`: tests/test_config.py::test_info_json.)"""
    assert main(["info", "--config=configs/music48.py:runlocal", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["sample_rate"], summary["channels"], summary["stereo"]) == (48000, 2, "ms")
    assert summary["stereo_split_blocks"] == 0
    assert summary["config"] == "music48_runlocal"
    assert summary["causal"] and summary["latency_ms"] <= 60.0
    assert "48000 Hz, joint stereo (ms, one code stream)" in format_summary(summary)


def test_runlocal_forward_pass_codes_the_pair_in_one_stream():
    codec = build_codec(load_config("music48:runlocal").model)
    t = 2 * codec.length_multiple
    left = 0.3 * jnp.sin(jnp.arange(t) * 2 * jnp.pi * 440 / 48000)
    audio = jnp.stack([left, 0.5 * left], axis=-1)[None]  # [1, T, 2], panned left
    # Random weights of the right shapes: compiling `init` costs minutes on a busy 2-core CPU.
    shapes = jax.eval_shape(codec.init, jax.random.key(0), audio)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(0.1 * rng.normal(size=s.shape), s.dtype), shapes)
    out = jax.jit(codec.apply)(params, audio)
    assert out.audio.shape == (1, t, 2)
    assert np.all(np.isfinite(out.audio)) and np.any(out.audio[..., 0] != out.audio[..., 1])
    frames = t // codec.hop_length
    assert [c.shape for c in out.codes] == [(1, frames // s) for s in codec.vq_strides]
    with pytest.raises(ValueError, match="stereo"):
        codec.apply(params, audio[..., :1])
