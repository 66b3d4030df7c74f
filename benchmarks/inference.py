r"""Offline inference speed: encode and decode real-time factor and effective FLOP/s.

  python benchmarks/inference.py --config=configs/base.py --seconds=10 --batch=1,8
  python benchmarks/inference.py --config=configs/dac_44khz.py --seconds=10 --json

For each batch size: our jitted `Codec.encode` and `Codec.decode` (all codebooks, random
weights, weight norm folded as inference does) on `--seconds` of the built-in synthetic music
per stream, timed after compilation (median of `--repeats`), with XLA's cost analysis of each
compiled function giving the effective GFLOP/s, as a ratio to a 2048^3 fp32 matmul timed the
same way in this process (benchmarks/train_step.py's reference).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_step import flops_of, matmul_reference  # noqa: E402

from jax_codec.config import load_config  # noqa: E402
from jax_codec.inference.streaming import inference_variables  # noqa: E402
from jax_codec.models.codec import build_codec  # noqa: E402


def music(sr: int, seconds: float, streams: int) -> np.ndarray:
    from jax_codec.data.synthetic import SyntheticMusic

    gen = SyntheticMusic(sample_rate=sr, segment_seconds=seconds, seed=3)
    return np.stack([np.asarray(gen[i], np.float32).reshape(-1) for i in range(streams)])


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(args) -> dict:
    config = load_config(args.config)
    codec = build_codec(config.model, dtype="float32")
    sr = codec.sample_rate
    params = jax.jit(codec.init)(jax.random.key(0), jnp.zeros((1, codec.length_multiple, 1)))
    variables = inference_variables(params)
    peak = matmul_reference(5)
    rows = []
    for b in args.batch:
        x = jnp.asarray(music(sr, args.seconds, b))[..., None]
        enc = jax.jit(lambda v, a: codec.apply(v, a, method=codec.encode))
        dec = jax.jit(lambda v, c: codec.apply(v, c, method=codec.decode))
        t0 = time.perf_counter()
        enc_c = enc.lower(variables, x).compile()
        codes = enc_c(variables, x)
        dec_c = dec.lower(variables, codes).compile()
        jax.block_until_ready(dec_c(variables, codes))
        compile_s = time.perf_counter() - t0
        te = _median_time(lambda f=enc_c, a=x: f(variables, a), args.repeats)
        td = _median_time(lambda f=dec_c, c=codes: f(variables, c), args.repeats)
        fe, fd = flops_of(enc_c) or 0.0, flops_of(dec_c) or 0.0
        audio_s = b * args.seconds
        rows.append(
            {
                "batch": b,
                "compile_s": compile_s,
                "encode_s": te,
                "decode_s": td,
                "encode_rtf": audio_s / te,
                "decode_rtf": audio_s / td,
                "encode_decode_rtf": audio_s / (te + td),
                "gflop_per_audio_s": (fe + fd) / 1e9 / audio_s,
                "effective_gflops": (fe + fd) / 1e9 / (te + td),
                "fraction_of_matmul_peak": (fe + fd) / 1e9 / (te + td) / peak["gflops_per_s"],
            }
        )
    return {
        "config": args.config,
        "seconds": args.seconds,
        "matmul_gflops": peak["gflops_per_s"],
        "jax": jax.__version__,
        "devices": str(jax.devices()[0]),
        "load_average": os.getloadavg(),
        "rows": rows,
    }


def table(r: dict) -> str:
    lines = [
        f"{r['config']}, {r['seconds']:g} s per stream, fp32 matmul peak "
        f"{r['matmul_gflops']:.0f} GFLOP/s (load average {r['load_average'][0]:.1f}):",
        "",
        "| batch | encode RTF | decode RTF | enc+dec RTF | GFLOP per audio s | GFLOP/s | of matmul peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['batch']} | {row['encode_rtf']:.1f}x | {row['decode_rtf']:.1f}x | "
            f"{row['encode_decode_rtf']:.2f}x | {row['gflop_per_audio_s']:.1f} | "
            f"{row['effective_gflops']:.0f} | {100 * row['fraction_of_matmul_peak']:.0f}% |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default="configs/base.py")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--batch", default="1,8", type=lambda s: [int(b) for b in s.split(",") if b])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    r = run(args)
    print(json.dumps(r) if args.json else table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
