r"""Real-time streaming encode + decode: one stream, batched streams, one core.

  python benchmarks/streaming.py                            # base config, 20 ms chunks
  python benchmarks/streaming.py --config=configs/base.py --chunk_ms=20 --seconds=20 --json
  python benchmarks/streaming.py --config=configs/music48.py --chunk_ms=53.3 --batches=
  python benchmarks/streaming.py --config=configs/music48.py --config.model.codebook_dim=8 \
      --config.model.quantizer=factorized --chunk_ms=53.3 --batches=   # a variant, back to back

Each case runs `--seconds` of the built-in synthetic music through `StreamingEncoder` then
`StreamingDecoder` chunk by chunk, exactly as `python -m jax_codec stream` does
(`streaming.timed_stream`: steps compiled first, then per-chunk wall time from a chunk's arrival
to its decoded audio), with random-init fp32 weights (speed does not depend on the values).
A joint-stereo config (the third command: 48 kHz, chunks of one 4-frame coarse block, which add
no latency) streams stereo music (`[B, T, 2]`, one code stream per pair): its RTF is per pair.

Reported per case: chunk duration, median and p99 chunk compute time, real-time factor (audio
seconds per wall second, per stream), aggregate throughput (streams x RTF), and whether p99 is
under the chunk duration (the real-time condition), and the process CPU time per chunk (all
threads: on a machine shared with other jobs, wall times inflate but CPU time does not; for the
1-core case it is the compute time an idle core needs). The reference, in the same process: the
offline whole-signal encode + decode of the same audio (`chunked_encode` / `chunked_decode`), so
`stream / offline` is what streaming costs over batch processing.

Cases: 1 stream (the target: >= 1.5x real time at 20 ms, p99 under the chunk), `--batches`
streams batched in one step (default 8 and 64), and 1 stream pinned to one core (a child
process with CPU affinity set to a single core before JAX starts, and XLA's Eigen thread pool
single-threaded).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

import numpy as np


def _audio(sample_rate: int, seconds: float, streams: int, channels: int = 1) -> np.ndarray:
    """`[streams, T]` synthetic music, or `[streams, T, 2]` (panned stereo) for a stereo codec."""
    from jax_codec.data.synthetic import SyntheticMusic

    music = SyntheticMusic(sample_rate, seconds, seed=0, channels=channels)
    songs = [music[i] for i in range(min(streams, 4))]  # rendering is slow; reuse 4 excerpts
    return np.stack([songs[i % len(songs)] for i in range(streams)]).astype(np.float32)


def stream_case(codec, params, audio: np.ndarray, chunk_frames: int) -> dict:
    from jax_codec.inference import streaming as st

    b = audio.shape[0]
    enc = st.StreamingEncoder(codec, params, chunk_frames, b)
    dec = st.StreamingDecoder(codec, params, chunk_frames, b)
    cpu = []  # process CPU time at each chunk's arrival: robust to other jobs on the machine

    def chunks():
        for c in st.stream_chunks(codec, audio, chunk_frames, enc.delay):
            cpu.append(time.process_time())
            yield c
        cpu.append(time.process_time())

    _, times = st.timed_stream(enc, dec, chunks())
    chunk_ms = 1000.0 * chunk_frames * codec.hop_length / codec.sample_rate
    ms = [1000.0 * s for s in times]
    cpu_ms = 1000.0 * (cpu[-1] - cpu[0]) / len(times)
    audio_s = len(times) * chunk_ms / 1000.0
    rtf = audio_s / sum(times)
    p99 = float(np.percentile(ms, 99))
    return {
        "streams": b,
        "chunk_ms": chunk_ms,
        "chunks": len(times),
        "chunk_ms_median": statistics.median(ms),
        "chunk_ms_p99": p99,
        "rtf": rtf,
        "throughput_x_realtime": rtf * b,
        "realtime": p99 < chunk_ms,
        "cpu_ms_per_chunk": cpu_ms,
    }


def offline_case(codec, params, audio: np.ndarray, reps: int = 2) -> dict:
    from jax_codec.inference import chunked

    chunked.chunked_decode(
        codec, params, chunked.chunked_encode(codec, params, audio), audio.shape[1]
    )
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        chunked.chunked_decode(
            codec, params, chunked.chunked_encode(codec, params, audio), audio.shape[1]
        )
        best = min(best, time.perf_counter() - t0)
    seconds = audio.shape[1] / codec.sample_rate
    return {"streams": audio.shape[0], "rtf": seconds / best, "wall_s": best}


def run(args) -> dict:
    from jax_codec.config import apply_overrides, load_config
    from jax_codec.inference import streaming as st
    from jax_codec.inference.api import load_codec

    config = load_config(args.config)
    apply_overrides(config, args.overrides)
    codec, params, _ = load_codec(config=config)
    n = st.chunk_frames_for(codec, args.chunk_ms)
    out = {
        "config": args.config,
        "overrides": args.overrides,
        "sample_rate": codec.sample_rate,
        "channels": codec.channels,
        "bitrate_kbps": codec.bitrate_kbps(),
        "chunk_frames": n,
        "latency_ms": 1000.0 * st.algorithmic_latency(codec) / codec.sample_rate,
        "stream_latency_ms": 1000.0 * st.stream_latency(codec, n) / codec.sample_rate,
        "cases": [],
    }
    one = _audio(codec.sample_rate, args.seconds, 1, codec.channels)
    out["cases"].append({"case": "1 stream", **stream_case(codec, params, one, n)})
    if args.offline:
        out["offline_1_stream"] = offline_case(codec, params, one)
    for b in args.batches:
        audio = _audio(codec.sample_rate, args.batch_seconds, b, codec.channels)
        out["cases"].append({"case": f"{b} streams", **stream_case(codec, params, audio, n)})
    return out


def one_core(args) -> dict:
    """The 1-stream case in a child pinned to one core (affinity set before JAX loads)."""
    cmd = [
        sys.executable,
        __file__,
        f"--config={args.config}",
        *(f"--config.{k}={v}" for k, v in args.overrides.items()),
        f"--chunk_ms={args.chunk_ms}",
        f"--seconds={args.seconds}",
        "--batches=",
        "--no_offline",
        "--no_one_core",
        "--json",
        "--_pin",
    ]
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    case = json.loads(r.stdout)["cases"][0]
    case["case"] = "1 stream, 1 core"
    return case


def table(r: dict) -> str:
    model = (  # results saved before these fields were recorded have none
        f"{r['sample_rate']} Hz, {'mono' if r['channels'] == 1 else 'joint stereo'}, "
        f"{r['bitrate_kbps']:.2f} kbps; "
        if "channels" in r
        else ""
    )
    lines = [
        f"config {r['config']}"
        + "".join(f" --config.{k}={v}" for k, v in r.get("overrides", {}).items())
        + f": {model}chunks of {r['chunk_frames']} frames; algorithmic latency "
        f"{r['latency_ms']:.1f} ms, with chunk buffering {r['stream_latency_ms']:.1f} ms",
        "",
        "| case | chunk ms | median ms | p99 ms | RTF per stream | streams x RTF | real time "
        "| CPU ms/chunk |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in r["cases"]:
        lines.append(
            f"| {c['case']} | {c['chunk_ms']:.1f} | {c['chunk_ms_median']:.2f} | "
            f"{c['chunk_ms_p99']:.2f} | {c['rtf']:.2f}x | {c['throughput_x_realtime']:.1f}x | "
            f"{'yes' if c['realtime'] else 'NO'} | {c['cpu_ms_per_chunk']:.2f} |"
        )
    if "offline_1_stream" in r:
        off = r["offline_1_stream"]["rtf"]
        lines.append("")
        lines.append(
            f"offline whole-signal encode+decode, 1 stream: {off:.2f}x real time; "
            f"streaming / offline = {r['cases'][0]['rtf'] / off:.2f}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--config",
        default="configs/base.py",
        help="configs/FILE.py[:variant]; --config.x=y overrides a field, as in train",
    )
    p.add_argument("--chunk_ms", type=float, default=20.0)
    p.add_argument("--seconds", type=float, default=20.0, help="audio per stream, 1-stream cases")
    p.add_argument("--batch_seconds", type=float, default=5.0, help="audio per batched stream")
    p.add_argument(
        "--batches",
        type=lambda s: [int(v) for v in s.split(",") if v],
        default=[8, 64],
        help="comma-separated stream counts",
    )
    p.add_argument("--no_offline", dest="offline", action="store_false")
    p.add_argument("--no_one_core", dest="one_core", action="store_false")
    p.add_argument("--json", action="store_true")
    p.add_argument("--_pin", action="store_true", help=argparse.SUPPRESS)
    from jax_codec.__main__ import split_config_overrides
    from jax_codec.cli_errors import CliError

    argv = sys.argv[1:] if argv is None else argv
    try:
        rest, overrides = split_config_overrides(argv)
    except CliError as e:
        raise SystemExit(f"error: {e}") from None
    args = p.parse_args(rest)
    args.overrides = overrides
    if args._pin:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    r = run(args)
    if args.one_core:
        r["cases"].insert(1, one_core(args))
    r["command"] = "python benchmarks/streaming.py " + " ".join(shlex.quote(a) for a in argv)
    print(json.dumps(r, indent=1) if args.json else table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
