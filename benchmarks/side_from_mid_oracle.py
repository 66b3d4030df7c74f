"""How much of a stereo recording's side is its mid times a gain per band? No model, no training.

  python benchmarks/side_from_mid_oracle.py --data HELDOUT_DIR [--bands 8,32] [--output F.json]

`model.side_from_mid` lets a joint-stereo decoder make its side as its own decoded mid through
a few learned bands, each times a gain per frame (parametric stereo's idea: a panned source's
side is its mid times a level per band). This script asks how much of the *reference* side
that form can explain at best, before any model learns it: for each file (an excerpt of
`--seconds` from `--start`, at 48 kHz), the STFT of mid and side at the 48 kHz preset's frame
rate (hop 640, window 2048), split into `--bands` log-spaced bands; in each band and frame the
least-squares gain `a = Re(sum S M*) / sum |M|^2` (real: one fixed filter per band, as the
model has) or its complex version (a phase per band and frame too). The rows give the share
of the side's energy left unexplained, `sum |S - a M|^2 / sum |S|^2`, and the side's level
relative to the mid.
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np
import scipy.signal
import soundfile as sf
import soxr

RATE = 48000
HOP = 640
WINDOW = 2048


def read_excerpt(path: str, start: float, seconds: float) -> np.ndarray:
    """`[T, 2]` at 48 kHz: `seconds` from `start` (mono files are duplicated)."""
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    if audio.shape[1] == 1:
        audio = np.repeat(audio, 2, axis=1)
    audio = soxr.resample(audio[:, :2], rate, RATE)
    return audio[int(start * RATE) : int((start + seconds) * RATE)]


def unexplained(audio: np.ndarray, bands: int) -> dict[str, float]:
    """Side level re mid (dB) and the shares of side energy a real / complex gain per band
    and frame times the mid leaves."""
    mid, side = (audio[:, 0] + audio[:, 1]) / 2, (audio[:, 0] - audio[:, 1]) / 2
    stft = lambda x: scipy.signal.stft(x, RATE, nperseg=WINDOW, noverlap=WINDOW - HOP)[2]
    m, s = stft(mid), stft(side)
    edges = np.unique(np.round(np.geomspace(2, m.shape[0], bands + 1)).astype(int))
    edges[0] = 0
    left_real = left_complex = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        mb, sb = m[lo:hi], s[lo:hi]
        power = (np.abs(mb) ** 2).sum(0) + 1e-12
        cross = (sb * mb.conj()).sum(0)
        left_real += float((np.abs(sb - (cross.real / power) * mb) ** 2).sum())
        left_complex += float((np.abs(sb - (cross / power) * mb) ** 2).sum())
    side_energy = float((np.abs(s) ** 2).sum()) + 1e-20
    return {
        "side_db_re_mid": 10 * np.log10(side_energy / float((np.abs(m) ** 2).sum() + 1e-20)),
        "unexplained_real": left_real / side_energy,
        "unexplained_complex": left_complex / side_energy,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="folder of stereo audio files")
    parser.add_argument("--bands", default="8,32", help="band counts, comma-separated")
    parser.add_argument("--start", type=float, default=30.0, help="excerpt start, seconds")
    parser.add_argument("--seconds", type=float, default=20.0, help="excerpt length")
    parser.add_argument("--output", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    files = sorted(f for f in glob.glob(os.path.join(args.data, "*")) if os.path.isfile(f))
    if not files:
        raise SystemExit(f"no files in {args.data!r}: give a folder of stereo audio files")
    rows = []
    for bands in [int(b) for b in args.bands.split(",")]:
        print(f"\n| {bands} bands | side re mid | left by a real gain | by a complex gain |")
        print("|---|---|---|---|")
        for path in files:
            row = {"file": os.path.basename(path), "bands": bands}
            row.update(unexplained(read_excerpt(path, args.start, args.seconds), bands))
            rows.append(row)
            print(
                f"| {row['file']} | {row['side_db_re_mid']:.1f} dB | "
                f"{100 * row['unexplained_real']:.0f}% | {100 * row['unexplained_complex']:.0f}% |"
            )
    if args.output:
        with open(args.output, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
