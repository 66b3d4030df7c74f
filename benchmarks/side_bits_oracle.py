"""How much do a joint-stereo model's side bits give its side? Zero, quantized, or exact.

  python benchmarks/side_bits_oracle.py RUN/checkpoints/1200 --heldout_dir=HELDOUT \\
      --excerpts=2 --seconds=10

For a model with side bits (`model.side_levels`, docs/stereo.md), each held-out excerpt (brought
to the training level, `data.normalize_db`) is encoded once; the joint levels' codes are kept
and the side decoder is given, in place of the side latent: zeros (no side bits), the side
levels' quantized latent (what the bitstream carries), or the encoder's unquantized side latent
(an oracle: side bits of unlimited rate). Printed: the mean side mel distance (and mid mel,
which the side latent cannot change) of each, with the first `--joint_levels` levels and with
all levels. Exact latent far
better than quantized: the side levels are too few bits; no better than zeros: the side decoder
does not use what the side latent holds (training, not rate, is what is missing).
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

VARIANTS = ("zero", "quantized", "exact")


def decode_variants(codec, params, x: np.ndarray, n_quantizers: int) -> dict[str, np.ndarray]:
    """`x [T, 2]` (T a multiple of `codec.length_multiple`) -> `[T, 2]` audio per variant, the
    joint levels among the first `n_quantizers` kept."""
    import jax.numpy as jnp

    d = codec.latent_dim

    def latents(m, a):
        z = m.encoder(m.to_model_channels(a))
        q = m.quantizer.decode(m.quantizer.encode(z, n_quantizers))
        return z, q

    def decode(m, latent):
        return m.from_model_channels(m.decoder(latent))

    z, q = codec.apply(params, jnp.asarray(x)[None], method=latents)
    side = {"zero": jnp.zeros_like(z[..., d:]), "quantized": q[..., d:], "exact": z[..., d:]}
    return {
        name: np.asarray(
            codec.apply(params, jnp.concatenate([q[..., :d], s], -1), method=decode)[0]
        )
        for name, s in side.items()
    }


def excerpts(path: str, rate: int, count: int, seconds: float, multiple: int) -> list:
    """`count` excerpts of `seconds`, evenly spaced over the track, `[T, 2]` at `rate`."""
    import librosa
    import soxr

    x, sr = librosa.load(path, sr=None, mono=False)
    if x.ndim != 2 or x.shape[0] != 2:
        raise SystemExit(f"{path}: a stereo file is needed")
    x = soxr.resample(x.T, sr, rate).astype(np.float32)
    n = int(seconds * rate) // multiple * multiple
    starts = np.linspace(0, max(0, x.shape[0] - n), count + 2)[1:-1].astype(int)
    return [x[s : s + n] for s in starts if x[s : s + n].shape[0] == n]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--heldout_dir", required=True)
    p.add_argument("--excerpts", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--joint_levels", type=int, default=2, help="the fewer levels to read")
    p.add_argument("--output", default="", help="write the rows and means here (JSON)")
    args = p.parse_args(argv)

    from jax_codec import levels
    from jax_codec.evaluation.stereo_metrics import mel_distance_mid, mel_distance_side
    from jax_codec.inference.api import load_codec

    lc = load_codec(args.checkpoint)
    codec, params = lc.codec, lc.params
    if not codec.side_levels:
        raise SystemExit(f"{args.checkpoint}: a model with side bits (model.side_levels) is needed")
    target = float(lc.config.data.get("normalize_db", -18.0))
    rate = codec.sample_rate
    rows = []
    for name in sorted(os.listdir(args.heldout_dir)):
        path = os.path.join(args.heldout_dir, name)
        for i, x in enumerate(
            excerpts(path, rate, args.excerpts, args.seconds, codec.length_multiple)
        ):
            gain = levels.normalizing_gain(
                levels.level_db(x.T, rate), float(np.abs(x).max()), target
            )
            x = x * np.float32(levels.db_to_gain(gain))
            for k in (args.joint_levels, codec.num_quantizers):
                for variant, y in decode_variants(codec, params, x, k).items():
                    ref, est = x.T, y.T
                    rows.append(
                        {
                            "file": name,
                            "excerpt": i,
                            "n_quantizers": k,
                            "side": variant,
                            "mel_distance_mid": mel_distance_mid(ref, est, rate),
                            "mel_distance_side": mel_distance_side(ref, est, rate),
                        }
                    )
    means = []
    print("| levels | side latent | side mel | mid mel |\n|---|---|---|---|")
    for k in (args.joint_levels, codec.num_quantizers):
        for variant in VARIANTS:
            sel = [r for r in rows if r["n_quantizers"] == k and r["side"] == variant]
            m = {
                key: float(np.mean([r[key] for r in sel]))
                for key in ("mel_distance_side", "mel_distance_mid")
            }
            means.append({"n_quantizers": k, "side": variant, "excerpts": len(sel), **m})
            print(
                f"| {k} | {variant} | {m['mel_distance_side']:.3f} | {m['mel_distance_mid']:.3f} |"
            )
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "means": means, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
