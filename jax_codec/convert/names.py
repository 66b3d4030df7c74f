"""Where each jax_codec parameter lives in a PyTorch DAC / EnCodec / SNAC state dict.

`torch_module(source, path, model_config)` maps the module path of one of our parameters
(e.g. `("encoder", "EncoderBlock_0", "ResidualUnit_1", "WNConv1d_0")`) to the torch module
prefix holding it and the kind of that module ("conv", "convtr", "snake", "embedding",
"lstm", "layernorm", "linear"); `jax_codec.convert.core` turns the kind into tensor names and
layouts.

DAC (descript-audio-codec, `dac/model/dac.py`), all `nn.Sequential` indices:
  encoder.block.0 conv; encoder.block.{1+i} EncoderBlock i = [ResidualUnit x len(dilations),
  Snake, strided conv]; then Snake, conv. ResidualUnit.block = [Snake, conv k7, Snake, conv k1].
  decoder.model.0 conv; decoder.model.{1+i} DecoderBlock i = [Snake, transposed conv,
  ResidualUnit ...]; then Snake, conv, Tanh.
  quantizer.quantizers.{i}.{in_proj, out_proj, codebook}.
SNAC (`snac/layers.py`, DAC's layout with additions): encoder.block = [conv, EncoderBlock ...,
  LocalMHA (if attn_window_size), conv k7]; decoder.model = [depthwise conv k7, conv k1 (or one
  conv k7), LocalMHA, DecoderBlock ..., Snake, conv, Tanh]; DecoderBlock.block = [Snake,
  transposed conv, NoiseBlock (`.linear`, if noise), ResidualUnit x 3]; LocalMHA holds
  norm, to_qkv, to_out (and the rel_pos.inv_freq buffer); the quantizer is DAC's.
EnCodec (`encodec/modules/seanet.py`): SConv1d weights sit at `<prefix>.conv.conv.*`,
  SConvTranspose1d at `<prefix>.convtr.convtr.*`, SLSTM at `<prefix>.lstm.*`; ELUs take an
  index too. quantizer.vq.layers.{i}._codebook.embed.
"""

from __future__ import annotations

import re

import ml_collections

from jax_codec.models.codec import arch_options


class NameError_(KeyError):
    """One of our parameters has no known torch counterpart (a bug or an unsupported option)."""


def _index(name: str, prefix: str) -> int:
    m = re.fullmatch(re.escape(prefix) + r"(\d+)", name)
    if m is None:
        raise NameError_(name)
    return int(m.group(1))


_RESIDUAL_UNIT = {"Snake_0": (0, "snake"), "WNConv1d_0": (1, "conv"), "Snake_1": (2, "snake")}
_RESIDUAL_UNIT["WNConv1d_1"] = (3, "conv")


def _dac(path: tuple[str, ...], m: ml_collections.ConfigDict) -> tuple[str, str]:
    nb, nd = len(m.encoder_strides), len(m.dilations)
    top, rest = path[0], path[1:]
    if top == "quantizer":
        i = _index(rest[0], "level")
        base = f"quantizer.quantizers.{i}"
        if len(rest) == 1:
            return f"{base}.codebook.weight", "embedding"
        if rest[1:] in (("in_proj",), ("out_proj",)):
            return f"{base}.{rest[1]}", "conv"
        raise NameError_(path)
    seq = {"encoder": "encoder.block", "decoder": "decoder.model"}[top]
    if rest == ("WNConv1d_0",):
        return f"{seq}.0", "conv"
    if rest == ("Snake_0",):
        return f"{seq}.{nb + 1}", "snake"
    if rest == ("WNConv1d_1",):
        return f"{seq}.{nb + 2}", "conv"
    i = _index(rest[0], "EncoderBlock_" if top == "encoder" else "DecoderBlock_")
    base = f"{seq}.{i + 1}.block"
    if len(rest) == 2:
        if top == "encoder":
            local = {"Snake_0": (nd, "snake"), "WNConv1d_0": (nd + 1, "conv")}
        else:
            local = {"Snake_0": (0, "snake"), "WNConvTranspose1d_0": (1, "convtr")}
        if rest[1] in local:
            idx, kind = local[rest[1]]
            return f"{base}.{idx}", kind
        raise NameError_(path)
    if len(rest) == 3:
        j = _index(rest[1], "ResidualUnit_")
        idx, kind = _RESIDUAL_UNIT[rest[2]]
        return f"{base}.{j + (0 if top == 'encoder' else 2)}.block.{idx}", kind
    raise NameError_(path)


def _seanet_resblock(base: str, name: str) -> tuple[str, str]:
    local = {"conv0": "block.1", "conv1": "block.3", "shortcut": "shortcut"}
    if name not in local:
        raise NameError_(name)
    return f"{base}.{local[name]}.conv.conv", "conv"


def _encodec(path: tuple[str, ...], m: ml_collections.ConfigDict) -> tuple[str, str]:
    nb, nd = len(m.encoder_strides), len(m.dilations)
    lstm = 1 if arch_options(m)["lstm_layers"] else 0
    top, rest = path[0], path[1:]
    if top == "quantizer":
        if len(rest) == 1:
            return f"quantizer.vq.layers.{_index(rest[0], 'level')}._codebook.embed", "embedding"
        raise NameError_(path)
    per_block = nd + 2  # residual blocks, ELU, (transposed) conv
    if top == "encoder":
        # 0 conv_in | per stride: res x nd, ELU, down | LSTM | ELU, conv_out
        if rest == ("conv_in",):
            return "encoder.model.0.conv.conv", "conv"
        if rest == ("lstm",):
            return f"encoder.model.{1 + nb * per_block}.lstm", "lstm"
        if rest == ("conv_out",):
            return f"encoder.model.{1 + nb * per_block + lstm + 1}.conv.conv", "conv"
        m_ = re.fullmatch(r"block(\d+)_(res(\d+)|down)", rest[0])
        if m_ is None:
            raise NameError_(path)
        start = 1 + int(m_.group(1)) * per_block
        if m_.group(2) == "down":
            return f"encoder.model.{start + nd + 1}.conv.conv", "conv"
        return _seanet_resblock(f"encoder.model.{start + int(m_.group(3))}", rest[1])
    # decoder: 0 conv_in | LSTM | per stride: ELU, up, res x nd | ELU, conv_out
    off = 1 + lstm
    if rest == ("conv_in",):
        return "decoder.model.0.conv.conv", "conv"
    if rest == ("lstm",):
        return "decoder.model.1.lstm", "lstm"
    if rest == ("conv_out",):
        return f"decoder.model.{off + nb * per_block + 1}.conv.conv", "conv"
    m_ = re.fullmatch(r"block(\d+)_(res(\d+)|up)", rest[0])
    if m_ is None:
        raise NameError_(path)
    start = off + int(m_.group(1)) * per_block
    if m_.group(2) == "up":
        return f"decoder.model.{start + 1}.convtr.convtr", "convtr"
    return _seanet_resblock(f"decoder.model.{start + 2 + int(m_.group(3))}", rest[1])


_ATTENTION = {"norm": "layernorm", "to_qkv": "linear", "to_out": "linear"}


def _snac(path: tuple[str, ...], m: ml_collections.ConfigDict) -> tuple[str, str]:
    nb = len(m.encoder_strides)
    options = arch_options(m)
    attn = 1 if options["attn_window"] else 0
    dw = 1 if options["depthwise"] else 0
    noise = 1 if options["noise"] else 0
    top, rest = path[0], path[1:]
    if top == "quantizer":
        return _dac(path, m)  # same ResidualVectorQuantize layout as DAC
    if len(rest) == 2 and rest[0] == "LocalMHA_0" and rest[1] in _ATTENTION:
        # encoder: after the blocks; decoder: after the first conv(s)
        idx = nb + 1 if top == "encoder" else 1 + dw
        seq = "encoder.block" if top == "encoder" else "decoder.model"
        return f"{seq}.{idx}.{rest[1]}", _ATTENTION[rest[1]]
    if top == "encoder":
        # 0 conv | blocks | LocalMHA | conv (no Snake before it)
        if rest == ("WNConv1d_1",):
            return f"encoder.block.{nb + 1 + attn}", "conv"
        if rest == ("Snake_0",):
            raise NameError_(path)
        return _dac(path, m)
    # decoder: [depthwise conv] conv | LocalMHA | blocks | Snake, conv, Tanh
    first = dw + attn + 1  # index of DecoderBlock_0
    if rest == ("head_dw",) and dw:
        return "decoder.model.0", "conv"
    if rest == ("WNConv1d_0",):
        return f"decoder.model.{dw}", "conv"
    if rest == ("Snake_0",):
        return f"decoder.model.{first + nb}", "snake"
    if rest == ("WNConv1d_1",):
        return f"decoder.model.{first + nb + 1}", "conv"
    i = _index(rest[0], "DecoderBlock_")
    base = f"decoder.model.{first + i}.block"
    if rest[1:] == ("Snake_0",):
        return f"{base}.0", "snake"
    if rest[1:] == ("WNConvTranspose1d_0",):
        return f"{base}.1", "convtr"
    if rest[1:] == ("NoiseBlock_0", "linear") and noise:
        return f"{base}.2.linear", "conv"
    if len(rest) == 3:
        j = _index(rest[1], "ResidualUnit_")
        idx, kind = _RESIDUAL_UNIT[rest[2]]
        return f"{base}.{j + 2 + noise}.block.{idx}", kind
    raise NameError_(path)


SOURCES = {"dac": _dac, "encodec": _encodec, "snac": _snac}

# State-dict entries that are not model weights: EnCodec's EMA k-means codebook statistics
# (training state of its codebook updates; jax_codec learns codebooks by gradient instead).
IGNORED = {
    "dac": (),
    "encodec": (r"quantizer\.vq\.layers\.\d+\._codebook\.(inited|cluster_size|embed_avg)",),
    # SNAC's rotary-embedding frequencies: a fixed function of the head size (64), recomputed.
    "snac": (r"(encoder\.block|decoder\.model)\.\d+\.rel_pos\.inv_freq",),
}


def torch_module(
    source: str, path: tuple[str, ...], model_config: ml_collections.ConfigDict
) -> tuple[str, str]:
    """`(torch prefix or key, kind)` for the module path of one of our parameters."""
    try:
        return SOURCES[source](path, model_config)
    except (NameError_, KeyError, IndexError):
        raise NameError_("/".join(path)) from None
