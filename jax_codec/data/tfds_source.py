"""`tfds:NAME/SPLIT[:FEATURE]`: a TensorFlow Datasets split as a `Clips` source.

The spec grammar is ``NAME[/CONFIG][:VERSION]/SPLIT[:FEATURE]``:

* ``NAME[/CONFIG][:VERSION]`` is the dataset as `tfds.builder` takes it (``nsynth``,
  ``nsynth/gansynth_subset``, ``nsynth/full:2.3.3``). A VERSION is digits and dots.
* ``SPLIT`` is a TFDS split, slicing included (``train``, ``train[:90%]``, ``train+test``).
* ``FEATURE`` names the audio feature, nested ones with ``/`` (``audio``, ``meta/stereo``);
  without it the dataset's only `tfds.features.Audio` feature is used.

So ``nsynth/train:audio`` is dataset ``nsynth``, split ``train``, feature ``audio``, and
``nsynth/gansynth_subset/train`` is config ``gansynth_subset`` of ``nsynth``, split ``train``.

Design choices:

* Random access without tf.data: the split is opened as `builder.as_data_source(split)` over
  ArrayRecord files (what ``tfds.data_source(..., download=False)`` does, in two steps so that a
  dataset that is missing, not prepared, or prepared in a format without random access each get
  their own actionable message). Nothing is ever downloaded or built here.
* Samples: int8/16/32 are scaled by their full range, int64 by 2**15 (TFDS's default Audio dtype
  is int64 holding 16-bit samples), floats are kept as they are (NaN/inf included: the pipeline
  rejects such crops). Audio stored as encoded files (``Audio(lazy_decode=True)``) is decoded
  with soundfile at the file's own rate. A record that cannot be read raises `BadAudio`.
* Sample rate: the feature's declared ``sample_rate`` (or the `source_sample_rate` argument);
  a dataset that declares none is refused rather than guessed.
* A record holds its whole clip, so `read` decodes the example, mixes channels, resamples it
  whole and slices the window: the window is exactly those samples of the resampled clip. The
  last clip read is kept, so retries on the same clip do not decode it again.
* ``frames(i)``: TFDS stores no per-example length. If the feature's time dimension is fixed,
  that is every clip's length. Otherwise up to `scan_limit` examples (all of them for splits
  that small, else evenly spaced ones) are decoded once at start: they get their lengths, and
  unreadable or empty ones are skipped; the others get the median scanned length, i.e. equal
  sampling weight. Lengths never change after start, because crops must depend only on (seed,
  index) for a resumed run to see the same batches: an unscanned clip longer than the median is
  cropped within its first median-length frames, and a window past the end of a shorter one is
  returned short or empty (the pipeline pads or rejects it), never an error. Raise `scan_limit`
  for exact lengths of bigger splits, at the cost of decoding that many examples at start.
"""

from __future__ import annotations

import io
import logging
import re
import time

import numpy as np
import soundfile as sf

from jax_codec.data import audio
from jax_codec.data.audio import BadAudio
from jax_codec.data.sources import Clips, SkipReport

SPEC_GRAMMAR = "NAME[/CONFIG][:VERSION]/SPLIT[:FEATURE]"
TF_MISSING = (
    "the tfds source needs TensorFlow for this dataset's audio feature: "
    "pip install -e '.[tf]' (or pip install tensorflow-cpu)"
)
DEFAULT_SCAN_LIMIT = 1000

_SPEC = re.compile(
    r"""
    (?P<name>\w+ (?:/[^/:\[\]\s]+)? (?::[0-9][0-9.]*)?)   # NAME[/CONFIG][:VERSION]
    /(?P<split>(?:[^/:\[\]\s]|\[[^\]/]*\])+)                # SPLIT, with [slicing]
    (?::(?P<feature>[^:\s]+))?                              # :FEATURE (nested: a/b)
    """,
    re.VERBOSE,
)
# Full-scale value of each integer sample type; int64 is TFDS's default for 16-bit audio.
_INT_SCALE = {
    np.dtype(np.int8): 2.0**7,
    np.dtype(np.int16): 2.0**15,
    np.dtype(np.int32): 2.0**31,
    np.dtype(np.int64): 2.0**15,
}


def parse_tfds_spec(spec: str) -> tuple[str, str, str | None]:
    """``NAME[/CONFIG][:VERSION]/SPLIT[:FEATURE]`` -> ``(name, split, feature or None)``.

    `name` keeps the config and version, as `tfds.builder` takes them. Raises `ValueError`.
    """
    m = _SPEC.fullmatch(spec.strip())
    if not m:
        raise ValueError(
            f"bad tfds source {spec!r}: expected tfds:{SPEC_GRAMMAR}, e.g. tfds:nsynth/train:audio "
            "or tfds:nsynth/gansynth_subset/train[:90%]"
        )
    return m["name"], m["split"], m["feature"]


def needs_tensorflow(error: BaseException) -> bool:
    """Whether `error` (or one it was raised from) is TensorFlow failing to import."""
    e: BaseException | None = error
    for _ in range(8):  # tfds re-raises with a prefix; the original is the cause
        if e is None:
            break
        if isinstance(e, ModuleNotFoundError) and (
            (e.name or "").partition(".")[0] == "tensorflow"
            or "No module named 'tensorflow" in str(e)
        ):
            return True
        e = e.__cause__ or e.__context__
    return False


def _open_split(name: str, split: str, data_dir: str | None):
    """``(data source, DatasetInfo)`` of a prepared split, with one-line errors."""
    import tensorflow_datasets as tfds

    where = data_dir or "TFDS's default data_dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"
    build = (
        f"prepare it with `tfds build {name.split(':')[0]} --file_format=array_record"
        + (f" --data_dir={data_dir}`" if data_dir else "`")
        + " or set data.tfds_data_dir to where it is prepared"
    )
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        raise FileNotFoundError(f"TFDS dataset {name!r} not found in {where}: {build}") from None
    if not builder.is_prepared():
        raise FileNotFoundError(f"TFDS dataset {name!r} is not prepared in {where}: {build}")
    info = builder.info
    formats = info.available_file_formats()
    if not formats & tfds.core.FileFormat.with_random_access():
        raise FileNotFoundError(
            f"TFDS dataset {name!r} in {where} is prepared as "
            f"{', '.join(sorted(f.value for f in formats)) or 'an unknown file format'}, but the "
            f"tfds source needs random access (ArrayRecord): {build}"
        )
    try:
        return builder.as_data_source(split=split), info
    except (ValueError, KeyError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"bad split {split!r} for TFDS dataset {name!r}: {reason} "
            f"(its splits: {', '.join(sorted(info.splits))})"
        ) from None


def _leaves(features, prefix: str = "") -> dict:
    """Every feature of a (nested) FeaturesDict by path (``meta/stereo``), sorted by path."""
    import tensorflow_datasets as tfds

    out = {}
    for key, f in features.items():
        if isinstance(f, tfds.features.FeaturesDict):
            out.update(_leaves(f, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = f
    return dict(sorted(out.items()))


def find_audio_feature(features, wanted: str | None, dataset: str) -> tuple[str, object]:
    """``(path, Audio feature)``: `wanted`, or the only Audio feature. Raises `ValueError`."""
    import tensorflow_datasets as tfds

    leaves = _leaves(features)
    found = {k: f for k, f in leaves.items() if isinstance(f, tfds.features.Audio)}
    listing = ", ".join(f"{k} ({type(f).__name__})" for k, f in leaves.items())
    if wanted is not None:
        if wanted not in leaves:
            raise ValueError(
                f"TFDS dataset {dataset!r} has no feature {wanted!r}; its features: {listing}"
            )
        if wanted not in found:
            kind = type(leaves[wanted]).__name__
            raise ValueError(
                f"feature {wanted!r} of TFDS dataset {dataset!r} is a {kind}, not Audio; "
                f"its features: {listing}"
            )
        return wanted, found[wanted]
    if len(found) == 1:
        return next(iter(found.items()))
    if not found:
        raise ValueError(f"TFDS dataset {dataset!r} has no Audio feature; its features: {listing}")
    raise ValueError(
        f"TFDS dataset {dataset!r} has several Audio features ({', '.join(found)}): "
        f"name one, e.g. tfds:{dataset}/SPLIT:{next(iter(found))}"
    )


def to_float(x: np.ndarray) -> np.ndarray:
    """Samples as float32 ``[T, C]`` in [-1, 1) (see the module docstring for the scaling)."""
    if x.ndim not in (1, 2):
        raise BadAudio("unexpected audio shape", str(x.shape))
    if x.ndim == 1:
        x = x[:, None]
    if x.dtype.kind == "f":
        return x.astype(np.float32, copy=False)
    scale = _INT_SCALE.get(x.dtype)
    if scale is None:
        raise BadAudio("unsupported sample type", str(x.dtype))
    return x.astype(np.float32) / np.float32(scale)


def _out_frames(n: int, rate: int, sample_rate: int) -> int:
    """About the length of `n` samples resampled from `rate` to `sample_rate`."""
    return (n * sample_rate + rate // 2) // rate


class TfdsClips(Clips):
    """`tfds:SPEC`: every example of a prepared TFDS split, one clip per example.

    Args:
      spec: ``NAME[/CONFIG][:VERSION]/SPLIT[:FEATURE]`` (see `parse_tfds_spec`).
      sample_rate, channels: what `read` returns (soxr-resampled, mixed down or duplicated).
      data_dir: TFDS data_dir (None: TFDS's default).
      source_sample_rate: the rate of the stored audio, overriding the feature's (needed when
        the dataset declares none).
      scan_limit: at most this many examples are decoded at start to learn clip lengths.
    """

    def __init__(
        self,
        spec: str,
        sample_rate: int,
        channels: int,
        data_dir: str | None = None,
        source_sample_rate: int | None = None,
        scan_limit: int = DEFAULT_SCAN_LIMIT,
    ):
        dataset, split, wanted = parse_tfds_spec(spec)
        self.name = f"tfds:{spec}"
        self.sample_rate = sample_rate
        self.channels = channels
        try:
            self._ds, info = _open_split(dataset, split, data_dir)
            self._key, feature = find_audio_feature(info.features, wanted, dataset)
        except Exception as e:
            if needs_tensorflow(e):
                raise RuntimeError(TF_MISSING) from None
            raise
        self.source_rate = int(source_sample_rate or feature.sample_rate or 0)
        if self.source_rate <= 0:
            raise ValueError(
                f"TFDS dataset {dataset!r} declares no sample rate for its audio feature "
                f"{self._key!r}, so the tfds source cannot use it (TfdsClips takes "
                "source_sample_rate=HZ to say what it is)"
            )
        self._last: tuple[int, np.ndarray] | None = None
        report = SkipReport(source=self.name)
        shape = tuple(feature.shape)
        if shape and shape[0] is not None:
            self._ids = np.arange(len(self._ds), dtype=np.int64)
            length = _out_frames(shape[0], self.source_rate, sample_rate)
            self._frames = np.full(len(self._ids), length, np.int64)
        else:
            self._scan(scan_limit, report)
        if self.source_rate != sample_rate:
            report.converted[f"resampled ({self.source_rate} Hz -> {sample_rate} Hz)"] = len(self)
        source_channels = shape[1] if len(shape) == 2 else 1
        if source_channels is not None and source_channels != channels:
            report.converted[f"channel-converted ({source_channels} -> {channels})"] = len(self)
        report.used = len(self)
        report.seconds = float(self._frames.sum()) / sample_rate
        self.report = report

    def _scan(self, limit: int, report: SkipReport) -> None:
        """Learn lengths from (up to `limit`) decoded examples; see the module docstring."""
        t0 = time.perf_counter()
        n = len(self._ds)
        scanned = np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(np.int64))
        known: dict[int, int] = {}
        usable = np.ones(n, bool)
        for j in scanned.tolist():
            try:
                x, rate = self._load(j)
            except BadAudio as e:
                report.skip(e.reason, f"example {j}")
                usable[j] = False
                continue
            if x.shape[0] == 0:
                report.skip("no audio frames (zero length)", f"example {j}")
                usable[j] = False
                continue
            known[j] = _out_frames(x.shape[0], rate, self.sample_rate)
        self._ids = np.flatnonzero(usable)
        estimate = int(np.median(list(known.values()))) if known else 0
        self._frames = np.full(len(self._ids), estimate, np.int64)
        where = np.searchsorted(self._ids, np.fromiter(known, np.int64, len(known)))
        self._frames[where] = np.fromiter(known.values(), np.int64, len(known))
        if len(known) < len(self._ids):
            report.converted[
                f"clips with estimated length (median of {len(known)} scanned examples)"
            ] = len(self._ids) - len(known)
        logging.info(
            "%s: scanned %d of %d examples for their lengths in %.1f s",
            self.name,
            len(scanned),
            n,
            time.perf_counter() - t0,
        )

    def _load(self, j: int) -> tuple[np.ndarray, int]:
        """Example `j`'s audio as float32 ``[T, C]`` and its sample rate; raises `BadAudio`."""
        try:
            value = self._ds[j]
            for part in self._key.split("/"):
                value = value[part]
        except Exception as e:  # noqa: BLE001 - any failure to read a record is a bad clip
            raise BadAudio("unreadable TFDS record", f"{type(e).__name__}: {e}"[:200]) from None
        if isinstance(value, np.ndarray) and value.dtype.kind in "SO" and value.size == 1:
            value = value.item()
        if isinstance(value, bytes):  # Audio(lazy_decode=True): the encoded file
            try:
                x, rate = sf.read(io.BytesIO(value), dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, ValueError) as e:
                raise BadAudio("corrupt (decoding failed)", str(e)) from None
            return x, int(rate)
        return to_float(np.asarray(value)), self.source_rate

    def __len__(self) -> int:
        return len(self._ids)

    def frames(self, i: int) -> int:
        return int(self._frames[i])

    def all_frames(self) -> np.ndarray:
        return self._frames

    def read(self, i: int, start: int, length: int) -> np.ndarray:
        last = self._last
        if last is not None and last[0] == i:
            y = last[1]
        else:
            x, rate = self._load(int(self._ids[i]))
            y = audio.resample(audio.convert_channels(x, self.channels), rate, self.sample_rate)
            self._last = (i, y)
        return y[start : start + length]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_last": None}
