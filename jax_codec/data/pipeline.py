"""Input pipeline: a source -> grain shuffle/crop/batch per process -> global `jax.Array`.

Each process reads its own shard (`dataset[process_index::process_count]`), batches its share
of the global batch, and `make_global_batch` assembles the per-process pieces into one array
sharded over the mesh. The grain iterator is checkpointed with the train state, so a resumed run
sees exactly the batches it would have seen.
"""

from __future__ import annotations

import grain
import jax
import ml_collections
import numpy as np

from jax_codec.config import ConfigError
from jax_codec.data.synthetic import SyntheticMusic


def make_source(config: ml_collections.ConfigDict, sample_rate: int, seconds: float, seed: int):
    """The random-access source named by `config.data.source`."""
    source = config.data.source
    if source == "synthetic":
        return SyntheticMusic(sample_rate=sample_rate, segment_seconds=seconds, seed=seed)
    raise ConfigError(
        f"data.source={source!r} is not available; use 'synthetic' (the built-in music generator)"
    )


class _Crop(grain.transforms.Map):
    def __init__(self, length: int):
        self.length = length

    def map(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, np.float32)
        if audio.ndim == 2:  # mono model: mix down
            audio = audio.mean(axis=1)
        if audio.shape[0] < self.length:
            audio = np.pad(audio, (0, self.length - audio.shape[0]))
        return audio[: self.length]


def per_process_batch_size(global_batch: int) -> int:
    n = jax.process_count()
    if global_batch % n:
        raise ConfigError(f"train.batch_size={global_batch} must be divisible by the {n} processes")
    return global_batch // n


def train_dataset(
    config: ml_collections.ConfigDict, sample_rate: int, segment: int
) -> grain.MapDataset:
    """Shuffled, cropped, batched `[B_local, T]` training batches of this process (repeats)."""
    seed = int(config.train.seed)
    source = make_source(config, sample_rate, segment / sample_rate, seed)
    ds = grain.MapDataset.source(source)
    ds = ds[jax.process_index() :: jax.process_count()]
    ds = ds.shuffle(seed=seed).map(_Crop(segment))
    return ds.batch(per_process_batch_size(config.train.batch_size), drop_remainder=True).repeat()


def eval_batch(
    config: ml_collections.ConfigDict, sample_rate: int, length: int, n: int
) -> np.ndarray:
    """A fixed held-out set `[n, length]`: a seed the training stream never uses."""
    source = make_source(
        config, sample_rate, length / sample_rate, seed=10_000 + int(config.train.seed)
    )
    crop = _Crop(length)
    return np.stack([crop.map(source[i]) for i in range(n)])


def make_global_batch(local: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """Per-process `[B_local, ...]` numpy -> global `[B, ...]` array laid out by `sharding`."""
    return jax.make_array_from_process_local_data(sharding, local)
