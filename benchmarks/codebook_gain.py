"""Does each added codebook help? Every listener metric, file by file, against one codebook.

  python benchmarks/codebook_gain.py EVAL_A/results.json=joint_plain_ema \\
      EVAL_B/results.json=joint --output=gain.json

Each `RESULTS_JSON=CODEC` names the results.json of a `python -m jax_codec evaluate --output`
run and one of our codecs in it (its row label). For each, and each number of codebooks
`n_q > 1` it was evaluated at: the mean over files of (metric at `n_q` minus metric at one
codebook), a file's value being the mean over its excerpts, with the 95% interval of that mean
and the number of files where the added codebooks made it better (in the metric's own sense:
higher ViSQOL and SI-SDR, lower everything else). Paired differences cancel how hard each file
is, so a codebook's small gain shows where two separate intervals would overlap.

With two or more, the first is also compared with each other one at each `n_q` (the same
pairing; the evaluations must have coded the same files and excerpts, e.g. the same `--data`,
`--excerpts` and `--segment_seconds`), and, at each of its `n_q`, with the other at its most
codebooks (`against_best`): where the first is not worse there at a fraction of the bits, it
needs that fraction of the bits for the other's best quality.

A stereo evaluation adds mid, side, level (ILD) and correlation (ICC) metrics; a mono one has
none of them and they are left out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import joint_vs_dual_mono as jvd  # noqa: E402

# joint_vs_dual_mono's metrics and the other listener metrics of an evaluation.
METRICS = (*jvd.METRICS, "loudness_difference", "chroma_distance", "stft_distance")


def load(spec: str) -> tuple[str, list[dict]]:
    """`RESULTS_JSON=CODEC` -> (CODEC, its rows); a clear exit when either is missing."""
    path, _, codec = spec.rpartition("=")
    if not path or not codec:
        raise SystemExit(f"{spec!r} is not RESULTS_JSON=CODEC")
    if not os.path.isfile(path):
        raise SystemExit(f"{path}: no such file (an evaluation's results.json)")
    with open(path) as f:
        rows = json.load(f)
    found = [r for r in rows if r.get("codec") == codec and not r.get("error")]
    if not found:
        codecs = sorted({r.get("codec") for r in rows})
        raise SystemExit(f"{path} has no rows of codec {codec!r}; it has {codecs}")
    return codec, found


def present(rows: list[dict]) -> tuple[str, ...]:
    return tuple(m for m in METRICS if any(r.get(m) is not None for r in rows))


def gains(rows: list[dict]) -> list[dict]:
    """Per `n_q > 1`: `jvd.paired`'s entry of n_q codebooks against one, file by file."""
    one = [dict(r, codec="one", n_quantizers=1) for r in rows if r["n_quantizers"] == 1]
    if not one:
        raise SystemExit("the evaluation has no rows at one codebook (--n_quantizers 1,...)")
    metrics = present(rows)
    out = []
    for k in sorted({r["n_quantizers"] for r in rows} - {1}):
        more = [dict(r, codec="more", n_quantizers=1) for r in rows if r["n_quantizers"] == k]
        (entry,) = jvd.paired(more + one, "more", "one", metrics)
        out.append({"n_quantizers": k, "kbps": entry["more"]["kbps"], **entry["metrics"]})
    return out


def gain_table(name: str, table: list[dict], metrics: tuple[str, ...]) -> str:
    head = f"| {name}: n_q vs 1 | kbps | " + " | ".join(metrics) + " |\n"
    head += "|---|---|" + "---|" * len(metrics) + "\n"
    lines = []
    for g in table:
        cells = []
        for m in metrics:
            e = g.get(m)
            ci = "" if e is None or e["ci95"] is None else f" ± {e['ci95']:.3f}"
            cells.append(
                ""
                if e is None
                else f"{e['mean_diff']:+.3f}{ci} ({e['more_better_on']}/{e['files']})"
            )
        lines.append(f"| {g['n_quantizers']} | {g['kbps']:.2f} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("specs", nargs="+", help="RESULTS_JSON=CODEC, one or more")
    ap.add_argument("--output", default=None, help="write the tables as JSON here")
    args = ap.parse_args(argv)
    loaded = [load(s) for s in args.specs]
    names = [n for n, _ in loaded]
    if len(set(names)) != len(names):  # the same label in two evaluations
        names = [f"{n}#{i}" for i, n in enumerate(names)]
    result = {"command": "python benchmarks/codebook_gain.py " + " ".join(args.specs)}
    result["gain"] = {}
    for name, (_, rows) in zip(names, loaded, strict=True):
        result["gain"][name] = gains(rows)
        print(gain_table(name, result["gain"][name], present(rows)) + "\n")
    result["against_first"], result["against_best"] = {}, {}
    first, (_, first_rows) = names[0], loaded[0]
    for name, (_, rows) in zip(names[1:], loaded[1:], strict=True):
        a = [dict(r, codec="a") for r in first_rows]
        b = [dict(r, codec="b") for r in rows]
        metrics = tuple(m for m in present(first_rows) if m in present(rows))
        pairs = jvd.paired(a + b, "a", "b", metrics)
        result["against_first"][name] = pairs
        print(f"{first} minus {name}, file by file (95% CI; files where {first} is better):")
        print(jvd.paired_table(pairs, "a", "b", metrics) + "\n")
        most = max(r["n_quantizers"] for r in rows)
        best = jvd.paired(a + [r for r in b if r["n_quantizers"] == most], "a", "b", metrics)
        result["against_best"][name] = best
        print(f"{first} at each n_q minus {name} at its most codebooks ({most}), file by file:")
        print(jvd.paired_table(best, "a", "b", metrics) + "\n")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
