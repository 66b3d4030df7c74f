"""Loading and validating `configs/*.py` files (`path[:variant,...]`, `get_config(arg)`)."""

from __future__ import annotations

import ast
import importlib.util
import math
import os

import jax.numpy as jnp
import ml_collections


class ConfigError(ValueError):
    """A config value is invalid; the message names the field and the fix."""


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Load `path/to/config.py[:arg]` by calling its `get_config(arg)`; validates the result."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} not found (expected e.g. configs/base.py)")
    module_spec = importlib.util.spec_from_file_location(
        f"_jax_codec_config_{abs(hash(path))}", path
    )
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} defines no get_config(arg) function")
    config = module.get_config(arg or None)
    validate_config(config)
    return config


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, str]) -> None:
    """Set dotted keys (`model.latent_dim=256`) from strings; unknown keys fail loudly."""
    for key, raw in overrides.items():
        parts = key.split(".")
        node = config
        for p in parts[:-1]:
            if p not in node:
                raise ConfigError(f"unknown config key {key!r}")
            node = node[p]
        if parts[-1] not in node:
            raise ConfigError(f"unknown config key {key!r}")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        with node.unlocked():
            node[parts[-1]] = value
    validate_config(config)


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Check cross-field constraints of the model section; raise ConfigError naming the fix."""
    m = config.model

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(f"invalid config: {msg}")

    need(m.sample_rate > 0, f"model.sample_rate must be positive, got {m.sample_rate}")
    need(
        all(int(s) >= 1 for s in m.encoder_strides) and len(m.encoder_strides) > 0,
        "model.encoder_strides must be positive integers",
    )
    need(
        math.prod(m.encoder_strides) == math.prod(m.decoder_strides),
        f"prod(model.encoder_strides)={math.prod(m.encoder_strides)} must equal "
        f"prod(model.decoder_strides)={math.prod(m.decoder_strides)}",
    )
    need(
        m.decoder_width % (2 ** len(m.decoder_strides)) == 0,
        f"model.decoder_width={m.decoder_width} must be divisible by "
        f"2**len(decoder_strides)={2 ** len(m.decoder_strides)}",
    )
    need(
        len(m.vq_strides) > 0 and all(int(s) >= 1 for s in m.vq_strides),
        "model.vq_strides needs at least one positive stride",
    )
    need(m.codebook_size >= 2, "model.codebook_size must be >= 2")
    need(
        0 < m.codebook_dim <= m.latent_dim,
        "model.codebook_dim must be in (0, latent_dim]",
    )
    need(0.0 <= m.quantizer_dropout <= 1.0, "model.quantizer_dropout must be in [0, 1]")
    try:
        m.dtype == "auto" or jnp.dtype(m.dtype)
    except TypeError as e:
        raise ConfigError(
            f"model.dtype={m.dtype!r} is not a dtype (use auto, float32 or bfloat16)"
        ) from e
