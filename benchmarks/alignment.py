"""Does a trained codec's output match its input's waveform at *some* lag?

  python benchmarks/alignment.py --checkpoint=RUN --audio=/tmp/music/heldout/hr3-mirror.ogg

A diagnostic for negative SI-SDR: an excerpt (`--start`, `--seconds`, mono mixdown, brought to
the model's training level as `compress` does) through the model at 1 and at all codebooks,
then the normalised cross-correlation of output and input at every lag within `--max_lag`
samples, and SI-SDR at lag 0 and at the best lag. A delay between input and output would show
as a correlation peak away from lag 0; an output that follows the spectrum but not the
waveform shows no peak anywhere. Writes benchmarks/results/alignment_<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jax_codec import levels  # noqa: E402
from jax_codec.data.audio import read_file  # noqa: E402
from jax_codec.evaluation import metrics  # noqa: E402
from jax_codec.inference import load_codec  # noqa: E402


def lagged_correlation(x: np.ndarray, y: np.ndarray, max_lag: int) -> np.ndarray:
    """Normalised correlation of y shifted by each lag in [-max_lag, max_lag] against x."""
    n = len(x)
    out = np.empty(2 * max_lag + 1)
    for i, lag in enumerate(range(-max_lag, max_lag + 1)):
        a, b = (x[: n - lag], y[lag:]) if lag >= 0 else (x[-lag:], y[: n + lag])
        out[i] = np.dot(a, b) / (np.sqrt(np.dot(a, a) * np.dot(b, b)) + 1e-12)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--audio", required=True)
    p.add_argument("--start", type=float, default=20.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--max_lag", type=int, default=4096)
    p.add_argument("--output", default="")
    args = p.parse_args()
    codec, params, config = load_codec(args.checkpoint)
    sr = codec.sample_rate
    x = read_file(args.audio, sr, 1)[:, 0]
    x = x[int(args.start * sr) : int((args.start + args.seconds) * sr)]
    target = levels.target_db(config)
    if target is not None:
        x = levels.normalize(x[None], sr, target)[0][0]
    n = len(x) // codec.length_multiple * codec.length_multiple
    x = np.asarray(x[:n], np.float32)
    rows = []
    for k in sorted({1, codec.num_quantizers}):
        run = jax.jit(lambda p_, a, k=k: codec.apply(p_, a, n_quantizers=k).audio)
        y = np.asarray(run(params, jnp.asarray(x)[None, :, None]))[0, :n, 0]
        c = lagged_correlation(x, y, args.max_lag)
        best = int(np.argmax(np.abs(c)))
        lag = best - args.max_lag
        shifted = (x[: n - lag], y[lag:]) if lag >= 0 else (x[-lag:], y[: n + lag])
        rows.append(
            {
                "n_quantizers": k,
                "si_sdr_lag0": metrics.si_sdr(x, y),
                "best_lag": lag,
                "correlation_at_best_lag": float(c[best]),
                "correlation_lag0": float(c[args.max_lag]),
                "si_sdr_best_lag": metrics.si_sdr(*shifted),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    out = args.output or os.path.join(
        os.path.dirname(os.path.abspath(__file__)),
        "results",
        f"alignment_{datetime.date.today().isoformat()}.json",
    )
    with open(out, "w") as f:
        json.dump({"command": " ".join(sys.argv), "rows": rows}, f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
