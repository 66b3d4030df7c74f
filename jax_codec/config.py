"""Loading and validating configs: a preset name (`base:runlocal`, the modules of
`jax_codec.configs`) or a file (`configs/base.py:runlocal`), each `get_config(arg)`."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import math
import os

import jax.numpy as jnp
import ml_collections


class ConfigError(ValueError):
    """A config value is invalid; the message names the field and the fix."""


def _get_config_module(name: str):
    """The module of `name`: a file path (ends in .py or names a directory) or a preset."""
    if name.endswith(".py") or os.sep in name or "/" in name:
        if not os.path.isfile(name):
            raise ConfigError(
                f"config file {name!r} not found (expected e.g. configs/base.py, or a preset "
                "name such as base)"
            )
        module_spec = importlib.util.spec_from_file_location(
            f"_jax_codec_config_{abs(hash(name))}", name
        )
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module
    from jax_codec.configs import PRESETS

    if name not in PRESETS:
        raise ConfigError(
            f"config {name!r} not found: give a preset ({', '.join(PRESETS)}) or a file such "
            "as configs/base.py"
        )
    return importlib.import_module(f"jax_codec.configs.{name}")


def get_config(spec: str) -> ml_collections.ConfigDict:
    """`get_config(arg)` of `preset[:arg]` or `path/to/config.py[:arg]`, not validated."""
    name, _, arg = spec.partition(":")
    module = _get_config_module(name)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{name} defines no get_config(arg) function")
    return module.get_config(arg or None)


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Load `preset[:arg]` (e.g. `base:runlocal`, a module of `jax_codec.configs`) or
    `path/to/config.py[:arg]` by calling its `get_config(arg)`; validates the result."""
    config = get_config(spec)
    validate_config(config)
    return config


def define_config_flag(name: str, help_string: str, flag_values=None, sys_argv=None):
    """An absl `--<name>` config flag, as `config_flags.DEFINE_config_file` (overrides such as
    `--config.train.batch_size=8` included), that reads its value as `load_config` does:
    `--config=base:runlocal` as well as `--config=configs/base.py:runlocal`."""
    from absl import flags
    from ml_collections.config_flags import config_flags

    class Parser(config_flags.ConfigFileFlagParser):
        def parse(self, spec):
            if isinstance(spec, ml_collections.ConfigDict):
                return spec
            config = get_config(spec)
            if self._lock_config:
                config.lock()
            return config

    flag_values = flags.FLAGS if flag_values is None else flag_values
    flag = config_flags._ConfigFlag(  # DEFINE_config_file's flag, with the parser above
        parser=Parser(name=name, lock_config=True),
        serializer=flags.ArgumentSerializer(),
        name=name,
        default=None,
        help_string=help_string,
        flag_values=flag_values,
        sys_argv=sys_argv,  # where the overrides are looked for (default: sys.argv)
    )
    return flags.DEFINE_flag(flag, flag_values)


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
    channels = m.get("channels", 1)
    need(channels in (1, 2), f"model.channels={channels}: use 1 (mono) or 2 (joint stereo)")
    need(
        m.get("stereo", "ms") in ("lr", "ms"),
        f"model.stereo={m.get('stereo')!r}: use 'ms' (mid/side) or 'lr' (left/right)",
    )
    side_gain = float(m.get("side_gain", 1.0))
    need(side_gain > 0, f"model.side_gain={side_gain}: use a positive gain (1 = none)")
    need(
        side_gain == 1.0 or (channels == 2 and m.get("stereo", "ms") == "ms"),
        f"model.side_gain={side_gain} needs a mid/side model (model.channels=2, "
        "model.stereo='ms'); set model.side_gain=1",
    )
    split = int(m.get("stereo_split_blocks", 0))
    blocks = min(len(m.encoder_strides), len(m.decoder_strides))
    need(
        split == 0 or (channels == 2 and m.get("arch", "dac") in ("dac", "snac")),
        f"model.stereo_split_blocks={split} needs a stereo model (model.channels=2) of arch "
        "'dac' or 'snac'; set model.stereo_split_blocks=0",
    )
    need(
        0 <= split <= blocks,
        f"model.stereo_split_blocks={split} must be in [0, {blocks}] (the encoder's and the "
        "decoder's blocks)",
    )
    min_width = int(m.get("decoder_min_width", 0))
    need(
        min_width >= 0,
        f"model.decoder_min_width={min_width}: use 0 (none) or a positive channel count",
    )
    need(
        min_width == 0 or m.get("arch", "dac") in ("dac", "snac"),
        f"model.decoder_min_width={min_width} applies to arch 'dac' or 'snac' only; set it to 0",
    )
    # What side_from_mid and side_decoder_width need: a joint mid/side dac/snac model.
    joint_ms = (
        channels == 2
        and m.get("stereo", "ms") == "ms"
        and m.get("arch", "dac") in ("dac", "snac")
        and split == 0
    )
    side_bands = int(m.get("side_from_mid", 0))
    need(
        side_bands >= 0,
        f"model.side_from_mid={side_bands}: use 0 (none) or a positive number of bands",
    )
    need(
        side_bands == 0 or joint_ms,
        f"model.side_from_mid={side_bands} needs a joint mid/side model (model.channels=2, "
        "model.stereo='ms', arch 'dac' or 'snac', model.stereo_split_blocks=0); set it to 0",
    )
    side_width = int(m.get("side_decoder_width", 0))
    need(
        side_width >= 0,
        f"model.side_decoder_width={side_width}: use 0 (none) or a positive channel count",
    )
    need(
        side_width == 0 or (joint_ms and side_bands == 0),
        f"model.side_decoder_width={side_width} needs a joint mid/side model (model.channels=2, "
        "model.stereo='ms', arch 'dac' or 'snac', model.stereo_split_blocks=0, "
        "model.side_from_mid=0); set it to 0",
    )
    side_dim = int(m.get("side_latent_dim", 0))
    side_levels = tuple(int(i) for i in m.get("side_levels", ()))
    need(
        (side_dim == 0 and not side_levels) or (side_dim > 0 and side_levels and side_width > 0),
        f"model.side_latent_dim={side_dim}, model.side_levels={side_levels}: side bits need "
        "a positive side_latent_dim, a list of side_levels and a side decoder "
        "(model.side_decoder_width > 0); or set side_latent_dim=0 and side_levels=()",
    )
    need(
        all(1 <= i < len(m.vq_strides) for i in side_levels)
        and len(set(side_levels)) == len(side_levels),
        f"model.side_levels={side_levels}: distinct levels among 1..{len(m.vq_strides) - 1} "
        "(level 0 is always joint: every bitrate carries the mid)",
    )
    need(
        not side_dim
        or m.get("quantizer", "factorized") == "factorized"
        or int(m.codebook_dim) == side_dim == int(m.latent_dim),
        f"model.side_latent_dim={side_dim}: a {m.get('quantizer')!r} quantizer has its codes "
        f"in the latent, so the side latent must be as wide as the joint one "
        f"(model.side_latent_dim={m.latent_dim})",
    )
    side_gate = bool(m.get("side_gate", False))
    need(
        not side_gate or (joint_ms and side_bands == 0 and side_width == 0),
        "model.side_gate=True needs a joint mid/side model (model.channels=2, "
        "model.stereo='ms', arch 'dac' or 'snac', model.stereo_split_blocks=0, "
        "model.side_from_mid=0, model.side_decoder_width=0); set it to False",
    )
    weights = tuple((config.get("loss") or {}).get("stereo_weights", (1.0, 1.0, 1.0, 1.0)))
    need(
        len(weights) == 4 and min(weights) >= 0 and sum(weights) > 0,
        f"loss.stereo_weights={weights}: give 4 non-negative weights (left, right, mid, "
        "side) with a positive sum",
    )
    image_weight = float((config.get("loss") or {}).get("stereo_image_weight", 0.0))
    need(image_weight >= 0, f"loss.stereo_image_weight={image_weight} must be >= 0")
    try:
        m.dtype == "auto" or jnp.dtype(m.dtype)
    except TypeError as e:
        raise ConfigError(
            f"model.dtype={m.dtype!r} is not a dtype (use auto, float32 or bfloat16)"
        ) from e
