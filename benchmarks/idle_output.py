"""What a codec outputs for digital silence, and how loud it makes music: the frame-rate buzz.

  python benchmarks/idle_output.py joint=runs/joint/checkpoints/2000 dual=runs/dual \\
      --music=/tmp/music/heldout/hr3-jungle.ogg,/tmp/music/heldout/frontiers.mp3

Each `LABEL=CHECKPOINT` (a work dir, `best/` or a step dir) is run forward (`Codec.__call__`,
`--n_quantizers` codebooks, no `.jcodec` level handling, so the model's own levels show) on
`--seconds` (whole hops) of digital silence and on `--seconds` of each `--music` file from
`--start`. Printed and written as JSON: the output's RMS level (dBFS, each channel's DC
offset removed: what is heard) for the silence (a second before and after it left out), its
DC offset per channel, the share of its power at harmonics of the frame rate (a constant
latent through a time-invariant decoder repeats every hop, so this is 1 up to rounding, and
the level is what matters), and the RMS level of each music excerpt in and out, as it is and
`--quiet_db` quieter (a quiet passage or a fade: does the output follow it down, or stop at
the buzz?). A codec that has learned silence gives a very low silence level; one whose output
is mostly this buzz gives about the same level for music as for silence.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level of `x` ``[T, C]`` in dBFS, each channel's mean (DC offset) removed (the
    training eval's `level_dbfs`, for one example)."""
    from jax_codec.training.loop import level_dbfs

    return level_dbfs(np.asarray(x)[None])


def harmonic_share(y: np.ndarray, sample_rate: int, fundamental: float) -> float:
    """Share of the power of `y` ``[T, C]`` (mean removed) within 1 Hz of a multiple of
    `fundamental`."""
    y = y - y.mean(axis=0)
    power = np.abs(np.fft.rfft(y, axis=0)) ** 2
    f = np.fft.rfftfreq(len(y), 1.0 / sample_rate)
    k = np.round(f / fundamental)
    near = (k >= 1) & (np.abs(f - k * fundamental) < 1.0)
    total = power.sum()
    return float(power[near].sum() / total) if total > 0 else 0.0


def measure(
    loaded,
    music: dict[str, np.ndarray],
    seconds: float,
    n_quantizers: int,
    quiet_db: float = 40.0,
) -> dict:
    """The levels for one loaded codec (`jax_codec.inference.api.LoadedCodec`); `music` maps a
    name to ``[T, 2]`` audio at the codec's rate, also decoded `quiet_db` quieter."""
    import jax
    import jax.numpy as jnp

    codec, params = loaded.codec, loaded.params
    sr = codec.sample_rate
    run = jax.jit(lambda p, x: codec.apply(p, x, n_quantizers).audio)

    def decode(x: np.ndarray) -> np.ndarray:  # x [T, 2]
        x = x if codec.channels == 2 else x[:, :1]
        return np.asarray(run(params, jnp.asarray(x[None])))[0]

    # Whole hops of `seconds`, with a second before and after left out (the decoder's start
    # and, in a non-causal model, its look past the end).
    keep = max(1, int(seconds * sr) // codec.hop_length) * codec.hop_length
    silence = decode(np.zeros((keep + 2 * sr, 2), np.float32))[sr : sr + keep]
    out = {
        "sample_rate": sr,
        "frame_rate_hz": sr / codec.hop_length,
        "silence_out_dbfs": rms_dbfs(silence),
        "silence_dc": [float(v) for v in silence.mean(axis=0)],
        "silence_harmonic_share": harmonic_share(silence, sr, sr / codec.hop_length),
        "music": {},
    }
    for name, x in music.items():
        xin = x if codec.channels == 2 else x[:, :1]
        quiet = (x * np.float32(10.0 ** (-quiet_db / 20.0))).astype(np.float32)
        out["music"][name] = {
            "in_dbfs": rms_dbfs(xin),
            "out_dbfs": rms_dbfs(decode(x)),
            "quiet_db": quiet_db,
            "quiet_in_dbfs": rms_dbfs(xin) - quiet_db,
            "quiet_out_dbfs": rms_dbfs(decode(quiet)),
        }
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="+", help="LABEL=CHECKPOINT")
    p.add_argument("--music", default="", help="comma-separated audio files")
    p.add_argument("--start", type=float, default=30.0, help="seconds into each music file")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--n_quantizers", type=int, default=4)
    p.add_argument("--quiet_db", type=float, default=40.0, help="the music also this much quieter")
    p.add_argument("--output", default="")
    args = p.parse_args(argv)
    specs = [m.split("=", 1) for m in args.models]
    if any(len(s) != 2 or not all(s) for s in specs):
        p.error("each model is LABEL=CHECKPOINT")

    from jax_codec.evaluation.run import load_segment
    from jax_codec.inference.api import load_codec

    results, music_cache = {}, {}
    for label, path in specs:
        loaded = load_codec(path, priors=None)
        sr = loaded.codec.sample_rate
        if sr not in music_cache:
            music_cache[sr] = {}
            for f in filter(None, args.music.split(",")):
                x = load_segment(f, sr, args.seconds, int(args.start * sr))  # [C, T]
                music_cache[sr][f] = np.ascontiguousarray(np.resize(x, (2, x.shape[1])).T)
        results[label] = measure(
            loaded, music_cache[sr], args.seconds, args.n_quantizers, args.quiet_db
        )
        r = results[label]
        levels = ", ".join(
            f"{name.rsplit('/', 1)[-1]} {m['in_dbfs']:.1f} -> {m['out_dbfs']:.1f}"
            f" ({m['quiet_in_dbfs']:.1f} -> {m['quiet_out_dbfs']:.1f})"
            for name, m in r["music"].items()
        )
        print(
            f"{label}: silence -> {r['silence_out_dbfs']:.1f} dBFS "
            f"({r['silence_harmonic_share']:.2f} at {r['frame_rate_hz']:g} Hz harmonics)"
            + (f"; music {levels} dBFS" if levels else ""),
            flush=True,
        )
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"command": " ".join(sys.argv), "results": results}, f, indent=1)
        print("wrote", args.output)


if __name__ == "__main__":
    main()
