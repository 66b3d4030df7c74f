"""Compress audio files to `.jcodec` and back: `compress`, `decompress`, `info FILE`, `priors`.

    python -m jax_codec compress IN OUT.jcodec (--checkpoint DIR | --config FILE --random_init)
        [--kbps X | --n_quantizers K] [--entropy auto|on|off] [--priors FILE] [--json]
    python -m jax_codec decompress IN.jcodec OUT.wav [--checkpoint DIR | ...] [--sample_rate SR]
    python -m jax_codec compress|decompress FILE_OR_FOLDER ... --output_dir DIR [--overwrite]
        [--batch_size N]   # many files, one model load, batched: `compress_many`
    python -m jax_codec info FILE.jcodec [--json]
    python -m jax_codec priors (--checkpoint DIR | ...) [--data SPEC] [--seconds N] [--output F]

Everything streams, so memory does not grow with the length of the file: the input is read in
blocks with soundfile, resampled to the model rate with `soxr.ResampleStream` (bit-identical to
`soxr.resample` of the whole signal), encoded window by window with `chunked.iter_encode`
(exactly `chunked_encode` of the whole signal) and written chunk by chunk (one chunk per window)
through `bitstream.Writer`; decompression runs the same way backwards. The audio <-> `.jcodec`
path is `inference.codec_io`; outputs appear only complete (`codec_io.atomic_output`). What
the commands print (`compress_report`, `file_info`, their text forms) is
`inference.compress_reports`.

Channels: more than two are mixed down to stereo (odd channels to the left, even to the right,
as the data pipeline does). A mono model codes each channel on its own (a batch of 2 through
the codec for stereo: dual mono, twice the bits). A joint-stereo model (`model.channels = 2`,
docs/stereo.md) codes a stereo file as ONE code stream; a mono file is duplicated into it and
decompresses to mono again (the mean of the decoded left and right). The header records which
(`channel_mode`), `info` shows it, and `--kbps` counts what the file holds: per channel for a
mono model, for the pair for a joint-stereo one. The header stores the model's rate and
per-channel length at that rate, and the input's sample rate and exact length there
(`original_num_samples`), so decompression restores the original length to the sample.

Entropy coding: `priors` encodes some training audio and stores per-level code frequencies in
``priors.npz`` in the checkpoint directory (`inference.priors`); `compress --entropy auto` range
codes with them when they exist (`on` requires them, `off` never uses them), and `decompress`
finds them the same way. Exit codes (`jax_codec.cli_errors`): 0 ok, 1 a bad or mismatched
`.jcodec`/priors file or I/O failure, 2 bad arguments or input audio; errors are one line on
stderr.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

from jax_codec.bitstream import resampled_length
from jax_codec.cli_errors import CliError, guarded
from jax_codec.inference import codec_io
from jax_codec.inference.api import PRIORS_NAME, LoadedCodec
from jax_codec.inference.cli import (
    add_command,
    add_model_args,
    add_n_quantizers_arg,
    check_input,
    check_output,
    load_from_args,
    print_report,
)
from jax_codec.inference.compress_reports import (
    compress_report,
    decompress_report,
    file_info,
    format_compress,
    format_decompress,
    format_info,
)

MAX_OUTPUT_RATE = 768_000

model_rate_length = resampled_length
select_quantizers = codec_io.select_quantizers


def progress(total_seconds: float, quiet: bool, desc: str):
    """A tqdm bar over seconds of audio on stderr (off when quiet, not a tty, or short)."""
    from tqdm import tqdm

    quiet = quiet or not sys.stderr.isatty() or total_seconds < 30
    return tqdm(
        total=round(total_seconds, 1),
        unit="s",
        desc=desc,
        file=sys.stderr,
        disable=quiet,
        leave=False,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]",
    )


def default_priors_path(loaded: LoadedCodec) -> str | None:
    """Where `priors` writes by default: ``priors.npz`` in the checkpoint directory."""
    return None if loaded.directory is None else os.path.join(loaded.directory, PRIORS_NAME)


# --------------------------------------------------------------------------- compress


def compress_file(
    input_path: str,
    output_path: str,
    loaded: LoadedCodec,
    *,
    kbps: float | None = None,
    n_quantizers: int | None = None,
    entropy: str = "auto",
    window_frames: int | None = None,
    quiet: bool = True,
    match_loudness: bool = True,
) -> dict:
    """Encodes the audio file `input_path` into `output_path` (.jcodec); returns a report.

    `entropy`: "auto" range codes with `loaded.priors` when it has them, "on" requires them,
    "off" never uses them. A model trained on level-normalized audio (`data.normalize`) gets
    the input at that level (a first pass over the file measures it) and, with
    `match_loudness`, a header gain that gives the decoded file the input's level
    (`codec_io.encode_to_jcodec`). Bad input raises `CliError`.
    """
    info = probe_audio(input_path)
    channels = min(info.channels, 2)
    loaded, k = compress_settings(loaded, kbps, n_quantizers, entropy, window_frames)
    sr = loaded.codec.sample_rate
    m = model_rate_length(info.frames, info.sample_rate, sr)
    t0 = time.perf_counter()
    level = input_level(loaded, input_path, info, channels, match_loudness)
    blocks = codec_io.iter_input(input_path, info, channels, sr)
    with progress(info.frames / info.sample_rate, quiet, "compress") as bar:
        enc = codec_io.encode_to_jcodec(
            loaded, blocks, output_path, k, channels=channels, num_samples=m,
            window_frames=window_frames, original_sample_rate=info.sample_rate,
            original_num_samples=info.frames, on_chunk=bar.update, level=level,
            match_loudness=match_loudness,
        )  # fmt: skip
    return compress_report(input_path, info, loaded, level, enc, time.perf_counter() - t0)


def probe_audio(path: str):
    """`data.audio.probe` of `path`; unusable audio raises `CliError`."""
    from jax_codec.data import audio

    try:
        return audio.probe(path)
    except audio.BadAudio as e:
        raise CliError(f"{path}: not usable audio ({e})") from None


def compress_settings(
    loaded: LoadedCodec,
    kbps: float | None,
    n_quantizers: int | None,
    entropy: str,
    window_frames: int | None,
) -> tuple[LoadedCodec, int]:
    """(`loaded` with the priors `entropy` asks for, the quantizers K), checked once for every
    file of a run: bad settings raise `CliError`."""
    codec = loaded.codec
    k = select_quantizers(codec, kbps, n_quantizers)
    codec_io.check_window(codec, window_frames)
    if entropy == "off":
        loaded = loaded.with_priors(None)
    elif loaded.priors is None and entropy == "on":
        where = default_priors_path(loaded) or "--priors FILE"
        raise CliError(
            f"--entropy on needs priors: none at {where}; make them with "
            f"`{codec_io.priors_command(loaded)}` or pass --priors FILE"
        )
    priors = loaded.priors
    if priors is not None and (priors.shape[1] != codec.codebook_size or priors.shape[0] < k):
        raise CliError(
            f"priors {loaded.priors_path} have shape {priors.shape}; this model needs at least "
            f"{k} levels x {codec.codebook_size} codes"
        )
    return loaded, k


def input_level(loaded: LoadedCodec, path: str, info, channels: int, match_loudness: bool):
    """The `levels.LevelMeter` of the file at `path` at its own rate (what a listener hears),
    or None for a model trained without level normalization (a first pass over the file)."""
    from jax_codec import levels

    if levels.target_db(loaded.config) is None:
        return None
    level = levels.LevelMeter(info.sample_rate, loudness=match_loudness)
    for b in codec_io.iter_input(path, info, channels, info.sample_rate):
        level.add(b)
    return level


# --------------------------------------------------------------------------- decompress


def decompress_file(
    input_path: str,
    output_path: str,
    loaded: LoadedCodec,
    *,
    sample_rate: int | None = None,
    subtype: str | None = None,
    window_frames: int | None = None,
    quiet: bool = True,
) -> dict:
    """Decodes the `.jcodec` `input_path` into the audio file `output_path`; returns a report.
    `sample_rate`: the output rate (default: the original's)."""
    header = codec_io.open_jcodec(input_path, loaded)
    codec_io.check_window(loaded.codec, window_frames)
    t0 = time.perf_counter()
    windows = codec_io.decode_jcodec(input_path, loaded, window_frames)
    with progress(header.duration_seconds, quiet, "decompress") as bar:
        rate, length = write_decoded(windows, header, output_path, sample_rate, subtype, bar.update)
    seconds = time.perf_counter() - t0
    return decompress_report(input_path, output_path, header, loaded, rate, length, seconds)


def write_decoded(
    blocks, header, output_path: str, sample_rate: int | None, subtype: str | None, on_seconds=None
) -> tuple[int, int]:
    """Writes the decoded blocks ``[C, n]`` (at the model's rate) of the file with `header` to
    `output_path` at `sample_rate` (default: the original's), atomically; (rate, length)."""
    sr, orig = header.sample_rate, header.original_sample_rate
    rate = sample_rate or orig
    if rate == sr:
        length = header.num_samples
    else:
        length = model_rate_length(header.original_num_samples, orig, rate)
    with codec_io.AudioOut(output_path, rate, header.channels, subtype) as out:
        for y in codec_io.resample_blocks(blocks, header.channels, sr, rate, length):
            out.write(y)
            if on_seconds is not None:
                on_seconds(y.shape[1] / rate)
    return rate, length


# --------------------------------------------------------------------------- commands


def priors_flag(args: argparse.Namespace) -> str:
    """`--priors FILE` (checked), else "auto"."""
    if args.priors:
        check_input(args.priors, "priors")
        return args.priors
    return "auto"


def _second_input(output: str, kind: str) -> None:
    """Raises `CliError` when the output of the one-file form looks like another input."""
    from jax_codec.data.audio import AUDIO_EXTENSIONS

    ext = os.path.splitext(output)[1].lower()
    if (kind == "compress" and ext in AUDIO_EXTENSIONS) or (
        kind == "decompress" and ext == ".jcodec"
    ):
        what = ".jcodec file" if kind == "compress" else ".wav, .flac or .ogg file"
        raise CliError(
            f"{output} looks like a second input: the output of `{kind} IN OUT` is a {what}; "
            f"give --output_dir DIR to {kind} several files"
        )


def cmd_compress(args: argparse.Namespace) -> int:
    def body():
        from jax_codec.inference import compress_many as many

        if args.entropy == "off" and args.priors:
            raise CliError("--priors is not used with --entropy off")
        one = many.single_file(args, "compress")
        settings = dict(
            kbps=args.kbps, n_quantizers=args.n_quantizers, entropy=args.entropy,
            window_frames=args.window_frames, match_loudness=not args.no_match_loudness,
        )  # fmt: skip
        if one is None:
            return many.cmd_compress_many(args, settings)
        check_input(one[0])
        check_output(one[1], one[0])
        _second_input(one[1], "compress")
        loaded = load_from_args(args, priors=priors_flag(args))
        report = compress_file(*one, loaded, quiet=args.json, **settings)
        print_report(report, args.json, format_compress)

    return guarded(body)


def cmd_decompress(args: argparse.Namespace) -> int:
    def body():
        from jax_codec import bitstream
        from jax_codec.inference import compress_many as many

        rate = args.sample_rate
        if rate is not None and not 1000 <= rate <= MAX_OUTPUT_RATE:
            raise CliError(f"--sample_rate must be in 1000..{MAX_OUTPUT_RATE}, got {rate}")
        one = many.single_file(args, "decompress")
        settings = dict(sample_rate=rate, subtype=args.subtype, window_frames=args.window_frames)
        if one is None:
            return many.cmd_decompress_many(args, settings)
        check_input(one[0], ".jcodec")
        _second_input(one[1], "decompress")
        check_output(one[1], one[0], codec_io.OUTPUT_FORMATS)
        with bitstream.Reader(one[0]):  # a broken file fails before the model loads
            pass
        loaded = load_from_args(args, priors=priors_flag(args))
        report = decompress_file(*one, loaded, quiet=args.json, **settings)
        print_report(report, args.json, format_decompress)

    return guarded(body)


def cmd_info(args: argparse.Namespace) -> int:
    def body():
        check_input(args.file, ".jcodec")
        print_report(file_info(args.file), args.json, format_info)

    return guarded(body)


def cmd_priors(args: argparse.Namespace) -> int:
    def body():
        from jax_codec.inference.priors import estimate_priors_file, format_priors

        for flag in ("seconds", "crop_seconds"):
            value = getattr(args, flag)
            if not (value > 0 and math.isfinite(value)):
                raise CliError(f"--{flag} must be positive, got {value}")
        if args.output:
            check_output(args.output, None)
        elif not args.checkpoint:
            raise CliError(
                "--output FILE is needed with --config --random_init (there is no checkpoint "
                "directory to put priors.npz in)"
            )
        loaded = load_from_args(args, priors=None)
        report = estimate_priors_file(
            loaded, args.output or default_priors_path(loaded), data=args.data,
            seconds=args.seconds, crop_seconds=args.crop_seconds, batch=args.batch,
            seed=args.seed, window_frames=args.window_frames, quiet=args.json,
        )  # fmt: skip
        print_report(report, args.json, format_priors)

    return guarded(body)


def _window_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--window_frames",
        type=int,
        help="latent frames per processing window (default 1024, ~12 s): larger is faster "
        "and takes more memory; the codes do not depend on it",
    )


def add_parsers(sub) -> None:
    """Registers `compress`, `decompress` and `priors` (`info FILE` goes through `cmd_info`)."""
    from jax_codec.inference import compress_many as many

    p = add_command(
        sub,
        "compress",
        "audio file -> .jcodec (or many files, batched, with --output_dir)",
        "song.flac song.jcodec --checkpoint runs/base --kbps 3",
        "a.wav b.flac songs/ --output_dir codes --checkpoint runs/base --batch_size 16",
    )
    many.add_files_args(
        p,
        "IN OUT.jcodec",
        "an audio file (wav, flac, ogg, opus, mp3; any rate and channels) and the .jcodec to write",
    )
    add_model_args(p)
    rate = p.add_mutually_exclusive_group()
    rate.add_argument(
        "--kbps",
        type=float,
        help="largest code rate (picks quantizers): per channel for a mono model, for the "
        "pair with a joint-stereo model (one stream)",
    )
    add_n_quantizers_arg(rate)
    p.add_argument(
        "--entropy",
        choices=("auto", "on", "off"),
        default="auto",
        help="range coding with priors: auto = when priors are found",
    )
    p.add_argument("--priors", help=f"priors file (default: {PRIORS_NAME} in the checkpoint dir)")
    p.add_argument(
        "--no_match_loudness",
        action="store_true",
        help="skip the second pass that sets the header gain so the decoded level equals the "
        "input's (faster; the gain then only undoes the input normalization)",
    )
    _window_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_compress)

    p = add_command(
        sub,
        "decompress",
        ".jcodec -> audio file (or many files, batched, with --output_dir)",
        "song.jcodec song.wav --checkpoint runs/base --sample_rate 48000",
        "codes/ --output_dir decoded --checkpoint runs/base",
    )
    many.add_files_args(
        p, "IN.jcodec OUT.wav", "a .jcodec file and the audio to write (.wav, .flac or .ogg)"
    )
    add_model_args(p)
    p.add_argument("--sample_rate", type=int, help="output rate (default: the original rate)")
    p.add_argument("--subtype", help="soundfile subtype, e.g. PCM_16 (default), PCM_24, FLOAT")
    p.add_argument("--priors", help=f"priors file (default: {PRIORS_NAME} in the checkpoint dir)")
    _window_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_decompress)

    p = add_command(
        sub,
        "priors",
        "estimate entropy-coding priors from training audio",
        "--checkpoint runs/base --data folder:/data/flac --seconds 600",
    )
    add_model_args(p)
    p.add_argument(
        "--data",
        help="data source spec as in training: folder:PATH, prepared:PATH, tfds:NAME/SPLIT or "
        "synthetic (default: the config's data)",
    )
    p.add_argument("--seconds", type=float, default=600.0, help="seconds of audio to encode")
    p.add_argument("--crop_seconds", type=float, default=10.0, help="length of each crop")
    p.add_argument("--batch", type=int, default=4, help="crops encoded together")
    p.add_argument("--output", help=f"priors file (default: CHECKPOINT/{PRIORS_NAME})")
    _window_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_priors)
