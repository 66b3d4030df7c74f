"""Model tests: layer arithmetic, shapes, causality, quantizer properties, encode/decode."""

import glob

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_codec.config import load_config
from jax_codec.models.codec import build_codec
from jax_codec.models.layers import (
    WNConv1d,
    WNConvTranspose1d,
    fold_weight_norm,
    transposed_conv_paths,
)
from jax_codec.models.quantizer import FactorizedVQ, HierarchicalRVQ, restart_dead_codes


def _init(codec, t, batch=1, seed=0):
    x = jax.random.normal(jax.random.key(seed + 1), (batch, t, 1)) * 0.1
    params = jax.jit(codec.init)(jax.random.key(seed), x)
    return params, x


@pytest.fixture()
def runlocal(runlocal_codec):
    return runlocal_codec


def _np_conv_transpose(x, w, stride):
    """Reference transposed conv (scatter-add form, as torch): x [F, Cin], w [k, Cin, Cout]."""
    f, _ = x.shape
    k = w.shape[0]
    y = np.zeros(((f - 1) * stride + k, w.shape[2]))
    for j in range(f):
        for i in range(k):
            y[j * stride + i] += x[j] @ w[i]
    return y


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("stride", [2, 3, 4])
def test_conv_transpose_matches_scatter_add_reference(causal, stride):
    k = 2 * stride
    layer = WNConvTranspose1d(5, k, stride, causal=causal, use_bias=False)
    x = jax.random.normal(jax.random.key(0), (1, 7, 3))
    params = layer.init(jax.random.key(1), x)
    v, g = params["params"]["weight_v"], params["params"]["weight_g"]
    w = np.asarray(v) * np.asarray(g) / np.linalg.norm(np.asarray(v), axis=(0, 1))
    full = _np_conv_transpose(np.asarray(x[0]), w, stride)
    trim = k - stride
    left = 0 if causal else -(-trim // 2)
    expected = full[left : left + 7 * stride]
    got = np.asarray(layer.apply(params, x))[0]
    assert got.shape == (7 * stride, 5)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_conv_lengths_and_causal_padding(causal):
    layer = WNConv1d(4, 8, stride=4, causal=causal)
    x = jax.random.normal(jax.random.key(0), (2, 64, 3))
    params = layer.init(jax.random.key(1), x)
    y = layer.apply(params, x)
    assert y.shape == (2, 16, 4)
    x2 = x.at[:, 40:].set(0.0)  # change the future of output frame 9 (inputs <= 39)
    y2 = layer.apply(params, x2)
    same = np.allclose(y[:, :10], y2[:, :10], atol=1e-6)
    assert same == causal


@pytest.mark.parametrize(
    "spec,t",
    [
        # The flagship's size compiles slowly; the small variants cover the same code paths.
        pytest.param("configs/base.py", 5000, marks=pytest.mark.slow),
        ("configs/base.py:runlocal", 3000),
        ("configs/base.py:noncausal,runlocal", 3001),
    ],
)
def test_forward_shapes(spec, t, runlocal_codec):
    config = load_config(spec)
    codec = build_codec(config.model)
    if "runlocal" in spec:  # same parameter tree for causal and non-causal: reuse the weights
        params = runlocal_codec[1]
        x = jax.random.normal(jax.random.key(1), (2, t, 1)) * 0.1
    else:
        params, x = _init(codec, t, batch=2)
    out = jax.jit(codec.apply)(params, x)
    f = -(-t // codec.length_multiple) * codec.length_multiple // codec.hop_length
    assert out.audio.shape == (2, t, 1)
    assert len(out.codes) == len(config.model.vq_strides)
    for c, s in zip(out.codes, config.model.vq_strides):
        assert c.shape == (2, f // s) and c.dtype == jnp.int32
    assert out.latents.shape == (2, f, config.model.latent_dim)
    assert np.isfinite(np.asarray(out.audio)).all()
    assert float(jnp.max(jnp.abs(out.audio))) <= 1.0


def test_causality(runlocal):
    codec, params = runlocal
    lat = codec.latency_samples
    assert lat == 2048
    t_total, t = 8 * 2048, 9000
    x = jax.random.normal(jax.random.key(3), (1, t_total, 1)) * 0.3
    x2 = x.at[:, t:].set(jax.random.normal(jax.random.key(4), (1, t_total - t, 1)))
    fwd = jax.jit(codec.apply)
    a, b = fwd(params, x), fwd(params, x2)
    cut = t - lat
    np.testing.assert_array_equal(np.asarray(a.audio[:, :cut]), np.asarray(b.audio[:, :cut]))
    after_a, after_b = np.asarray(a.audio[:, t:]), np.asarray(b.audio[:, t:])
    assert np.abs(after_a - after_b).max() > 1e-3 * np.abs(after_a).max()  # visible after t
    for c1, c2, s in zip(a.codes, b.codes, codec.vq_strides):
        block = s * codec.hop_length  # code j of this level starts at sample j * block
        n_before = max(0, (cut) // block)
        np.testing.assert_array_equal(np.asarray(c1[:, :n_before]), np.asarray(c2[:, :n_before]))


def test_noncausal_model_sees_the_future(runlocal_codec):
    # The negative control of test_causality: the same check must fail for a centred model.
    codec = build_codec(load_config("configs/base.py:runlocal,noncausal").model)
    params = runlocal_codec[1]
    x = jax.random.normal(jax.random.key(3), (1, 8 * 2048, 1)) * 0.3
    x2 = x.at[:, 9000:].set(0.0)
    fwd = jax.jit(codec.apply)
    a, b = fwd(params, x), fwd(params, x2)
    early_a, early_b = np.asarray(a.audio[:, : 9000 - 2048]), np.asarray(b.audio[:, : 9000 - 2048])
    assert np.abs(early_a - early_b).max() > 1e-3 * np.abs(early_a).max()


def test_codes_in_range_and_decode_matches_forward(runlocal):
    codec, params = runlocal
    x = jax.random.normal(jax.random.key(5), (2, 7000, 1)) * 0.2
    fwd = jax.jit(codec.apply, static_argnums=2)
    enc = jax.jit(lambda p, a, n: codec.apply(p, a, n, method=codec.encode), static_argnums=2)
    dec = jax.jit(lambda p, c: codec.apply(p, c, 7000, method=codec.decode))
    for n in (1, codec.num_quantizers):
        out = fwd(params, x, n)
        codes = enc(params, x, n)
        assert len(codes) == n
        for c_enc, c_fwd in zip(codes, out.codes[:n]):
            np.testing.assert_array_equal(np.asarray(c_enc), np.asarray(c_fwd))
            assert int(c_enc.min()) >= 0 and int(c_enc.max()) < codec.codebook_size
        y = dec(params, codes)
        np.testing.assert_allclose(np.asarray(y), np.asarray(out.audio), atol=1e-5)
    full = fwd(params, x, None).audio
    one = fwd(params, x, 1).audio
    assert np.abs(np.asarray(full) - np.asarray(one)).max() > 1e-3 * np.abs(np.asarray(full)).max()


def test_straight_through_gradient_reaches_encoder(runlocal):
    codec, params = runlocal
    x = jax.random.normal(jax.random.key(6), (1, 4096, 1)) * 0.2

    def recon(p):  # reconstruction only: no commitment term that would reach the encoder anyway
        return jnp.mean((codec.apply(p, x).audio - x) ** 2)

    grads = jax.jit(jax.grad(recon))(params)["params"]
    enc_norm = np.sqrt(sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grads["encoder"])))
    # Without the straight-through estimator this is exactly 0 (argmax has no gradient).
    assert np.isfinite(enc_norm) and enc_norm > 0
    # The straight-through path reaches the projection into the code space...
    vq_in = grads["quantizer"]["level0"]["in_proj"]["weight_v"]
    assert float(jnp.abs(vq_in).sum()) > 0
    # ...but not the codebook vectors: they learn from the codebook loss only (DAC's
    # z_e + sg(z_q - z_e)).
    for level in grads["quantizer"].values():
        assert not np.any(np.asarray(level["codebook"]))


def test_quantizer_dropout_varies_levels():
    k = 6
    rvq = HierarchicalRVQ(
        16, strides=(2, 1, 1, 1, 1, 1), codebook_size=32, codebook_dim=4, dropout_prob=1.0
    )
    z = jax.random.normal(jax.random.key(0), (32, 8, 16))
    params = rvq.init({"params": jax.random.key(1), "dropout": jax.random.key(2)}, z, train=True)
    out = jax.jit(lambda p: rvq.apply(p, z, train=True, rngs={"dropout": jax.random.key(3)}))(
        params
    )
    n = np.asarray(out.n_quantizers)
    assert n.min() >= 1 and n.max() <= k and len(set(n.tolist())) > 2
    # counts per level equal the number of frames of the examples that use that level
    for i, s in enumerate(rvq.strides):
        expected = np.sum(n > i) * (8 // s)
        assert float(out.stats[f"level{i}/counts"].sum()) == expected
    # examples using fewer levels reconstruct from fewer codebooks
    full = rvq.apply(params, z)
    assert np.all(np.asarray(full.n_quantizers) == k)
    one = np.where(n == 1)[0]
    if len(one):
        q1 = rvq.apply(params, z[one], n_quantizers=1).quantized
        np.testing.assert_allclose(np.asarray(out.quantized[one]), np.asarray(q1), atol=1e-5)
    eval_out = rvq.apply(params, z, train=False)
    assert np.all(np.asarray(eval_out.n_quantizers) == k)


def test_quantizer_losses_follow_dacs_reduction():
    """Per level the batch mean of the per-example loss (0 where the level is unused), summed
    over levels, as DAC's ResidualVectorQuantize; an explicit per-example draw is honoured."""
    rvq = HierarchicalRVQ(16, strides=(1, 1, 1), codebook_size=32, codebook_dim=4)
    z = jax.random.normal(jax.random.key(0), (4, 8, 16))
    params = rvq.init(jax.random.key(1), z)
    draw = jnp.array([1, 3, 2, 3])
    out = rvq.apply(params, z, n_quantizers=draw, train=True)
    np.testing.assert_array_equal(np.asarray(out.n_quantizers), [1, 3, 2, 3])

    # By hand: run the levels one by one on the residual.
    residual, expected, expected_residual = z, 0.0, 0.0
    for i in range(3):
        lv = {"params": params["params"][f"level{i}"]}
        q, codes, commit, _, _ = FactorizedVQ(16, 32, 4).apply(lv, residual)
        back = FactorizedVQ(16, 32, 4).apply(lv, codes, method="decode_codes")
        used = (np.asarray(draw) > i).astype(np.float32)
        expected += float(np.mean(np.asarray(commit) * used))
        left = np.mean(np.square(np.asarray(residual - back)), axis=(1, 2))
        expected_residual += float(np.mean(left * used))
        residual = residual - q * used[:, None, None]
        # What levels 0..i leave of z, over the examples that use level i.
        energy = np.sum(np.square(np.asarray(z)), axis=(1, 2))
        rest = np.sum(np.square(np.asarray(residual)), axis=(1, 2))
        assert float(out.stats[f"level{i}/latent_error"]) == pytest.approx(
            np.sum(rest * used) / np.sum(energy * used), rel=1e-5
        )
    assert float(out.commitment) == pytest.approx(expected, rel=1e-5)
    assert float(out.codebook) == pytest.approx(expected, rel=1e-5)  # same value, other side
    assert float(out.residual) == pytest.approx(expected_residual, rel=1e-5)
    with pytest.raises(ValueError, match="per example"):
        rvq.apply(params, z, n_quantizers=jnp.array([1, 2]))


def test_residual_loss_makes_each_level_code_what_is_left():
    """DAC's losses live in each level's small code space, so nothing makes a level's output
    match its input: the residual after several levels can exceed the latent itself. The
    residual loss fits each level's output to its input; it trains the codebooks and output
    projections only (no gradient reaches the quantizer's input)."""
    import optax

    rvq = HierarchicalRVQ(16, strides=(1, 1, 1), codebook_size=32, codebook_dim=4, dropout_prob=0)
    z = jax.random.normal(jax.random.key(0), (8, 32, 16))
    params = rvq.init(jax.random.key(1), z)

    dz = jax.grad(lambda z: rvq.apply(params, z).residual)(z)
    assert float(jnp.max(jnp.abs(dz))) == 0.0
    grads = jax.grad(lambda p: rvq.apply(p, z).residual)(params)["params"]["level1"]
    assert float(jnp.max(jnp.abs(grads["codebook"]))) > 0
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads["out_proj"]))

    def train(weight):
        opt = optax.adam(1e-2)

        def loss(p):
            out = rvq.apply(p, z)
            return 0.25 * out.commitment + out.codebook + weight * out.residual

        @jax.jit
        def step(p, s):
            g = jax.grad(loss)(p)
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s

        p, s = params, opt.init(params)
        for _ in range(300):
            p, s = step(p, s)
        stats = rvq.apply(p, z).stats
        return [float(stats[f"level{i}/latent_error"]) for i in range(3)]

    dac, fitted = train(0.0), train(1.0)
    assert fitted[0] < 1.0 and fitted[2] < fitted[1] < fitted[0]
    assert fitted[2] < 0.8 * dac[2]


def test_rvq_levels_reduce_error():
    rvq = HierarchicalRVQ(
        16, strides=(1, 1, 1, 1), codebook_size=64, codebook_dim=16, dropout_prob=0.0
    )
    z = jax.random.normal(jax.random.key(0), (4, 16, 16))
    params = rvq.init(jax.random.key(1), z)
    usage = rvq.apply(params, z).stats
    assert 1.0 <= float(usage["level0/perplexity"]) <= 64.0
    assert 0.0 <= float(usage["level0/dead_fraction"]) < 1.0
    with pytest.raises(ValueError, match="n_quantizers"):
        rvq.apply(params, z, n_quantizers=5)


def test_restart_dead_codes():
    codebook = jnp.zeros((8, 2))
    usage = jnp.array([0.5, 0.0, 0.2, 0.0, 0.1, 0.1, 0.1, 0.0])
    candidates = jnp.arange(10.0).reshape(5, 2) + 1.0
    new, dead = restart_dead_codes(codebook, usage, candidates, jax.random.key(0), clip_norm=False)
    assert np.asarray(dead).tolist() == [False, True, False, True, False, False, False, True]
    new = np.asarray(new)
    assert np.all(new[~np.asarray(dead)] == 0)
    cand = {tuple(r) for r in np.asarray(candidates)}
    assert all(tuple(r) in cand for r in new[np.asarray(dead)])


def test_restart_dead_codes_clips_outliers_to_the_live_codes():
    """A restarted code keeps its candidate's direction but is no longer than the level's
    median live code, so neither one outlier encoder output nor a whole batch of long ones
    can seed the cascade that blows up the codebooks."""
    codebook = jnp.array([[3.0, 4.0], [0.0, 1.0], [0.0, 3.0], [0.0, 0.0], [0.0, 0.0]])
    usage = jnp.array([0.5, 0.5, 0.5, 0.0, 0.0])  # live: |5|, |1|, |3|: median 3
    candidates = jnp.array([[300.0, 400.0], [0.6, 0.8], [1.2, 1.6]])  # an outlier, two small
    norms = set()
    for seed in range(8):
        new, dead = restart_dead_codes(codebook, usage, candidates, jax.random.key(seed))
        new = np.asarray(new)
        assert np.asarray(dead).tolist() == [False, False, False, True, True]
        np.testing.assert_array_equal(new[:3], np.asarray(codebook[:3]))
        for row in new[3:]:
            norm = np.linalg.norm(row)
            np.testing.assert_allclose(row / norm, [0.6, 0.8], rtol=1e-6)  # direction kept
            norms.add(round(float(norm), 4))
    assert norms == {1.0, 2.0, 3.0}  # the small ones as they are, the outlier cut to 3
    # A whole batch of long candidates (the encoder's output grew for a step) is cut too: the
    # bound does not follow the batch.
    long = candidates * 100.0
    new, _ = restart_dead_codes(codebook, usage, long, jax.random.key(0))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(new)[3:], axis=-1), 3.0, rtol=1e-6)
    # Without the clip the outlier is copied as it is.
    picks = set()
    for seed in range(8):
        new, _ = restart_dead_codes(
            codebook, usage, candidates, jax.random.key(seed), clip_norm=False
        )
        picks |= {round(float(np.linalg.norm(r)), 3) for r in np.asarray(new)[3:]}
    assert 500.0 in picks
    # No live code: bounded by the candidates' median length.
    cands = jnp.array([[1.0, 0.0], [2.0, 0.0], [1000.0, 0.0]])
    new, dead = restart_dead_codes(jnp.zeros((6, 2)), jnp.zeros(6), cands, jax.random.key(1))
    assert np.asarray(dead).all() and np.abs(np.asarray(new)).max() <= 2.0 + 1e-5


def _config_specs():
    import importlib.util

    for path in sorted(glob.glob("configs/*.py")):
        spec = importlib.util.spec_from_file_location("cfg", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield path
        for v in getattr(mod, "VARIANTS", ()):
            yield f"{path}:{v}"


@pytest.mark.parametrize("spec", list(_config_specs()))
def test_every_config_builds_abstractly(spec):
    config = load_config(spec)
    codec = build_codec(config.model)
    x = jax.ShapeDtypeStruct((2, codec.length_multiple, codec.channels), jnp.float32)
    params = jax.eval_shape(lambda a: codec.init(jax.random.key(0), a), x)
    out = jax.eval_shape(lambda p, a: codec.apply(p, a), params, x)
    assert out.audio.shape == x.shape
    assert sum(p.size for p in jax.tree.leaves(params)) > 0


def test_folded_weight_norm_gives_identical_outputs(runlocal):
    codec, params = runlocal
    x = jax.random.normal(jax.random.key(5), (1, codec.length_multiple * 2, 1)) * 0.3
    folded = fold_weight_norm(params["params"])
    fwd = jax.jit(codec.apply)
    # Every weight-normed layer (convs, transposed convs, quantizer projections) is folded.
    n_wn = sum(1 for p in jax.tree_util.tree_leaves_with_path(params) if "weight_v" in str(p[0]))
    assert len(jax.tree.leaves(folded)) == n_wn > 10
    ref = fwd(params, x)
    out = fwd({**params, "folded": folded}, x)
    np.testing.assert_allclose(out.audio, ref.audio, atol=1e-6)
    # The folded kernels are really used: zeroing them silences the decoder's output path.
    zero = jax.tree.map(jnp.zeros_like, folded)
    silent = fwd({**params, "folded": zero}, x)
    assert not np.allclose(silent.audio, ref.audio)
    # Transposed convs' kernels folded in their matmul layout give the same output.
    paths = transposed_conv_paths(codec.apply, params, x)
    assert len(paths) == len(codec.decoder_strides)
    folded_io = fold_weight_norm(params["params"], paths)
    io = [p for p, _ in jax.tree_util.tree_leaves_with_path(folded_io) if "kernel_io" in str(p)]
    assert len(io) == len(paths)
    out_io = fwd({**params, "folded": folded_io}, x)
    np.testing.assert_allclose(out_io.audio, ref.audio, atol=1e-6)
