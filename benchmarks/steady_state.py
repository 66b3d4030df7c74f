"""Does a codec work past its first crop's worth of audio? Level, code use and code dependence
on long held-out music.

  python benchmarks/steady_state.py short=RUN_A/checkpoints/2000 long=RUN_B/checkpoints/800 \\
      --music=/tmp/music2/heldout --seconds=8 --start=30

A causal convolutional codec starts every input from zero padding, and an output sample
depends on a few hundred milliseconds of input (its receptive field: ~32 frames, 0.43 s, for
the music48 preset). A model trained only on crops shorter than that never sees the state it
runs in on long audio. For each `LABEL=CHECKPOINT` (`--n_quantizers` codebooks, the model's
own forward pass), on `--seconds` of each held-out file from `--start`:

- `window_level_error_db`: output minus input level (dB, `training.loop.level_dbfs`) in
  consecutive windows of `--window` seconds, averaged over files: the first window is the
  start-up state the crops train, the rest the steady state.
- `perplexity`: per level, the perplexity of the codes over all files' frames (how many codes
  the level really uses on music; 1 means one code whatever the input).
- `latent_time_var` / `latent_mean_sq`: the encoder output's variance over time and its
  squared mean (a latent that no longer varies carries no information).
- `shuffled_diff_db`: level of the difference between the output and the output decoded from
  the same codes shuffled in time, relative to the output's level (0 dB or more: the output
  depends on the codes; far below 0: it is mostly the same sound whatever the codes, e.g. the
  frame-rate buzz).
- stereo models only: `mono_side_db`, the output's side level over its mid (dB,
  `training.loop.mono_side_db`) when both input channels are their mean (a near-mono passage:
  dual-mono coding adds no side, -240; a joint model its own side floor), and
  `side_level_error_db`, the output's side level minus the input's on the music itself.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np


def code_perplexity(codes: np.ndarray, codebook_size: int) -> float:
    """The perplexity of the histogram of `codes` (any shape), as `evaluate` reports it."""
    from jax_codec.evaluation.codebook_usage import code_usage

    return code_usage([codes], codebook_size)[0]["perplexity"]


def window_level_errors(x: np.ndarray, y: np.ndarray, window: int) -> list[float]:
    """Level of `y` minus level of `x` (both ``[B, T, C]``, dB) in consecutive windows of
    `window` samples (a last partial window is left out)."""
    from jax_codec.training.loop import level_dbfs

    return [
        level_dbfs(y[:, i : i + window]) - level_dbfs(x[:, i : i + window])
        for i in range(0, x.shape[1] - window + 1, window)
    ]


def _span(grad: np.ndarray) -> int | None:
    """Steps of `grad` ``[T, ...]`` from its first nonzero one to its last, None where that
    reaches either end (the field is longer than the input: unbounded, e.g. an LSTM)."""
    g = np.abs(np.asarray(grad, np.float64)).reshape(grad.shape[0], -1).sum(axis=1)
    nonzero = np.nonzero(g > 0)[0]
    if not nonzero.size:
        return 0
    first, last = int(nonzero[0]), int(nonzero[-1])
    return None if first == 0 or last == len(g) - 1 else last - first + 1


def receptive_field(codec, params, max_frames: int = 96) -> dict:
    """Measured on these weights: input samples one latent frame (in the middle) depends on
    (``encoder_samples``), latent frames one output sample depends on (``decoder_frames``),
    and the two chained, in frames (``frames``), from the gradients of that frame and that
    sample."""
    import jax
    import jax.numpy as jnp

    hop, m = codec.hop_length, codec.length_multiple
    t = max(2 * m, (max_frames * hop) // m * m)
    audio = jax.random.normal(jax.random.key(0), (1, t, codec.channels), jnp.float32)

    def encode(p, a):
        return codec.apply(p, a, method=lambda mdl, a: mdl.encoder(mdl.to_model_channels(a)))

    def decode(p, q):
        return codec.apply(p, q, method=lambda mdl, q: mdl.decoder(q, **mdl._noise(False)))

    z = jax.eval_shape(encode, params, audio)
    frame = z.shape[1] // 2
    enc = _span(jax.jit(jax.grad(lambda a: jnp.sum(encode(params, a)[0, frame])))(audio)[0])
    latents = jax.random.normal(jax.random.key(1), z.shape, jnp.float32)
    sample = jax.eval_shape(decode, params, latents).shape[1] // 2
    dec = _span(jax.jit(jax.grad(lambda q: jnp.sum(decode(params, q)[0, sample])))(latents)[0])
    total = None if enc is None or dec is None else -(-enc // hop) + dec
    return {"encoder_samples": enc, "decoder_frames": dec, "frames": total}


def measure(loaded, music: np.ndarray, n_quantizers: int, window_s: float, seed: int = 0) -> dict:
    """The numbers for one loaded codec on `music` ``[B, T, 2]`` at the codec's rate (T a
    multiple of its length multiple)."""
    import jax
    import jax.numpy as jnp

    from jax_codec.stereo import match_channels, to_mid_side
    from jax_codec.training.loop import level_dbfs, mono_side_db

    codec, params = loaded.codec, loaded.params
    x = music if codec.channels == 2 else music[..., :1]
    x = np.ascontiguousarray(x, np.float32)
    t = x.shape[1]
    forward = jax.jit(lambda p, a: codec.apply(p, a, n_quantizers))
    out = forward(params, jnp.asarray(x))
    decode = jax.jit(lambda p, c: codec.apply(p, c, t, method=codec.decode))
    codes = [np.asarray(c) for c in out.codes[:n_quantizers]]
    y = np.asarray(decode(params, tuple(jnp.asarray(c) for c in codes)))
    rng = np.random.default_rng(seed)
    shuffled = tuple(jnp.asarray(rng.permutation(c, axis=1)) for c in codes)
    y_shuffled = np.asarray(decode(params, shuffled))
    z = np.asarray(out.latents, np.float64)
    errors = window_level_errors(x, y, int(window_s * codec.sample_rate))
    stereo = {}
    if codec.channels == 2:
        y_mono = np.asarray(forward(params, match_channels(match_channels(x, 1), 2)).audio)
        stereo = {
            "mono_side_db": mono_side_db(y_mono),
            "side_level_error_db": level_dbfs(to_mid_side(y)[..., 1])
            - level_dbfs(to_mid_side(x)[..., 1]),
        }
    return {
        "window_s": window_s,
        "window_level_error_db": [round(e, 3) for e in errors],
        "first_window_level_error_db": errors[0],
        "steady_level_error_db": float(np.mean(errors[1:])) if len(errors) > 1 else None,
        "level_error_db": level_dbfs(y) - level_dbfs(x),
        "perplexity": [code_perplexity(c, codec.codebook_size) for c in codes],
        "latent_time_var": float(z.var(axis=1).mean()),
        "latent_mean_sq": float((z.mean(axis=1) ** 2).mean()),
        "shuffled_diff_db": level_dbfs(y - y_shuffled) - level_dbfs(y),
        **stereo,
    }


def load_music(paths: list[str], sample_rate: int, seconds: float, start: float, multiple: int):
    """``[B, T, 2]``: `seconds` of each file from `start` (mono files duplicated), cut to the
    shortest and to a multiple of `multiple` samples."""
    from jax_codec.evaluation.run import load_segment

    clips = []
    for f in paths:
        x = load_segment(f, sample_rate, seconds, int(start * sample_rate))  # [C, T]
        clips.append(np.resize(x, (2, x.shape[1])).T)
    t = min(len(c) for c in clips) // multiple * multiple
    if t == 0:
        raise SystemExit(f"the music is shorter than one codec block ({multiple} samples)")
    return np.stack([c[:t] for c in clips]).astype(np.float32)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="+", help="LABEL=CHECKPOINT")
    p.add_argument("--music", required=True, help="a folder of audio files, or a comma list")
    p.add_argument("--start", type=float, default=30.0, help="seconds into each file")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--window", type=float, default=0.2, help="level window, seconds")
    p.add_argument("--n_quantizers", type=int, default=4)
    p.add_argument(
        "--receptive_field", action="store_true", help="also measure it (compiles gradients)"
    )
    p.add_argument("--output", default="")
    args = p.parse_args(argv)
    specs = [m.split("=", 1) for m in args.models]
    if any(len(s) != 2 or not all(s) for s in specs):
        p.error("each model is LABEL=CHECKPOINT")
    if os.path.isdir(args.music):
        paths = sorted(f for f in glob.glob(os.path.join(args.music, "*")) if os.path.isfile(f))
    else:
        paths = [f for f in args.music.split(",") if f]
    if not paths:
        p.error(f"--music={args.music}: no audio files")

    from jax_codec.inference.api import load_codec

    results = {}
    for label, path in specs:
        loaded = load_codec(path, priors=None)
        codec = loaded.codec
        music = load_music(
            paths, codec.sample_rate, args.seconds, args.start, codec.length_multiple
        )
        r = results[label] = measure(loaded, music, args.n_quantizers, args.window)
        if args.receptive_field:
            r["receptive_field"] = rf = receptive_field(codec, loaded.params)
            print(
                f"{label}: receptive field {rf['frames']} frames (encoder "
                f"{rf['encoder_samples']} samples, decoder {rf['decoder_frames']} frames)"
            )
        print(
            f"{label}: level error first {args.window:g} s {r['first_window_level_error_db']:+.1f}"
            f" dB, after it {r['steady_level_error_db']:+.1f} dB; code perplexity "
            + " / ".join(f"{v:.1f}" for v in r["perplexity"])
            + f"; latent variance over time {r['latent_time_var']:.3g} (mean^2 "
            f"{r['latent_mean_sq']:.3g}); codes shuffled: {r['shuffled_diff_db']:+.1f} dB"
            + (
                f"; mono in: side {r['mono_side_db']:+.1f} dB re mid; side level error "
                f"{r['side_level_error_db']:+.1f} dB"
                if "mono_side_db" in r
                else ""
            ),
            flush=True,
        )
    if args.output:
        with open(args.output, "w") as f:
            json.dump(
                {"command": " ".join(sys.argv), "files": paths, "results": results}, f, indent=1
            )
        print("wrote", args.output)


if __name__ == "__main__":
    main()
