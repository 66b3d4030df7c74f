"""Training logs: TensorBoard events, a JSONL metrics file, a progress bar, spectrogram images.

Only process 0 writes (``enabled``); on other processes every writer is a no-op, so the loop
calls them unconditionally. tensorboardX, tqdm and librosa are imported on first use.
"""

from __future__ import annotations

import json
import math
import os
import struct
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging as _log


class MetricWriter:
    """Writes scalars, audio and images to TensorBoard, and scalars to ``metrics.jsonl``.

    Event files go to ``workdir/tensorboard``; ``workdir/metrics.jsonl`` gets one JSON line
    per `write_scalars` call, ``{"step": ..., "<key>": value, ...}``. The file is appended to,
    so a resumed run keeps the old lines; steps logged after the restored checkpoint appear
    twice, and readers should keep the last line per step. Non-finite values are written as
    the strings "NaN", "Infinity", "-Infinity" (``float()`` parses them back).
    """

    def __init__(self, workdir: str | os.PathLike[str], *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.logdir = os.path.join(os.fspath(workdir), "tensorboard")
        self.metrics_path = os.path.join(os.fspath(workdir), "metrics.jsonl")
        self._tb: Any = None
        self._jsonl: Any = None
        if enabled:
            from tensorboardX import FileWriter

            os.makedirs(self.logdir, exist_ok=True)
            # FileWriter + summary protos rather than SummaryWriter, see write_images.
            self._tb = FileWriter(self.logdir)
            self._jsonl = open(self.metrics_path, "a", encoding="utf-8")

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        """Logs scalar metrics (Python/numpy/JAX scalars or size-1 arrays)."""
        if not self.enabled:
            return
        step = int(step)
        values = {}
        for key, value in scalars.items():
            number = _scalar_or_none(value)
            if number is None:
                # A malformed metric should not end a long run.
                _log.warning("write_scalars: %s is not a scalar (%r); skipped", key, value)
            else:
                values[key] = number
        from tensorboardX import summary

        for key, value in values.items():
            self._tb.add_summary(summary.scalar(key, value), step)
        record = {"step": step, **{key: _json_float(value) for key, value in values.items()}}
        # allow_nan=False: the file stays strict JSON (non-finite values are strings by now).
        self._jsonl.write(json.dumps(record, allow_nan=False) + "\n")
        # A crash or preemption must not lose the lines written so far.
        self._jsonl.flush()

    def write_audio(self, step: int, audios: Mapping[str, np.ndarray], sample_rate: int) -> None:
        """Logs audio clips, each ``[T]`` or ``[T, C]`` with C in {1, 2}, clipped to [-1, 1]."""
        if not self.enabled:
            return
        from tensorboardX import summary

        for key, audio in audios.items():
            audio = np.clip(np.nan_to_num(np.asarray(audio, dtype=np.float32)), -1.0, 1.0)
            self._tb.add_summary(summary.audio(key, audio, sample_rate=sample_rate), int(step))

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """Logs images: ``[H, W, 3]`` uint8, or ``[H, W]`` float (min-max scaled to grey)."""
        if not self.enabled:
            return
        # PNG-encoded here: tensorboardX's add_image would need Pillow, not a dependency.
        from tensorboardX.proto.summary_pb2 import Summary

        for key, image in images.items():
            image = _to_uint8(np.asarray(image))
            if image.ndim == 2:
                image = image[:, :, None]
            height, width, channels = image.shape
            proto = Summary.Image(
                height=height,
                width=width,
                colorspace=channels,
                encoded_image_string=encode_png(image),
            )
            self._tb.add_summary(Summary(value=[Summary.Value(tag=key, image=proto)]), int(step))

    def write_text(self, step: int, key: str, text: str) -> None:
        """Logs a text note (shown in TensorBoard's Text tab, as preformatted markdown)."""
        if not self.enabled:
            return
        from tensorboardX import summary

        self._tb.add_summary(summary.text(key, "```\n" + text + "\n```"), int(step))

    def flush(self) -> None:
        """Pushes buffered events and lines to disk."""
        if not self.enabled:
            return
        self._tb.flush()
        self._jsonl.flush()

    def close(self) -> None:
        """Flushes and closes the files; the writer is disabled afterwards."""
        if not self.enabled:
            return
        self._tb.close()
        self._jsonl.close()
        self.enabled = False

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProgressBar:
    """A tqdm bar with steps/s, audio-seconds/s, a few losses and the ETA.

    Call `update` every step or only on log steps; it fetches nothing from the device
    itself, only the metric values it is given.

    Args:
      total_steps: the step the run ends at.
      initial_step: the step it starts from (after a resume).
      audio_seconds_per_step: seconds of audio in one global batch, for audio-seconds/s.
      enabled: show the bar; default: only on process 0.
      show: metric keys to display; default: the first four ``loss/*`` keys given.
    """

    def __init__(
        self,
        total_steps: int,
        initial_step: int = 0,
        audio_seconds_per_step: float = 0.0,
        *,
        enabled: bool | None = None,
        show: Sequence[str] | None = None,
    ) -> None:
        if enabled is None:
            import jax

            enabled = jax.process_index() == 0
        self.enabled = enabled
        self.audio_seconds_per_step = float(audio_seconds_per_step)
        self.show = tuple(show) if show is not None else None
        self.rate_window_s = 1.0
        self._last_step = int(initial_step)
        self._last_time = time.perf_counter()
        self._steps_per_s: float | None = None
        self._bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=int(total_steps),
                initial=int(initial_step),
                unit="step",
                dynamic_ncols=True,
                smoothing=0.1,
            )

    def update(self, step: int, metrics: Mapping[str, Any] | None = None) -> None:
        """Moves the bar to ``step`` and shows rates since the last call plus a few metrics."""
        if not self.enabled:
            return
        step = int(step)
        now = time.perf_counter()
        elapsed = now - self._last_time
        # Rates over windows of at least a second: per-step timings of async dispatch jitter.
        if step > self._last_step and elapsed >= self.rate_window_s:
            self._steps_per_s = (step - self._last_step) / elapsed
            self._last_step, self._last_time = step, now
        postfix: dict[str, str] = {}
        for key in self._keys(metrics or {}):
            value = _scalar_or_none(metrics[key])
            postfix[key.removeprefix("loss/")] = "?" if value is None else f"{value:.4g}"
        if self._steps_per_s is not None:
            postfix["steps/s"] = f"{self._steps_per_s:.3g}"
            if self.audio_seconds_per_step:
                audio_rate = self._steps_per_s * self.audio_seconds_per_step
                postfix["audio s/s"] = f"{audio_rate:.3g}"
        self._bar.set_postfix(postfix, refresh=False)
        # tqdm's own rate and ETA follow from n; move to the absolute step.
        self._bar.update(step - self._bar.n)

    def _keys(self, metrics: Mapping[str, Any]) -> list[str]:
        if self.show is not None:
            return [key for key in self.show if key in metrics]
        return [key for key in metrics if key.startswith("loss/")][:4]

    def write(self, message: str) -> None:
        """Prints a line without breaking the bar."""
        if self.enabled:
            self._bar.write(message)

    def close(self) -> None:
        """Closes the bar."""
        if self.enabled:
            self._bar.close()
            self.enabled = False


class DivergenceWatch:
    """Warns when the logged scalars show a run starting to diverge, once per sign.

    Two signs that came before codebook collapse in our runs and never in a healthy one
    (docs/training.md, "When a run diverges"): the generator's parameter norm
    (`norm/params_g`) growing `norm_ratio` times within `window` steps, and the commitment
    loss (`vq/commitment`) reaching `commitment_ratio` times its median over the last 50 logs.
    The norm sign is not checked in the first `warmup` steps, where a healthy run's codebooks
    can double the norm as they take on the encoder's scale.
    `update(step, scalars)` returns the warnings for this log step (usually none).
    """

    def __init__(
        self,
        window: int = 50,
        norm_ratio: float = 2.0,
        commitment_ratio: float = 100.0,
        warmup: int = 200,
    ):
        self.window, self.norm_ratio, self.commitment_ratio = window, norm_ratio, commitment_ratio
        self.warmup = warmup
        self.norms: list[tuple[int, float]] = []
        self.commitments: list[float] = []
        self.warned: set[str] = set()

    def update(self, step: int, scalars: Mapping[str, Any]) -> list[str]:
        out = []
        norm = _scalar_or_none(scalars.get("norm/params_g"))
        if norm is not None and math.isfinite(norm):
            self.norms = [(s, v) for s, v in self.norms if s >= step - self.window]
            if self.norms and step > self.warmup and "norm" not in self.warned:
                s0, v0 = self.norms[0]
                if v0 > 0 and norm >= self.norm_ratio * v0:
                    self.warned.add("norm")
                    out.append(
                        f"step {step}: the generator's parameter norm grew {v0:.4g} -> "
                        f"{norm:.4g} in {step - s0} steps"
                    )
            self.norms.append((step, norm))
        commit = _scalar_or_none(scalars.get("vq/commitment"))
        if commit is not None and math.isfinite(commit):
            if len(self.commitments) >= 10 and "commitment" not in self.warned:
                median = float(np.median(self.commitments))
                if median > 0 and commit >= self.commitment_ratio * median:
                    self.warned.add("commitment")
                    out.append(
                        f"step {step}: the commitment loss is {commit:.4g}, "
                        f"{commit / median:.0f}x its recent median ({median:.3g})"
                    )
            self.commitments = (self.commitments + [commit])[-50:]
        return [
            m + ": the run may be diverging (codebook collapse followed where this was seen). "
            "Keep its checkpoints from before this step; see docs/training.md, 'When a run "
            "diverges'."
            for m in out
        ]


def spectrogram_image(
    audio: np.ndarray,
    sample_rate: int,
    *,
    n_fft: int = 2048,
    hop_length: int = 512,
    n_mels: int = 128,
    top_db: float = 80.0,
) -> np.ndarray:
    """A log-mel spectrogram as an RGB image, low frequencies at the bottom.

    Args:
      audio: ``[T]`` or ``[T, C]`` (channels are averaged).
      sample_rate: in Hz.
    Returns:
      ``[n_mels, frames, 3]`` uint8, magma-like colours over ``top_db`` dB below the peak.
    """
    import librosa

    audio = np.nan_to_num(np.asarray(audio, dtype=np.float32))
    if audio.ndim == 2:
        audio = audio.mean(axis=-1)
    if audio.ndim != 1:
        raise ValueError(f"audio must be [T] or [T, C], got shape {audio.shape}")
    power = librosa.feature.melspectrogram(
        y=audio, sr=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels
    )
    if power.max() <= 1e-10:
        # Silence: power_to_db(ref=max) would map it to the peak colour.
        level = np.zeros_like(power)
    else:
        db = librosa.power_to_db(power, ref=np.max, top_db=top_db)
        level = np.clip(1.0 + db / top_db, 0.0, 1.0)
    # Row 0 is the top of an image; mel bin 0 (lowest frequency) goes to the bottom.
    return _colormap(level[::-1])


# Anchor colours of matplotlib's "magma" (dark purple -> orange -> pale yellow), so quiet is
# dark and loud is bright without depending on matplotlib.
_MAGMA = np.array(
    [
        [0, 0, 4],
        [28, 16, 68],
        [79, 18, 123],
        [129, 37, 129],
        [181, 54, 122],
        [229, 80, 100],
        [251, 135, 97],
        [254, 194, 135],
        [252, 253, 191],
    ],
    dtype=np.float64,
)


def _colormap(level: np.ndarray) -> np.ndarray:
    """Maps ``[H, W]`` values in [0, 1] to ``[H, W, 3]`` uint8 colours."""
    anchors = np.linspace(0.0, 1.0, len(_MAGMA))
    rgb = np.stack([np.interp(level, anchors, _MAGMA[:, c]) for c in range(3)], axis=-1)
    return np.round(rgb).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a ``[H, W, C]`` uint8 image, C in {1, 3, 4} (zlib only, no Pillow)."""
    height, width, channels = image.shape
    color_type = {1: 0, 3: 2, 4: 6}[channels]  # grey, RGB, RGBA

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    # Each scanline starts with filter type 0 (none).
    rows = np.concatenate(
        [np.zeros((height, 1), np.uint8), np.ascontiguousarray(image).reshape(height, -1)], axis=1
    )
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def _scalar_or_none(value: Any) -> float | None:
    """A scalar metric as a Python float (pulls JAX arrays to the host), else None."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return float(array.reshape(())) if array.size == 1 else None


def _json_float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 images pass through; float images are min-max scaled (non-finite become 0)."""
    if image.dtype == np.uint8:
        return image
    image = np.nan_to_num(image.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(image.min()), float(image.max())) if image.size else (0.0, 0.0)
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
    return np.round(scaled * 255.0).astype(np.uint8)
