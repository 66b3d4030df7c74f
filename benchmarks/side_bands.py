"""Where in frequency does a codec lose the side? The side's log-mel error per band group.

  python benchmarks/side_bands.py --audio=/tmp/music2/heldout/time_to_strike.mp3 --start=0 \\
      joint=RUN_J/checkpoints/1200:4 dual=RUN_D/checkpoints/1200:3

Codes `--seconds` of a stereo file from `--start` with each checkpoint at its number of
codebooks (a mono checkpoint codes each channel on its own: dual mono), and prints, per group
of ten mel bands (80 bands, 2048-sample windows, magnitudes floored at 1e-5 as the side-mel
distance is): the reference's side over its mid (dB), the fraction of the reference side's
bins at the floor, and for each codec the mean absolute log-mel error of its side and its
side's level over the reference side's (dB; positive: too loud).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

SR = 48000
GROUPS = [(a, a + 10) for a in range(0, 80, 10)]


def logmel(x: np.ndarray) -> np.ndarray:
    import librosa

    m = librosa.feature.melspectrogram(y=x, sr=SR, n_fft=2048, hop_length=512, n_mels=80, power=1.0)
    return np.log10(np.maximum(m, 1e-5))


def decode(checkpoint: str, n_q: int, x: np.ndarray) -> np.ndarray:
    """`x` `[T, 2]` through the checkpoint's codec: joint if it is stereo, else per channel."""
    import jax.numpy as jnp

    from jax_codec.inference.api import load_codec

    lc = load_codec(checkpoint)
    c, p = lc.codec, lc.params
    n = x.shape[0] // c.length_multiple * c.length_multiple

    def run(a):
        codes = c.apply(p, jnp.asarray(a[:n])[None], n_q, method=c.encode)
        return np.asarray(c.apply(p, codes, n, method=c.decode))[0]

    if c.channels == 2:
        return run(x)
    return np.concatenate([run(x[:, i : i + 1]) for i in range(2)], axis=1)


def side_bands(ref: np.ndarray, decoded: dict[str, np.ndarray]) -> dict:
    """The table for a `[T, 2]` reference and `{name: [T, 2]}` decoded pairs at 48 kHz."""
    from jax_codec.stereo import to_mid_side

    ms = to_mid_side(ref)
    rs, rm = logmel(ms[:, 1]), logmel(ms[:, 0])
    out = {
        "ref_side_over_mid_db": [float(20 * np.mean(rs[a:b] - rm[a:b])) for a, b in GROUPS],
        "ref_side_at_floor": [float(np.mean(rs[a:b] <= -4.99)) for a, b in GROUPS],
        "codecs": {},
    }
    for name, y in decoded.items():
        s = logmel(to_mid_side(y)[:, 1])
        n = min(s.shape[1], rs.shape[1])
        d = s[:, :n] - rs[:, :n]
        out["codecs"][name] = {
            "side_mel_l1": [float(np.abs(d[a:b]).mean()) for a, b in GROUPS],
            "side_mel_l1_all": float(np.abs(d).mean()),
            "side_over_ref_db": [float(20 * np.mean(d[a:b])) for a, b in GROUPS],
        }
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("codecs", nargs="+", help="NAME=CHECKPOINT:N_QUANTIZERS")
    p.add_argument("--audio", required=True)
    p.add_argument("--start", type=float, default=0.0)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args(argv)
    specs = []
    for spec in args.codecs:
        name, _, rest = spec.partition("=")
        checkpoint, _, n_q = rest.rpartition(":")
        if not (name and checkpoint and n_q.isdigit()):
            raise SystemExit(f"{spec!r}: use NAME=CHECKPOINT:N_QUANTIZERS")
        specs.append((name, checkpoint, int(n_q)))
    import librosa
    import soxr

    x, sr = librosa.load(args.audio, sr=None, mono=False, offset=args.start, duration=args.seconds)
    if x.ndim != 2 or x.shape[0] != 2:
        raise SystemExit(f"{args.audio}: a stereo file is needed")
    x = soxr.resample(x.T, sr, SR).astype(np.float32)
    decoded = {name: decode(checkpoint, n_q, x) for name, checkpoint, n_q in specs}
    out = {"audio": args.audio, "start": args.start, **side_bands(x, decoded)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
