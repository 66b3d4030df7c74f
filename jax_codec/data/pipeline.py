"""Input pipeline: sources -> per-host shard -> shuffle -> crop -> augment -> batch -> global array.

Built with grain, and deterministic given the seed:

1. Each source (`data.source`, or the weighted mixture `data.sources` / `data.weights`) is a
   `Clips` list. Clips are cut into *slots* of one training segment (a clip of 60 s has
   ``60 / segment`` slots, a clip shorter than a segment has one), so long songs are drawn in
   proportion to their length, not once per file.
2. The slot index is sharded with `grain.sharding.ShardByJaxProcess`, so each host reads only
   its own part (files: by clip; synthetic music: by batch row, so that the global batches do
   not depend on the number of hosts, see `build_train_data`); then shuffled (a new permutation
   every epoch) and repeated forever; sources are mixed with `MapDataset.mix` by weight.
3. `CropReader` turns slot ``k`` into audio: a random window of the segment length inside the
   clip (an RNG seeded by (seed, k)), decoding only that window. Crops that are silent (RMS below
   `data.silence_threshold_db`) or hold NaN/inf are rejected and redrawn; a clip that fails to
   read is replaced by another slot of the same shard. Every rejection is counted (`DataStats`)
   and logged, never silent, and never fatal unless nothing usable remains.
4. Level normalization to `data.normalize_db` (`jax_codec.levels`, the level `compress`
   feeds the model at), augmentation (`jax_codec.data.augment`), batching to this host's
   share of the global batch, and prefetching in `data.num_threads` threads. For a mono
   model, stereo data (`data.channels = 2`) gives each channel its own batch row; a joint-stereo model
   (`model.channels = 2`) reads stereo pairs and keeps them together, `[B, T, 2]` (mono files
   duplicated, more channels mixed down: `audio.convert_channels`). See `channel_layout`.
5. The loop assembles the per-host batches into one global `jax.Array` on the mesh.

The iterator is a grain `DatasetIterator`: its state (the next element index) is saved with each
checkpoint, so a resumed run continues with exactly the batches it would have seen.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import threading
from typing import Any

import grain
import jax
import ml_collections
import numpy as np

from jax_codec import levels
from jax_codec.config import ConfigError
from jax_codec.data import audio, augment
from jax_codec.data.audio import BadAudio
from jax_codec.data.sources import Clips, FolderClips, SkipReport, SyntheticClips

SOURCE_KINDS = ("synthetic", "folder:PATH", "prepared:PATH", "tfds:NAME/SPLIT[:FEATURE]")
_FALLBACK_STRIDE = 1_000_003  # slots tried after a bad clip: far apart in the shuffled order
_MAX_FALLBACKS = 64


class DataError(RuntimeError):
    """No usable audio could be found (every draw was bad): stop with a clear message."""


@dataclasses.dataclass
class DataStats:
    """Thread-safe counters of rejected crops and failed reads, for the training logs."""

    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    warned: set = dataclasses.field(default_factory=set)

    def add(self, key: str, what: str = "") -> None:
        with self.lock:
            self.counts[key] += 1
            if what and key not in self.warned:  # first of each kind is a log warning
                self.warned.add(key)
                logging.warning(
                    "data: %s (%s); further ones are counted in data/%s", key, what, key
                )

    def snapshot(self) -> dict:
        with self.lock:
            return {f"data/{k}": float(v) for k, v in self.counts.items()}


# --------------------------------------------------------------------------- sources


def channel_layout(config: ml_collections.ConfigDict) -> tuple[int, int]:
    """(channels read from each clip, batch rows per clip).

    A mono model reads `data.channels` (1: mono mixdown; 2: stereo, each channel its own row,
    so `(2, 2)`); a joint-stereo model reads stereo pairs into one row each, `(2, 1)`.
    """
    if int(config.model.get("channels", 1)) == 2:
        return 2, 1
    channels = int(config.data.channels)
    if channels not in (1, 2):
        raise ConfigError(f"data.channels={channels}: use 1 (mono mixdown) or 2 (stereo)")
    return channels, channels


def make_clips(
    spec: str,
    config: ml_collections.ConfigDict,
    sample_rate: int,
    segment: int,
    seed: int,
    cache_dir: str | None = None,
) -> Clips:
    """The `Clips` named by one source spec (see `SOURCE_KINDS`)."""
    d = config.data
    channels = channel_layout(config)[0]
    kind, _, arg = spec.partition(":")
    try:
        if spec == "synthetic":
            return SyntheticClips(sample_rate, channels, segment, seed)
        if kind == "folder" and arg:
            return FolderClips(
                arg,
                sample_rate,
                channels,
                cache_dir=cache_dir,
                content_check=bool(d.content_check),
                silence_db=float(d.silence_threshold_db),
                workers=int(d.index_workers),
                write_cache=jax.process_index() == 0,
                min_frames=segment,
            )
        if kind == "prepared" and arg:
            from jax_codec.data.prepared import PreparedClips

            return PreparedClips(arg, sample_rate, channels)
        if kind == "tfds" and arg:
            from jax_codec.data.tfds_source import TfdsClips

            return TfdsClips(arg, sample_rate, channels, data_dir=d.tfds_data_dir or None)
    except (FileNotFoundError, ValueError, RuntimeError, ImportError) as e:
        raise ConfigError(f"data source {spec!r}: {e}") from None
    raise ConfigError(f"data.source={spec!r} is not a source; use one of {', '.join(SOURCE_KINDS)}")


def source_specs(config: ml_collections.ConfigDict) -> tuple[list[str], list[float]]:
    """(specs, weights) of the training data: `data.sources` if set, else `data.source`."""
    d = config.data
    specs = [str(s) for s in d.sources] if d.sources else [str(d.source)]
    weights = [float(w) for w in d.weights] if d.weights else [1.0] * len(specs)
    if len(weights) != len(specs):
        raise ConfigError(
            f"data.weights has {len(weights)} entries for {len(specs)} data.sources; "
            "give one weight per source (or none for equal weights)"
        )
    if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"data.weights={tuple(weights)} must be non-negative with a positive sum")
    return specs, weights


class SlotIndex(grain.sources.RandomAccessDataSource):
    """Slot ``k`` -> ``(source_id, clip)``: each clip has ``max(1, frames // segment)`` slots.

    `clip_ids` restricts the index to some clips (this host's shard).
    """

    def __init__(
        self, clips: Clips, segment: int, source_id: int, clip_ids: np.ndarray | None = None
    ):
        frames = np.asarray(clips.all_frames(), np.int64)
        self.clip_ids = np.arange(len(frames)) if clip_ids is None else np.asarray(clip_ids)
        if len(self.clip_ids) == 0:
            raise ConfigError(
                f"data source {clips.name} has no usable audio\n{clips.report.summary()}"
            )
        self.source_id = source_id
        self._ends = np.cumsum(np.maximum(1, frames[self.clip_ids] // segment))

    def __len__(self) -> int:
        return int(self._ends[-1])

    def __getitem__(self, k: int) -> tuple[int, int]:
        j = int(np.searchsorted(self._ends, int(k) % len(self), side="right"))
        return self.source_id, int(self.clip_ids[j])


def shard_clips(clips: Clips, shard: grain.sharding.ShardOptions) -> np.ndarray:
    """The clip ids this host reads: every `shard_count`-th clip, so hosts never share a file."""
    n = len(clips)
    if n and shard.shard_count > n:
        raise ConfigError(
            f"data source {clips.name} has {n} usable clips, fewer than the "
            f"{shard.shard_count} hosts reading it; every host needs at least one"
        )
    if shard.drop_remainder:
        n = n // shard.shard_count * shard.shard_count
    return np.arange(shard.shard_index, n, shard.shard_count)


# --------------------------------------------------------------------------- crops


def rms_db(x: np.ndarray) -> float:
    return audio.db(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))))


class CropReader:
    """``(index, (source, clip)) -> float32 [length, C]``: a usable random crop of the clip.

    Randomness comes only from ``(seed, index)``; retries and fallbacks are deterministic too.
    """

    def __init__(
        self,
        clips: list[Clips],
        slots: grain.MapDataset,
        length: int,
        seed: int,
        config: ml_collections.ConfigDict,
        stats: DataStats,
        augment_cfg: ml_collections.ConfigDict | None,
    ):
        self.clips = clips
        self.slots = slots
        self.length = length
        self.seed = seed
        self.silence_db = float(config.data.silence_threshold_db)
        self.tries = max(1, int(config.data.max_crop_tries))
        self.stats = stats
        self.augment_cfg = augment_cfg
        self.sample_rate = clips[0].sample_rate
        self.normalize_db = levels.target_db(config)

    def _try_clip(self, source: int, clip: int, rng: np.random.Generator) -> np.ndarray | None:
        clips = self.clips[source]
        n = clips.frames(clip)
        span = max(0, n - self.length)
        for _ in range(self.tries if span else 1):
            start = int(rng.integers(0, span + 1))
            try:
                x = clips.read(clip, start, self.length)
            except BadAudio as e:
                self.stats.add("read_errors", f"{clips.name} clip {clip}: {e}")
                return None
            if x.shape[0] < self.length:
                x = np.pad(x, ((0, self.length - x.shape[0]), (0, 0)))
            if not np.isfinite(x).all():
                self.stats.add("nonfinite_crops", f"{clips.name} clip {clip}")
                continue
            if rms_db(x) < self.silence_db:
                self.stats.add("silent_crops")
                continue
            return x.astype(np.float32, copy=False)
        return None

    def crop(self, index: int, slot: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        for attempt in range(_MAX_FALLBACKS):
            if attempt:
                self.stats.add("fallback_slots")
                slot = self.slots[index + attempt * _FALLBACK_STRIDE]
            x = self._try_clip(slot[0], slot[1], rng)
            if x is not None:
                return x
        raise DataError(
            f"no usable audio in {_MAX_FALLBACKS} clips around element {index}: every crop was "
            f"silent (below data.silence_threshold_db={self.silence_db:g}), non-finite or "
            f"unreadable ({dict(self.stats.counts)}). Check the data or lower the threshold."
        )

    def __call__(self, index: int, slot: tuple[int, int]) -> np.ndarray:
        rng = np.random.default_rng([self.seed, index])
        x = self.crop(index, slot, rng)
        if self.normalize_db is not None:
            x = levels.normalize(x, self.sample_rate, self.normalize_db, channels_last=True)[0]
        if self.augment_cfg is None:
            return x

        def other() -> np.ndarray:
            j = index + _FALLBACK_STRIDE // 2
            return self.crop(j, self.slots[j], np.random.default_rng([self.seed, j, 1]))

        return augment.augment(x, rng, self.augment_cfg, self.sample_rate, other)


def _to_rows(batch: np.ndarray) -> np.ndarray:
    """``[b, T, C]`` -> ``[b * C, T]``: each channel of a stereo clip is its own batch row."""
    b, t, c = batch.shape
    return np.ascontiguousarray(batch.transpose(0, 2, 1).reshape(b * c, t))


def _to_pairs(batch: np.ndarray) -> np.ndarray:
    """``[b, T, 2]`` kept as it is (a joint-stereo model's batch), contiguous."""
    return np.ascontiguousarray(batch)


# --------------------------------------------------------------------------- datasets


def per_process_batch_size(global_batch: int) -> int:
    n = jax.process_count()
    if global_batch % n:
        raise ConfigError(f"train.batch_size={global_batch} must be divisible by the {n} processes")
    return global_batch // n


@dataclasses.dataclass
class TrainData:
    """The training dataset plus what the loop logs about it."""

    dataset: grain.IterDataset
    slots: grain.MapDataset  # element k -> (source, clip) drawn for batch element k
    stats: DataStats
    reports: list[SkipReport]

    def summary(self) -> str:
        return "\n".join(r.summary() for r in self.reports)


class HostElements(grain.sources.RandomAccessDataSource):
    """Local element ``i`` -> ``(k, slots[k])``: this host's elements of each global batch.

    Global batch ``b`` holds elements ``b * per_batch ... (b + 1) * per_batch - 1`` of the one
    global stream ``slots``; this host reads only its ``mine`` positions of every batch.
    """

    def __init__(self, slots: grain.MapDataset, mine: np.ndarray, per_batch: int):
        self.slots = slots
        self.mine = np.asarray(mine, np.int64)
        self.per_batch = int(per_batch)

    def __len__(self) -> int:
        return len(self.slots) // self.per_batch * len(self.mine)

    def global_index(self, i: int) -> int:
        b, j = divmod(int(i), len(self.mine))
        return b * self.per_batch + int(self.mine[j])

    def __getitem__(self, i: int) -> tuple[int, tuple[int, int]]:
        k = self.global_index(i)
        return k, self.slots[k]


class _Read:
    """``(k, slot) -> reader(k, slot)`` (a class, not a lambda: grain may pickle it)."""

    def __init__(self, reader: CropReader):
        self.reader = reader

    def __call__(self, element: tuple[int, tuple[int, int]]) -> np.ndarray:
        return self.reader(*element)


def _second(element: tuple) -> Any:
    return element[1]


def host_elements(rows: np.ndarray, channels: int, global_rows: int) -> np.ndarray:
    """Batch rows of this host -> the positions of the clips they hold in a global batch."""
    rows = np.asarray(rows, np.int64)
    clips = rows[::channels] // channels
    if len(rows) % channels or not np.array_equal(
        rows, (clips[:, None] * channels + np.arange(channels)).reshape(-1)
    ):
        raise ConfigError(
            f"this host's batch rows {rows.tolist()} do not hold whole clips of {channels} "
            f"channel rows; use a train.batch_size ({global_rows}) with an even number of rows "
            "per device for stereo data"
        )
    return clips


def build_train_data(
    config: ml_collections.ConfigDict,
    sample_rate: int,
    segment: int,
    cache_dir: str | None = None,
    shard: grain.sharding.ShardOptions | None = None,
    rows: np.ndarray | None = None,
) -> TrainData:
    """This host's training batches ``[B_local, segment]`` (endless; ``[B_local, segment, 2]``
    for a joint-stereo model), with stats and reports.

    How hosts split the data (`shard`, default `ShardByJaxProcess`):

    - files (folder, prepared, tfds): by clip; each host reads only every `shard_count`-th
      clip, so hosts never open the same file. The stream depends on the number of hosts.
    - synthetic only: by batch row; all hosts draw from one global stream and host ``h``
      builds only its rows of each global batch (`rows`: the global batch rows it feeds, in
      order, from `sharding.process_rows`; default the ``h``-th contiguous block). The
      global batches are then the same for any number of hosts, row for row.
    """
    d = config.data
    seed = int(config.train.seed)
    # `channels`: batch rows per clip (2 when a mono model sees each stereo channel as a row).
    read_channels, channels = channel_layout(config)
    shard = shard or grain.sharding.ShardByJaxProcess(drop_remainder=True)
    batch = int(config.train.batch_size)
    n_rows = batch // shard.shard_count
    if batch % shard.shard_count or n_rows % channels:
        raise ConfigError(
            f"train.batch_size={batch} must split evenly over "
            f"{shard.shard_count} hosts and {channels} channel rows per clip"
        )
    if rows is None:
        rows = np.arange(shard.shard_index * n_rows, (shard.shard_index + 1) * n_rows)
    elif len(rows) != n_rows:
        raise ConfigError(
            f"this host feeds {len(rows)} rows of the global batch of {batch}, not "
            f"{n_rows} (= batch / {shard.shard_count} hosts): the mesh gives hosts unequal shares"
        )
    specs, weights = source_specs(config)
    by_row = all(spec == "synthetic" for spec in specs)
    clips, slot_sets = [], []
    for i, spec in enumerate(specs):
        c = make_clips(spec, config, sample_rate, segment, seed + i, cache_dir)
        clips.append(c)
        ids = None if by_row else shard_clips(c, shard)
        ds = grain.MapDataset.source(SlotIndex(c, segment, i, ids))
        slot_sets.append(ds.shuffle(seed=seed + 7919 * i).repeat())
    slots = slot_sets[0] if len(slot_sets) == 1 else grain.MapDataset.mix(slot_sets, weights)
    stats = DataStats()
    aug = d.augment if d.augment.enabled else None
    if aug is not None:
        problem = augment.check_config(aug)
        if problem:
            raise ConfigError(f"data.augment.{problem}")
    reader = CropReader(clips, slots, segment, seed, config, stats, aug)
    if by_row:
        mine = host_elements(rows, channels, batch)
        elements = grain.MapDataset.source(HostElements(slots, mine, batch // channels))
        ds, local_slots = elements.map(_Read(reader)), elements.map(_second)
    else:
        ds, local_slots = slots.map_with_index(reader), slots
    to_batch = _to_rows if channels == read_channels else _to_pairs
    ds = ds.batch(n_rows // channels, drop_remainder=True).map(to_batch)
    threads = int(d.num_threads)
    ds = ds.to_iter_dataset(
        grain.ReadOptions(
            num_threads=threads, prefetch_buffer_size=int(d.prefetch) if threads else 0
        )
    )
    return TrainData(ds, local_slots, stats, [c.report for c in clips])


def train_dataset(config: ml_collections.ConfigDict, sample_rate: int, segment: int, **kw):
    """`build_train_data(...).dataset`."""
    return build_train_data(config, sample_rate, segment, **kw).dataset


def eval_batch(
    config: ml_collections.ConfigDict,
    sample_rate: int,
    length: int,
    n: int,
    cache_dir: str | None = None,
) -> np.ndarray:
    """A fixed evaluation set ``[n, length]`` (``[n, length, 2]`` for a joint-stereo model),
    identical on every host, level-normalized as training crops are, never augmented.

    From `data.eval_source` when set (held-out audio); otherwise crops of the training sources
    drawn with a seed the training stream never uses.
    """
    d = config.data
    seed = 10_000 + int(config.train.seed)
    specs = [str(d.eval_source)] if d.eval_source else source_specs(config)[0]
    clips = [
        make_clips(s, config, sample_rate, length, seed + i, cache_dir) for i, s in enumerate(specs)
    ]
    sets = [
        grain.MapDataset.source(SlotIndex(c, length, i)).shuffle(seed=seed).repeat()
        for i, c in enumerate(clips)
    ]
    slots = sets[0] if len(sets) == 1 else grain.MapDataset.mix(sets)
    reader = CropReader(clips, slots, length, seed, config, DataStats(), None)
    read_channels, rows_per_clip = channel_layout(config)
    crops = np.stack([reader(i, slots[i]) for i in range(-(-n // rows_per_clip))])
    return (_to_rows(crops) if rows_per_clip == read_channels else _to_pairs(crops))[:n]


def make_global_batch(local: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """Per-process `[B_local, ...]` numpy -> global `[B, ...]` array laid out by `sharding`."""
    return jax.make_array_from_process_local_data(sharding, local)
