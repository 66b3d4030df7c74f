"""Which losses pull a joint-stereo model's decoded side up, and which down?

  python benchmarks/side_gradients.py --checkpoint RUN/checkpoints/1200 \
      --audio /tmp/music2/heldout/frontiers.mp3,/tmp/music2/heldout/hr3-jungle.ogg \
      --output benchmarks/results/side_gradients_DATE.json

A joint model's decoded side hardly follows the input's (benchmarks/side_latent_probe.py:
mono input still decodes a side ~10 dB under the mid). This asks the training objective, at a
checkpoint, what it wants of that side. Each crop (1 s at `--start_s`, normalized as training
crops are) goes through the codec as it is (stereo) and made mono (both channels their mean, a
silent side). For every generator loss term of the run's config, with its weight and the
checkpoint's discriminators, the gradient with respect to the decoded audio is split into mid
and side (`L = M + S`, `R = M - S`), and reported as

- `side_gain`: d(term) / d(log g) at g = 1 for the decoded side scaled by g (mid kept): the
  change of the term per unit log-gain of the side. Positive: a quieter side lowers the term.
- `mid_gain`: the same for the mid.
- `side_grad_norm`: the L2 norm of the term's gradient with respect to the side signal.

The reconstruction losses are listed per signal (`mel/left` ... `mel/side`), each with its
share of `loss.stereo_weights`, so that the side's own term stands beside the left and right
terms (which see the side too) and the adversarial ones (which see each channel, not the side).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jax_codec import levels  # noqa: E402
from jax_codec.stereo import STEREO_SIGNALS, stereo_signals  # noqa: E402


def load_state(checkpoint: str):
    """(config, generator params, discriminator params) of a step checkpoint directory."""
    from jax_codec.inference import api

    kind, directory = api.resolve_checkpoint(checkpoint, "latest")
    if kind != "step":
        sys.exit(f"{checkpoint}: needs a step checkpoint (with its discriminators), not {kind}")
    meta = api._read_json(os.path.join(directory, "config", "metadata"))
    config = api._config_from(meta["config"])
    state = api._restore(os.path.join(directory, "state"))
    return config, state["gen_params"], state["disc_params"]


def read_crop(path: str, sr: int, start_s: float, seconds: float, target_db) -> np.ndarray:
    import librosa

    x, _ = librosa.load(path, sr=sr, mono=False, offset=start_s, duration=seconds)
    x = np.atleast_2d(x).T.astype(np.float32)  # [T, C]
    if x.shape[1] == 1:
        x = np.repeat(x, 2, axis=1)
    if target_db is not None:
        x = levels.normalize(x, sr, target_db, channels_last=True)[0]
    return x


def term_functions(trainer):
    """{name: (weight, f(y, x, disc_params) -> scalar)} for every active generator term of
    `trainer`, of decoded `y` against input `x`."""
    w = trainer.weights
    index = list(trainer.stereo_index)
    sw = dict(zip(index, (float(v) for v in trainer.stereo_weights), strict=True))
    fns = {}
    for k in ("mel", "stft", "band_energy", "complex_stft", "waveform", "si_sdr", "cqt", "onset"):
        if w.get(k, 0) <= 0:
            continue
        for i in index:

            def f(y, x, dp, k=k, i=i):
                return trainer.reconstruction_losses(stereo_signals(y)[i], stereo_signals(x)[i])[k]

            fns[f"{k}/{STEREO_SIGNALS[i]}"] = (float(w[k]) * sw[i], f)
    if w.get("stereo_image", 0) > 0:
        fns["stereo_image"] = (
            float(w["stereo_image"]),
            lambda y, x, dp: trainer._reconstruction(y, x)[0]["stereo_image"],
        )
    for k in ("adv_g", "fm"):
        if w.get(k, 0) > 0:
            fns[k] = (float(w[k]), lambda y, x, dp, k=k: trainer._adv_losses(dp, y, x)[k])
    return fns


@functools.cache
def gradient_functions(trainer) -> dict:
    """`term_functions` as jitted (value, gradient with respect to `y`), compiled once per
    term and trainer, whatever the crop."""
    return {
        name: (weight, jax.jit(jax.value_and_grad(f)))
        for name, (weight, f) in term_functions(trainer).items()
    }


def side_level_gradients(trainer, disc_params, x: jax.Array, y: jax.Array) -> dict:
    """{term: its weighted value, d/dlog gain of the side and of the mid, |d/dside|} of
    decoded `y` against input `x`, both `[B, T, 2]`."""
    y = y.astype(jnp.float32)
    mid, side = (y[..., 0] + y[..., 1]) / 2, (y[..., 0] - y[..., 1]) / 2
    rows = {}
    for name, (weight, value_and_grad) in gradient_functions(trainer).items():
        value, g = value_and_grad(y, x, disc_params)
        g_mid, g_side = g[..., 0] + g[..., 1], g[..., 0] - g[..., 1]  # dL/dM, dL/dS
        rows[name] = {
            "weight": weight,
            "weighted_value": weight * float(value),
            "side_gain": weight * float(jnp.sum(g_side * side)),
            "mid_gain": weight * float(jnp.sum(g_mid * mid)),
            "side_grad_norm": weight * float(jnp.linalg.norm(g_side)),
        }
    return rows


def side_re_mid_db(x) -> float:
    """Side level over mid level (dB) of `[..., T, 2]` audio."""
    x = np.asarray(x, np.float64)
    m, s = (x[..., 0] + x[..., 1]) / 2, (x[..., 0] - x[..., 1]) / 2
    return float(10 * np.log10((np.mean(s * s) + 1e-20) / (np.mean(m * m) + 1e-20)))


def analyse(trainer, gen_params, disc_params, x: np.ndarray, n_quantizers: int) -> dict:
    xb = jnp.asarray(x[None])
    y = trainer.codec.apply(gen_params, xb, n_quantizers, train=False).audio
    rows = side_level_gradients(trainer, disc_params, xb, y)
    return {
        "input_side_re_mid_db": side_re_mid_db(x),
        "output_side_re_mid_db": side_re_mid_db(y),
        "terms": rows,
        "total_side_gain": sum(r["side_gain"] for r in rows.values()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="a step checkpoint of a joint model")
    p.add_argument("--audio", required=True, help="comma-separated stereo files")
    p.add_argument("--start_s", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--n_quantizers", type=int, default=4)
    p.add_argument("--output", default="")
    args = p.parse_args()
    from jax_codec.training.step import Trainer

    config, gen_params, disc_params = load_state(args.checkpoint)
    trainer = Trainer(config)
    if trainer.codec.channels != 2:
        sys.exit(f"{args.checkpoint}: a mono model; this asks about a joint-stereo model's side")
    sr = trainer.codec.sample_rate
    results = []
    for path in [a for a in args.audio.split(",") if a]:
        x = read_crop(path, sr, args.start_s, args.seconds, levels.target_db(config))
        mono = np.repeat(x.mean(axis=1, keepdims=True), 2, axis=1)
        for kind, audio in (("stereo", x), ("mono", mono)):
            r = analyse(trainer, gen_params, disc_params, audio, args.n_quantizers)
            r.update(file=os.path.basename(path), input=kind)
            results.append(r)
            print(
                f"{r['file'][:22]:22s} {kind:6s} side in {r['input_side_re_mid_db']:7.1f} dB, "
                f"out {r['output_side_re_mid_db']:6.1f} dB; d/dlog(side gain): "
                f"total {r['total_side_gain']:+.3f}"
            )
            for name, t in r["terms"].items():
                print(
                    f"    {name:18s} value {t['weighted_value']:8.3f}  side {t['side_gain']:+8.3f}"
                    f"  mid {t['mid_gain']:+8.3f}  |g_side| {t['side_grad_norm']:.3g}"
                )
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"command": " ".join(sys.argv), "results": results}, f, indent=1)
        print("wrote", args.output)


if __name__ == "__main__":
    main()
