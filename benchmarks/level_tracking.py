"""Does the decoded level follow the input's? Held-out tracks at several gains, in and out.

  python benchmarks/level_tracking.py --checkpoint=runs/base --heldout_dir=/tmp/music/heldout \
      --gains=-12,0,6 --n_quantizers=1,4

Each held-out track (the first `--seconds` of it, at the model's rate) is scaled by each gain
in `--gains` (dB), written to a `.jcodec` with `codec_io.encode_to_jcodec` (what `compress`
does) and decoded. Printed and written to benchmarks/results/level_tracking_<date>.json: the
input's and the output's BS.1770 integrated loudness (pyloudnorm) and their difference, with
the encoder's loudness matching on and, with `--no_match` as well, off (then the header gain
only undoes the input normalization, so the model's own level error shows). A codec that
tracks level gives differences that do not depend on the gain; one that does not returns
about the same output loudness whatever the input's. Real music: Debian's free soundtracks
(`apt-get install hyperrogue-music asc-music`), never committed.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import tempfile

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--heldout_dir", required=True)
    p.add_argument("--gains", default="-12,0,6")
    p.add_argument("--n_quantizers", default="1,4")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--no_match", action="store_true", help="also without loudness matching")
    p.add_argument("--output", default="")
    args = p.parse_args()

    import librosa

    from jax_codec import levels
    from jax_codec.evaluation import metrics
    from jax_codec.inference import codec_io
    from jax_codec.inference.api import load_codec

    loaded = load_codec(args.checkpoint)
    sr = loaded.codec.sample_rate
    normalizing = levels.target_db(loaded.config) is not None
    matches = [True, False] if args.no_match and normalizing else [normalizing]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.jcodec")
        for f in sorted(glob.glob(os.path.join(args.heldout_dir, "*"))):
            x, _ = librosa.load(f, sr=sr, mono=False, duration=args.seconds)
            x = np.atleast_2d(x).astype(np.float32)
            for gain in (float(g) for g in args.gains.split(",")):
                xi = x * np.float32(10 ** (gain / 20))
                for k in (int(q) for q in args.n_quantizers.split(",")):
                    for match in matches:
                        codec_io.encode_to_jcodec(loaded, xi, path, k, match_loudness=match)
                        y = np.concatenate(list(codec_io.decode_jcodec(path, loaded)), axis=1)
                        li, lo = metrics.loudness(xi, sr), metrics.loudness(y, sr)
                        row = {
                            "file": os.path.basename(f),
                            "gain_db": gain,
                            "n_quantizers": k,
                            "normalized": normalizing,
                            "loudness_matched": match,
                            "input_lufs": li,
                            "output_lufs": lo,
                            "difference_lu": lo - li,
                        }
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    out = args.output or os.path.join(
        os.path.dirname(os.path.abspath(__file__)),
        "results",
        f"level_tracking_{datetime.date.today().isoformat()}.json",
    )
    with open(out, "w") as fh:
        json.dump({"checkpoint": args.checkpoint, "rows": rows}, fh, indent=1)
    print("| file | gain dB | n_q | matched | in LUFS | out LUFS | diff LU |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['file']} | {r['gain_db']:+.0f} | {r['n_quantizers']} | "
            f"{'yes' if r['loudness_matched'] else 'no'} | {r['input_lufs']:.1f} | "
            f"{r['output_lufs']:.1f} | {r['difference_lu']:+.1f} |"
        )
    print("wrote", out)


if __name__ == "__main__":
    main()
