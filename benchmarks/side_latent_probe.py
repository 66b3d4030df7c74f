"""Does a joint-stereo codec's latent carry the input's side, and does its decoder use it?

  python benchmarks/side_latent_probe.py RUN/checkpoints/1200 \\
      --audio=/tmp/music2/heldout/frontiers.mp3@100,/tmp/music2/heldout/hr3-jungle.ogg@30

Each excerpt (FILE@START, `--seconds` long) goes through the model twice, in stereo and as mono
(both channels their mean: the same mid, no side), with all codebooks. Printed per excerpt: the
input's side over its mid (dB); how far the mono input's encoder latent and quantized latent are
from the stereo input's (|a - b| / |a|); the decoded side over the decoded mid (dB) for each
input; and the correlation of the two decoded sides. A latent that moves while the decoded side
does not says the side is coded but the decoder does not set its side from it.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def probe(codec, params, x: np.ndarray) -> dict:
    """The numbers for one `[T, 2]` excerpt (T a multiple of `codec.length_multiple`)."""
    import jax.numpy as jnp

    from jax_codec.stereo import to_mid_side
    from jax_codec.training.loop import mono_side_db

    mono = np.repeat(x.mean(axis=1, keepdims=True), 2, axis=1)
    out = {}
    for name, a in (("stereo", x), ("mono", mono)):
        o = codec.apply(params, jnp.asarray(a)[None])
        out[name] = [np.asarray(v[0]) for v in (o.latents, o.quantized, o.audio)]

    def rel(i):
        a, b = out["stereo"][i], out["mono"][i]
        return float(np.linalg.norm(a - b) / (np.linalg.norm(a) + 1e-20))

    res = {"input_side_over_mid_db": mono_side_db(x[None])}
    res["latent_rel_change"], res["quantized_rel_change"] = rel(0), rel(1)
    sides = {}
    for name in ("stereo", "mono"):
        res[f"decoded_side_over_mid_db_{name}"] = mono_side_db(out[name][2][None])
        sides[name] = to_mid_side(out[name][2])[:, 1]
    a, b = sides["stereo"], sides["mono"]
    res["decoded_side_corr"] = float(np.corrcoef(a, b)[0, 1]) if a.std() and b.std() else None
    return res


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--audio", required=True, help="FILE@START_SECONDS, comma separated")
    p.add_argument("--seconds", type=float, default=4.0)
    args = p.parse_args(argv)
    excerpts = []
    for spec in args.audio.split(","):
        path, _, start = spec.rpartition("@")
        try:
            excerpts.append((path, float(start)))
        except ValueError:
            raise SystemExit(f"--audio: {spec!r} is not FILE@START_SECONDS") from None
        if not path:
            raise SystemExit(f"--audio: {spec!r} is not FILE@START_SECONDS")
    import librosa
    import soxr

    from jax_codec.inference.api import load_codec

    lc = load_codec(args.checkpoint)
    codec, params = lc.codec, lc.params
    if codec.channels != 2:
        raise SystemExit(f"{args.checkpoint}: a joint-stereo (channels=2) model is needed")
    rows = []
    for path, start in excerpts:
        x, sr = librosa.load(path, sr=None, mono=False, offset=start, duration=args.seconds)
        if x.ndim != 2 or x.shape[0] != 2:
            raise SystemExit(f"{path}: a stereo file is needed")
        x = soxr.resample(x.T, sr, codec.sample_rate).astype(np.float32)
        n = x.shape[0] // codec.length_multiple * codec.length_multiple
        rows.append({"audio": path, "start": start, **probe(codec, params, x[:n])})
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
