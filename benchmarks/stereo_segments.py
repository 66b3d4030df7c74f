"""Where in a stereo excerpt does a codec lose the side? Levels and mel distances per time span.

  python -m jax_codec compress REF.wav A.jcodec --checkpoint RUN_A && \\
      python -m jax_codec decompress A.jcodec A.wav --checkpoint RUN_A   # and B
  python benchmarks/stereo_segments.py REF.wav joint=A.wav dual=B.wav --spans=0-1.1,1.3-10

For each decoded file and each span (seconds), the mid `(L + R) / 2` and side `(L - R) / 2`
levels (dBFS, `training.loop.level_dbfs`) of the reference and the decoded audio, and the mel
distance of the mid and of the side (`evaluation.stereo_metrics`). A quiet near-mono passage (a
fade, an intro) has almost no side: a dual-mono codec decodes identical channels identically
(no side at all), a joint model adds a side of its own, and the side's log-mel distance counts
that heavily.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def span_metrics(ref: np.ndarray, est: np.ndarray, sr: int, start: float, end: float) -> dict:
    """The numbers for `[2, T]` `ref` and `est` over [start, end) seconds."""
    from jax_codec.evaluation.stereo_metrics import mel_distance_mid, mel_distance_side
    from jax_codec.stereo import to_mid_side
    from jax_codec.training.loop import level_dbfs

    a, b = int(round(start * sr)), int(round(end * sr))
    r, e = ref[:, a:b], est[:, a:b]
    if b > min(ref.shape[1], est.shape[1]) or r.shape[1] < 2048:
        raise ValueError(f"span {start:g}-{end:g} s: too short or past the end of the audio")

    def levels(x):  # [2, T] -> mid and side levels
        ms = to_mid_side(x.T[None])
        return level_dbfs(ms[..., 0]), level_dbfs(ms[..., 1])

    (rm, rs), (em, es) = levels(r), levels(e)
    return {
        "span_s": [start, end],
        "ref_mid_dbfs": rm,
        "ref_side_dbfs": rs,
        "mid_dbfs": em,
        "side_dbfs": es,
        "mel_mid": mel_distance_mid(r, e, sr),
        "mel_side": mel_distance_side(r, e, sr),
    }


def parse_spans(text: str) -> list[tuple[float, float]]:
    spans = []
    for part in text.split(","):
        try:
            a, b = (float(v) for v in part.split("-"))
        except ValueError:
            raise SystemExit(f"--spans: {part!r} is not START-END in seconds") from None
        if not 0 <= a < b:
            raise SystemExit(f"--spans: {part!r} needs 0 <= START < END")
        spans.append((a, b))
    return spans


def main(argv=None) -> None:
    import soundfile as sf

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("reference", help="the stereo input (wav/flac)")
    p.add_argument("decoded", nargs="+", help="LABEL=DECODED_FILE at the reference's rate")
    p.add_argument("--spans", required=True, help="START-END,... in seconds")
    p.add_argument("--output", default="")
    args = p.parse_args(argv)
    spans = parse_spans(args.spans)
    ref, sr = sf.read(args.reference, dtype="float64", always_2d=True)
    if ref.shape[1] != 2:
        raise SystemExit(f"{args.reference}: {ref.shape[1]} channel(s), a stereo file is needed")
    results = {}
    for spec in args.decoded:
        label, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"{spec!r}: LABEL=DECODED_FILE")
        est, esr = sf.read(path, dtype="float64", always_2d=True)
        if esr != sr or est.shape[1] != 2:
            raise SystemExit(f"{path}: {est.shape[1]} channel(s) at {esr} Hz, not stereo at {sr}")
        est = est[: len(ref)]
        results[label] = [span_metrics(ref.T, est.T, sr, a, b) for a, b in spans]
        for m in results[label]:
            print(
                f"{label} {m['span_s'][0]:g}-{m['span_s'][1]:g} s: reference mid "
                f"{m['ref_mid_dbfs']:.0f} / side {m['ref_side_dbfs']:.0f} dBFS, decoded mid "
                f"{m['mid_dbfs']:.0f} / side {m['side_dbfs']:.0f} dBFS; mel mid "
                f"{m['mel_mid']:.2f}, side {m['mel_side']:.2f}"
            )
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"command": " ".join(sys.argv), "results": results}, f, indent=1)
        print("wrote", args.output)


if __name__ == "__main__":
    main()
