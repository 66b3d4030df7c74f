"""Where a joint-stereo model's stereo image goes wrong: mid and side levels against the input.

  python benchmarks/stereo_image.py --checkpoints=/tmp/st/joint,/tmp/st/side4 \
      --heldout_dir=/tmp/music/heldout --seconds=10

For each checkpoint (a run or export directory, a label before `=` optional:
`name=/path`) and each held-out stereo file (its first `--seconds`, at the model's rate,
scaled to `data.normalize_db` as training crops are), codes at 1..N levels are decoded and
compared with the input, as the model sees it (no header gain). A mono model codes the pair as
dual mono (each channel on its own), the reference a joint model should beat:
- `mid_db`, `side_db`: energy of the decoded mid `(L + R) / 2` and side `(L - R) / 2` minus the
  input's, in dB, over the time-frequency tiles of `evaluation.metrics.stereo_tiles` that are
  audible in the input. A model that decorrelates left and right has a mid too quiet against
  its side;
- `ild_difference`, `icc_difference`, `mel_distance`, `mel_distance_side`: the evaluation's
  metrics (`jax_codec.evaluation.metrics`).

`--match_level` scales each decoded pair (one gain for both channels) to the input's energy
before the metrics, so they see the spectrum and the image rather than the model's overall
level (as `evaluate` does with the header gain). `--unquantized` adds a row (`n_quantizers` 0)
that decodes the encoder's latent itself, without the quantizer: what the autoencoder does
with unlimited bits (the decoder was trained on quantized latents only, so a bound, not a
target).
Prints a markdown table of the means over files and writes JSON (`--output`, default
benchmarks/results/stereo_image_<date>.json).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import soundfile as sf
import soxr

from jax_codec import levels
from jax_codec.evaluation import metrics as M
from jax_codec.inference import load_codec

METRICS = ("mel_distance", "mel_distance_side", "ild_difference", "icc_difference")


def band_levels(x: np.ndarray, sr: int, audible: np.ndarray | None = None):
    """(mid power, side power) summed over tiles, and the audible-tile mask used."""
    left, right, cross = M.stereo_tiles(x, sr)
    if audible is None:
        total = left + right
        audible = total > total.max() * 1e-6
    mid = (left + right + 2 * cross)[audible].sum()
    side = (left + right - 2 * cross)[audible].sum()
    return mid, side, audible


def load(path: str, sr: int, seconds: float, target_db: float) -> np.ndarray:
    x, rate = sf.read(path, dtype="float32", always_2d=True)
    x = x[: int(rate * (seconds + 1))]
    if rate != sr:
        x = soxr.resample(x, rate, sr)
    x = x[: int(sr * seconds)]
    if x.shape[1] == 1:
        x = np.repeat(x, 2, axis=1)
    gain = levels.normalizing_gain(levels.level_db(x.T, sr), float(np.abs(x).max()), target_db)
    return (x[:, :2] * np.float32(levels.db_to_gain(gain))).astype(np.float32)


def measure(
    label: str,
    path: str,
    files: list[str],
    seconds: float,
    match_level: bool = False,
    unquantized: bool = False,
) -> list[dict]:
    codec, params, config = load_codec(path)
    sr = codec.sample_rate
    # A mono model codes the pair as dual mono: each channel its own batch row.
    to_model = (lambda x: x[None]) if codec.channels == 2 else (lambda x: x.T[:, :, None])
    from_model = (lambda y: y[0]) if codec.channels == 2 else (lambda y: y[..., 0].T)
    target_db = float(config.data.get("normalize_db", -18.0))
    encode = jax.jit(lambda p, x, n: codec.apply(p, x, n, method=codec.encode), static_argnums=2)
    decode = jax.jit(lambda p, c: codec.apply(p, c, method=codec.decode))

    def latent_decode(m, a):  # encoder -> decoder, no quantizer
        return m.from_model_channels(m.decoder(m.encoder(m.to_model_channels(m._pad(a)))))

    autoencode = jax.jit(lambda p, a: codec.apply(p, a, method=latent_decode))
    rows = []
    for f in files:
        x = load(f, sr, seconds, target_db)
        ref = x.T
        mid_r, side_r, audible = band_levels(ref, sr)
        for n in range(1, codec.num_quantizers + 1 + int(unquantized)):
            if n > codec.num_quantizers:
                n, y = 0, autoencode(params, jnp.asarray(to_model(x)))
            else:
                y = decode(params, encode(params, jnp.asarray(to_model(x)), n))
            est = from_model(np.asarray(y))[: len(x)].T
            if match_level:
                est = est * np.sqrt(np.sum(ref**2) / max(float(np.sum(est**2)), 1e-12))
            mid_e, side_e, _ = band_levels(est, sr, audible)
            row = {"model": label, "file": os.path.basename(f), "n_quantizers": n}
            row["mid_db"] = float(10 * np.log10(mid_e / mid_r))
            row["side_db"] = float(10 * np.log10(side_e / side_r))
            row["input_side_to_mid_db"] = float(10 * np.log10(side_r / mid_r))
            for m in METRICS:
                row[m] = float(getattr(M, m)(ref, est, sr))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    keys = ("mid_db", "side_db", *METRICS)
    out = ["| model | n_q | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["n_quantizers"]), []).append(r)
    for (model, n), rs in groups.items():
        cells = [f"{np.mean([r[k] for r in rs]):.2f}" for k in keys]
        out.append(f"| {model} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoints", required=True, help="comma-separated [label=]path")
    p.add_argument("--heldout_dir", required=True)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--output", default="")
    p.add_argument("--match_level", action="store_true", help="decoded energy = input's")
    p.add_argument("--unquantized", action="store_true", help="add the latent-decoded row")
    args = p.parse_args()
    files = sorted(
        f for f in glob.glob(os.path.join(args.heldout_dir, "*")) if not f.endswith(".json")
    )
    if not files:
        raise SystemExit(f"--heldout_dir={args.heldout_dir}: no audio files")
    rows = []
    for spec in args.checkpoints.split(","):
        label, _, path = spec.rpartition("=")
        name = label or os.path.basename(path.rstrip("/"))
        rows += measure(name, path, files, args.seconds, args.match_level, args.unquantized)
    out = args.output or os.path.join(
        os.path.dirname(os.path.abspath(__file__)),
        "results",
        f"stereo_image_{datetime.date.today().isoformat()}.json",
    )
    with open(out, "w") as f:
        json.dump({"command": "python " + " ".join(sys.argv), "rows": rows}, f, indent=1)
    print(table(rows))
    print("wrote", out)


if __name__ == "__main__":
    main()
