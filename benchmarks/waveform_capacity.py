"""Can the codec carry the waveform? Waveform-L1 training with and without the quantizer.

  python benchmarks/waveform_capacity.py --train_dir=/tmp/music/train \
      --heldout=/tmp/music/heldout/hr3-mirror.ogg --steps=300 --modes=fixed,random,random_noq

A diagnostic for SI-SDR (does the output follow the input's waveform, not only its spectrum?).
The generator of `--config` (default `base:runlocal`) is trained with Adam on the waveform L1
(x100) plus the VQ commitment/codebook losses only (no GAN, no spectral terms), batch 4 of
`--segment` samples, in three modes:

- `fixed`: the same batch every step (can it fit a waveform at all?);
- `random`: fresh random crops of the training tracks every step (does it generalise?);
- `random_noq`: as `random`, but the decoder reads the encoder's latents directly, with no
  quantizer (what the conv stack learns when the bitrate is not the limit).

Every `--eval_every` steps it prints the batch's and 4 held-out crops' SI-SDR and the held-out
output level against the input's, and writes the curves to
benchmarks/results/waveform_capacity_<date>.json. Real music: Debian's free soundtracks
(`apt-get install hyperrogue-music asc-music`), never committed.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jax_codec.config import load_config  # noqa: E402
from jax_codec.data.audio import read_file  # noqa: E402
from jax_codec.evaluation import metrics  # noqa: E402
from jax_codec.models.codec import build_codec  # noqa: E402


def neg_si_sdr(x: jnp.ndarray, y: jnp.ndarray, eps: float = 1e-8) -> jnp.ndarray:
    """Minus the batch-mean SI-SDR in dB (x: reference, y: estimate; both (B, T))."""
    x = x - jnp.mean(x, axis=-1, keepdims=True)
    y = y - jnp.mean(y, axis=-1, keepdims=True)
    a = jnp.sum(x * y, -1, keepdims=True) / (jnp.sum(x * x, -1, keepdims=True) + eps)
    t = a * x
    ratio = jnp.sum(t * t, -1) / (jnp.sum(jnp.square(y - t), -1) + eps)
    return -jnp.mean(10.0 * jnp.log10(ratio + eps))


def run_mode(mode: str, args, codec, tracks, heldout, sr: int) -> list[dict]:
    seg = args.segment
    quantize = not mode.endswith("noq")

    def batch_at(i: int) -> jnp.ndarray:
        r = np.random.default_rng(args.seed if mode == "fixed" else args.seed + 1 + i)
        rows = []
        for _ in range(4):
            t = tracks[r.integers(len(tracks))]
            s = r.integers(0, len(t) - seg)
            rows.append(t[s : s + seg])
        return jnp.asarray(np.stack(rows).astype(np.float32))

    def forward(p, x):
        if quantize:
            out = codec.apply(p, x[..., None])
            vq = 0.25 * out.losses["commitment"] + out.losses["codebook"]
            return out.audio[..., 0], vq
        y = codec.apply(p, x[..., None], method=lambda m, a: m.decoder(m.encoder(m._pad(a))))
        return y[:, : x.shape[1], 0], 0.0

    def loss_fn(p, x):
        y, vq = forward(p, x)
        if args.loss == "sisdr":
            return neg_si_sdr(x, y) + vq, y
        if args.loss == "mse":
            return 1000.0 * jnp.mean(jnp.square(y - x)) + vq, y
        return 100.0 * jnp.mean(jnp.abs(y - x)) + vq, y

    params = jax.jit(codec.init)(jax.random.key(args.seed), batch_at(0)[..., None])
    tx = optax.adam(args.lr)
    opt = tx.init(params)

    @jax.jit
    def step(p, o, x):
        (_, y), g = jax.value_and_grad(loss_fn, has_aux=True)(p, x)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, y

    heldout_fn = jax.jit(lambda p: forward(p, heldout)[0])
    rows, t0 = [], time.time()
    for i in range(args.steps + 1):
        x = batch_at(i)
        params, opt, y = step(params, opt, x)
        if i % args.eval_every == 0:
            y, yh, h = np.asarray(y), np.asarray(heldout_fn(params)), np.asarray(heldout)
            row = {
                "step": i,
                "batch_si_sdr": float(
                    np.mean([metrics.si_sdr(np.asarray(x[b]), y[b]) for b in range(4)])
                ),
                "heldout_si_sdr": float(np.mean([metrics.si_sdr(h[b], yh[b]) for b in range(4)])),
                "heldout_level_db": float(10 * np.log10(np.mean(yh**2) / np.mean(h**2))),
                "wall_s": time.time() - t0,
            }
            rows.append(row)
            print(mode, json.dumps({k: round(v, 2) for k, v in row.items()}), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train_dir", required=True)
    p.add_argument("--heldout", required=True, help="one held-out audio file")
    p.add_argument("--config", default="base:runlocal")
    p.add_argument("--modes", default="fixed,random,random_noq")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval_every", type=int, default=50)
    p.add_argument("--segment", type=int, default=8704)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--loss",
        choices=["l1", "mse", "sisdr"],
        default="l1",
        help="waveform L1 x100, MSE x1000, or minus SI-SDR (dB)",
    )
    p.add_argument("--max_tracks", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="")
    args = p.parse_args()
    config = load_config(args.config)
    codec = build_codec(config.model)
    sr = int(config.model.sample_rate)
    files = sorted(
        f for f in glob.glob(os.path.join(args.train_dir, "*")) if not f.endswith(".txt")
    )[: args.max_tracks]
    tracks = [read_file(f, sr, 1)[:, 0] for f in files]
    h = read_file(args.heldout, sr, 1)[:, 0]
    starts = [sr * (10 + 7 * k) for k in range(4)]
    heldout = jnp.asarray(np.stack([h[s : s + args.segment] for s in starts]).astype(np.float32))
    results = {m: run_mode(m, args, codec, tracks, heldout, sr) for m in args.modes.split(",")}
    out = args.output or os.path.join(
        os.path.dirname(os.path.abspath(__file__)),
        "results",
        f"waveform_capacity_{datetime.date.today().isoformat()}.json",
    )
    with open(out, "w") as f:
        json.dump(
            {
                "command": " ".join(sys.argv),
                "config": args.config,
                "loss": args.loss,
                "train_files": [os.path.basename(f) for f in files],
                "heldout": os.path.basename(args.heldout),
                "results": results,
            },
            f,
            indent=1,
        )
    print("wrote", out)


if __name__ == "__main__":
    main()
