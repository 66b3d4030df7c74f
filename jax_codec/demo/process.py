"""What the demo does with an upload, as plain functions (no Gradio, testable without a browser).

    audio, sr, notices = load_upload(path, model.sample_rate, max_seconds=30)
    result = run_codec(model, audio, n_quantizers=4, workdir="/tmp/run")   # files + figures
    stream = run_stream(model, audio, n_quantizers=4, workdir="/tmp/run")

- `load_upload` reads any file soundfile decodes, at the model's rate (soxr HQ), mono or stereo
  as the file is (more channels folded to stereo, as `compress` does), the first `max_seconds`
  only (only that part is decoded: a long file never stalls the demo). Unusable input raises
  `UploadError` with a sentence for the user; adjustments come back as notices.
- `run_codec` writes the input as 16-bit WAV, codes it into a `.jcodec` file with the real
  bitstream writer (the bytes `python -m jax_codec compress` makes of that WAV), reads the file
  back and decodes it; runs Opus at our actual bitrate (raised to its floor, as the evaluation
  does); measures mel distance, SI-SDR and ViSQOL (when installed); draws the figures.
- `run_stream` plays the input through the streaming encoder and decoder, chunk by chunk, timed.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import time

import numpy as np
import soundfile as sf

MIN_SECONDS = 0.5  # the evaluation's floor: loudness needs 0.4 s, the mel distance 2048 samples
SILENCE_DBFS = -80.0  # a peak below this is silence
METRICS = ("mel_distance", "si_sdr", "visqol")
# For a stereo input, the stereo image as well (the evaluation's `STEREO_METRICS`).
STEREO_METRICS = ("mel_distance_side", "ild_difference", "icc_difference")
METRIC_LABELS = {
    "mel_distance": "mel distance ↓",
    "si_sdr": "SI-SDR (dB) ↑",
    "visqol": "ViSQOL ↑",
    "mel_distance_side": "side mel distance ↓",
    "ild_difference": "level difference L/R (dB) ↓",
    "icc_difference": "L/R correlation difference ↓",
}
NON_CAUSAL_NOTICE = (
    "This model is **non-causal**: its convolutions look ahead (centred padding), so it cannot "
    "stream. Use the Compare tab, or a causal model (e.g. `configs/base.py`)."
)
READABLE = "WAV, FLAC, OGG (Vorbis/Opus), MP3 or AIFF"


class UploadError(ValueError):
    """An upload the demo cannot use; the message is meant for the user."""


def _name(path: str) -> str:
    return os.path.basename(str(path)) or str(path)


def safe_stem(path: str | None, default: str = "input") -> str:
    """A file-name-safe stem of `path` (for the files a run writes)."""
    stem = os.path.splitext(_name(path or ""))[0]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")
    return stem[:60] or default


def _ffmpeg_decode(path: str, max_seconds: float, timeout_s: float = 60.0) -> str | None:
    """The first `max_seconds` + 1 s of `path` decoded by ffmpeg into a temporary float WAV
    (the caller deletes it), or None without ffmpeg or when ffmpeg cannot decode it."""
    import subprocess
    import tempfile

    from jax_codec.evaluation import baselines

    try:
        exe = baselines.ffmpeg_path()
    except baselines.FFmpegNotFoundError:
        return None
    fd, out = tempfile.mkstemp(prefix="jax_codec_demo_", suffix=".wav")
    os.close(fd)
    cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", path, "-vn"]
    cmd += ["-t", f"{max_seconds + 1:g}", "-c:a", "pcm_f32le", "-f", "wav", out]
    try:
        ok = subprocess.run(cmd, capture_output=True, timeout=timeout_s).returncode == 0
    except (subprocess.TimeoutExpired, OSError):
        ok = False
    if ok and os.path.getsize(out) > 44:
        return out
    os.unlink(out)
    return None


def load_upload(
    path: str | None, sample_rate: int, max_seconds: float = 30.0
) -> tuple[np.ndarray, int, list[str]]:
    """An uploaded or recorded file as float32 ``[C, T]`` at `sample_rate` (C = 1 or 2).

    Returns (audio, sample_rate, notices): the notices say what was changed (resampled,
    channels folded, trimmed to `max_seconds`, clipped). Raises `UploadError` for no file, an
    empty file, one that is not audio, silence, or less than `MIN_SECONDS`. Files soundfile
    cannot decode (m4a, WebM...) go through ffmpeg when it is installed.
    """
    from jax_codec.bitstream import resampled_length
    from jax_codec.data import audio as audio_io

    if not path:
        raise UploadError("No audio: upload a file, record one, or pick a generated example.")
    name = _name(path)
    if not os.path.isfile(path):
        raise UploadError(f"{name}: the uploaded file is gone; upload it again.")
    if os.path.getsize(path) == 0:
        raise UploadError(f"{name} is empty (0 bytes).")
    notices = []
    try:
        info = audio_io.probe(path)
    except audio_io.BadAudio as e:
        # Formats libsndfile does not know (m4a/AAC, WebM, WMA...): ffmpeg, when there is one.
        decoded = _ffmpeg_decode(path, max_seconds)
        if decoded is None:
            raise UploadError(
                f"{name} is not audio the demo can read ({e.reason}); upload {READABLE}."
            ) from None
        try:
            x, sr, more = load_upload(decoded, sample_rate, max_seconds)
        finally:
            os.unlink(decoded)
        notice = "Decoded with ffmpeg (a format soundfile does not read)."
        return x, sr, [notice, *(n.replace(_name(decoded), name) for n in more)]
    channels = min(info.channels, 2)
    if info.channels > 2:
        notices.append(
            f"{info.channels} channels folded to stereo (odd channels left, even right), "
            "as `compress` does."
        )
    if info.sample_rate != sample_rate:
        notices.append(
            f"Resampled from {info.sample_rate} Hz to the model's {sample_rate} Hz (soxr HQ)."
        )
    total = resampled_length(info.frames, info.sample_rate, sample_rate)
    limit = int(max_seconds * sample_rate)
    if total > limit:
        notices.append(
            f"{info.seconds:.1f} s long: trimmed to the first {max_seconds:g} s (the demo's "
            "limit, `--max_seconds`)."
        )
    try:
        x = audio_io.read_window(path, 0, min(total, limit), sample_rate, channels, info)
    except audio_io.BadAudio as e:
        raise UploadError(f"{name} could not be decoded ({e}); upload {READABLE}.") from None
    x = np.ascontiguousarray(x.T, dtype=np.float32)
    if x.shape[1] == 0:
        raise UploadError(f"{name} holds no audio samples.")
    if not np.isfinite(x).all():
        raise UploadError(f"{name} holds NaN or infinite samples.")
    if x.shape[1] < MIN_SECONDS * sample_rate:
        raise UploadError(
            f"{name} is too short ({x.shape[1] / sample_rate:.2f} s); the demo needs at "
            f"least {MIN_SECONDS:g} s."
        )
    peak = float(np.abs(x).max())
    if peak < 10.0 ** (SILENCE_DBFS / 20.0):
        level = "digital silence" if peak == 0 else f"peak {20 * math.log10(peak):.0f} dBFS"
        raise UploadError(f"{name} is silent ({level}); there is nothing to compress.")
    if peak > 1.0:
        notices.append(f"Peaks reach {peak:.2f} (above full scale): clipped to [-1, 1].")
    return x, sample_rate, notices


def make_examples(directory: str, sample_rate: int, seconds: float = 8.0) -> list[str]:
    """Generated music (`jax_codec.data.synthetic`) written as 16-bit WAVs: a mono and a stereo
    song. Returns their paths; made at startup, nothing is shipped."""
    from jax_codec.data.synthetic import render_song

    os.makedirs(directory, exist_ok=True)
    paths = []
    for seed, channels in ((1, 1), (2, 2)):
        kind = "mono" if channels == 1 else "stereo"
        path = os.path.join(directory, f"generated_song_{seed}_{kind}.wav")
        x = render_song(seconds, seed, sample_rate, channels)
        sf.write(path, np.clip(x, -1.0, 1.0), sample_rate, subtype="PCM_16")
        paths.append(path)
    return paths


def write_wav(path: str, audio: np.ndarray, sample_rate: int) -> str:
    """``[C, T]`` as a 16-bit WAV (what every browser plays), clipped to [-1, 1]."""
    sf.write(path, np.clip(np.asarray(audio).T, -1.0, 1.0), sample_rate, subtype="PCM_16")
    return path


def measure(ref: np.ndarray, est: np.ndarray, sr: int) -> dict[str, float]:
    """The demo's metrics (ViSQOL only when installed; the stereo image for a stereo `ref`
    ``[2, T]``); NaN where one cannot be computed."""
    from jax_codec.evaluation import metrics, stats

    stereo = np.ndim(ref) == 2 and np.shape(ref)[0] == 2
    wanted = METRICS + (STEREO_METRICS if stereo else ())
    names = [m for m in wanted if m in metrics.available_metrics()]
    return stats.measure(ref, est, sr, names)[0]


def opus_round_trip(x: np.ndarray, sr: int, kbps: float) -> tuple[np.ndarray | None, dict, str]:
    """Opus at `kbps` (raised to its floor) as the evaluation runs it: (decoded or None,
    facts, notice); the notice says why there is no Opus (no ffmpeg, ffmpeg failed)."""
    from jax_codec.evaluation import baselines

    try:
        ffmpeg = baselines.ffmpeg_path()
        y, facts = baselines.matched_round_trip("opus", x, sr, kbps, ffmpeg)
    except baselines.FFmpegNotFoundError:
        return None, {}, f"No Opus comparison: ffmpeg was not found. {baselines.INSTALL_HINT}."
    except baselines.BaselineError as e:
        return None, {}, f"No Opus comparison: {str(e).splitlines()[0][:300]}"
    return np.clip(y, -1.0, 1.0), facts, ""


def run_codec(
    model,
    audio: np.ndarray,
    n_quantizers: int,
    workdir: str,
    *,
    name: str = "input",
    opus: bool = True,
    figures: bool = True,
) -> dict:
    """Codes `audio` ``[C, T]`` (at the model's rate) with `n_quantizers` levels; compares.

    Writes into `workdir`: ``{name}.wav`` (the input as 16-bit WAV: the reference),
    ``{name}.jcodec`` (`compress`'s bytes for that WAV), ``{name}_ours.wav``,
    ``{name}_opus.wav`` and the figures as PNGs. Returns a dict: the arrays (`original`,
    `reconstruction`, `opus` or None), the paths, `codes` (per level ``[C, F / s_i]`` as read
    back from the file), sizes and bitrates, `metrics` ({"ours": {...}, "opus": {...}}) and
    `notices`.
    """
    from jax_codec.evaluation import plots
    from jax_codec.inference import codec_io

    codec = model.codec
    sr = codec.sample_rate
    k = int(n_quantizers)
    if not 1 <= k <= codec.num_quantizers:
        raise ValueError(f"n_quantizers must be in 1..{codec.num_quantizers}, got {k}")
    os.makedirs(workdir, exist_ok=True)
    t0 = time.perf_counter()
    notices: list[str] = []
    original_path = write_wav(os.path.join(workdir, f"{name}.wav"), audio, sr)
    # The reference is the WAV's 16-bit samples: exactly what `compress` reads from it.
    x = np.ascontiguousarray(sf.read(original_path, dtype="float32", always_2d=True)[0].T)
    channels, t = x.shape
    duration = t / sr

    jcodec_path = os.path.join(workdir, f"{name}.jcodec")
    # Exactly what `compress` makes of the WAV (input level normalization and header gain
    # included), then what a receiver gets: the file read back, checked, decoded.
    codec_io.encode_to_jcodec(model.loaded, x, jcodec_path, k)
    h, read_codes = codec_io.read_jcodec(jcodec_path, model.loaded)
    y = np.concatenate(list(codec_io.decode_jcodec(jcodec_path, model.loaded)), axis=1)
    y = np.clip(y, -1.0, 1.0)
    coded_s = time.perf_counter() - t0
    ours_path = write_wav(os.path.join(workdir, f"{name}_ours.wav"), y, sr)
    size = os.path.getsize(jcodec_path)
    kbps = size * 8 / duration / 1e3

    opus_audio, opus_facts, opus_path = None, {}, None
    if opus:
        opus_audio, opus_facts, why = opus_round_trip(x, sr, kbps)
        if why:
            notices.append(why)
        else:
            opus_path = write_wav(os.path.join(workdir, f"{name}_opus.wav"), opus_audio, sr)

    results = {"ours": measure(x, y, sr)}
    if opus_audio is not None:
        results["opus"] = measure(x, opus_audio, sr)

    images = {}
    if figures:
        ours_label = f"jax_codec, {k} quantizer{'s' * (k > 1)}: {kbps:.2f} kbps"
        signals = {"original": x, ours_label: y}
        estimates = {f"{ours_label} − original": y}
        if opus_audio is not None:
            opus_label = f"Opus: {opus_facts['actual_kbps']:.2f} kbps"
            signals[opus_label] = opus_audio
            estimates[f"{opus_label} − original"] = opus_audio
        figs = {
            "spectrograms": plots.spectrogram_comparison(signals, sr),
            "differences": plots.difference_spectrograms(x, estimates, sr),
            "codes": plots.code_image(
                read_codes,
                codec.vq_strides,
                codec.frame_rate,
                codec.codebook_size,
                # a row per stream: left and right apart (dual mono), or the one joint stream
                channel_names=["left", "right"] if h.streams == 2 else None,
            ),
        }
        for key, fig in figs.items():
            images[key] = plots.save(fig, os.path.join(workdir, f"{name}_{key}.png"))

    return {
        "name": name,
        "sample_rate": sr,
        "channels": channels,
        "duration_s": duration,
        "n_quantizers": k,
        "original": x,
        "reconstruction": y,
        "opus": opus_audio,
        "codes": read_codes,
        "original_path": original_path,
        "reconstruction_path": ours_path,
        "opus_path": opus_path,
        "jcodec_path": jcodec_path,
        "size_bytes": size,
        "actual_kbps": kbps,
        "nominal_kbps": h.nominal_kbps,
        "channel_coding": h.channel_mode_name,
        "entropy_coded": bool(h.entropy_mode),
        "opus_kbps": opus_facts.get("actual_kbps"),
        "opus_target_kbps": opus_facts.get("encoder_kbps"),
        "metrics": results,
        "images": images,
        "notices": notices,
        "seconds": coded_s,
    }


def run_stream(
    model, audio: np.ndarray, n_quantizers: int, workdir: str, *, name: str = "input",
    chunk_ms: float = 20.0,
) -> dict:  # fmt: skip
    """`audio` ``[C, T]`` through the streaming encoder and decoder, chunk by chunk, timed.

    Returns a dict: `streaming` (False for a non-causal model, with `notice` and nothing else),
    `output` ``[C, T]`` and `output_path` (16-bit WAV), latencies in ms (algorithmic, and with
    chunk buffering), `chunk_ms`, `rtf` (audio seconds per compute second), per-chunk
    median and p99 ms, `realtime` (p99 below the chunk duration) and the max abs difference
    from the offline path.
    """
    from jax_codec import levels
    from jax_codec.inference import streaming as st

    codec = model.codec
    if not codec.causal:
        return {"streaming": False, "notice": NON_CAUSAL_NOTICE}
    os.makedirs(workdir, exist_ok=True)
    sr, hop = codec.sample_rate, codec.hop_length
    x = np.asarray(audio, np.float32)
    k = int(n_quantizers)
    # As the `stream` command: the clip at the model's training level, the output scaled back.
    target = levels.target_db(model.loaded.config)
    gain = 0.0
    if target is not None:
        x, gain = levels.normalize(x, sr, target)
    back = np.float32(levels.db_to_gain(-gain))
    y, times, n = model.stream(x, k, chunk_ms)
    offline = model.decode(model.encode(x)[:k], x.shape[1], x.shape[0])
    y, offline = y * back, offline * back
    path = write_wav(os.path.join(workdir, f"{name}_stream.wav"), y, sr)
    ms = sorted(1000.0 * s for s in times)
    chunk = 1000.0 * n * hop / sr
    total = sum(times)
    p99 = float(np.percentile(ms, 99))
    return {
        "streaming": True,
        "output": y,
        "output_path": path,
        "duration_s": x.shape[1] / sr,
        "channels": x.shape[0],
        "n_quantizers": k,
        "kbps": model.kbps(k) * model.streams(x.shape[0]),
        "chunk_frames": n,
        "chunk_ms": chunk,
        "latency_ms": 1000.0 * st.algorithmic_latency(codec) / sr,
        "stream_latency_ms": 1000.0 * st.stream_latency(codec, n) / sr,
        "rtf": (x.shape[1] / sr) / total if total > 0 else math.inf,
        "chunk_ms_median": statistics.median(ms),
        "chunk_ms_p99": p99,
        "realtime": p99 < chunk,
        "max_abs_diff_vs_offline": float(np.abs(y - offline).max()),
    }


# ---------------------------------------------------------------------------------------------
# Text for the page


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:.{digits}f}"


def format_metrics(r: dict) -> str:
    """Markdown: a table of bitrate and metrics for ours and Opus, and the file's facts."""
    names = [m for m in METRICS + STEREO_METRICS if m in r["metrics"]["ours"]]
    head = "| | actual kbps | " + " | ".join(METRIC_LABELS[m] for m in names) + " |"
    rule = "|---|---:|" + "---:|" * len(names)
    k = r["n_quantizers"]
    rows = [
        f"| **jax_codec** ({k} quantizer{'s' * (k > 1)}) | {r['actual_kbps']:.2f} | "
        + " | ".join(_fmt(r["metrics"]["ours"][m]) for m in names)
        + " |"
    ]
    if "opus" in r["metrics"]:
        rows.append(
            f"| **Opus** (asked {r['opus_target_kbps']:.2f}) | {r['opus_kbps']:.2f} | "
            + " | ".join(_fmt(r["metrics"]["opus"][m]) for m in names)
            + " |"
        )
    ch = {
        "joint stereo": "stereo in one joint-stereo code stream"
        if r["channels"] == 2
        else "mono (duplicated into the joint-stereo model's one code stream)",
        "dual mono": "stereo (each channel coded on its own)",
    }.get(r.get("channel_coding"), "mono")
    coding = "range coded with the checkpoint's priors" if r["entropy_coded"] else "bit packed"
    facts = (
        f"**.jcodec file:** {r['size_bytes']:,} bytes for {r['duration_s']:.2f} s, {ch} = "
        f"**{r['actual_kbps']:.2f} kbps** actual (nominal {r['nominal_kbps']:.2f} kbps; "
        f"header and chunk framing included), {coding}. Coded and decoded in "
        f"{r['seconds']:.2f} s."
    )
    return "\n".join([head, rule, *rows, "", facts])


def format_stream(r: dict) -> str:
    """Markdown summary of `run_stream`."""
    if not r["streaming"]:
        return r["notice"]
    verdict = "real time ✓" if r["realtime"] else "**not** real time on this machine"
    return "\n".join(
        [
            "| streaming | |",
            "|---|---:|",
            f"| algorithmic latency | {r['latency_ms']:.1f} ms |",
            f"| latency with chunk buffering | {r['stream_latency_ms']:.1f} ms |",
            f"| chunk | {r['chunk_ms']:.1f} ms ({r['chunk_frames']} frames) |",
            f"| real-time factor | {r['rtf']:.2f}x |",
            f"| chunk compute time, median | {r['chunk_ms_median']:.2f} ms |",
            f"| chunk compute time, p99 | {r['chunk_ms_p99']:.2f} ms |",
            f"| max abs difference from offline | {r['max_abs_diff_vs_offline']:.1e} |",
            "",
            f"{r['duration_s']:.2f} s, {r['channels']} channel(s), {r['n_quantizers']} "
            f"quantizers ({r['kbps']:.2f} kbps): {verdict} (p99 chunk time vs chunk length).",
        ]
    )
