"""Compress audio files to `.jcodec` and back: `compress`, `decompress`, `info FILE`, `priors`.

    python -m jax_codec compress IN OUT.jcodec (--checkpoint DIR | --config FILE --random_init)
        [--kbps X | --n_quantizers K] [--entropy auto|on|off] [--priors FILE] [--json]
    python -m jax_codec decompress IN.jcodec OUT.wav [--checkpoint DIR | ...] [--sample_rate SR]
    python -m jax_codec info FILE.jcodec [--json]
    python -m jax_codec priors (--checkpoint DIR | ...) [--data SPEC] [--seconds N] [--output F]

Everything streams, so memory does not grow with the length of the file: the input is read in
blocks with soundfile, resampled to the model rate with `soxr.ResampleStream` (bit-identical to
`soxr.resample` of the whole signal), encoded window by window with `streaming.iter_encode`
(exactly `chunked_encode` of the whole signal) and written chunk by chunk (one chunk per window)
through `bitstream.Writer`; decompression runs the same way backwards. Outputs appear only
complete: a temporary file in the target's folder is renamed over it at the end.

Channels: mono and stereo are kept, each channel coded on its own (a batch of 2 through the
codec); more channels are mixed down to stereo (odd channels to the left, even to the right,
as the data pipeline does). The header stores the model's rate and per-channel length at that
rate, and the input's sample rate and exact length there (`original_num_samples`), so
decompression restores the original length to the sample.

Entropy coding: `priors` encodes some training audio and stores per-level code frequencies in
``priors.npz`` in the checkpoint directory; `compress --entropy auto` range codes with them
when they exist (`on` requires them, `off` never uses them), and `decompress` finds them the
same way. Exit codes: 0 ok, 1 a bad or mismatched `.jcodec`/priors file or I/O failure, 2 bad
arguments or input audio; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator

import numpy as np

from jax_codec.bitstream import BitstreamError, resampled_length
from jax_codec.inference.cli import CliError, add_model_args

PRIORS_NAME = "priors.npz"
READ_BLOCK = 1 << 16  # input frames decoded per read
MAX_OUTPUT_RATE = 768_000
OUTPUT_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}


# --------------------------------------------------------------------------- small helpers


model_rate_length = resampled_length


def _one_line(e: BaseException) -> str:
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return "; ".join(lines) or type(e).__name__


def _report_error(e: BaseException) -> int:
    """Prints `error: ...` (one line) for an exception; returns the exit code."""
    if isinstance(e, CliError):
        code, msg = 2, _one_line(e)
    elif isinstance(e, BitstreamError):
        code, msg = 1, _one_line(e)
    elif isinstance(e, KeyboardInterrupt):
        code, msg = 130, "interrupted; no output written"
    elif isinstance(e, MemoryError):
        code, msg = 1, "out of memory"
    elif isinstance(e, OSError):
        code = 1
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        msg = f"{where}{e.strerror or _one_line(e)}"
    else:
        code, msg = 1, f"unexpected {type(e).__name__}: {_one_line(e)}"
    print(f"error: {msg}", file=sys.stderr)
    return code


def _run(fn, args: argparse.Namespace, fmt) -> int:
    try:
        report = fn(args)
    except (Exception, KeyboardInterrupt) as e:
        if os.environ.get("JAX_CODEC_DEBUG") and not isinstance(e, (CliError, BitstreamError)):
            raise
        return _report_error(e)
    print(json.dumps(report) if getattr(args, "json", False) else fmt(report))
    return 0


def _check_input(path: str, what: str = "input") -> None:
    if not os.path.exists(path):
        raise CliError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CliError(f"{path} is a directory; give an {what} file")
    if not os.access(path, os.R_OK):
        raise CliError(f"{path}: permission denied")
    if os.path.getsize(path) == 0:
        raise CliError(f"{path}: empty file (0 bytes)")


def _check_output(path: str, input_path: str | None, formats=None) -> None:
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


def _progress(total_seconds: float, args: argparse.Namespace, desc: str):
    from tqdm import tqdm

    quiet = getattr(args, "json", False) or not sys.stderr.isatty() or total_seconds < 30
    return tqdm(
        total=round(total_seconds, 1),
        unit="s",
        desc=desc,
        file=sys.stderr,
        disable=quiet,
        leave=False,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]",
    )


# --------------------------------------------------------------------------- model and priors


@dataclasses.dataclass
class Model:
    codec: object
    params: object
    config: object
    name: str
    fingerprint: bytes
    directory: str | None  # resolved checkpoint directory (None for --random_init)
    workdir: str | None  # the --checkpoint argument


def load(args: argparse.Namespace) -> Model:
    from jax_codec.inference.api import (
        CheckpointNotFoundError,
        model_fingerprint,
        resolve_checkpoint,
    )
    from jax_codec.inference.cli import load_model

    codec, params, config = load_model(args)
    directory = workdir = None
    if args.checkpoint:
        try:
            directory = resolve_checkpoint(args.checkpoint, args.which)[1]
        except CheckpointNotFoundError as e:  # pragma: no cover - load_model resolved it
            raise CliError(str(e)) from None
        workdir = os.path.abspath(args.checkpoint)
    name = str(config.get("name", "") or "")
    return Model(codec, params, config, name, model_fingerprint(config, params), directory, workdir)


def default_priors_path(model: Model) -> str | None:
    return None if model.directory is None else os.path.join(model.directory, PRIORS_NAME)


def find_priors(model: Model, explicit: str | None) -> str | None:
    """`--priors FILE` (must exist), else ``priors.npz`` in the checkpoint directory (or the
    `--checkpoint` directory given), else None."""
    if explicit:
        _check_input(explicit, "priors")
        return explicit
    for d in (model.directory, model.workdir):
        if d and os.path.isfile(os.path.join(d, PRIORS_NAME)):
            return os.path.join(d, PRIORS_NAME)
    return None


def _priors_command(model: Model) -> str:
    where = f"--checkpoint {model.workdir}" if model.workdir else "--checkpoint DIR"
    return f"python -m jax_codec priors {where}"


# --------------------------------------------------------------------------- audio in and out


def iter_input(path: str, info, channels: int, rate: int, block: int = READ_BLOCK):
    """Float32 blocks ``[channels, n]`` of `path` at `rate`: exactly
    ``model_rate_length(info.frames, info.sample_rate, rate)`` samples per channel, read and
    resampled in blocks (bounded memory)."""
    import soundfile as sf
    import soxr

    from jax_codec.data import audio

    frames, rate_in = info.frames, info.sample_rate
    target = model_rate_length(frames, rate_in, rate)
    rs = None if rate_in == rate else soxr.ResampleStream(rate_in, rate, channels, "float32", "HQ")
    read = emitted = 0
    try:
        with sf.SoundFile(path) as f:
            while read < frames:
                try:
                    x = f.read(min(block, frames - read), dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError, ValueError) as e:
                    raise CliError(f"{path}: decoding failed after {read} frames ({e})") from None
                if x.shape[0] == 0:
                    raise CliError(
                        f"{path}: the audio ends after {read} of the {frames} frames its header "
                        "announces (truncated or corrupt file)"
                    )
                if not np.isfinite(x).all():
                    raise CliError(f"{path}: NaN or infinite samples near frame {read}")
                read += x.shape[0]
                x = audio.convert_channels(x, channels)
                y = x if rs is None else rs.resample_chunk(x, last=read >= frames)
                y = y[: target - emitted]
                emitted += y.shape[0]
                if y.shape[0]:
                    yield np.ascontiguousarray(y.T, dtype=np.float32)
    except sf.LibsndfileError as e:
        raise CliError(f"{path}: cannot read audio ({e})") from None
    if emitted < target:  # the resampler's rounding: at most a sample or so
        yield np.zeros((channels, target - emitted), np.float32)


class AudioOut:
    """Writes audio blocks to a temporary file next to `path`, renamed over it on `close()`."""

    def __init__(self, path: str, sample_rate: int, channels: int, subtype: str | None):
        import soundfile as sf

        fmt = OUTPUT_FORMATS[os.path.splitext(path)[1].lower()]
        if subtype is not None and not sf.check_format(fmt, subtype):
            raise CliError(f"subtype {subtype} is not available for {fmt} files")
        self.path = path
        self.frames = 0
        d, base = os.path.split(os.path.abspath(path))
        fd, self.tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=os.path.splitext(path)[1], dir=d)
        os.close(fd)
        try:
            self.f = sf.SoundFile(
                self.tmp,
                "w",
                samplerate=sample_rate,
                channels=channels,
                format=fmt,
                subtype=subtype,
            )
        except BaseException:
            os.unlink(self.tmp)
            raise

    def write(self, block: np.ndarray) -> None:
        """`block` ``[channels, n]``; clipped to [-1, 1]."""
        if block.shape[1]:
            self.f.write(np.clip(block.T, -1.0, 1.0))
            self.frames += block.shape[1]

    def close(self) -> None:
        self.f.close()
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(self.tmp, 0o666 & ~mask)  # mkstemp makes 0600 files
        os.replace(self.tmp, self.path)
        self.tmp = None

    def abort(self) -> None:
        try:
            self.f.close()
        except Exception:
            pass
        if self.tmp is not None and os.path.exists(self.tmp):
            os.unlink(self.tmp)
        self.tmp = None

    def __enter__(self) -> AudioOut:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def resample_blocks(blocks, channels: int, rate_in: int, rate_out: int, length: int):
    """Streams ``[channels, n]`` blocks from `rate_in` to `rate_out`; exactly `length` samples."""
    import soxr

    rs = (
        None
        if rate_in == rate_out
        else soxr.ResampleStream(rate_in, rate_out, channels, "float32", "HQ")
    )
    emitted = 0
    for y in blocks:
        if rs is not None:
            y = rs.resample_chunk(np.ascontiguousarray(y.T, np.float32)).T
        y = y[:, : length - emitted]
        emitted += y.shape[1]
        yield y
    if rs is not None:
        y = rs.resample_chunk(np.zeros((0, channels), np.float32), last=True).T[
            :, : length - emitted
        ]
        emitted += y.shape[1]
        yield y
    if emitted < length:
        yield np.zeros((channels, length - emitted), np.float32)


# --------------------------------------------------------------------------- compress


def select_quantizers(codec, kbps: float | None, n_quantizers: int | None) -> int:
    """The `--n_quantizers` given, or the most whose per-channel bitrate fits `--kbps`."""
    nq = codec.num_quantizers
    rates = [codec.bitrate_kbps(k) for k in range(1, nq + 1)]
    listing = ", ".join(f"{r:.3f} ({k} quantizer{'s' * (k > 1)})" for k, r in enumerate(rates, 1))
    if n_quantizers is not None:
        if not 1 <= n_quantizers <= nq:
            raise CliError(f"--n_quantizers must be in 1..{nq}, got {n_quantizers}")
        return n_quantizers
    if kbps is None:
        return nq
    if not math.isfinite(kbps) or kbps <= 0:
        raise CliError(f"--kbps must be a positive number, got {kbps}")
    fits = [k for k, r in enumerate(rates, 1) if r <= kbps * (1 + 1e-9)]
    if not fits:
        raise CliError(
            f"--kbps {kbps:g} is below this model's lowest bitrate; kbps per channel: {listing}"
        )
    return max(fits)


def _validate_window(codec, window_frames: int | None, total_frames: int | None = None) -> int:
    from jax_codec.inference import streaming as st

    if window_frames is not None and not 1 <= window_frames <= 1 << 20:
        raise CliError(f"--window_frames must be in 1..{1 << 20}, got {window_frames}")
    return st.window_core_frames(codec, window_frames, total_frames)


def packed_file_size(header) -> int:
    """Bytes the file takes bit packed (mode 0): header, chunks with their framing, end marker."""
    chunks = sum(
        24 + header.packed_payload_size(header.chunk_frames_at(i)) for i in range(header.num_chunks)
    )
    return header.header_size + chunks + 20


def file_header(
    model: Model,
    channels: int,
    num_samples: int,
    n_quantizers: int,
    window_frames: int | None = None,
    original_sample_rate: int | None = None,
    original_num_samples: int | None = None,
):
    """(the `.jcodec` header of `num_samples` at the model's rate, exact): one chunk per window
    of `streaming.window_plan`, whose `exact` flag it passes on. Shared by `compress`, the
    evaluation and the demo, so their files are byte-identical."""
    from jax_codec import bitstream
    from jax_codec.inference import streaming as st

    codec = model.codec
    total = st.encoded_frames(codec, num_samples)
    core, _, exact = st.window_plan(codec, total, window_frames)
    header = bitstream.Header(
        sample_rate=codec.sample_rate,
        channels=channels,
        num_samples=num_samples,
        num_frames=total,
        hop_length=codec.hop_length,
        strides=codec.vq_strides,
        codebook_sizes=codec.codebook_size,
        n_quantizers=n_quantizers,
        chunk_frames=core,
        model_id=model.name,
        model_hash=model.fingerprint,
        original_sample_rate=original_sample_rate,
        original_num_samples=original_num_samples,
        frame_rate=codec.frame_rate,
    )
    return header, exact


def run_compress(args: argparse.Namespace) -> dict:
    from jax_codec import bitstream
    from jax_codec.data import audio
    from jax_codec.inference import streaming as st

    _check_input(args.input)
    _check_output(args.output, args.input)
    try:
        info = audio.probe(args.input)
    except audio.BadAudio as e:
        raise CliError(f"{args.input}: not usable audio ({e})") from None
    channels = min(info.channels, 2)
    model = load(args)
    codec = model.codec
    k = select_quantizers(codec, args.kbps, args.n_quantizers)
    _validate_window(codec, args.window_frames)
    priors_path = None
    if args.entropy != "off":
        priors_path = find_priors(model, args.priors)
        if priors_path is None and args.entropy == "on":
            where = default_priors_path(model) or "--priors FILE"
            raise CliError(
                f"--entropy on needs priors: none at {where}; make them with "
                f"`{_priors_command(model)}` or pass --priors FILE"
            )
    elif args.priors:
        raise CliError("--priors is not used with --entropy off")
    priors = None
    if priors_path is not None:
        priors = bitstream.load_priors(priors_path)
        if priors.shape[1] != codec.codebook_size or priors.shape[0] < k:
            raise CliError(
                f"priors {priors_path} have shape {priors.shape}; this model needs at least "
                f"{k} levels x {codec.codebook_size} codes"
            )

    sr = codec.sample_rate
    m = model_rate_length(info.frames, info.sample_rate, sr)
    header, exact = file_header(
        model, channels, m, k, args.window_frames, info.sample_rate, info.frames
    )
    duration = info.frames / info.sample_rate
    t0 = time.perf_counter()
    blocks = iter_input(args.input, info, channels, sr)
    with _progress(duration, args, "compress") as bar:
        with bitstream.Writer(args.output, header, priors=priors) as w:
            for codes in st.iter_encode(codec, model.params, blocks, m, k, args.window_frames):
                w.write_chunk([tuple(c[ch] for c in codes) for ch in range(channels)])
                bar.update(codes[0].shape[1] * codec.vq_strides[0] * codec.hop_length / sr)
    elapsed = time.perf_counter() - t0
    facts = bitstream.info(args.output)
    size, packed = facts["file_size_bytes"], packed_file_size(w.header)
    return {
        "input": args.input,
        "output": args.output,
        "duration_s": duration,
        "sample_rate": info.sample_rate,
        "input_channels": info.channels,
        "channels": channels,
        "model": model.name,
        "model_sample_rate": sr,
        "n_quantizers": k,
        "size_bytes": size,
        "actual_kbps": size * 8 / duration / 1e3,
        "nominal_kbps": w.header.nominal_kbps,
        "nominal_kbps_per_channel": w.header.nominal_kbps_per_channel,
        "entropy_coded": priors is not None,
        "priors": priors_path,
        "packed_size_bytes": packed,
        "entropy_gain": 1.0 - size / packed,
        # False only for an LSTM model (EnCodec) windowed over a long file: see
        # streaming.window_plan; the codes are then close to, not equal to, the whole-signal ones.
        "whole_signal_exact": exact,
        "seconds": elapsed,
        "x_realtime": duration / elapsed if elapsed > 0 else float("inf"),
    }


def format_compress(r: dict) -> str:
    ch = "mono" if r["channels"] == 1 else "stereo"
    mix = (
        f" (mixed down from {r['input_channels']})" if r["input_channels"] != r["channels"] else ""
    )
    if r["entropy_coded"]:
        gain = (
            f"range coded with {r['priors']}: {100 * r['entropy_gain']:.1f}% smaller than bit "
            f"packed ({r['packed_size_bytes']} bytes)"
        )
    else:
        gain = "bit packed (no priors used)"
    return "\n".join(
        [
            f"wrote {r['output']}: {r['duration_s']:.2f} s, {ch}{mix}, {r['n_quantizers']} "
            f"quantizers of model {r['model'] or '?'}",
            f"size {r['size_bytes']} bytes = {r['actual_kbps']:.3f} kbps (nominal "
            f"{r['nominal_kbps']:.3f} kbps = {r['channels']} x {r['nominal_kbps_per_channel']:.3f})",
            f"{gain}; encoded at {r['x_realtime']:.1f}x real time",
        ]
        + (
            []
            if r.get("whole_signal_exact", True)
            else [
                "note: this model has an LSTM and the file was encoded in overlapping windows "
                "(too long for one, or --window_frames given): codes are close to, not equal "
                "to, a whole-signal encode"
            ]
        )
    )


# --------------------------------------------------------------------------- decompress


def frame_blocks(reader) -> Iterator[np.ndarray]:
    """Frame-rate codes ``[channels, F, k]`` of each chunk of an open `Reader`."""
    h = reader.header
    for i, chunk in enumerate(reader):
        frames = h.chunk_frames_at(i)
        yield np.stack(
            [
                np.stack(
                    [np.repeat(a, s)[:frames] for a, s in zip(levels, h.stored_strides)], axis=-1
                )
                for levels in chunk
            ]
        ).astype(np.int32)


def check_architecture(header, codec) -> None:
    want = (
        codec.sample_rate,
        codec.hop_length,
        tuple(codec.vq_strides),
        (codec.codebook_size,) * codec.num_quantizers,
    )
    got = (header.sample_rate, header.hop_length, header.strides, header.codebook_sizes)
    if got != want:
        raise BitstreamError(
            "the file's header does not match the model's architecture (sample rate, hop, "
            f"strides, codebooks): {got} vs {want}"
        )


def run_decompress(args: argparse.Namespace) -> dict:
    from jax_codec import bitstream
    from jax_codec.inference import streaming as st

    _check_input(args.input, ".jcodec")
    _check_output(args.output, args.input, OUTPUT_FORMATS)
    if args.sample_rate is not None and not 1000 <= args.sample_rate <= MAX_OUTPUT_RATE:
        raise CliError(f"--sample_rate must be in 1000..{MAX_OUTPUT_RATE}, got {args.sample_rate}")
    with bitstream.Reader(args.input) as r:
        header = r.header
    n_orig = header.original_num_samples
    model = load(args)
    codec = model.codec
    bitstream.check_model(header, model.name, model.fingerprint)
    check_architecture(header, codec)
    _validate_window(codec, args.window_frames)
    priors_path = None
    if header.entropy_mode:
        priors_path = find_priors(model, args.priors)
        if priors_path is None:
            raise CliError(
                f"{args.input} is entropy coded and needs the priors it was made with (sha256 "
                f"{header.priors_sha256.hex()[:16]}…): none found; pass --priors FILE, or make "
                f"them with `{_priors_command(model)}`"
            )
    sr, orig = header.sample_rate, header.original_sample_rate
    rate = args.sample_rate or orig
    if rate == sr:
        length = header.num_samples
    else:
        length = model_rate_length(n_orig, orig, rate)
    duration = header.duration_seconds
    t0 = time.perf_counter()
    with bitstream.Reader(args.input, priors=priors_path) as r:
        windows = st.iter_decode(
            codec,
            model.params,
            frame_blocks(r),
            header.num_frames,
            header.num_samples,
            args.window_frames,
        )
        with _progress(duration, args, "decompress") as bar:
            with AudioOut(args.output, rate, header.channels, args.subtype) as out:
                for y in resample_blocks(windows, header.channels, sr, rate, length):
                    out.write(y)
                    bar.update(y.shape[1] / rate)
    elapsed = time.perf_counter() - t0
    return {
        "input": args.input,
        "output": args.output,
        "duration_s": length / rate,
        "sample_rate": rate,
        "channels": header.channels,
        "num_samples": length,
        "model": header.model_id,
        "n_quantizers": header.n_quantizers,
        "entropy_coded": bool(header.entropy_mode),
        "priors": priors_path,
        "seconds": elapsed,
        "x_realtime": duration / elapsed if elapsed > 0 else float("inf"),
    }


def format_decompress(r: dict) -> str:
    return (
        f"wrote {r['output']}: {r['duration_s']:.2f} s ({r['num_samples']} samples) at "
        f"{r['sample_rate']} Hz, {r['channels']} channel(s); decoded at {r['x_realtime']:.1f}x "
        "real time"
    )


# --------------------------------------------------------------------------- info


def run_info(args: argparse.Namespace) -> dict:
    from jax_codec import bitstream

    _check_input(args.file, ".jcodec")
    d = bitstream.info(args.file, verify=True)  # checks every chunk CRC too (no decoding)
    with bitstream.Reader(args.file) as r:
        h = r.header
    n = h.original_num_samples
    d.update(
        file=args.file,
        model=h.model_id,
        original_num_samples=n,
        original_duration_seconds=n / h.original_sample_rate,
    )
    return d


def format_info(d: dict) -> str:
    rows = [
        ("file", d["file"]),
        ("format version", d["format_version"]),
        ("model", f"{d['model'] or '?'} (hash {d['model_hash'][:16]}…)"),
        ("duration", f"{d['duration_seconds']:.3f} s"),
        (
            "audio",
            f"{d['channels']} channel(s), {d['original_num_samples']} samples at "
            f"{d['original_sample_rate']} Hz (coded at {d['sample_rate']} Hz: "
            f"{d['num_samples']} samples)",
        ),
        (
            "codes",
            f"{d['n_quantizers']} of {len(d['strides'])} levels, strides {d['strides'][: d['n_quantizers']]}, "
            f"codebooks {d['codebook_sizes'][: d['n_quantizers']]}, {d['num_frames']} frames at "
            f"{d['frame_rate']:.3f} Hz, hop {d['hop_length']}",
        ),
        ("chunks", f"{d['num_chunks']} of {d['chunk_frames']} frames"),
        ("coding", d["entropy_coding"] + (f" (sha256 {d['priors_sha256'][:16]}…)" if d["priors_sha256"] else "")),
        ("size", f"{d['file_size_bytes']} bytes"),
        ("bitrate", f"{d['actual_kbps']:.3f} kbps actual, {d['nominal_kbps']:.3f} kbps nominal "
                    f"({d['nominal_kbps_per_channel']:.3f} per channel)"),
    ]  # fmt: skip
    return "\n".join(f"{k:>15}: {v}" for k, v in rows)


# --------------------------------------------------------------------------- priors


def iter_training_audio(config, specs: list[str], sample_rate: int, length: int, count: int,
                        seed: int) -> Iterator[np.ndarray]:  # fmt: skip
    """`count` crops ``[channels, length]`` of training audio, round robin over `specs`, read
    by the training pipeline's sources and crop reader (silent crops redrawn)."""
    import grain

    from jax_codec.data import pipeline

    readers = []
    for i, spec in enumerate(specs):
        clips = pipeline.make_clips(spec, config, sample_rate, length, seed + i)
        index = pipeline.SlotIndex(clips, length, 0)
        slots = grain.MapDataset.source(index).shuffle(seed=seed + i).repeat()
        stats = pipeline.DataStats()
        readers.append(
            (pipeline.CropReader([clips], slots, length, seed + i, config, stats, None), slots)
        )
    for j in range(count):
        reader, slots = readers[j % len(readers)]
        idx = j // len(readers)
        yield np.ascontiguousarray(reader(idx, slots[idx]).T)


def run_priors(args: argparse.Namespace) -> dict:
    from jax_codec import bitstream
    from jax_codec.config import ConfigError
    from jax_codec.data import pipeline
    from jax_codec.inference import streaming as st

    if not (args.seconds > 0 and math.isfinite(args.seconds)):
        raise CliError(f"--seconds must be positive, got {args.seconds}")
    if not (args.crop_seconds > 0 and math.isfinite(args.crop_seconds)):
        raise CliError(f"--crop_seconds must be positive, got {args.crop_seconds}")
    if args.output:
        _check_output(args.output, None)
    elif not args.checkpoint:
        raise CliError(
            "--output FILE is needed with --config --random_init (there is no checkpoint "
            "directory to put priors.npz in)"
        )
    model = load(args)
    codec, config = model.codec, model.config
    output = args.output or default_priors_path(model)
    sr, mult = codec.sample_rate, codec.length_multiple
    length = max(mult, round(args.crop_seconds * sr / mult) * mult)
    crops = max(1, math.ceil(args.seconds * sr / length))
    try:
        specs = [args.data] if args.data else pipeline.source_specs(config)[0]
    except ConfigError as e:
        raise CliError(str(e)) from None
    nq, cb = codec.num_quantizers, codec.codebook_size
    counts = np.zeros((nq, cb), np.int64)
    batch = max(1, args.batch)

    def encode_batch(rows: list[np.ndarray]):
        x = np.stack(rows)
        n = x.shape[0]
        if n < batch:  # the last batch: pad with copies so every call has one shape
            x = np.concatenate([x, np.repeat(x[:1], batch - n, axis=0)])
        codes = st.chunked_encode(codec, model.params, x, nq, args.window_frames)
        codes = tuple(c[:n] for c in codes)
        for level, c in enumerate(codes):
            counts[level] += np.bincount(c.reshape(-1), minlength=cb)
        return codes

    def code_batches(bar):
        rows: list[np.ndarray] = []
        for x in iter_training_audio(config, specs, sr, length, crops, 20_000 + args.seed):
            rows.extend(x)  # each channel a row
            if len(rows) >= batch:
                yield encode_batch(rows[:batch])
                rows = rows[batch:]
            bar.update(length / sr)
        if rows:
            yield encode_batch(rows)

    t0 = time.perf_counter()
    try:
        with _progress(crops * length / sr, args, "priors") as bar:
            priors = bitstream.estimate_priors(code_batches(bar), nq, cb)
    except (ConfigError, pipeline.DataError) as e:
        raise CliError(_one_line(e)) from None
    elapsed = time.perf_counter() - t0
    freqs = bitstream.quantize_priors(priors)
    d, base = os.path.split(os.path.abspath(output))
    ext = os.path.splitext(output)[1] or ".npz"
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=ext, dir=d)
    os.close(fd)
    try:
        digest = bitstream.save_priors(tmp, freqs)
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    # Expected code length under the priors on the data they came from, vs bit packing.
    logp = np.log2(freqs.astype(np.float64) / 2**bitstream.PRECISION)
    bits = -(counts * logp).sum(axis=1) / np.maximum(counts.sum(axis=1), 1)
    mean_bits = -(counts * logp).sum() / max(int(counts.sum()), 1)
    packed = bitstream.bits_for(cb)
    return {
        "output": output,
        "sha256": digest,
        "sources": specs,
        "seconds": crops * length / sr,
        "num_levels": nq,
        "codebook_size": cb,
        "bits_per_code": [float(b) for b in bits],
        "packed_bits_per_code": packed,
        "expected_gain": float(1.0 - mean_bits / packed),
        "x_realtime": crops * length / sr / elapsed if elapsed > 0 else float("inf"),
    }


def format_priors(r: dict) -> str:
    per = ", ".join(f"{b:.2f}" for b in r["bits_per_code"])
    return (
        f"wrote {r['output']} (sha256 {r['sha256'][:16]}…): {r['num_levels']} levels x "
        f"{r['codebook_size']} codes from {r['seconds']:.1f} s of {', '.join(r['sources'])}\n"
        f"bits per code by level: {per} (bit packed: {r['packed_bits_per_code']}); expected "
        f"entropy-coding gain on this data: {100 * r['expected_gain']:.1f}%"
    )


# --------------------------------------------------------------------------- commands


def cmd_compress(args: argparse.Namespace) -> int:
    return _run(run_compress, args, format_compress)


def cmd_decompress(args: argparse.Namespace) -> int:
    return _run(run_decompress, args, format_decompress)


def cmd_info(args: argparse.Namespace) -> int:
    return _run(run_info, args, format_info)


def cmd_priors(args: argparse.Namespace) -> int:
    return _run(run_priors, args, format_priors)


def _window_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--window_frames",
        type=int,
        help="latent frames per processing window (default 1024, ~12 s): larger is faster "
        "and takes more memory; the codes do not depend on it",
    )


def add_parsers(sub) -> None:
    """Registers `compress`, `decompress` and `priors` (`info FILE` goes through `cmd_info`)."""
    p = sub.add_parser("compress", help="audio file -> .jcodec")
    p.add_argument("input", help="audio file (wav, flac, ogg, opus, mp3; any rate, channels)")
    p.add_argument("output", help="the .jcodec file to write")
    add_model_args(p)
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--kbps", type=float, help="largest bitrate per channel (picks quantizers)")
    rate.add_argument("--n_quantizers", type=int, help="levels to store (default: all)")
    p.add_argument(
        "--entropy",
        choices=("auto", "on", "off"),
        default="auto",
        help="range coding with priors: auto = when priors are found",
    )
    p.add_argument("--priors", help=f"priors file (default: {PRIORS_NAME} in the checkpoint dir)")
    _window_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("decompress", help=".jcodec -> audio file")
    p.add_argument("input", help="a .jcodec file")
    p.add_argument("output", help="audio file to write (.wav, .flac or .ogg)")
    add_model_args(p)
    p.add_argument("--sample_rate", type=int, help="output rate (default: the original rate)")
    p.add_argument("--subtype", help="soundfile subtype, e.g. PCM_16 (default), PCM_24, FLOAT")
    p.add_argument("--priors", help=f"priors file (default: {PRIORS_NAME} in the checkpoint dir)")
    _window_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_decompress)

    p = sub.add_parser("priors", help="estimate entropy-coding priors from training audio")
    add_model_args(p)
    p.add_argument("--data", help="source spec as in training (default: the config's data)")
    p.add_argument("--seconds", type=float, default=600.0, help="seconds of audio to encode")
    p.add_argument("--crop_seconds", type=float, default=10.0, help="length of each crop")
    p.add_argument("--batch", type=int, default=4, help="crops encoded together")
    p.add_argument("--output", help=f"priors file (default: CHECKPOINT/{PRIORS_NAME})")
    _window_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_priors)
