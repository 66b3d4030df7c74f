r"""Many short files: `compress` / `decompress` with `--output_dir` (batched) against one by one.

  python benchmarks/batch_files.py                                   # runlocal, 64 files
  python benchmarks/batch_files.py --config=configs/base.py --files=64 --json out.json

Writes `--files` audio files of 1-5 s (distinct lengths; half stereo, a quarter at 48 kHz, the
rest at 44.1 kHz), cut from the music in `--music` (default /tmp/music, when it exists) or
rendered by the built-in synthetic music generator, then codes them with one model (random
init of `--config`: speed does not depend on the weights) in one process, two ways, through
the functions the command runs:

- batched: `compress_many.compress_many` / `decompress_many` (what `--output_dir` runs),
  `--batch_size` files per batch;
- one by one: `compress.compress_file` / `decompress_file` per file (what a loop over
  `compress IN OUT` runs, without the model load per file).

Cases: compress (with the loudness-matching decode a level-normalizing model does per file),
compress `--no_match_loudness` (all of it batched), decompress. For each case and way: a first
pass after clearing every compiled function (`jax.clear_caches` and our jit caches: what a new
process pays; one by one compiles a shape per file length), then `--repeats` warm passes,
alternated between the two ways. Reported: wall seconds, process CPU seconds (all threads; on a
shared machine wall time inflates, CPU time less), audio seconds per wall second and files per
second; the medians of the warm passes, and their ratio batched / one by one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_files(folder: str, n: int, music: str | None, seed: int = 0):
    """`n` audio files of 1-5 s in `folder`; (paths, total seconds, "music" or "synthetic")."""
    import soundfile as sf
    import soxr

    rng = np.random.default_rng(seed)
    sources = []
    if music and os.path.isdir(music):
        for root, _, names in sorted(os.walk(music)):
            sources += [os.path.join(root, f) for f in sorted(names) if not f.startswith(".")]
    songs = [sf.read(p, dtype="float32", always_2d=True) for p in sources[:3]]
    lengths = rng.permutation(np.arange(100, 500, 400 / n)[:n]) / 100.0  # distinct, 1-5 s
    paths, total = [], 0.0
    for i, seconds in enumerate(lengths):
        rate = 48000 if i % 4 == 3 else 44100
        channels = 2 if i % 2 else 1
        n_out = int(round(seconds * rate))
        if songs:
            x, sr = songs[i % len(songs)]
            start = int(rng.integers(0, max(1, len(x) - int(seconds * sr) - 1)))
            x = x[start : start + int(np.ceil(seconds * sr)) + 1]
            if sr != rate:
                x = soxr.resample(x, sr, rate)
            x = x[:n_out]
            x = x.mean(axis=1, keepdims=True) if channels == 1 else x[:, :2]
        else:
            from jax_codec.data.synthetic import render_song

            x = render_song(seconds + 0.05, i, rate, channels)[:n_out]
            x = x[:, None] if x.ndim == 1 else x
        path = os.path.join(folder, f"f{i:03d}.wav")
        sf.write(path, np.clip(x, -1, 1), rate, subtype="PCM_16")
        paths.append(path)
        total += n_out / rate
    return paths, total, "music" if songs else "synthetic"


def fine_bucket_blocks(blocks: int) -> int:
    """The smallest 2^k or 3 * 2^(k-1) at least `blocks`."""
    p = 1 << max(0, int(blocks) - 1).bit_length()
    return 3 * p // 4 if p >= 4 and 3 * p // 4 >= blocks else p


def padding(loaded, paths: list[str]) -> float:
    """Samples the batched encoder runs over (each file padded to its bucket) / file samples."""
    import soundfile as sf

    from jax_codec.bitstream import resampled_length
    from jax_codec.inference import batch

    m, rate = loaded.codec.length_multiple, loaded.codec.sample_rate
    real = padded = 0
    for p in paths:
        info = sf.info(p)
        n = resampled_length(info.frames, info.samplerate, rate)
        real += n * info.channels
        padded += batch.bucket_blocks(-(-n // m)) * m * info.channels
    return padded / real


def clear_compiled() -> None:
    """Forgets every compiled function: the first pass after this pays what a new process does."""
    import jax

    from jax_codec.inference import batch, chunked

    jax.clear_caches()
    batch._encode_fn.cache_clear()
    batch._decode_fn.cache_clear()
    chunked._JIT_CACHE.clear()


def timed(fn) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/base.py:runlocal")
    p.add_argument("--files", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--music", default="/tmp/music")
    p.add_argument("--json", help="write the results here too")
    p.add_argument(
        "--cases",
        default="compress,compress --no_match_loudness,decompress",
        help="comma-separated, of the three",
    )
    p.add_argument(
        "--fine_buckets",
        action="store_true",
        help="an experiment: buckets of 2^k and 3 * 2^(k-1) blocks (less padding, twice the "
        "shapes) in place of `batch.bucket_blocks`' powers of two",
    )
    args = p.parse_args(argv)
    if args.fine_buckets:
        from jax_codec.inference import batch

        batch.bucket_blocks = fine_bucket_blocks

    from jax_codec.config import load_config
    from jax_codec.inference import compress as cz
    from jax_codec.inference import compress_many as many
    from jax_codec.inference.api import load_codec

    command = "python benchmarks/batch_files.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    print(command, flush=True)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    loaded = load_codec(config=load_config(args.config), seed=0)
    load_s = time.perf_counter() - t0
    work = tempfile.mkdtemp(prefix="batch_files_")
    os.makedirs(os.path.join(work, "in"))
    inputs, audio_s, source = make_files(os.path.join(work, "in"), args.files, args.music)
    codes_dir = os.path.join(work, "codes")
    pairs = many.plan(inputs, codes_dir, ".jcodec", (".wav",), overwrite=True)
    os.makedirs(os.path.join(work, "dec"))
    back = [(c, os.path.join(work, "dec", os.path.basename(i))) for i, c in pairs]
    one_dir = os.path.join(work, "one")
    os.makedirs(one_dir)
    one = [(i, os.path.join(one_dir, os.path.basename(o))) for i, o in pairs]
    one_back = [(i, os.path.join(one_dir, os.path.basename(o))) for i, o in back]

    def check(result):
        reports, failures = result
        assert not failures and len(reports) == len(inputs), failures

    cases = {
        "compress": (
            lambda: check(many.compress_many(pairs, loaded, batch_size=args.batch_size)),
            lambda: [cz.compress_file(i, o, loaded) for i, o in one],
        ),
        "compress --no_match_loudness": (
            lambda: check(
                many.compress_many(pairs, loaded, batch_size=args.batch_size, match_loudness=False)
            ),  # fmt: skip
            lambda: [cz.compress_file(i, o, loaded, match_loudness=False) for i, o in one],
        ),
        "decompress": (
            lambda: check(many.decompress_many(back, loaded, batch_size=args.batch_size)),
            lambda: [cz.decompress_file(i, o, loaded) for i, o in one_back],
        ),
    }
    # One-time costs of a process (imports, first traces, filter design) before any timing.
    # (and the .jcodec files the decompress case reads)
    check(many.compress_many(pairs, loaded, batch_size=args.batch_size, match_loudness=False))
    many.decompress_many(back[:2], loaded, batch_size=2)
    results = {}
    for name in args.cases.split(","):
        batched, alone = cases[name]
        clear_compiled()
        first_b = timed(batched)
        clear_compiled()
        first_o = timed(alone)
        batched()  # compiles the batched shapes again (the clear above dropped them)
        warm_b, warm_o = [], []
        for _ in range(args.repeats):
            warm_o.append(timed(alone))
            warm_b.append(timed(batched))
        row = {}
        for way, first, warm in (("batched", first_b, warm_b), ("one_by_one", first_o, warm_o)):
            wall = statistics.median(w["wall_s"] for w in warm)
            row[way] = {
                "first_pass": first,
                "warm_wall_s": [w["wall_s"] for w in warm],
                "warm_cpu_s": [w["cpu_s"] for w in warm],
                "warm_median_wall_s": wall,
                "audio_s_per_s": audio_s / wall,
                "files_per_s": len(inputs) / wall,
                "first_pass_audio_s_per_s": audio_s / first["wall_s"],
            }
        b, o = row["batched"], row["one_by_one"]
        row["warm_speedup"] = o["warm_median_wall_s"] / b["warm_median_wall_s"]
        row["first_pass_speedup"] = o["first_pass"]["wall_s"] / b["first_pass"]["wall_s"]
        row["warm_cpu_ratio"] = statistics.median(o["warm_cpu_s"]) / statistics.median(
            b["warm_cpu_s"]
        )
        results[name] = row
        print(
            f"{name}: warm {b['audio_s_per_s']:.1f} vs {o['audio_s_per_s']:.1f} audio s/s "
            f"({b['files_per_s']:.1f} vs {o['files_per_s']:.1f} files/s): "
            f"{row['warm_speedup']:.2f}x; first pass {b['first_pass']['wall_s']:.1f} vs "
            f"{o['first_pass']['wall_s']:.1f} s: {row['first_pass_speedup']:.2f}x",
            flush=True,
        )
    import jax

    out = {
        "command": command,
        # padded samples / real samples of the batched encodes (power-of-two block buckets):
        # on a CPU, where a batch row costs what the same row alone costs, batched runs pay it
        "bucket_padding": padding(loaded, inputs),
        "config": args.config,
        "weights": "random init, seed 0",
        "files": len(inputs),
        "audio_seconds": audio_s,
        "source": source,
        "batch_size": args.batch_size,
        "buckets": "2^k and 3 * 2^(k-1) blocks" if args.fine_buckets else "2^k blocks",
        "repeats": args.repeats,
        "model_load_s": load_s,
        "results": results,
        "host": {
            "cpus": os.cpu_count(),
            "load_average_start_end": [load0, os.getloadavg()[0]],
            "shared": True,
            "jax": jax.__version__,
            "platform": platform.platform(),
        },
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    print(json.dumps({k: v for k, v in out.items() if k != "results"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
