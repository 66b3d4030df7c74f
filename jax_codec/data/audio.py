"""Audio decoding for the data pipeline: probe, read a window, resample, fix channels.

Everything here works on one file and never raises anything but `BadAudio` for a problem with the
file itself (corrupt, empty, unsupported, unreadable), so callers can count and skip it.
Paths may be local or anything `etils.epath` opens (``gs://...``); local files are read directly.

Samples are float32 ``[frames, channels]``. Channel conversion follows the usual conventions:
mono to stereo duplicates, stereo to mono averages, and more than two channels are folded by
averaging (5.1 and 7.1 included, LFE kept in the mix at equal weight, which is what most
downmixes of training data do).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Iterator

import numpy as np
import soundfile as sf
import soxr

from jax_codec.stereo import match_channels

# Extensions the folder source picks up (lower case, with the dot). libsndfile >= 1.1 decodes
# all of them; a file with one of these that it cannot open is reported as unsupported/corrupt.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")
# Common audio formats soundfile cannot decode: reported as unsupported rather than ignored.
UNSUPPORTED_EXTENSIONS = (".m4a", ".aac", ".wma", ".mp4", ".ape", ".alac", ".mka", ".webm")
MIN_SAMPLE_RATE = 4000  # anything lower is reported as a broken header, not resampled


class BadAudio(Exception):
    """A file that cannot be used; `reason` is a short category for the skip report."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    frames: int
    sample_rate: int
    channels: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def is_remote(path: str) -> bool:
    return "://" in str(path)


def _soundfile(path: str) -> tuple[sf.SoundFile, object]:
    """(SoundFile, remote file handle or None). Remote paths are opened as seekable
    `etils.epath` file objects, so reading a window fetches that window, not the whole file."""
    if not is_remote(path):
        return sf.SoundFile(path), None
    from etils import epath

    handle = epath.Path(path).open("rb")
    try:
        return sf.SoundFile(handle), handle
    except BaseException:
        handle.close()
        raise


@contextlib.contextmanager
def _open(path: str) -> Iterator[sf.SoundFile]:
    """A `SoundFile` for `path`, mapping every failure to `BadAudio`."""
    try:
        f, handle = _soundfile(path)
    except PermissionError as e:
        raise BadAudio("unreadable (permission denied)", str(e)) from None
    except sf.LibsndfileError as e:
        msg = str(e)
        if os.path.exists(path) and os.path.getsize(path) == 0:
            raise BadAudio("empty file (0 bytes)") from None
        if not is_remote(path) and not os.access(path, os.R_OK):
            raise BadAudio("unreadable (permission denied)", msg) from None
        if "format" in msg.lower() or "recogni" in msg.lower():
            raise BadAudio("corrupt or unsupported format", msg) from None
        raise BadAudio("corrupt", msg) from None
    except (OSError, RuntimeError, ValueError) as e:
        raise BadAudio("unreadable", f"{type(e).__name__}: {e}") from None
    try:
        with f:
            yield f
    finally:
        if handle is not None:
            handle.close()


def probe(path: str) -> AudioInfo:
    """Header facts of `path` (no decoding); raises `BadAudio` for unusable files."""
    with _open(path) as f:
        info = AudioInfo(frames=int(f.frames), sample_rate=int(f.samplerate), channels=f.channels)
    if info.sample_rate < MIN_SAMPLE_RATE:
        raise BadAudio("implausible sample rate", f"{info.sample_rate} Hz")
    if info.frames <= 0:
        raise BadAudio("no audio frames (zero length)")
    return info


def convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """``[T, C]`` (or ``[T]``) -> ``[T, channels]``: mix down by averaging, or duplicate mono
    (`jax_codec.stereo.match_channels`)."""
    if x.ndim == 1:
        x = x[:, None]
    return match_channels(x, channels)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling with soxr (HQ); `x` is ``[T, C]`` float32."""
    if rate_in == rate_out or x.shape[0] == 0:
        return x
    return soxr.resample(x, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


# Output samples decoded on each side of a window before resampling, so the resampler's edge
# transient falls outside the returned samples.
_RESAMPLE_MARGIN = 256


def read_window(
    path: str, start: int, length: int, sample_rate: int, channels: int, info: AudioInfo | None
) -> np.ndarray:
    """Samples ``[start, start + length)`` of `path`, counted at `sample_rate`.

    Returns float32 ``[n, channels]`` with ``n <= length`` (shorter at the end of the file).
    Only the needed part of the file is decoded. Raises `BadAudio`.
    """
    with _open(path) as f:
        rate = int(f.samplerate)
        total = int(f.frames)
        if info is not None and (rate != info.sample_rate or total != info.frames):
            raise BadAudio("changed since indexing", f"{path}: delete the data index to rescan")
        try:
            if rate == sample_rate:
                f.seek(min(start, total))
                x = f.read(length, dtype="float32", always_2d=True)
            else:
                # Start the decoded span on a sample that falls exactly on the output grid
                # (a multiple of rate/gcd), `_RESAMPLE_MARGIN` output samples early, so the
                # window is the same samples as in the whole resampled file.
                g = math.gcd(rate, sample_rate)
                step_in, step_out = rate // g, sample_rate // g
                blocks = max(0, start - _RESAMPLE_MARGIN) // step_out
                lo, lo_out = blocks * step_in, blocks * step_out
                end_out = min(start + length, (total * sample_rate) // rate)
                n_src = -(-(end_out + _RESAMPLE_MARGIN - lo_out) * rate // sample_rate)
                f.seek(min(lo, total))
                src = f.read(n_src, dtype="float32", always_2d=True)
                y = resample(src, rate, sample_rate)
                x = y[start - lo_out : end_out - lo_out]
        except sf.LibsndfileError as e:
            raise BadAudio("corrupt (decoding failed)", str(e)) from None
        except (RuntimeError, ValueError, OSError) as e:
            raise BadAudio("corrupt (decoding failed)", f"{type(e).__name__}: {e}") from None
    return convert_channels(x, channels)


def read_file(path: str, sample_rate: int, channels: int) -> np.ndarray:
    """The whole file at `sample_rate` with `channels`: float32 ``[T, channels]``."""
    info = probe(path)
    n = int(np.ceil(info.frames * sample_rate / info.sample_rate))
    return read_window(path, 0, n, sample_rate, channels, info)


def scan_content(path: str, block_frames: int = 1 << 18) -> tuple[float, float, bool]:
    """(peak, rms, finite) of the whole file, decoded in blocks (bounded memory)."""
    peak, sumsq, n, finite = 0.0, 0.0, 0, True
    with _open(path) as f:
        try:
            for block in f.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                ok = np.isfinite(block)
                if not ok.all():
                    finite = False
                    block = np.where(ok, block, 0.0)
                peak = max(peak, float(np.abs(block).max(initial=0.0)))
                sumsq += float(np.square(block, dtype=np.float64).sum())
                n += block.size
        except sf.LibsndfileError as e:
            raise BadAudio("corrupt (decoding failed)", str(e)) from None
        except (RuntimeError, ValueError, OSError) as e:
            raise BadAudio("corrupt (decoding failed)", f"{type(e).__name__}: {e}") from None
    if n == 0:
        raise BadAudio("no audio frames (zero length)")
    return peak, float(np.sqrt(sumsq / n)), finite


def db(x: float) -> float:
    return 20.0 * np.log10(max(x, 1e-10))
