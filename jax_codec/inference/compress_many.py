"""Many files, one model load: `compress A B FOLDER ... --output_dir DIR` and `decompress`.

    python -m jax_codec compress a.wav b.flac songs/ --output_dir codes --checkpoint runs/base
    python -m jax_codec decompress codes --output_dir decoded --checkpoint runs/base

`plan` settles what the command line decides before the model loads: a folder stands for its
audio files (`.jcodec` files for `decompress`), found recursively and sorted, with its
subfolders kept under the output folder (as DAC's `encode` does); every input gets
``DIR/<stem>.jcodec`` (``.wav``). A missing or empty input, two inputs with one output, or an
output that exists already (without `--overwrite`) stops the command there, nothing written.
Output folders are made only as files are written into them (`codec_io.parent_folders`), so a
run that fails before writing (a bad checkpoint, every input unusable) leaves no folder behind.

Files that fit in one processing window (`--window_frames`, default 1024 frames, ~12 s for the
base model) are read `ROUND_BATCHES` batches at a time and coded by `batch.encode_batch` /
`decode_batch`, `batch_size` files per batch: their codes equal coding each file alone, so every
`.jcodec` is byte-identical to `compress IN OUT.jcodec` of that file (the loudness-matching
decode of a level-normalizing model runs per file, as there). Longer files stream one at a time
through the single-file path (bounded memory). Decoded audio equals the single-file form's to
float rounding (a batch of other shapes), so 16-bit output may differ by a least significant bit.

Failure policy: a file that turns out unusable (not audio, truncated, a bad or mismatched
`.jcodec`) is reported on stderr as ``error: FILE: reason`` and skipped; every other file is still
written, and the command exits non-zero: the exit code that error gives for one file (2 bad
audio, 1 bad `.jcodec`), the larger when they differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from jax_codec.bitstream import BitstreamError
from jax_codec.cli_errors import CliError, classify
from jax_codec.inference import codec_io
from jax_codec.inference import compress as cz
from jax_codec.inference.api import LoadedCodec
from jax_codec.inference.batch import DEFAULT_MAX_BATCH, decode_batch, encode_batch
from jax_codec.inference.cli import check_input, load_from_args, print_report

ROUND_BATCHES = 4  # batches of short files read before they are coded (memory: a few windows)
PER_FILE_ERRORS = (CliError, BitstreamError, OSError)  # skip the file; other errors stop the run


@dataclasses.dataclass
class Failure:
    """A file that was skipped: its path, the one-line reason and the exit code it gives."""

    input: str
    message: str
    exit_code: int


def failure(path: str, e: BaseException) -> Failure:
    code, message = classify(e)
    if not message.startswith(path):
        message = f"{path}: {message}"
    return Failure(path, message, code)


# --------------------------------------------------------------------------- plan


def expand_inputs(paths: Sequence[str], extensions: Sequence[str]) -> list[tuple[str, str]]:
    """(file, output stem relative to the output folder) of each input: a file as given, a
    folder as its files ending in `extensions` (recursively, sorted, hidden ones skipped)."""
    out = []
    for path in paths:
        if not os.path.isdir(path):
            check_input(path)
            out.append((path, os.path.splitext(os.path.basename(path))[0]))
            continue
        found = []
        for folder, subfolders, names in os.walk(path, followlinks=True):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for name in names:
                if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions:
                    f = os.path.join(folder, name)
                    found.append((f, os.path.splitext(os.path.relpath(f, path))[0]))
        if not found:
            raise CliError(f"{path}: no {' / '.join(extensions)} files in this folder")
        out += sorted(found)
    return out


def plan(
    inputs: Sequence[str],
    output_dir: str,
    suffix: str,
    extensions: Sequence[str],
    overwrite: bool = False,
) -> list[tuple[str, str]]:
    """(input, output) pairs, ``output_dir/<stem><suffix>`` each, checked as the module doc
    says (`CliError` before anything is written); creates no folder (the runs make each one
    as they write a file into it)."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise CliError(f"--output_dir {output_dir} is a file; give a folder")
    pairs, seen = [], {}
    for path, stem in expand_inputs(inputs, extensions):
        check_input(path)
        output = os.path.join(output_dir, stem + suffix)
        key = os.path.normcase(os.path.abspath(output))
        if key in seen:
            raise CliError(
                f"{seen[key]} and {path} would both be written to {output}; rename one, or "
                "code them in separate runs"
            )
        seen[key] = path
        pairs.append((path, output))
    existing = [o for _, o in pairs if os.path.exists(o)]
    if existing and not overwrite:
        more = ", ..." if len(existing) > 3 else ""
        raise CliError(
            f"{len(existing)} of the outputs exist already ({', '.join(existing[:3])}{more}); "
            "pass --overwrite to replace them"
        )
    for folder in sorted({os.path.dirname(o) for _, o in pairs}):
        _check_writable(folder)
    return pairs


def _check_writable(folder: str) -> None:
    """Raises `CliError` unless `folder`, or the folder it will be made in, can be written:
    folders are made only when a file is written into them (`codec_io.parent_folders`)."""
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise CliError(f"{existing} is a file; it cannot hold the output folder {folder}")
    if not os.access(existing, os.W_OK):
        raise CliError(f"output directory {existing} is not writable")


# --------------------------------------------------------------------------- runs


def _fits_one_window(loaded: LoadedCodec, num_samples: int, window_frames: int | None) -> bool:
    """Whether a signal of `num_samples` at the model's rate is coded in one window (and so
    may share a batch): longer ones stream alone, in bounded memory."""
    from jax_codec.inference import chunked

    total = chunked.encoded_frames(loaded.codec, num_samples)
    return total <= chunked.window_core_frames(loaded.codec, window_frames, total)


class _Run:
    """Reports and failures of a run, in input order; `on_done(report)` after each file."""

    def __init__(self, on_done: Callable[[dict], None] | None):
        self.reports: dict[int, dict] = {}
        self.failures: list[Failure] = []
        self.on_done = on_done

    def done(self, i: int, report: dict) -> None:
        self.reports[i] = report
        if self.on_done is not None:
            self.on_done(report)

    def attempt(self, i: int, path: str, fn: Callable[..., dict | None], *args) -> None:
        """Runs `fn(*args)`; a report it returns is file `i`'s, a per-file error skips it."""
        try:
            report = fn(*args)
        except PER_FILE_ERRORS as e:
            self.failures.append(failure(path, e))
            return
        if report is not None:
            self.done(i, report)

    def over(self, pairs, read, code, batch_size: int) -> tuple[list[dict], list[Failure]]:
        """`read(pending, i, input, output)` of each pair (it codes a long file itself, or
        appends a short one to `pending`), then `code(pending)` every few batches."""
        pending: list = []
        for i, (path, output) in enumerate(pairs):
            self.attempt(i, path, read, pending, i, path, output)
            if len(pending) >= ROUND_BATCHES * batch_size:
                code(pending)
                pending.clear()
        code(pending)
        return [self.reports[i] for i in sorted(self.reports)], self.failures


@dataclasses.dataclass
class _Pending:
    """A short file read and waiting for its batch."""

    index: int
    path: str
    output: str
    info: object  # data.audio.AudioInfo
    audio: np.ndarray  # [C, T] at the model's rate, as read (not normalized)
    level: object  # levels.LevelMeter, or None
    read_seconds: float


def compress_many(
    pairs: Sequence[tuple[str, str]],
    loaded: LoadedCodec,
    *,
    kbps: float | None = None,
    n_quantizers: int | None = None,
    entropy: str = "auto",
    window_frames: int | None = None,
    batch_size: int = DEFAULT_MAX_BATCH,
    match_loudness: bool = True,
    on_done: Callable[[dict], None] | None = None,
) -> tuple[list[dict], list[Failure]]:
    """Compresses each (audio, .jcodec) pair as `compress.compress_file` would, short files in
    batches; (reports in input order, failures). Bad settings raise `CliError` before any file."""
    loaded, k = cz.compress_settings(loaded, kbps, n_quantizers, entropy, window_frames)
    sr = loaded.codec.sample_rate

    def read(pending: list, i: int, path: str, output: str) -> dict | None:
        t0 = time.perf_counter()
        info = cz.probe_audio(path)
        if not _fits_one_window(loaded, cz.model_rate_length(info.frames, info.sample_rate, sr),
                                window_frames):  # fmt: skip
            with codec_io.parent_folders(output):
                return cz.compress_file(
                    path, output, loaded, n_quantizers=k, entropy=entropy,
                    window_frames=window_frames, match_loudness=match_loudness,
                )  # fmt: skip
        channels = min(info.channels, 2)
        level = cz.input_level(loaded, path, info, channels, match_loudness)
        audio = np.concatenate(list(codec_io.iter_input(path, info, channels, sr)), axis=1)
        seconds = time.perf_counter() - t0
        pending.append(_Pending(i, path, output, info, audio, level, seconds))
        return None

    run = _Run(on_done)
    return run.over(
        pairs, read,
        lambda pending: _compress_round(
            run, pending, loaded, k, window_frames, batch_size, match_loudness
        ),
        batch_size,
    )  # fmt: skip


def _compress_round(run, pending, loaded, k, window_frames, batch_size, match_loudness) -> None:
    """Encodes the `pending` files in batches and writes their `.jcodec` files."""
    from jax_codec import levels

    if not pending:
        return
    joint = codec_io.is_joint(loaded.codec)
    signals, rows = [], []  # a signal per code stream: [T, C] joint, else one channel [T]
    for p in pending:
        x = p.audio
        if p.level is not None:
            x = x * np.float32(levels.db_to_gain(codec_io.input_gain_db(loaded, p.level)))
        streams = [x.T] if joint else list(x)
        rows.append(range(len(signals), len(signals) + len(streams)))
        signals += streams
    t0 = time.perf_counter()
    codes = encode_batch(loaded, signals, n_quantizers=k, max_batch=batch_size)
    batch_seconds = time.perf_counter() - t0
    total = sum(p.audio.shape[1] for p in pending)

    def write(p: _Pending, r: range) -> dict:
        t0 = time.perf_counter()
        file_codes = tuple(np.stack([codes[j][level] for j in r]) for level in range(k))
        with codec_io.parent_folders(p.output):
            enc = codec_io.encode_to_jcodec(
                loaded, p.audio, p.output, k, window_frames=window_frames,
                original_sample_rate=p.info.sample_rate, original_num_samples=p.info.frames,
                codes=file_codes, level=p.level, match_loudness=match_loudness,
            )  # fmt: skip
        share = batch_seconds * p.audio.shape[1] / total  # of the batched encode
        seconds = p.read_seconds + share + time.perf_counter() - t0
        return cz.compress_report(p.path, p.info, loaded, p.level, enc, seconds)

    for p, r in zip(pending, rows, strict=True):
        run.attempt(p.index, p.path, write, p, r)


def decompress_many(
    pairs: Sequence[tuple[str, str]],
    loaded: LoadedCodec,
    *,
    sample_rate: int | None = None,
    subtype: str | None = None,
    window_frames: int | None = None,
    batch_size: int = DEFAULT_MAX_BATCH,
    on_done: Callable[[dict], None] | None = None,
) -> tuple[list[dict], list[Failure]]:
    """Decompresses each (.jcodec, audio) pair as `compress.decompress_file` would, short files
    in batches; (reports in input order, failures)."""
    codec_io.check_window(loaded.codec, window_frames)

    def read(pending: list, i: int, path: str, output: str) -> dict | None:
        t0 = time.perf_counter()
        header = codec_io.open_jcodec(path, loaded)
        if not _fits_one_window(loaded, header.num_samples, window_frames):
            with codec_io.parent_folders(output):
                return cz.decompress_file(
                    path, output, loaded, sample_rate=sample_rate, subtype=subtype,
                    window_frames=window_frames,
                )  # fmt: skip
        header, codes = codec_io.read_jcodec(path, loaded)
        pending.append((i, path, output, header, codes, time.perf_counter() - t0))
        return None

    def code(pending: list) -> None:
        # decode_batch takes signals of one number of levels: a round per K
        for k in sorted({p[3].n_quantizers for p in pending}):
            _decompress_round(
                run, [p for p in pending if p[3].n_quantizers == k], loaded, sample_rate,
                subtype, batch_size,
            )  # fmt: skip

    run = _Run(on_done)
    return run.over(pairs, read, code, batch_size)


def _decompress_round(run, pending, loaded, sample_rate, subtype, batch_size) -> None:
    """Decodes the `pending` files (one number of levels) in batches and writes them."""
    if not pending:
        return
    signals, lengths, rows = [], [], []  # a signal per code stream
    for _, _, _, header, codes, _ in pending:
        rows.append(range(len(signals), len(signals) + header.streams))
        for s in range(header.streams):
            signals.append(tuple(level[s] for level in codes))
            lengths.append(header.num_samples)
    t0 = time.perf_counter()
    audio = decode_batch(loaded, signals, lengths, max_batch=batch_size)
    batch_seconds = time.perf_counter() - t0
    total = sum(lengths)

    def write(path: str, output: str, header, read_seconds: float, r: range) -> dict:
        t0 = time.perf_counter()
        if codec_io.is_joint(loaded.codec):  # [T, 2] -> [1, T, 2] -> the file's channels
            y = codec_io.file_channels(audio[r[0]][None], header.channels)
        else:  # [T, 1] per channel
            y = np.stack([audio[j][:, 0] for j in r])
        if header.gain_db:
            y = y * np.float32(header.gain)
        with codec_io.parent_folders(output):
            rate, length = cz.write_decoded([y], header, output, sample_rate, subtype)
        share = batch_seconds * header.streams * header.num_samples / total
        seconds = read_seconds + share + time.perf_counter() - t0
        return cz.decompress_report(path, output, header, loaded, rate, length, seconds)

    for (i, path, output, header, _, read_seconds), r in zip(pending, rows, strict=True):
        run.attempt(i, path, write, path, output, header, read_seconds, r)


# --------------------------------------------------------------------------- reports


def summary(kind: str, reports: list[dict], failures: list[Failure], seconds: float) -> dict:
    """The report of a run of `kind` ("compress" or "decompress"): per-file reports, failures
    and the throughput over the whole run (model load excluded)."""
    audio = sum(r["duration_s"] for r in reports)
    return {
        "command": kind,
        "files": len(reports) + len(failures),
        "written": len(reports),
        "failed": [dataclasses.asdict(f) for f in failures],
        "audio_seconds": audio,
        "seconds": seconds,
        "x_realtime": audio / seconds if seconds > 0 else float("inf"),
        "files_per_second": len(reports) / seconds if seconds > 0 else float("inf"),
        "outputs": reports,
    }


def format_summary(s: dict) -> str:
    lines = [
        f"wrote {r['output']}: {r['duration_s']:.2f} s, {r['channels']} channel(s)"
        + (f", {r['size_bytes']} bytes ({r['actual_kbps']:.2f} kbps)" if "size_bytes" in r else "")
        for r in s["outputs"]
    ]
    lines.append(
        f"{s['command']}: {s['written']} of {s['files']} files, {s['audio_seconds']:.1f} s of "
        f"audio in {s['seconds']:.1f} s ({s['x_realtime']:.1f}x real time, "
        f"{s['files_per_second']:.1f} files/s)"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def add_files_args(p: argparse.ArgumentParser, form: str, what: str) -> None:
    """The files of `compress` / `decompress`: ``IN OUT``, or inputs and `--output_dir`."""
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help=f"{form}: {what}; with --output_dir: any number of input files and folders",
    )
    p.add_argument("--output", help="the output of one input (instead of the second FILE)")
    p.add_argument(
        "--output_dir",
        help="write DIR/<stem> of every input (folders: their files, recursively, subfolders "
        "kept); files that fail are named on stderr, the others still written",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="with --output_dir: replace existing outputs"
    )
    p.add_argument(
        "--batch_size",
        type=int,
        default=DEFAULT_MAX_BATCH,
        help="with --output_dir: most files coded in one batch (more takes more memory; what "
        "it gains: benchmarks/README.md)",
    )


def single_file(args: argparse.Namespace, kind: str) -> tuple[str, str] | None:
    """(input, output) of the one-file form, ``IN OUT`` or ``IN --output OUT``; None with
    `--output_dir` (every positional an input). A form that fits neither, or a bad
    `--batch_size`, raises `CliError`."""
    if args.batch_size < 1:
        raise CliError(f"--batch_size must be at least 1, got {args.batch_size}")
    files, suffix = args.files, ".jcodec" if kind == "compress" else ".wav"
    if args.output_dir is not None:
        if args.output:
            raise CliError("give --output FILE (one input) or --output_dir DIR, not both")
        return None
    if args.output:
        if len(files) != 1:
            raise CliError(
                f"--output names one file and {len(files)} inputs were given; use "
                f"--output_dir DIR to {kind} several files"
            )
        return files[0], args.output
    if len(files) == 1:
        raise CliError(
            f"give the output: `{kind} IN OUT{suffix}`, or --output_dir DIR for one {suffix} "
            "per input"
        )
    if len(files) > 2:
        raise CliError(f"{len(files)} inputs: give --output_dir DIR to {kind} several files")
    if os.path.isdir(files[0]):
        raise CliError(
            f"{files[0]} is a directory; give an input file, or --output_dir DIR to {kind} "
            "every file in it"
        )
    return files[0], files[1]


def cmd_compress_many(args: argparse.Namespace, settings: dict) -> int:
    """`compress FILE_OR_FOLDER ... --output_dir DIR` with `compress_many`'s `settings`."""
    from jax_codec.data.audio import AUDIO_EXTENSIONS

    pairs = plan(args.files, args.output_dir, ".jcodec", AUDIO_EXTENSIONS, args.overwrite)
    return _run_command(
        args, "compress", pairs,
        lambda loaded, on_done: compress_many(
            pairs, loaded, batch_size=args.batch_size, on_done=on_done, **settings
        ),
    )  # fmt: skip


def cmd_decompress_many(args: argparse.Namespace, settings: dict) -> int:
    """`decompress FILE_OR_FOLDER ... --output_dir DIR` with `decompress_many`'s `settings`."""
    codec_io.check_subtype("out.wav", settings.get("subtype"))
    pairs = plan(args.files, args.output_dir, ".wav", (".jcodec",), args.overwrite)
    return _run_command(
        args, "decompress", pairs,
        lambda loaded, on_done: decompress_many(
            pairs, loaded, batch_size=args.batch_size, on_done=on_done, **settings
        ),
    )  # fmt: skip


def _run_command(args: argparse.Namespace, kind: str, pairs, run) -> int:
    """Loads the model and runs `run(loaded, on_done)` over the planned `pairs`; prints the
    summary and each failure (`error: FILE: ...`); the exit code of the worst failure, or 0."""
    loaded = load_from_args(args, priors=cz.priors_flag(args))
    with files_progress(len(pairs), args.json, kind) as bar:
        t0 = time.perf_counter()
        reports, failures = run(loaded, lambda _: bar.update())
        seconds = time.perf_counter() - t0
    print_report(summary(kind, reports, failures, seconds), args.json, format_summary)
    for f in failures:
        print(f"error: {f.message}", file=sys.stderr)
    if not failures:
        return 0
    print(
        f"error: {len(failures)} of {len(pairs)} files failed (listed above); the other "
        f"{len(reports)} were written",
        file=sys.stderr,
        flush=True,
    )
    return max(f.exit_code for f in failures)


def files_progress(total: int, quiet: bool, desc: str):
    """A tqdm bar over files on stderr (off when quiet, not a tty, or for a few files)."""
    from tqdm import tqdm

    quiet = quiet or not sys.stderr.isatty() or total < 4
    return tqdm(total=total, unit="file", desc=desc, file=sys.stderr, disable=quiet, leave=False)
