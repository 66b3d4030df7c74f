"""Command-line pieces shared by `python -m jax_codec` inference commands, and `stream`.

`stream IN OUT (--checkpoint DIR | --config FILE --random_init) [--chunk_ms 20]
[--n_quantizers K] [--json]` runs the file through the streaming encoder and decoder chunk by
chunk, as a real-time pipeline would, and reports the real-time factor, per-chunk compute time,
latency and the difference against the offline path. With a mono model the channels are
independent streams of one batch; a joint-stereo model streams the file as one stream
``[1, T, 2]`` (a mono file duplicated, and written back as mono: the mean of the decoded left and
right; more than two channels mixed down to stereo), as `compress` does. Non-causal models
cannot stream: they go through the chunked offline path, reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import TYPE_CHECKING

import numpy as np

from jax_codec.cli_errors import CliError, guarded

if TYPE_CHECKING:
    from jax_codec.inference.api import LoadedCodec


def add_command(sub, name: str, help_text: str, *examples: str) -> argparse.ArgumentParser:
    """A subcommand parser whose `--help` ends with example command lines."""
    lines = "\n".join(f"  python -m jax_codec {name} {e}" for e in examples)
    return sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example{'s' if len(examples) > 1 else ''}:\n{lines}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_n_quantizers_arg(p, several: bool = False) -> None:
    """`--n_quantizers`: the codebooks (quantizer levels) used, the same meaning everywhere;
    `several`: a comma-separated list of settings (a string, parsed by the command)."""
    if several:
        p.add_argument(
            "--n_quantizers",
            help="codebooks used, comma-separated settings, e.g. 1,2,4,8 (default: powers of "
            "two up to all)",
        )
    else:
        p.add_argument("--n_quantizers", type=int, help="codebooks used, K (default: all)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="training work dir, best/ export or checkpoints/<step>")
    p.add_argument(
        "--which",
        default="best",
        choices=("best", "latest"),
        help="for a work dir: the best export or the latest step",
    )
    p.add_argument("--config", help="configs/FILE.py[:variant] (with --random_init)")
    p.add_argument("--random_init", action="store_true", help="random weights from --config")
    p.add_argument("--seed", type=int, default=0, help="seed of --random_init")


def load_from_args(
    args: argparse.Namespace, checkpoint: str | None = None, priors: str | None = "auto"
) -> LoadedCodec:
    """The model the `add_model_args` flags name (`checkpoint` overrides `--checkpoint` and
    drops `--config`); `priors` as in `load_codec`. Bad flags raise `CliError`."""
    from jax_codec.config import ConfigError, load_config
    from jax_codec.inference.api import CheckpointNotFoundError, load_codec

    config = None if checkpoint else args.config
    checkpoint = checkpoint or args.checkpoint
    if bool(checkpoint) == bool(config):
        raise CliError("give either --checkpoint DIR or --config FILE --random_init")
    if config:
        if not args.random_init:
            raise CliError("--config needs --random_init (untrained weights); or use --checkpoint")
        try:
            return load_codec(config=load_config(config), seed=args.seed, priors=priors)
        except ConfigError as e:
            raise CliError(str(e)) from None
    try:
        return load_codec(checkpoint, which=args.which, priors=priors)
    except CheckpointNotFoundError as e:
        raise CliError(str(e)) from None


def check_input(path: str, what: str = "input") -> None:
    """Raises `CliError` unless `path` is a readable, non-empty file."""
    if not os.path.exists(path):
        raise CliError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CliError(f"{path} is a directory; give an {what} file")
    if not os.access(path, os.R_OK):
        raise CliError(f"{path}: permission denied")
    if os.path.getsize(path) == 0:
        raise CliError(f"{path}: empty file (0 bytes)")


def check_output(path: str, input_path: str | None, formats=None) -> None:
    """Raises `CliError` unless `path` can be written (and is not the input)."""
    if os.path.isdir(path):
        raise CliError(f"output {path} is a directory; give a file name")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CliError(f"output directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise CliError(f"output directory {directory} is not writable")
    if input_path and os.path.exists(path) and os.path.samefile(path, input_path):
        raise CliError(f"output {path} is the input file")
    if formats is not None and os.path.splitext(path)[1].lower() not in formats:
        raise CliError(f"{path}: output must end in {', '.join(formats)}")


def read_input(path: str, sample_rate: int) -> np.ndarray:
    """`path` at `sample_rate` as float32 ``[channels, T]`` (any format soundfile reads)."""
    from jax_codec.data import audio

    if not os.path.exists(path):
        raise CliError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CliError(f"{path} is a directory; give an audio file")
    try:
        info = audio.probe(path)
        x = audio.read_file(path, sample_rate, info.channels)
    except audio.BadAudio as e:
        raise CliError(f"{path}: cannot read audio ({e})") from None
    if not np.isfinite(x).all():
        raise CliError(f"{path}: the audio holds NaN or infinite samples")
    return np.ascontiguousarray(x.T)


def run_stream(args: argparse.Namespace) -> dict:
    from jax_codec import levels
    from jax_codec.inference import chunked, codec_io
    from jax_codec.inference import streaming as st
    from jax_codec.stereo import match_channels

    # Bad paths fail in a second, before the model loads (or compiles, for --random_init).
    check_input(args.input)
    check_output(args.output, args.input)
    loaded = load_from_args(args)
    codec, params, _ = loaded
    x = read_input(args.input, codec.sample_rate)
    channels, t = x.shape
    if t == 0:
        raise CliError(f"{args.input}: the file holds no samples")
    # A model trained on level-normalized audio gets the file at that level, and the output
    # is scaled back (the whole file is read first, so its level is known up front).
    target = levels.target_db(loaded.config)
    gain_in = 0.0
    if target is not None:
        x, gain_in = levels.normalize(x, codec.sample_rate, target)
    joint = codec_io.is_joint(codec)
    if joint:  # one stream of the pair: [1, T, 2] (mono duplicated, more channels mixed down)
        channels = min(channels, 2)
        x = match_channels(np.ascontiguousarray(x.T), 2)[None]
    streams = codec_io.code_streams(codec, channels)
    k = args.n_quantizers or codec.num_quantizers
    if not 1 <= k <= codec.num_quantizers:
        raise CliError(f"--n_quantizers must be in [1, {codec.num_quantizers}], got {k}")
    n = st.chunk_frames_for(codec, args.chunk_ms)
    hop, sr = codec.hop_length, codec.sample_rate
    chunk_ms = 1000.0 * n * hop / sr
    codes = chunked.chunked_encode(codec, params, x, k)
    reference = chunked.chunked_decode(codec, params, codes, t)
    times = []
    if codec.causal:
        enc = st.StreamingEncoder(codec, params, n, streams, k)
        dec = st.StreamingDecoder(codec, params, n, streams, k)
        out, times = st.timed_stream(enc, dec, st.stream_chunks(codec, x, n, enc.delay))
        y = np.concatenate(out, axis=1)[:, :t]
        latency = 1000.0 * st.algorithmic_latency(codec) / sr
        stream_latency = 1000.0 * st.stream_latency(codec, n) / sr
    else:  # chunked offline, timed per window
        t0 = time.perf_counter()
        y = chunked.chunked_decode(codec, params, chunked.chunked_encode(codec, params, x, k), t)
        times.append(time.perf_counter() - t0)
        latency = stream_latency = None
    directory = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(directory):
        raise CliError(f"output directory {directory} does not exist")
    back = np.float32(levels.db_to_gain(-gain_in))
    y, reference = (codec_io.file_channels(a, channels) * back for a in (y, reference))
    codec_io.write_audio(args.output, y, sr)
    total = sum(times)
    ms = sorted(1000.0 * s for s in times)
    return {
        "input": args.input,
        "output": args.output,
        "streaming": codec.causal,
        "duration_s": t / sr,
        "channels": channels,
        "channel_mode": "joint stereo"
        if joint
        else {1: "mono", 2: "dual mono"}.get(channels, "independent"),
        "code_streams": streams,
        "n_quantizers": k,
        "input_gain_db": gain_in,
        "kbps": codec.bitrate_kbps(k) * streams,
        "chunk_ms": chunk_ms if codec.causal else None,
        "chunk_frames": n if codec.causal else None,
        "latency_ms": latency,
        "stream_latency_ms": stream_latency,
        "rtf": (t / sr) / total if total > 0 else float("inf"),
        "chunk_ms_median": statistics.median(ms),
        "chunk_ms_p99": float(np.percentile(ms, 99)),
        "realtime": bool(codec.causal and np.percentile(ms, 99) < chunk_ms),
        "max_abs_diff_vs_offline": float(np.abs(y - reference).max()),
    }


def format_stream(r: dict) -> str:
    if not r["streaming"]:
        return (
            f"{r['output']}: non-causal model, processed offline in chunks (cannot stream); "
            f"{r['duration_s']:.2f} s of audio at {r['rtf']:.2f}x real time; "
            f"max |diff| vs whole-signal {r['max_abs_diff_vs_offline']:.2e}"
        )
    return "\n".join(
        [
            f"wrote {r['output']}: {r['duration_s']:.2f} s, {r['channels']} channel(s) "
            f"({r['channel_mode']}), {r['n_quantizers']} quantizers ({r['kbps']:.2f} kbps)",
            f"chunks of {r['chunk_ms']:.1f} ms ({r['chunk_frames']} frames): median "
            f"{r['chunk_ms_median']:.2f} ms, p99 {r['chunk_ms_p99']:.2f} ms "
            f"({'real time' if r['realtime'] else 'NOT real time'})",
            f"real-time factor {r['rtf']:.2f}x (audio seconds per wall second)",
            f"latency: {r['latency_ms']:.1f} ms algorithmic, {r['stream_latency_ms']:.1f} ms "
            "with chunk buffering",
            f"max |stream - offline| = {r['max_abs_diff_vs_offline']:.2e}",
        ]
    )


def print_report(report: dict, as_json: bool, fmt) -> None:
    """A command's report: one JSON object, or `fmt(report)`."""
    print(json.dumps(report) if as_json else fmt(report))


def cmd_stream(args: argparse.Namespace) -> int:
    def body():
        if args.chunk_ms <= 0:
            raise CliError(f"--chunk_ms must be positive, got {args.chunk_ms}")
        print_report(run_stream(args), args.json, format_stream)

    return guarded(body)


def add_stream_parser(sub) -> None:
    p = add_command(
        sub,
        "stream",
        "encode+decode a file chunk by chunk, in real time",
        "song.flac out.wav --checkpoint runs/base --chunk_ms 20",
        "song.wav out.wav --config configs/base.py:runlocal --random_init --json",
    )
    p.add_argument("input", help="audio file (wav, flac, ogg, opus, mp3)")
    p.add_argument("output", help="decoded audio (.wav, .flac or .ogg)")
    add_model_args(p)
    p.add_argument("--chunk_ms", type=float, default=20.0, help="rounded to whole frames")
    add_n_quantizers_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_stream)
