"""Where each codebook level's inputs point, and how many codes they use: a collapse diagnosis.

  python benchmarks/code_geometry.py joint=RUN_J/checkpoints/1600 dual=RUN_D/checkpoints/1600 \\
      --data=/tmp/music2/heldout --output=geometry.json

Each `LABEL=CHECKPOINT` (a work dir, `best/` or a step dir) codes `--seconds` of every file in
`--data` from `--start` (normalised to -18 dB, as training crops are; a mono model codes each
channel as its own row) with all its levels, and for each level reports, over all frames:

- `direction_offset`: the length of the mean of the inputs' unit vectors (what the level's
  projection puts out, `z_e`). 0 for inputs spread in every direction, 1 when they all point
  the same way: a factorized VQ picks codes by angle, so near 1 only the few codes in that
  narrow cone are ever chosen, however many the codebook holds;
- `spread_over_mean`: the inputs' mean distance from their mean over the mean's length (small
  when a shared offset dwarfs what varies from frame to frame);
- `codes_in_cone`: how many codes lie within a cosine of 0.9 of the inputs' mean direction;
- `perplexity` and `codes_used` of the chosen codes;
- `latent_error`: the energy of what levels 0..i together leave of the encoder's output,
  `|z - q|^2 / |z|^2` over all frames (1 - the share of the latent they code): whether a
  level adds information at all, apart from whether the decoder then uses it.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np


def geometry(z_e: np.ndarray, codebook: np.ndarray, codes: np.ndarray) -> dict:
    """The statistics above for one level: inputs `z_e [N, d]`, its `codebook [K, d]` and the
    chosen `codes [N]`."""
    z = np.asarray(z_e, np.float64)
    unit = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    mean_dir = unit.mean(axis=0)
    offset = float(np.linalg.norm(mean_dir))
    mean = z.mean(axis=0)
    spread = float(np.mean(np.linalg.norm(z - mean, axis=1)) / max(np.linalg.norm(mean), 1e-12))
    book = np.asarray(codebook, np.float64)
    book = book / np.maximum(np.linalg.norm(book, axis=1, keepdims=True), 1e-12)
    cone = int(np.sum(book @ (mean_dir / max(offset, 1e-12)) > 0.9))
    counts = np.bincount(np.asarray(codes).ravel(), minlength=len(book))
    p = counts[counts > 0] / counts.sum()
    return {
        "direction_offset": offset,
        "spread_over_mean": spread,
        "codes_in_cone": cone,
        "perplexity": float(np.exp(-np.sum(p * np.log(p)))),
        "codes_used": int(np.sum(counts > 0)),
        "input_norm_median": float(np.median(np.linalg.norm(z, axis=1))),
    }


def load_music(path: str, sample_rate: int, seconds: float, start: float) -> np.ndarray:
    """`[T, 2]` float32 at `sample_rate`, normalised to -18 dB as the training pipeline's crops
    are (`levels.normalize`; a mono file duplicated)."""
    from jax_codec import levels
    from jax_codec.evaluation.run import load_segment

    x = load_segment(path, sample_rate, seconds, int(start * sample_rate))  # [C, T]
    x = np.resize(x, (2, x.shape[1])).T
    return levels.normalize(x, sample_rate, -18.0, channels_last=True)[0]


def measure(loaded, music: list[np.ndarray]) -> list[dict]:
    """Per level, `geometry` over every excerpt in `music` (each `[T, 2]` at the codec's rate)
    for one loaded codec (`jax_codec.inference.api.LoadedCodec`)."""
    import jax
    import jax.numpy as jnp

    codec, params = loaded.codec, loaded.params
    run = jax.jit(lambda p, x: codec.apply(p, x))
    k = codec.num_quantizers
    z_e, codes = [], []
    error, energy = np.zeros(k), 0.0
    for x in music:
        x = x[None] if codec.channels == 2 else x.T[:, :, None]
        t = x.shape[1] // codec.length_multiple * codec.length_multiple
        out = run(params, jnp.asarray(x[:, :t]))
        z_e.append([np.asarray(z).reshape(-1, z.shape[-1]) for z in out.projected])
        codes.append([np.asarray(c).ravel() for c in out.codes])
        # The quantizer's own `latent_error` (every level used) times this excerpt's energy:
        # what is left after levels 0..i, summed over the excerpts.
        e = float(np.sum(np.square(np.asarray(out.latents, np.float64))))
        energy += e
        error += e * np.array([float(out.stats[f"level{i}/latent_error"]) for i in range(k)])
    levels = params["params"]["quantizer"]
    return [
        dict(
            geometry(
                np.concatenate([z[i] for z in z_e]),
                np.asarray(levels[f"level{i}"]["codebook"]),
                np.concatenate([c[i] for c in codes]),
            ),
            latent_error=float(error[i] / max(energy, 1e-30)),
        )
        for i in range(k)
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="LABEL=CHECKPOINT")
    p.add_argument("--data", required=True, help="a folder of music files")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--start", type=float, default=30.0)
    p.add_argument("--output", help="write the results here as JSON")
    args = p.parse_args()
    files = sorted(f for f in glob.glob(os.path.join(args.data, "*")) if os.path.isfile(f))
    if not files:
        sys.exit(f"--data {args.data!r}: no files there; give a folder of music files")
    for spec in args.checkpoints:
        if "=" not in spec:
            sys.exit(f"{spec!r} is not LABEL=CHECKPOINT")
    from jax_codec.inference.api import load_codec

    results = {"data": args.data, "files": [os.path.basename(f) for f in files], "models": {}}
    for spec in args.checkpoints:
        label, path = spec.split("=", 1)
        loaded = load_codec(path)
        music = [load_music(f, loaded.codec.sample_rate, args.seconds, args.start) for f in files]
        levels = measure(loaded, music)
        results["models"][label] = {"checkpoint": path, "levels": levels}
        for i, g in enumerate(levels):
            print(
                f"{label} level {i}: direction offset {g['direction_offset']:.2f}, spread/mean "
                f"{g['spread_over_mean']:.2f}, codes in cone {g['codes_in_cone']}, "
                f"perplexity {g['perplexity']:.1f} ({g['codes_used']} codes used), latent "
                f"error through it {g['latent_error']:.3f}",
                flush=True,
            )
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=1)
        print("wrote", args.output)


if __name__ == "__main__":
    main()
