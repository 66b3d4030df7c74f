"""Classic codec baselines (Opus, MP3, Vorbis, AAC) through the ffmpeg command-line tool.

`encode_decode(audio, sr, codec, kbps)` encodes float audio with ffmpeg at a target bitrate,
decodes it again and returns the decoded signal time-aligned with the input, with the same length
and channels, plus the bitrate actually spent (encoded file size over duration, container
overhead included: encoders miss their targets, most at low rates, and rate-distortion curves must
use what was spent).

Audio is ``[T]`` (mono) or ``[C, T]`` float (channels first, as `jax_codec.inference` reads
files); the result has the same shape.

Encoders and containers, chosen so ffmpeg's decoder removes the encoder's priming delay itself
(the container carries it): Opus = libopus in Ogg (pre-skip; always coded at 48 kHz, ffmpeg
resamples in and back out), MP3 = libmp3lame (LAME/Xing tag with delay and padding), Vorbis =
libvorbis in Ogg (granule positions), AAC = ffmpeg's native encoder in MP4/M4A (edit list).
Decoded output is then cut or zero-padded at the end to exactly the input length; the tests check
by cross-correlation that no start offset remains. Opus runs constrained VBR (libopus' default
unconstrained VBR overshoots a 64 kbps target by up to 70% on tonal music), MP3 CBR, Vorbis and
AAC ABR.

The sample rate each codec runs at depends on the bitrate, as a careful user of the classic
encoders would set it (`encoding_sample_rate`): Opus always 48 kHz; MP3 and AAC the rate LAME
picks by default for the bitrate (e.g. 8 kHz at 24 kbps stereo, 24 kHz at 64, 32 kHz at 96,
the input rate from 128); Vorbis the input rate, stepping down when libvorbis refuses the
bitrate there. In a sweep over encode rates these defaults gave the lowest or near-lowest mel
distance at each bitrate. `round_trip` reports the rate used; `encode_rate=` overrides it.

Stereo is coded jointly by every encoder here, as each does by default, and said explicitly
where ffmpeg has a switch: libopus codes a stereo pair as one coupled stream (channel mapping
family 0: one Opus stream, the encoder choosing mid/side or intensity stereo per band), LAME in
its joint stereo mode (`-joint_stereo 1`, LAME's own default: each frame mid/side or left/
right), libvorbis with channel coupling (its default for stereo), ffmpeg's AAC with
per-band mid/side (`-aac_ms` auto). tests/test_stereo_io.py reads the Opus and MP3 files'
headers to check it. `channel_coding` gives the mode for a row of the evaluation.

ffmpeg is looked for on PATH, then as the binary bundled in the `imageio-ffmpeg` pip package.
Everything runs in a private temporary directory, each call with a timeout. Results are
deterministic for a given ffmpeg build.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
import tempfile

import numpy as np
import soundfile as sf

INSTALL_HINT = (
    "install ffmpeg (Debian/Ubuntu: `apt-get install ffmpeg`; macOS: `brew install ffmpeg`) "
    "or the pip package that bundles a static build: `pip install imageio-ffmpeg` "
    "(included in `pip install jax_codec[eval]`)"
)


# The lowest target (kbps, for mono and for stereo) each encoder accepts through ffmpeg: libopus
# refuses below 500 b/s, LAME's lowest CBR rate is 8 kbps, libvorbis refuses less than ~8 (mono)
# or ~12 kbps (stereo) even at 8 kHz; ffmpeg's AAC encoder takes any target.
BASELINE_MIN_KBPS = {
    "opus": (0.5, 0.5),
    "mp3": (8.0, 8.0),
    "vorbis": (8.0, 12.0),
    "aac": (0.0, 0.0),
}


class FFmpegNotFoundError(RuntimeError):
    """No ffmpeg binary was found; the message says how to install one."""


class BaselineError(RuntimeError):
    """ffmpeg could not encode or decode (missing encoder, unsupported setting, ...)."""


@dataclasses.dataclass(frozen=True)
class CodecSpec:
    """How one classic codec is run through ffmpeg."""

    encoder: str  # ffmpeg encoder name (`ffmpeg -encoders`)
    extension: str  # container, by file extension
    sample_rates: tuple[int, ...]  # rates the format allows, ascending
    rate_policy: str  # "fixed" (the highest rate), "lame" or "input" (see encoding_sample_rate)
    extra_args: tuple[str, ...] = ()


_MPEG_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)

CODECS: dict[str, CodecSpec] = {
    # Constrained VBR: libopus' default unconstrained VBR spends up to twice the target on tonal
    # music (measured: 110 kbps for a 64 kbps target), which defeats matched-bitrate comparison.
    # Mapping family 0: one coupled stream for a stereo pair (joint stereo; -1, the default,
    # picks it for 1 or 2 channels).
    "opus": CodecSpec(
        "libopus", "ogg", (48000,), "fixed", ("-vbr", "constrained", "-mapping_family", "0")
    ),
    # Joint stereo (LAME's default; plain stereo would code left and right apart).
    "mp3": CodecSpec("libmp3lame", "mp3", _MPEG_RATES, "lame", ("-joint_stereo", "1")),
    "vorbis": CodecSpec("libvorbis", "ogg", _MPEG_RATES, "input"),
    "aac": CodecSpec("aac", "m4a", _MPEG_RATES + (64000, 88200, 96000), "lame"),
}

# LAME's default lowpass (Hz) for a CBR bitrate (kbps, stereo), from its `optimum_bandwidth`;
# a bitrate uses the nearest row (ties go up). Mono gets 1.5x the lowpass, as LAME's presets do.
_LAME_LOWPASS = (
    (8, 2000), (16, 3700), (24, 3900), (32, 5500), (40, 7000), (48, 7500), (56, 10000),
    (64, 11000), (80, 13500), (96, 15100), (112, 15600), (128, 17000), (160, 17500),
    (192, 18600), (224, 19400), (256, 19700), (320, 20500),
)  # fmt: skip
# LAME's `optimum_samplefreq`: the lowest rate whose band keeps a lowpass up to the bound.
_LAME_RATE_FOR_LOWPASS = (
    (3970, 8000), (4510, 11025), (5420, 12000), (7230, 16000), (9970, 22050), (11220, 24000),
    (15250, 32000), (15960, 44100),
)  # fmt: skip

_PROBE_TIMEOUT_S = 30


def ffmpeg_path() -> str:
    """Path of an ffmpeg binary: `ffmpeg` on PATH, else the one `imageio-ffmpeg` bundles.

    Raises:
      FFmpegNotFoundError: neither is available (the message says how to install one).
    """
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg
    except ImportError:
        pass
    else:
        try:
            exe = imageio_ffmpeg.get_ffmpeg_exe()
        except RuntimeError:  # the package is there but its binary is not (unsupported platform)
            exe = None
        if exe and os.path.isfile(exe):
            return exe
    raise FFmpegNotFoundError(
        f"ffmpeg was not found on PATH nor via imageio-ffmpeg: {INSTALL_HINT}"
    )


@functools.lru_cache(maxsize=8)
def available_encoders(ffmpeg: str | None = None) -> frozenset[str]:
    """Names of the audio encoders the ffmpeg build supports (`ffmpeg -encoders`)."""
    exe = ffmpeg or ffmpeg_path()
    r = subprocess.run(
        [exe, "-hide_banner", "-encoders"],
        capture_output=True,
        text=True,
        timeout=_PROBE_TIMEOUT_S,
        check=False,
    )
    if r.returncode != 0:
        raise BaselineError(f"`{exe} -encoders` failed: {r.stderr.strip()[-500:]}")
    names = set()
    for line in r.stdout.splitlines():
        parts = line.split()
        # Rows look like " A....D libopus   libopus Opus (codec opus)"; flags first, A = audio.
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] == "A":
            names.add(parts[1])
    return frozenset(names)


def _lame_lowpass(kbps: float, channels: int) -> float:
    rows = [r for r, _ in _LAME_LOWPASS]
    # Nearest table bitrate, ties to the higher one (LAME's `nearestBitrateFullIndex`).
    i = min(range(len(rows)), key=lambda j: (abs(rows[j] - kbps), -rows[j]))
    lowpass = float(_LAME_LOWPASS[i][1])
    return lowpass * 1.5 if channels == 1 else lowpass


def encoding_sample_rate(codec: str, sr: int, kbps: float, channels: int = 2) -> int:
    """The sample rate `codec` is encoded at, by default, for input at `sr` and a target `kbps`.

    - opus: 48 kHz always (Opus' native rate; ffmpeg resamples in and back out).
    - mp3 and aac: LAME's own default (what the `lame` command line does): the lowpass LAME
      applies at this bitrate picks the lowest standard rate that keeps that band (64 kbps
      stereo: 11 kHz lowpass, 24 kHz), never above the input rate (when the input rate is not
      allowed, the next allowed rate up). ffmpeg's AAC encoder cuts a similar band at low rates
      (about 9.5 kHz at 64 kbps stereo), so the lower rate costs it nothing, while at its input
      rate its frames cannot go below ~23 kbps stereo.
    - vorbis: the input rate (or the next allowed one up); `encode_decode` steps down to lower
      rates when libvorbis refuses the bitrate at this one.
    """
    spec = _spec(codec)
    if spec.rate_policy == "fixed":
        return spec.sample_rates[-1]
    allowed = spec.sample_rates
    at_or_above = [r for r in allowed if r >= sr]
    ceiling = at_or_above[0] if at_or_above else allowed[-1]
    if spec.rate_policy == "input":
        return ceiling
    lowpass = _lame_lowpass(kbps, channels)
    wanted = next((rate for bound, rate in _LAME_RATE_FOR_LOWPASS if lowpass <= bound), 48000)
    below = [r for r in allowed if r <= min(wanted, ceiling)]
    return below[-1] if below else allowed[0]


def channel_coding(codec: str, channels: int) -> str:
    """How `codec` codes `channels` channels here: "mono" or "joint stereo" (module doc)."""
    _spec(codec)
    return "mono" if channels == 1 else "joint stereo"


def _spec(codec: str) -> CodecSpec:
    try:
        return CODECS[codec]
    except KeyError:
        raise ValueError(f"unknown codec {codec!r}; valid: {', '.join(CODECS)}") from None


def _as_channels_first(audio: np.ndarray) -> np.ndarray:
    x = np.asarray(audio)
    if x.ndim == 1:
        return x[None]
    if x.ndim != 2:
        raise ValueError(f"audio must be [T] or [C, T], got shape {x.shape}")
    if x.shape[0] > 8:
        raise ValueError(
            f"audio must be [T] or [C, T] (channels first), got shape {x.shape}; "
            "transpose a [T, C] array"
        )
    return x


def _run(cmd: list[str], timeout: float, what: str) -> None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BaselineError(f"ffmpeg {what} timed out after {timeout:.0f} s") from None
    if r.returncode != 0:
        tail = r.stderr.strip()[-1500:]
        raise BaselineError(f"ffmpeg {what} failed (exit {r.returncode}): {tail}")


@dataclasses.dataclass(frozen=True)
class BaselineResult:
    """One round trip through a classic codec."""

    audio: np.ndarray  # decoded float32, same shape as the input, time-aligned with it
    kbps: float  # 8 * encoded bytes / duration / 1000 (container overhead included)
    target_kbps: float
    codec: str
    encode_rate: int  # the sample rate the codec actually ran at
    encoded_bytes: int


def encode_decode(
    audio: np.ndarray,
    sr: int,
    codec: str,
    kbps: float,
    *,
    encode_rate: int | None = None,
    ffmpeg: str | None = None,
    timeout_s: float = 300.0,
) -> tuple[np.ndarray, float]:
    """`(decoded, actual_kbps)` of `round_trip` (same arguments): the decoded audio has the shape
    of `audio` and is time-aligned with it; actual kbps counts the whole encoded file."""
    r = round_trip(
        audio, sr, codec, kbps, encode_rate=encode_rate, ffmpeg=ffmpeg, timeout_s=timeout_s
    )
    return r.audio, r.kbps


def round_trip(
    audio: np.ndarray,
    sr: int,
    codec: str,
    kbps: float,
    *,
    encode_rate: int | None = None,
    ffmpeg: str | None = None,
    timeout_s: float = 300.0,
) -> BaselineResult:
    """Round-trips `audio` through `codec` at a target of `kbps` kilobits per second.

    Args:
      audio: float ``[T]`` or ``[C, T]`` (C = 1 or 2) at `sr`; passed to the encoder as float.
      sr: sample rate in Hz.
      codec: one of "opus", "mp3", "vorbis", "aac".
      kbps: target bitrate (ffmpeg `-b:a`): constrained VBR for Opus, CBR for MP3, ABR for
        Vorbis and AAC.
      encode_rate: sample rate to encode at; default `encoding_sample_rate(codec, sr, kbps, C)`.
      ffmpeg: ffmpeg binary; default `ffmpeg_path()`.
      timeout_s: limit for each ffmpeg call.

    Returns:
      `BaselineResult`: decoded float32 with the shape of `audio`, time-aligned with it; actual
      kbps = 8 * encoded file size / duration / 1000, container overhead included; the sample
      rate used.

    Raises:
      FFmpegNotFoundError: no ffmpeg (message says how to install it).
      BaselineError: the encoder is missing from the ffmpeg build, or ffmpeg failed (e.g. a
        bitrate the encoder cannot reach at any sample rate); the message has ffmpeg's error.
      ValueError: bad arguments.
    """
    spec = _spec(codec)
    if not kbps or kbps <= 0:
        raise ValueError(f"kbps must be positive, got {kbps}")
    sr = int(sr)
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    x = _as_channels_first(audio)
    channels, length = x.shape
    if length == 0:
        raise ValueError("audio is empty")
    if channels > 2:
        raise ValueError(f"only mono or stereo audio is supported, got {channels} channels")
    exe = ffmpeg or ffmpeg_path()
    if spec.encoder not in available_encoders(exe):
        raise BaselineError(
            f"the ffmpeg at {exe} has no {spec.encoder!r} encoder (needed for {codec}); "
            f"use an ffmpeg build with it: {INSTALL_HINT}"
        )
    if encode_rate is not None:
        rates = [int(encode_rate)]
    else:
        first = encoding_sample_rate(codec, sr, kbps, channels)
        rates = [first]
        if spec.rate_policy == "input":  # libvorbis refuses low bitrates at high rates
            rates += [r for r in reversed(spec.sample_rates) if r < first]
    base = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    with tempfile.TemporaryDirectory(prefix="jax_codec_baseline_") as tmp:
        src = os.path.join(tmp, "input.wav")
        coded = os.path.join(tmp, f"coded.{spec.extension}")
        out = os.path.join(tmp, "decoded.wav")
        sf.write(src, np.ascontiguousarray(x.T, dtype=np.float32), sr, subtype="FLOAT")
        errors = []
        for rate in rates:
            try:
                _run(
                    base
                    + ["-i", src, "-map_metadata", "-1", "-fflags", "+bitexact"]
                    + ["-ar", str(rate), "-ac", str(channels)]
                    + ["-c:a", spec.encoder, "-b:a", str(int(round(kbps * 1000)))]
                    + [*spec.extra_args, coded],
                    timeout_s,
                    f"{codec} encode at {kbps:g} kbps ({rate} Hz, {channels} ch)",
                )
                break
            except BaselineError as e:
                errors.append(e)
        else:
            if len(errors) == 1:
                raise errors[0]
            raise BaselineError(
                f"{codec} cannot encode {channels} channel(s) at {kbps:g} kbps at any sample rate "
                f"from {rates[0]} down to {rates[-1]} Hz; last error: {errors[-1]}"
            )
        size_bytes = os.path.getsize(coded)
        _run(
            base + ["-i", coded, "-ar", str(sr), "-ac", str(channels), "-c:a", "pcm_f32le", out],
            timeout_s,
            f"{codec} decode",
        )
        decoded, out_sr = sf.read(out, dtype="float32", always_2d=True)
    if out_sr != sr:  # pragma: no cover - ffmpeg honours -ar
        raise BaselineError(f"decoded {codec} at {out_sr} Hz, expected {sr}")
    y = decoded.T  # [C, T']
    # The containers carry the encoder delay, so ffmpeg's output starts aligned; only the tail
    # differs (frame padding, resampling rounding): cut it, or pad a few samples of silence.
    if y.shape[1] >= length:
        y = y[:, :length]
    else:
        y = np.pad(y, ((0, 0), (0, length - y.shape[1])))
    y = np.ascontiguousarray(y, dtype=np.float32)
    return BaselineResult(
        audio=y[0] if np.ndim(audio) == 1 else y,
        kbps=8.0 * size_bytes / (length / sr) / 1000.0,
        target_kbps=float(kbps),
        codec=codec,
        encode_rate=int(rate),
        encoded_bytes=int(size_bytes),
    )


def matched_round_trip(
    name: str, audio: np.ndarray, sr: int, target_kbps: float, ffmpeg: str
) -> tuple[np.ndarray, dict]:
    """`audio` ``[C, T]`` through a classic codec at `target_kbps` (raised to the encoder's
    minimum); returns (decoded ``[C, T]``, facts for the row)."""
    channels = audio.shape[0]
    asked = max(float(target_kbps), BASELINE_MIN_KBPS[name][min(channels, 2) - 1])
    r = round_trip(audio, sr, name, asked, ffmpeg=ffmpeg)
    return r.audio, {
        "actual_kbps": r.kbps,
        "target_kbps": float(target_kbps),
        "encoder_kbps": asked,
        "size_bytes": r.encoded_bytes,
        "codec_sample_rate": r.encode_rate,
    }
