"""Batched inference of signals of different lengths and rates equals one at a time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import louder

from jax_codec.config import load_config
from jax_codec.data.synthetic import SyntheticMusic
from jax_codec.inference.api import LoadedCodec
from jax_codec.inference.batch import _model_signal, bucket_blocks, decode_batch, encode_batch

SR = 44100


def loaded_model(runlocal_codec, causal=True):
    codec, params = runlocal_codec
    config = load_config("configs/base.py:runlocal" + ("" if causal else ",noncausal"))
    return LoadedCodec(codec if causal else codec.clone(causal=False), louder(params), config)


def check_equals_alone(loaded, signals, rates, k=None):
    codec, params = loaded.codec, loaded.params
    codes = encode_batch(loaded, signals, rates, n_quantizers=k, max_batch=2)
    lengths = [len(_model_signal(loaded, x, r)) for x, r in zip(signals, rates, strict=True)]
    audio = decode_batch(loaded, codes, lengths)
    encode = jax.jit(lambda x: codec.apply(params, x, k, method=codec.encode))
    decode = jax.jit(lambda c: codec.apply(params, c, method=codec.decode))
    for x, r, c, y, t in zip(signals, rates, codes, audio, lengths, strict=True):
        alone = encode(jnp.asarray(_model_signal(loaded, x, r))[None])
        assert len(c) == len(alone) == (k or codec.num_quantizers)
        for a, b in zip(c, alone, strict=True):
            np.testing.assert_array_equal(a, np.asarray(b)[0])
        want = np.asarray(decode(alone))[0, :t]
        assert y.shape == want.shape == (t, 1) and np.abs(want).max() > 0.01
        np.testing.assert_allclose(y, want, atol=1e-5)


def test_bucket_blocks():
    assert [bucket_blocks(b) for b in (1, 2, 3, 4, 5, 8, 9)] == [1, 2, 4, 4, 8, 8, 16]


def test_batch_equals_one_at_a_time(runlocal_codec):
    loaded = loaded_model(runlocal_codec)
    L = loaded.codec.length_multiple
    # 3, 4 and 6 blocks (buckets 4, 4 and 8), one at 48 kHz (resampled), one stereo (mixed down).
    signals = [
        SyntheticMusic(SR, (3 * L - 100) / SR, seed=1)[0],
        np.stack([SyntheticMusic(48000, 4 * L / SR, seed=2)[0]] * 2, axis=1)[: 4 * L * 48 // 44],
        SyntheticMusic(SR, (6 * L) / SR, seed=3)[0],
    ]
    check_equals_alone(loaded, signals, [SR, 48000, SR])


@pytest.mark.slow  # the centred variant: every shape compiled again
def test_batch_equals_one_at_a_time_noncausal(runlocal_codec):
    """A centred model looks past a signal's end: only equal block counts share a batch (the
    first two here, 3 blocks each; the third, 4 blocks, goes alone)."""
    loaded = loaded_model(runlocal_codec, causal=False)
    L = loaded.codec.length_multiple
    signals = [SyntheticMusic(SR, t / SR, seed=t)[0] for t in (3 * L - 700, 3 * L, 4 * L)]
    check_equals_alone(loaded, signals, [SR] * 3, k=2)


def test_bad_batches_give_clear_errors(runlocal_codec):
    loaded = loaded_model(runlocal_codec)
    with pytest.raises(ValueError, match=r"2 sample rates for 1 signals"):
        encode_batch(loaded, [np.zeros(10)], [SR, SR])
    with pytest.raises(ValueError, match=r"must be \[samples\] or \[samples, channels\]"):
        encode_batch(loaded, [np.zeros((1, 2, 3))])
    with pytest.raises(ValueError, match="same number of levels"):
        decode_batch(loaded, [(np.zeros(1),), (np.zeros(1), np.zeros(2))])
    with pytest.raises(ValueError, match="do not fit"):
        decode_batch(loaded, [(np.zeros(1), np.zeros(3))])
