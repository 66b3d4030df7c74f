"""The evaluation run: a codec against Opus, MP3 (Vorbis, AAC) and other checkpoints.

The command is `python -m jax_codec.evaluate` (`evaluation/__main__.py`); statistics are in
`evaluation.stats`, the files it writes in `evaluation.report`.

    python -m jax_codec.evaluate --checkpoint DIR --data PATH [--n_quantizers 1,2,4,8]
        [--baselines opus,mp3,vorbis,aac|none] [--compare DIR[,DIR...]] [--output DIR]
        [--segment_seconds 10] [--excerpts 1] [--max_files N] [--metrics a,b,...] [--speech] [--seed 0]

How each file is measured (one rule for every codec):

- The file's first `--segment_seconds` (0: all of it) are read once (with `--excerpts N`, N
  excerpts of that length evenly spread over the file, the first at its start and the last at
  its end, each measured like a file of its own), resampled (soxr HQ) to the
  evaluated model's sample rate, mono or stereo as the file is (more channels are folded to
  stereo). That signal is the reference for everything: our codec, the `--compare` models and
  the classic baselines all code it, and every metric compares their output with it at that
  rate. Resampling is therefore never counted as codec error, and all rows share one reference.
  A `--compare` model with another sample rate gets the reference resampled to its rate, and
  its output is resampled back (soxr HQ): the band it cannot code counts against it.
- Our codec runs through the real bitstream, as `python -m jax_codec compress` / `decompress`
  do: windowed encoding (`chunked.iter_encode`), a `.jcodec` file written with
  `bitstream.Writer` (range coded when the checkpoint has entropy priors, `--entropy`), read
  back with `bitstream.Reader` and decoded. Its bitrate is the actual one:
  file size * 8 / duration (headers and chunk framing included).
- Each baseline is run at our actual bitrate for the same file and setting (`--n_quantizers`),
  raised to the lowest bitrate its encoder accepts (`BASELINE_MIN_KBPS`), and its actual
  bitrate (encoded file size, container included) is reported: classic encoders cannot go as
  low as a neural codec and overshoot their targets at low rates, and the rate-distortion
  plots show where they really landed. A setting ffmpeg cannot encode is a row with `error`.
- Channels: a mono model codes a stereo file as two code streams (dual mono), a joint-stereo
  model (`model.channels = 2`, docs/stereo.md) as one, and a mono file duplicated into one
  stream and decoded back to mono, exactly as `compress` does; Opus and MP3 code stereo in
  their joint stereo modes (`baselines.py`). Bitrates are always those of the actual bits, so a
  joint-stereo row, a dual-mono `--compare` row and the baselines compare at what each really
  spent; `channel_coding` and `code_streams` in each row say how it was coded.
- Decoded signals are clipped to [-1, 1], as writing a 16-bit file would.
- Metrics: `jax_codec.evaluation.metrics.compute_all` (DAC's mel and STFT distances, SI-SDR,
  loudness difference, CQT and chroma distances, ViSQOL; PESQ-WB and STOI only with `--speech`
  or when named in `--metrics`); for stereo files the stereo image metrics (mel distance of mid
  and of side, inter-channel level and correlation differences; empty for mono files, left out
  when every file is mono); code usage, entropy and perplexity per level from the codes.

Outputs (in `--output`, default `eval/<model name>`): `results.csv` and `results.json` (one row
per file x codec x setting), `summary.md` and `summary.json` (mean and 95% confidence interval
per metric, codec and setting, and mean actual kbps), `rd_<metric>.png` (rate-distortion, one
line per codec), `spectrogram_<i>_<file>.png` (original and each codec at a middle setting, for
the first `--spectrograms` files) and `codes_<model>.png` (code histograms per level).

Deterministic: files are taken in sorted order, no step draws random numbers (`--seed` only
seeds `--random_init` weights), and metric values are kept to 9 significant digits (ViSQOL's
FFTs vary in the last bit from run to run), so the same inputs give the same results files
(for one ffmpeg build and machine). Errors in the
arguments or the data (missing `--data`, no audio found, ffmpeg missing for a requested
baseline, a bad `--n_quantizers`, ...) print one `error: ...` line and exit with code 2.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import tempfile
from collections.abc import Sequence

import numpy as np

from jax_codec.cli_errors import CliError, one_line
from jax_codec.evaluation.report import safe_name, write_outputs
from jax_codec.evaluation.stats import measure

DEFAULT_BASELINES = ("opus", "mp3")
DEFAULT_SEGMENT_SECONDS = 10.0
DEFAULT_SPECTROGRAMS = 3
# Shorter files are skipped: loudness needs 0.4 s and the mel distance a 2048-sample window.
MIN_SECONDS = 0.5
SPEECH_METRICS = ("pesq_wb_speech", "stoi_speech")


def find_audio_files(path: str) -> tuple[str, list[str]]:
    """`(root, relative paths)`: `path` itself when it is a file, else every audio file
    (`jax_codec.data.audio.AUDIO_EXTENSIONS`) under the folder, recursively, sorted."""
    from jax_codec.data.audio import AUDIO_EXTENSIONS
    from jax_codec.data.sources import _list_files

    if not os.path.exists(path):
        raise CliError(f"--data {path}: no such file or directory")
    if os.path.isfile(path):
        return os.path.dirname(os.path.abspath(path)), [os.path.basename(path)]
    files = [f for f in _list_files(path) if os.path.splitext(f)[1].lower() in AUDIO_EXTENSIONS]
    if not files:
        raise CliError(
            f"--data {path}: no audio files found (looked for {', '.join(AUDIO_EXTENSIONS)}, "
            "recursively)"
        )
    return os.path.abspath(path), files


def excerpt_starts(total: int, n: int, excerpts: int) -> list[int]:
    """Start samples of `excerpts` windows of `n` samples evenly spread over `total` samples:
    the first at 0, the last ending at the end (one window for a file no longer than `n`;
    windows overlap when the file is shorter than `excerpts * n`; no start is repeated)."""
    if excerpts <= 1 or total <= n:
        return [0]
    span = total - n
    return sorted({round(i * span / (excerpts - 1)) for i in range(excerpts)})


def load_segment(path: str, sample_rate: int, seconds: float | None, start: int = 0) -> np.ndarray:
    """`seconds` (None or 0: all) of `path` from sample `start` (at `sample_rate`), at
    `sample_rate`, float32 ``[C, T]`` with C = the file's channels (more than two folded to
    stereo). Raises `BadAudio`."""
    from jax_codec.data import audio

    info = audio.probe(path)
    channels = min(info.channels, 2)
    total = (info.frames * sample_rate) // info.sample_rate - start
    n = total if not seconds else min(total, int(round(seconds * sample_rate)))
    x = audio.read_window(path, start, n, sample_rate, channels, info)
    x = np.ascontiguousarray(x.T, dtype=np.float32)
    if not np.isfinite(x).all():
        raise audio.BadAudio("NaN or infinite samples")
    return x


# ---------------------------------------------------------------------------------------------
# The codecs


def _resample(x: np.ndarray, rate_in: int, rate_out: int, length: int | None = None):
    """``[C, T]`` from `rate_in` to `rate_out` (soxr HQ), cut or zero-padded to `length`."""
    import soxr

    y = x if rate_in == rate_out else soxr.resample(x.T, rate_in, rate_out, quality="HQ").T
    if length is not None:
        y = y[:, :length] if y.shape[1] >= length else np.pad(y, ((0, 0), (0, length - y.shape[1])))
    return np.ascontiguousarray(y, dtype=np.float32)


@dataclasses.dataclass
class EvaluatedCodec:
    """A loaded codec as the evaluation runs it: its row name, settings and kind."""

    label: str  # row name (the config name, made unique)
    loaded: object  # `jax_codec.inference.api.LoadedCodec` (with the priors it codes with)
    settings: list[int]  # n_quantizers values
    source: str  # what was loaded, for the summary
    kind: str  # "ours" or "neural"

    @property
    def codec(self):
        return self.loaded.codec


def neural_round_trip(
    nc: EvaluatedCodec,
    audio: np.ndarray,
    sr: int,
    n_quantizers: int,
    path: str,
    window_frames: int | None = None,
) -> tuple[np.ndarray, dict, tuple[np.ndarray, ...]]:
    """`audio` ``[C, T]`` at `sr` through a `.jcodec` file at `path` and back.

    Writes the file as `python -m jax_codec compress --n_quantizers K` does for a file at the
    model's rate (`codec_io.encode_to_jcodec`: same header, chunks and entropy coding), reads it
    back, checks the model and decodes it (`codec_io.decode_jcodec`). Returns (decoded
    ``[C, T]`` at `sr`, facts for the row, the codes per level ``[S, F / s_i]`` as read from
    the file: S = C streams for a mono model, one for a joint-stereo model).
    """
    from jax_codec import levels
    from jax_codec.inference import codec_io

    loaded, rate = nc.loaded, nc.codec.sample_rate
    x = _resample(audio, sr, rate)
    level = levels.LevelMeter(sr, loudness=True)  # as compress measures the file: at its own rate
    level.add(audio)
    enc = codec_io.encode_to_jcodec(
        loaded, x, path, n_quantizers, window_frames=window_frames, original_sample_rate=sr,
        original_num_samples=audio.shape[1], level=level,
    )  # fmt: skip
    h, codes = codec_io.read_jcodec(path, loaded)
    y = np.concatenate(list(codec_io.decode_jcodec(path, loaded, window_frames)), axis=1)
    y = _resample(y, rate, sr, audio.shape[1])
    duration = audio.shape[1] / sr
    facts = {
        "actual_kbps": enc.size_bytes * 8 / duration / 1e3,
        "nominal_kbps": h.nominal_kbps,
        "size_bytes": enc.size_bytes,
        "codec_sample_rate": rate,
        "entropy_coded": bool(h.entropy_mode),
        "channel_coding": h.channel_mode_name,
        "code_streams": h.streams,
    }
    return y, facts, codes


@dataclasses.dataclass
class Plan:
    """What to evaluate and how, from the checked arguments (no model loaded yet)."""

    data: str  # the --data given
    root: str  # folder the file paths are relative to
    files: list[str]
    baselines: list[str]
    metrics: list[str]
    compare: list[str]
    ffmpeg: str | None
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS  # 0: whole files
    excerpts: int = 1  # segments per file, evenly spread (the first at the start)
    spectrograms: int = DEFAULT_SPECTROGRAMS  # files to draw spectrogram comparisons for
    window_frames: int | None = None


@dataclasses.dataclass
class Results:
    """What the per-file loop gathers."""

    rows: list[dict] = dataclasses.field(default_factory=list)
    code_fields: list[str] = dataclasses.field(default_factory=list)
    # Per model, code counts per level at its largest setting (summed over files).
    counts: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)
    problems: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    skipped: list[str] = dataclasses.field(default_factory=list)
    spectrograms: list[tuple[str, dict]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def add(self, row: dict, ref: np.ndarray, est: np.ndarray, sr: int, names: Sequence[str]):
        """Measures `est` against `ref` into `row` and keeps it."""
        values, errs = measure(ref, est, sr, names)
        row.update(values)
        for p in errs:
            self.problems.setdefault(f"{row['codec']}: {p}", []).append(row["file"])
        self.rows.append(row)


def evaluate_file(
    p: Plan,
    models: Sequence[EvaluatedCodec],
    res: Results,
    ref,
    rel: str,
    tmp: str,
    bar,
    start_s: float = 0.0,
):
    """Every model at each of its settings, and the baselines matched to ours, on one file
    (or one excerpt of it, from `start_s`)."""
    from jax_codec.evaluation import baselines as bl
    from jax_codec.evaluation import codebook_usage as cu

    sr = models[0].codec.sample_rate
    base = {"file": rel, "excerpt_start_s": start_s, "duration_s": ref.shape[1] / sr}
    base["sample_rate"] = sr
    base["channels"] = ref.shape[0]
    panels = {"original": ref} if len(res.spectrograms) < p.spectrograms else None
    for nc in models:
        mid = nc.settings[(len(nc.settings) - 1) // 2]
        for k in nc.settings:
            bar.set_postfix_str(f"{rel} {nc.label} n_q={k}", refresh=False)
            jc = os.path.join(tmp, f"{safe_name(nc.label)}_{k}.jcodec")
            y, facts, codes = neural_round_trip(nc, ref, sr, k, jc, p.window_frames)
            os.unlink(jc)
            y = np.clip(y, -1.0, 1.0)
            hist = cu.code_histograms(codes, nc.codec.codebook_size)
            usage = cu.flatten_code_usage(cu.code_usage_from_counts(hist))
            res.code_fields += [f for f in usage if f not in res.code_fields]
            row = {**base, "codec": nc.label, "kind": nc.kind, "n_quantizers": k, **facts}
            res.add({**row, **usage}, ref, y, sr, p.metrics)
            if k == nc.settings[-1]:
                c = res.counts.get(nc.label)
                res.counts[nc.label] = hist if c is None else [a + b for a, b in zip(c, hist)]
            if panels is not None and k == mid:
                panels[f"{nc.label}, n_q={k}: {facts['actual_kbps']:.2f} kbps"] = y
            for name in p.baselines if nc.kind == "ours" else ():
                row = {**base, "codec": name, "kind": "baseline", "n_quantizers": k}
                row["channel_coding"] = bl.channel_coding(name, ref.shape[0])
                target = facts["actual_kbps"]
                try:
                    yb, bfacts = bl.matched_round_trip(name, ref, sr, target, p.ffmpeg)
                except bl.BaselineError as e:
                    msg = one_line(e)[:300]
                    row.update({m: math.nan for m in p.metrics})
                    row.update(target_kbps=target, actual_kbps=math.nan, error=msg)
                    res.rows.append(row)
                    res.problems.setdefault(f"{name}: {msg}", []).append(rel)
                    continue
                yb = np.clip(yb, -1.0, 1.0)
                res.add({**row, **bfacts}, ref, yb, sr, p.metrics)
                if panels is not None and k == mid and name == p.baselines[0]:
                    label = f"{name}, matched to n_q={k}: {bfacts['actual_kbps']:.2f} kbps"
                    panels[label] = yb
            bar.update(1)
    if panels is not None:
        res.spectrograms.append((rel, panels))


def load_excerpts(path: str, sr: int, p: Plan) -> list[tuple[int, np.ndarray]]:
    """`[(start sample, [C, T] excerpt)]` of the file at `path`, as `p` asks (one: its first
    `p.segment_seconds`). Raises `BadAudio` for a file too short to measure."""
    from jax_codec.data import audio

    if p.excerpts <= 1 or not p.segment_seconds:
        starts = [0]
    else:
        info = audio.probe(path)
        total = (info.frames * sr) // info.sample_rate
        starts = excerpt_starts(total, int(round(p.segment_seconds * sr)), p.excerpts)
    out = []
    for start in starts:
        ref = load_segment(path, sr, p.segment_seconds, start)
        if ref.shape[1] < MIN_SECONDS * sr:
            raise audio.BadAudio(f"shorter than {MIN_SECONDS} s")
        out.append((start, ref))
    return out


def evaluate(
    p: Plan, models: Sequence[EvaluatedCodec], output: str, notes: Sequence[str] = ()
) -> dict:
    """Runs the evaluation `p` describes on `models` (ours first); writes the outputs into the
    folder `output` and returns a short report."""
    from tqdm import tqdm

    from jax_codec.data.audio import BadAudio

    notes = list(notes)
    sr = models[0].codec.sample_rate
    if os.path.exists(output) and not os.path.isdir(output):
        raise CliError(f"--output {output} exists and is not a directory")
    os.makedirs(output, exist_ok=True)

    res = Results()
    per_file = sum(len(nc.settings) for nc in models) * p.excerpts
    bar = tqdm(
        total=len(p.files) * per_file, desc="evaluate", unit="setting", file=sys.stderr,
        disable=None,
    )  # fmt: skip
    try:
        with tempfile.TemporaryDirectory(prefix="jax_codec_eval_") as tmp:
            for rel in p.files:
                try:
                    refs = load_excerpts(os.path.join(p.root, rel), sr, p)
                except BadAudio as e:
                    res.skipped.append(f"{rel}: {e}")
                    bar.write(f"skipping {rel}: {e}", file=sys.stderr)
                    bar.update(per_file)
                    continue
                bar.update(per_file - sum(len(nc.settings) for nc in models) * len(refs))
                for start, ref in refs:
                    res.seconds += ref.shape[1] / sr
                    evaluate_file(p, models, res, ref, rel, tmp, bar, start / sr)
    finally:
        bar.close()
    if not res.rows:
        raise CliError(
            f"--data {p.data}: none of the {len(p.files)} audio file(s) could be used: "
            + "; ".join(res.skipped[:3])
        )
    return write_outputs(p, models, res, output, notes)
