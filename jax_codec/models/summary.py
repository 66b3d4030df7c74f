"""Architecture facts of a codec config: parameters, bitrates, frame rates, latency, GFLOP/s.

FLOPs come from XLA's cost analysis of the compiled `encode` and `decode` functions, so they
count what actually runs (padding included), not a hand formula.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from jax_codec.models.codec import build_codec


def _count(tree: Any) -> int:
    return int(sum(x.size for x in jax.tree.leaves(tree)))


def _flops(compiled: Any) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older JAX returned one dict per device
        cost = cost[0]
    return float(cost.get("flops", 0.0)) if cost else 0.0


def codec_summary(config: ml_collections.ConfigDict, seconds: float = 1.0) -> dict:
    """Summary dict of `config.model`; FLOPs measured on `seconds` of audio (batch 1, the
    model's channels)."""
    codec = build_codec(config.model)
    m = codec.length_multiple
    t = max(m, int(round(seconds * codec.sample_rate / m)) * m)
    audio = jax.ShapeDtypeStruct((1, t, codec.channels), jnp.float32)
    params = jax.eval_shape(lambda a: codec.init(jax.random.key(0), a), audio)
    n_params = {k: _count(v) for k, v in params["params"].items()}

    encode = jax.jit(lambda p, a: codec.apply(p, a, method=codec.encode))
    enc_compiled = encode.lower(params, audio).compile()
    codes = jax.eval_shape(encode, params, audio)
    decode = jax.jit(lambda p, c: codec.apply(p, c, method=codec.decode))
    dec_compiled = decode.lower(params, codes).compile()
    duration = t / codec.sample_rate
    enc_g = _flops(enc_compiled) / 1e9 / duration
    dec_g = _flops(dec_compiled) / 1e9 / duration

    k = codec.num_quantizers
    return {
        "config": config.get("name", ""),
        "sample_rate": codec.sample_rate,
        # 1 (mono) or 2 (joint stereo: one code stream for the pair; bitrates are the pair's).
        "channels": codec.channels,
        # What a stereo model's convolutions see ("ms" or "lr"); None for mono.
        "stereo": codec.stereo if codec.channels == 2 else None,
        # Delayed fusion: encoder/decoder blocks at each end coding the channels apart (0: none).
        "stereo_split_blocks": codec.stereo_split_blocks,
        "causal": codec.causal,
        "params": {**n_params, "total": sum(n_params.values())},
        "hop_length": codec.hop_length,
        "num_quantizers": k,
        "vq_strides": list(codec.vq_strides),
        # Levels whose bits only the side decoder reads (docs/stereo.md, "Side bits"); [] none.
        "side_levels": list(codec.side_levels),
        "codebook_size": codec.codebook_size,
        "frame_rates_hz": [round(r, 4) for r in codec.frame_rates],
        "bitrate_kbps": round(codec.bitrate_kbps(k), 4),
        "bitrate_kbps_per_n_quantizers": {
            str(n): round(codec.bitrate_kbps(n), 4) for n in range(1, k + 1)
        },
        "latency_samples": codec.latency_samples,
        "latency_ms": None if codec.latency_ms is None else round(codec.latency_ms, 3),
        "gflops_per_audio_second": round(enc_g + dec_g, 4),
        "gflops_per_audio_second_encode": round(enc_g, 4),
        "gflops_per_audio_second_decode": round(dec_g, 4),
    }


def format_summary(s: dict) -> str:
    """Human-readable table of `codec_summary` output."""
    p = s["params"]
    audio = "mono" if s["channels"] == 1 else f"joint stereo ({s['stereo']}, one code stream)"
    lines = [
        f"config            {s['config']}  ({'causal, streamable' if s['causal'] else 'non-causal, offline only'})",
        f"sample rate       {s['sample_rate']} Hz, {audio}, hop {s['hop_length']} samples",
        "parameters        "
        + ", ".join(f"{k} {v / 1e6:.3f}M" for k, v in p.items() if k != "total")
        + f"  (total {p['total'] / 1e6:.3f}M)",
        f"levels            {s['num_quantizers']} codebooks of {s['codebook_size']}, strides {s['vq_strides']}"
        + (f", side-only levels {s['side_levels']}" if s.get("side_levels") else ""),
        "frame rates       " + ", ".join(f"{r:g} Hz" for r in s["frame_rates_hz"]),
        "bitrate (kbps)    "
        + ", ".join(f"{n}q {b:.3f}" for n, b in s["bitrate_kbps_per_n_quantizers"].items()),
        "latency           "
        + (
            f"{s['latency_ms']:.1f} ms ({s['latency_samples']} samples)"
            if s["latency_ms"] is not None
            else "n/a (non-causal)"
        ),
        f"compute           {s['gflops_per_audio_second']:.2f} GFLOP per audio second "
        f"(encode {s['gflops_per_audio_second_encode']:.2f}, decode {s['gflops_per_audio_second_decode']:.2f})",
    ]
    return "\n".join(lines)
