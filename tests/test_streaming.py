"""Streaming equals offline; state carries; no retrace; chunked offline for non-causal models."""

import resource

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import louder, subprocess_env

from jax_codec.config import load_config
from jax_codec.data.synthetic import SyntheticMusic
from jax_codec.inference import chunked
from jax_codec.inference import streaming as st
from jax_codec.models.codec import build_codec


@pytest.fixture(scope="module")
def model(runlocal_codec):
    codec, params = runlocal_codec
    return codec, louder(params)


def music(n, seconds, seed=0):
    return np.stack([SyntheticMusic(44100, seconds, seed=seed + i)[0] for i in range(n)])


def offline(codec, params, x, k=None):
    t = x.shape[1]
    codes = codec.apply(params, jnp.asarray(x)[..., None], k, method=codec.encode)
    y = codec.apply(params, codes, t, method=codec.decode)
    return codes, np.asarray(y[..., 0])


@pytest.mark.parametrize(
    "chunk_frames,k,batch",
    [
        (1, None, 1),
        (4, 1, 1),  # one coarse block per chunk
        (6, 3, 2),  # a block and a half: the remainder is carried
        # More divisors and non-divisors of the block, other batch sizes: slow suite.
        pytest.param(13, None, 1, marks=pytest.mark.slow),
        pytest.param(2, 2, 3, marks=pytest.mark.slow),
        pytest.param(3, None, 2, marks=pytest.mark.slow),
    ],
)
def test_stream_equals_offline(model, chunk_frames, k, batch):
    codec, params = model
    x = music(batch, 0.61, seed=chunk_frames)  # not a multiple of any chunk: tail is flushed
    codes, ref = offline(codec, params, x, k)
    assert np.abs(ref).max() > 0.05
    y, frame_codes = st.stream_roundtrip(codec, params, x, chunk_frames, k)
    got = st.from_frame_codes(codec, jnp.asarray(frame_codes))
    for want, have in zip(codes, got, strict=True):
        np.testing.assert_array_equal(np.asarray(have)[:, : want.shape[1]], np.asarray(want))
    assert y.shape == ref.shape
    assert np.abs(y - ref).max() <= 1e-5


def test_state_carries_across_calls_and_nothing_retraces(model):
    codec, params = model
    x = music(1, 0.75, seed=7)
    n = 2
    whole = st.StreamingEncoder(codec, params, n)
    chunks = list(st.stream_chunks(codec, x, n, whole.delay))
    want = [whole.push(c) for c in chunks]
    first = st.StreamingEncoder(codec, params, n)
    got = [first.push(c) for c in chunks[: len(chunks) // 2]]
    second = st.StreamingEncoder(codec, params, n)  # a new object continues the old state
    second.state, second.pushed = first.state, first.pushed
    got += [second.push(c) for c in chunks[len(chunks) // 2 :]]
    for a, b in zip(want, got, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert whole.step._cache_size() == 1  # one trace for every chunk of this size
    dec = st.StreamingDecoder(codec, params, n)
    for c in want:
        if c is not None:
            dec.push(c)
    assert dec.step._cache_size() == 1
    with pytest.raises(ValueError, match="expected"):
        whole.push(np.zeros((1, 100), np.float32))


def test_latency_from_the_architecture():
    codec = build_codec(load_config("configs/base.py").model)
    assert st.block_frames(codec) == 4 and codec.hop_length == 512
    assert st.algorithmic_latency(codec) == 2048  # 46.4 ms at 44.1 kHz: under the 50 ms target
    assert 1000 * st.algorithmic_latency(codec) / codec.sample_rate < 50
    for n in (1, 2, 4, 8):  # chunks dividing, or multiples of, the block add nothing
        assert st.stream_latency(codec, n) == max(2048, n * 512)
    assert st.stream_delay_frames(codec, 3) == 3 and st.stream_delay_frames(codec, 6) == 6
    assert st.chunk_frames_for(codec, 20) == 2


def test_noncausal_uses_chunked_offline(runlocal_codec):
    _, params = runlocal_codec
    params = louder(params)
    codec = build_codec(load_config("configs/base.py:runlocal,noncausal").model)
    x = music(2, 1.3, seed=3)
    codes, ref = offline(codec, params, x)
    got = chunked.chunked_encode(codec, params, x, window_frames=8)
    for want, have in zip(codes, got, strict=True):
        np.testing.assert_array_equal(have, np.asarray(want))
    y = chunked.chunked_decode(codec, params, got, x.shape[1], window_frames=8)
    assert np.abs(y - ref).max() <= 1e-5
    with pytest.raises(ValueError, match="cannot stream"):
        st.StreamingEncoder(codec, params, 2)


@pytest.mark.slow
def test_ten_minutes_stream_in_bounded_memory(model):
    """10 minutes through the streaming path, chunk by chunk from a generator: memory stays
    flat, and the end of the stream still equals the offline output of its last seconds."""
    codec, params = model
    sr, hop = codec.sample_rate, codec.hop_length
    n = 172  # ~2 s chunks
    enc = st.StreamingEncoder(codec, params, n)
    dec = st.StreamingDecoder(codec, params, n)
    step = n * hop
    chunks = 600 * sr // step + 1
    rng = np.random.default_rng(0)
    tail_in, tail_out = [], []
    rss = []
    for i in range(chunks + enc.delay // n):
        x = (0.3 * rng.standard_normal((1, step))).astype(np.float32) if i < chunks else None
        c = enc.push(x if x is not None else np.zeros((1, step), np.float32))
        if x is not None and i >= chunks - 3:
            tail_in.append(x)
        if c is not None:
            y = np.asarray(dec.push(c))
            assert np.isfinite(y).all()
            if i >= chunks + enc.delay // n - 3:
                tail_out.append(y)
        if i in (20, chunks - 1):
            rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    assert rss[1] - rss[0] < 200, rss  # MiB: no growth with the length of the stream
    # The last 3 chunks in -> the last 3 chunks out (delay is 0 here: n is a multiple of 4).
    assert enc.delay == 0
    x_tail = np.concatenate(tail_in, axis=1)
    _, ref = offline(codec, params, x_tail)
    y_tail = np.concatenate(tail_out, axis=1)
    # Offline starts from silence; after the receptive field both see the same input.
    skip = 2 * step
    assert np.abs(y_tail[:, skip:] - ref[:, skip:]).max() <= 1e-5


def test_stream_cli_json_and_errors(tmp_path):
    import json
    import subprocess
    import sys

    import soundfile as sf

    src = str(tmp_path / "in.flac")
    sf.write(src, np.stack([music(1, 0.5)[0], music(1, 0.5, seed=4)[0]], axis=1), 44100)
    out = str(tmp_path / "out.wav")
    env = subprocess_env()
    cmd = [sys.executable, "-m", "jax_codec", "stream", src, out]
    model = ["--config", "configs/base.py:runlocal", "--random_init"]
    r = subprocess.run(cmd + model + ["--json"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["channels"] == 2 and report["streaming"] is True
    assert report["max_abs_diff_vs_offline"] <= 1e-5
    assert report["latency_ms"] == pytest.approx(1000 * 2048 / 44100)
    assert report["rtf"] > 0 and report["chunk_ms_p99"] > 0
    y, sr = sf.read(out)
    assert sr == 44100 and y.shape == (22050, 2)
    # Bad paths are reported before the model loads: the config named here does not exist.
    unloadable = ["--config", "configs/no_such_preset.py", "--random_init"]
    bad = subprocess.run(
        [sys.executable, "-m", "jax_codec", "stream", str(tmp_path / "nope.wav"), out]
        + unloadable,
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert bad.returncode == 2 and "nope.wav: no such file" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.fixture(scope="module")
def spectrostream():
    """The tiny SpectroStream (its full structure, narrow), every parameter drawn."""
    import jax

    codec = build_codec(load_config("spectrostream_48khz:tiny").model, dtype="float32")
    x = jnp.zeros((1, codec.hop_length * 2, 2))
    shapes = jax.eval_shape(lambda a: codec.init(jax.random.key(0), a), x)
    rng = np.random.default_rng(0)

    def draw(path, s):
        fan = np.prod(s.shape[:-1]) if getattr(path[-1], "key", "") == "kernel" else 1
        return (rng.standard_normal(s.shape) / np.sqrt(fan)).astype(np.float32)

    return codec, jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.mark.parametrize(
    "chunk_frames", [pytest.param(1, marks=pytest.mark.slow), 2]
)  # 2: the decoder's output re-aligned (its carry)
def test_spectrostream_stream_equals_offline(spectrostream, chunk_frames):
    """Its encoder reads 10 ms into the next frame and its decoder looks a frame ahead: the
    stream lags (a frame each way) and still gives the offline codes and audio."""
    import jax

    codec, params = spectrostream
    rng = np.random.default_rng(chunk_frames)
    x = (0.3 * rng.standard_normal((1, int(0.19 * 48000), 2))).astype(np.float32)
    codes = jax.jit(lambda p, a: codec.apply(p, a, method=codec.encode))(params, x)
    ref = np.asarray(jax.jit(lambda p, c: codec.apply(p, c, method=codec.decode))(params, codes))
    ref = ref[:, : x.shape[1]]
    assert np.abs(ref).max() > 0.05
    y, frame_codes = st.stream_roundtrip(codec, params, x, chunk_frames)
    want = np.stack([np.asarray(c) for c in codes], -1)
    np.testing.assert_array_equal(frame_codes[:, : want.shape[1]], want)
    assert y.shape == ref.shape
    assert np.abs(y - ref).max() <= 1e-5
    assert st.stream_delay_frames(codec, chunk_frames) == chunk_frames
    assert st.stream_latency(codec, chunk_frames) == 3 * chunk_frames * codec.hop_length
    assert st.algorithmic_latency(codec) == codec.latency_samples == 3 * 1920  # 120 ms


@pytest.mark.slow  # ~30 s: windows of SpectroStream's 15-frame context on both sides
def test_spectrostream_chunked_equals_whole_signal(spectrostream):
    """compress/decompress code files in windows: their context covers SpectroStream's
    receptive field (and its lookahead), so the windowed codes and audio are the whole
    signal's."""
    import jax

    codec, params = spectrostream
    rng = np.random.default_rng(3)
    x = (0.3 * rng.standard_normal((1, 45 * codec.hop_length + 100, 2))).astype(np.float32)
    codes = jax.jit(lambda p, a: codec.apply(p, a, method=codec.encode))(params, x)
    ref = np.asarray(jax.jit(lambda p, c: codec.apply(p, c, method=codec.decode))(params, codes))
    got = chunked.chunked_encode(codec, params, x, window_frames=8)
    assert got[0].shape == codes[0].shape == (1, 47)
    for want, have in zip(codes, got, strict=True):
        np.testing.assert_array_equal(have, np.asarray(want))
    y = chunked.chunked_decode(codec, params, got, x.shape[1], window_frames=8)
    assert np.abs(y - ref[:, : x.shape[1]]).max() <= 1e-5
