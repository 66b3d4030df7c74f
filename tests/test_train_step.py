"""The compiled train step: sharding equivalence, no retracing, NaN guard, overfitting."""

import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_codec.config import ConfigError, apply_overrides, load_config
from jax_codec.data.synthetic import SyntheticMusic
from jax_codec.training.codebooks import dead_code_decay
from jax_codec.training.sharding import make_mesh, state_shardings
from jax_codec.training.state_init import create_train_state
from jax_codec.training.step import Trainer, compile_train_step

BATCH = 8


def small_config(**overrides):
    config = load_config("configs/base.py:runlocal")
    base = {
        "discriminator.periods": "(2, 3)",
        "discriminator.channels": "4",
        "train.batch_size": str(BATCH),
        "train.segment_seconds": "0.1",
        "optim.warmup_steps": "0",
        # A smaller graph to compile: one MRD window, two mel resolutions, no onset term.
        "discriminator.mrd_window_lengths": "(512,)",
        "loss.mel_window_lengths": "(64, 512)",
        "loss.mel_n_mels": "(10, 80)",
        "loss.onset_weight": "0.0",
        # Dead-code expiry with the EMA slowed for this small batch (`dead_code_decay`).
        "train.dead_code_min_hits": "8.0",
    }
    base.update(overrides)
    apply_overrides(config, base)
    return config


def music_batch(trainer, n=BATCH, seed=0):
    src = SyntheticMusic(
        trainer.codec.sample_rate, trainer.segment / trainer.codec.sample_rate, seed=seed
    )
    return jnp.asarray(np.stack([src[i][: trainer.segment] for i in range(n)]))


@pytest.fixture(scope="module")
def single_device():
    config = small_config()
    trainer = Trainer(config)
    mesh = make_mesh(config.mesh, jax.devices()[:1])
    state, shardings = create_train_state(trainer, mesh, jax.random.key(0))
    initial = jax.device_get(state)
    batch = music_batch(trainer)
    traced_step = chex.assert_max_traces(trainer.train_step, n=1)
    step = jax.jit(traced_step, donate_argnums=0)
    key = jax.random.key(7)
    metrics, states = [], []
    for _ in range(3):
        state, m = step(state, batch, key)
        metrics.append(jax.device_get(m))
        states.append(jax.device_get(state))
    return trainer, initial, batch, states, metrics, (step, shardings)


def test_step_runs_without_retracing(single_device):
    trainer, _, _, states, metrics, _ = single_device
    state = states[-1]
    assert int(state.step) == 3 and int(state.nonfinite_steps) == 0
    for key in (
        "loss/mel",
        "loss/adv_g",
        "loss/adv_d",
        "loss/fm",
        "vq/commitment",
        "vq/residual",
        "vq/level0/perplexity",
        "vq/level0/latent_error",
        "norm/grad_g",
        "norm/update_g",
        "norm/params_g",
    ):
        assert key in metrics[-1] and np.isfinite(metrics[-1][key]), key
    assert all(m["train/step_finite"] == 1.0 for m in metrics)
    # Code lengths: the longest code of each level as it is in the new state's codebook, and
    # the median length of what the level quantized (positive: the batch is not silent).
    for i in range(trainer.codec.num_quantizers):
        book = np.asarray(state.gen_params["params"]["quantizer"][f"level{i}"]["codebook"])
        np.testing.assert_allclose(
            metrics[-1][f"vq/level{i}/code_norm_max"],
            np.linalg.norm(book, axis=-1).max(),
            rtol=1e-5,
        )
        assert metrics[-1][f"vq/level{i}/input_norm"] > 0


@pytest.mark.parametrize(
    "mesh_shape",
    # Data and FSDP axes together in the default suite; pure data parallel in the slow one.
    [pytest.param((8, 1), marks=pytest.mark.slow), (2, 4)],
    ids=["data8", "data2_fsdp4"],
)
def test_sharded_step_matches_single_device(single_device, mesh_shape):
    trainer, initial, batch, states, expected_metrics, _ = single_device
    if len(jax.devices()) < 8:  # the accelerator check runs this file on one GPU or TPU
        pytest.skip("needs 8 devices (conftest's fake CPU devices)")
    expected = states[0]
    config = trainer.config
    with config.unlocked():
        config.mesh.data, config.mesh.fsdp = mesh_shape
    mesh = make_mesh(config.mesh)
    abstract = jax.eval_shape(lambda: initial)
    shardings = state_shardings(abstract, mesh)
    if mesh_shape[1] > 1:  # FSDP really splits the big kernels
        specs = [s.spec for s in jax.tree.leaves(shardings)]
        assert any("fsdp" in tuple(s) for s in specs)
    state = jax.device_put(initial, shardings)
    step = compile_train_step(trainer, mesh, shardings)
    key = jax.random.key(7)
    state, m = step(state, batch, key)
    got = jax.device_get(state)
    for k in ("loss/mel", "loss/adv_d", "loss/adv_g", "loss/fm", "vq/commitment"):
        np.testing.assert_allclose(m[k], expected_metrics[0][k], rtol=1e-4, err_msg=k)
    # The untrained generator's gradient norm is ~5e4: fp32 summation order shows at 1e-4.
    np.testing.assert_allclose(m["norm/grad_g"], expected_metrics[0]["norm/grad_g"], rtol=2e-3)
    # One Adam step moves each weight by ~lr; reduction order differs across devices, so
    # compare the movement, not the bits.
    moved = jax.tree.map(
        lambda a, b: np.abs(np.asarray(a) - np.asarray(b)), expected.gen_params, initial.gen_params
    )
    diff = jax.tree.map(
        lambda a, b: np.abs(np.asarray(a) - np.asarray(b)), got.gen_params, expected.gen_params
    )
    total_moved = sum(float(x.sum()) for x in jax.tree.leaves(moved))
    total_diff = sum(float(x.sum()) for x in jax.tree.leaves(diff))
    assert total_moved > 0
    assert total_diff < 1e-2 * total_moved, (total_diff, total_moved)
    for a, b in zip(jax.tree.leaves(got.disc_params), jax.tree.leaves(expected.disc_params)):
        np.testing.assert_allclose(a, b, atol=5e-5)


def test_nonfinite_batch_leaves_state_unchanged(single_device):
    trainer, initial, batch, _, _, (step, shardings) = single_device
    state = jax.device_put(initial, shardings)
    bad = batch.at[0, 100].set(jnp.nan)
    new, m = step(state, bad, jax.random.key(7))
    new = jax.device_get(new)
    assert int(new.nonfinite_steps) == 1 and int(new.step) == 1
    assert float(m["train/step_finite"]) == 0.0
    for part in ("gen_params", "disc_params", "gen_opt_state", "disc_opt_state"):
        got, want = jax.tree.leaves(getattr(new, part)), jax.tree.leaves(getattr(initial, part))
        assert len(got) == len(want) > 0, part
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b, err_msg=part)


def test_overfit_one_batch_lowers_mel_loss(single_device):
    trainer, initial, batch, _, _, (step, shardings) = single_device
    state = jax.device_put(initial, shardings)
    key = jax.random.key(7)
    mels = []
    for _ in range(25):
        state, m = step(state, batch, key)
        mels.append(float(m["loss/mel"]))
    first, last = np.mean(mels[:3]), np.mean(mels[-3:])
    print(f"mel {first:.3f} -> {last:.3f}")
    # measured: 3.9 -> 0.9 (ratio 0.23) in 25 steps
    assert last < 0.5 * first, (first, last)


def test_dead_codes_are_restarted(single_device):
    trainer, initial, batch, _, _, (step, shardings) = single_device
    usage = np.asarray(initial.vq_usage).copy()
    usage[0, :] = 0.0  # level 0: every code looks dead
    usage[1, :5] = 0.0  # level 1: five codes look dead ...
    usage[1, 5:] = 0.5  # ... and the rest are alive (0.5 so no EMA update lands on exactly 1)
    state = jax.device_put(initial.replace(vq_usage=usage), shardings)
    new, m = step(state, batch, jax.random.key(7))
    new = jax.device_get(new)
    new_usage = np.asarray(new.vq_usage)
    # A code used in this very batch survives (its EMA gets 0.05 * count); the rest restart
    # and get a fresh grace count of exactly 1.
    restarted0, restarted1 = new_usage[0] == 1.0, new_usage[1] == 1.0
    assert restarted0.sum() > 0.8 * trainer.codec.codebook_size
    assert 1 <= restarted1.sum() <= 5 and not restarted1[5:].any()
    assert float(m["vq/restarted_codes"]) == restarted0.sum() + restarted1.sum()
    old_cb = np.asarray(initial.gen_params["params"]["quantizer"]["level1"]["codebook"])
    new_cb = np.asarray(new.gen_params["params"]["quantizer"]["level1"]["codebook"])
    # Restarted rows jump to encoder outputs; the others only take an Adam step (~lr).
    jumps = np.abs(new_cb - old_cb).max(axis=1)
    assert np.all(jumps[restarted1] > 10 * jumps[~restarted1].max())
    # Elsewhere a plain EMA update of the grace count 1: decay + (1 - decay) * count, with the
    # decay slowed for this small batch (`dead_code_decay`).
    n = np.prod(batch.shape[:2]) // trainer.codec.hop_length // trainer.codec.vq_strides[2]
    decay = dead_code_decay(trainer.config.train, n * trainer.codec.channels, usage.shape[1])
    assert decay > trainer.config.train.dead_code_decay
    assert np.all(new_usage[2] >= decay - 1e-6) and np.any(np.abs(new_usage[2] - 1.0) > 1e-5)
    assert np.isclose(new_usage[2].min(), decay, rtol=0, atol=1e-6)  # a code this batch missed


def test_dead_code_decay_spans_enough_uses_of_each_code():
    import ml_collections

    train = ml_collections.ConfigDict({"dead_code_decay": 0.95, "dead_code_min_hits": 8.0})
    # One 1 s crop at a stride-4 level of a 75 Hz model: 19 vectors for 256 codes -> a window
    # of 8 * 256 / 19 steps, in which a code used at the uniform rate is expected 8 times.
    decay = dead_code_decay(train, 19, 256)
    assert np.isclose(1 / (1 - decay), 8 * 256 / 19) and np.isclose(1 / (1 - decay) * 19 / 256, 8)
    assert dead_code_decay(train, 4800, 1024) == 0.95  # a large batch keeps the set decay
    train.dead_code_min_hits = 0.0
    assert dead_code_decay(train, 19, 256) == 0.95


def test_flat_optimizer_matches_per_leaf_optimizer():
    """`make_optimizer(flatten=True)` (used without FSDP) is the same AdamW + clipping."""
    import optax

    from jax_codec.training.step import make_optimizer

    config = load_config("configs/base.py:runlocal")
    schedule = optax.constant_schedule(1e-2)
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    params = {"a": jax.random.normal(k1, (3, 4)), "b": {"c": jax.random.normal(k2, (5,))}}
    results = []
    for flatten in (False, True):
        tx = make_optimizer(schedule, 0.5, config.optim, flatten=flatten)
        p, opt = params, tx.init(params)
        for i in range(3):  # big gradients: the clipping is exercised too
            grads = jax.tree.map(lambda x, i=i: 10.0 * jnp.cos(x + i), p)
            updates, opt = tx.update(grads, opt, p)
            p = optax.apply_updates(p, updates)
        results.append(p)
        shapes = sorted(x.shape for x in jax.tree.leaves(opt) if x.ndim)
        # Flat: mu and nu are single vectors of all 17 weights; else one leaf per parameter.
        assert shapes == ([(17,), (17,)] if flatten else [(3, 4), (3, 4), (5,), (5,)]), shapes
    for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_trainer_flattens_the_optimizer_only_without_fsdp():
    config = load_config("configs/base.py:runlocal")
    assert Trainer(config).flat
    with config.unlocked():
        config.mesh.fsdp = 2
    trainer = Trainer(config)
    assert not trainer.flat
    abstract = jax.eval_shape(trainer.init_state, jax.random.key(0))
    # Per-leaf moments: the FSDP rule can split them like their parameters.
    mu = abstract.gen_opt_state[1][0].mu
    assert jax.tree.structure(mu) == jax.tree.structure(abstract.gen_params)


@pytest.mark.skipif("jax.default_backend() != 'cpu'", reason="XLA:CPU options")
def test_training_compiler_options_on_cpu():
    from jax_codec.training.step import (
        _cpu_option_known,
        init_compiler_options,
        training_compiler_options,
    )

    mesh = make_mesh(small_config().mesh, jax.devices()[:1])
    # The options the train step and the init are compiled with exist in this jaxlib ...
    assert training_compiler_options(mesh) == {"xla_cpu_use_fusion_emitters": False}
    assert init_compiler_options(mesh) == {"xla_backend_optimization_level": 0}
    # ... and one that a jaxlib lacks is dropped with a warning, not a failed compile.
    assert not _cpu_option_known("xla_cpu_no_such_option", True)


def test_gan_warmup_zeroes_adversarial_weights_until_its_step():
    trainer = Trainer(small_config(**{"loss.gan_start_step": "5"}))
    before = trainer._step_weights(jnp.asarray(4))
    after = trainer._step_weights(jnp.asarray(5))
    assert float(before["adv_g"]) == 0.0 and float(before["fm"]) == 0.0
    assert float(before["mel"]) == trainer.weights["mel"]
    assert float(after["adv_g"]) == trainer.weights["adv_g"]
    assert float(after["fm"]) == trainer.weights["fm"]
    with pytest.raises(Exception, match="gan_start_step"):
        Trainer(small_config(**{"loss.gan_start_step": "5", "loss.balancer": "True"}))


def test_create_train_state_timings_give_the_same_state(single_device):
    """`timings` records each phase of a cold init and changes nothing in the state."""
    trainer, initial, *_ = single_device
    mesh = make_mesh(small_config().mesh, jax.devices()[:1])  # other tests edit trainer.config
    timings = {}
    state, _ = create_train_state(trainer, mesh, jax.random.key(0), timings=timings)
    assert list(timings) == ["trace", "lower", "compile", "run"]
    assert all(v >= 0 for v in timings.values())
    chex.assert_trees_all_equal(jax.device_get(state), initial)


@pytest.mark.slow  # two inits compiled for a 4-device mesh
def test_host_init_places_the_same_state_in_the_same_shardings():
    """`train.init_on=host` (the default on accelerators) computes the state on the CPU and
    places it: the values and shardings of the init compiled for the mesh (FSDP 2 x data 2)."""
    key = jax.random.key(3)
    states = {}
    for place in ("device", "host"):
        config = small_config(**{"train.init_on": place, "mesh.fsdp": "2"})
        mesh = make_mesh(config.mesh, jax.devices()[:4])
        timings = {}
        states[place] = create_train_state(Trainer(config), mesh, key, timings=timings)
        assert ("host" in timings) == (place == "host")
    (dev, dev_sh), (host, host_sh) = states["device"], states["host"]
    assert jax.tree.structure(dev) == jax.tree.structure(host)
    assert jax.tree.leaves(dev_sh) == jax.tree.leaves(host_sh)
    for a, b, s in zip(jax.tree.leaves(dev), jax.tree.leaves(host), jax.tree.leaves(host_sh)):
        assert b.sharding.is_equivalent_to(s, b.ndim) and a.sharding.is_equivalent_to(s, a.ndim)
    assert any(not s.is_fully_replicated for s in jax.tree.leaves(host_sh))  # FSDP shards some
    # The random draws are bit-identical; weight norms' `g` (a norm of each drawn kernel) is
    # reduced in another order when the kernel is sharded, hence the last-bit tolerance.
    chex.assert_trees_all_close(jax.device_get(dev), jax.device_get(host), rtol=2e-7, atol=0)


def test_init_place_choice_and_bad_value():
    from jax_codec.config import ConfigError
    from jax_codec.training.state_init import init_place

    mesh = make_mesh(small_config().mesh, jax.devices()[:1])
    assert init_place(small_config(), mesh) == "device"  # auto on a CPU mesh
    assert init_place(small_config(**{"train.init_on": "host"}), mesh) == "host"
    with pytest.raises(ConfigError, match="train.init_on='gpu'; use one of auto, device, host"):
        init_place(small_config(**{"train.init_on": "gpu"}), mesh)


def test_codebook_ema_update_by_hand():
    """`Trainer._codebook_ema` on a made-up batch: with quantizer dropout, only the examples
    that use a level move its codes."""
    trainer = Trainer(
        small_config(
            **{
                "model.quantizer": "plain",
                "model.codebook_dim": "3",
                "train.codebook_ema_decay": "0.75",
            }
        )
    )
    rng = np.random.default_rng(0)
    books = [rng.normal(size=(5, 3)).astype(np.float32) for _ in range(2)]
    inputs = [rng.normal(size=(2, 4, 3)).astype(np.float32) for _ in range(2)]
    codes = [np.array([[0, 0, 2, 4], [1, 1, 1, 0]]), np.array([[3, 3, 3, 1], [2, 2, 2, 2]])]
    n_used = np.array([2, 1])  # the second example uses level 0 only
    stats = {}
    for i, c in enumerate(codes):
        w = np.broadcast_to((i < n_used)[:, None], c.shape).astype(np.float32)
        stats[f"level{i}/counts"] = jnp.asarray(np.bincount(c.ravel(), w.ravel(), minlength=5))
    out = types.SimpleNamespace(
        projected=tuple(map(jnp.asarray, inputs)),
        codes=tuple(map(jnp.asarray, codes)),
        n_quantizers=jnp.asarray(n_used),
        stats=stats,
    )
    params = {"params": {"quantizer": {f"level{i}": {"codebook": b} for i, b in enumerate(books)}}}
    got = trainer._codebook_ema(params, out)["params"]["quantizer"]
    x0, x1 = inputs[0].reshape(8, 3), inputs[1][0]
    want0 = books[0].copy()
    for k, rows in {0: [0, 1, 7], 1: [4, 5, 6], 2: [2], 4: [3]}.items():
        want0[k] = 0.75 * books[0][k] + 0.25 * x0[rows].mean(0)
    want1 = books[1].copy()  # level 1: the first example only (codes 3, 3, 3, 1)
    want1[3] = 0.75 * books[1][3] + 0.25 * x1[:3].mean(0)
    want1[1] = 0.75 * books[1][1] + 0.25 * x1[3]
    np.testing.assert_allclose(got["level0"]["codebook"], want0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["level1"]["codebook"], want1, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_codebook_ema_moves_used_codes_to_what_they_coded():
    """`train.codebook_ema_decay` in the compiled step: a code used in the batch keeps `decay`
    of itself and takes `1 - decay` of the mean of the inputs it coded; unused codes stay."""
    decay = 0.5
    config = small_config(
        **{
            "model.quantizer": "plain",
            "model.codebook_dim": "64",
            "model.quantizer_dropout": "0.0",
            "train.codebook_ema_decay": str(decay),
            "loss.codebook_weight": "0.0",  # no gradient reaches the codebooks
            "train.dead_code_threshold": "0.0",
            "train.batch_size": "2",
        }
    )
    trainer = Trainer(config)
    mesh = make_mesh(config.mesh, jax.devices()[:1])
    state, _ = create_train_state(trainer, mesh, jax.random.key(0))
    initial = jax.device_get(state)
    batch = music_batch(trainer, n=2)
    key = jax.random.key(3)
    new, _ = jax.jit(trainer.train_step)(state, batch, key)
    new = jax.device_get(new)
    # The step's own forward: same params, no quantizer dropout, so the same codes.
    out = trainer.codec.apply(
        initial.gen_params,
        batch[..., None],
        None,
        train=True,
        rngs={"dropout": jax.random.fold_in(key, 0)},
    )
    lr = float(trainer.gen_schedule(0))
    for i in range(trainer.codec.num_quantizers):
        old = np.asarray(initial.gen_params["params"]["quantizer"][f"level{i}"]["codebook"])
        got = np.asarray(new.gen_params["params"]["quantizer"][f"level{i}"]["codebook"])
        codes = np.asarray(out.codes[i]).reshape(-1)
        inputs = np.asarray(out.projected[i]).reshape(len(codes), -1)
        used = np.unique(codes)
        means = np.stack([inputs[codes == k].mean(0) for k in used])
        # Only AdamW's weight decay (lr * 0.01 * |p|) moves a codebook besides the update.
        tol = 2 * lr * config.optim.weight_decay * np.abs(old).max() + 1e-5
        np.testing.assert_allclose(got[used], decay * old[used] + (1 - decay) * means, atol=tol)
        unused = np.setdiff1d(np.arange(len(old)), used)
        np.testing.assert_allclose(got[unused], old[unused], atol=tol)
        assert np.abs(means - old[used]).max() > 100 * tol  # the update is not a no-op


def test_codebook_ema_needs_codes_in_the_latent():
    with pytest.raises(ConfigError, match="model.quantizer='plain'"):
        Trainer(small_config(**{"train.codebook_ema_decay": "0.99"}))
    with pytest.raises(ConfigError, match="codebook_ema_decay=1.5"):
        Trainer(
            small_config(
                **{
                    "model.quantizer": "plain",
                    "model.codebook_dim": "64",
                    "train.codebook_ema_decay": "1.5",
                }
            )
        )


def test_restarted_codes_start_from_the_configured_grace():
    """`train.dead_code_grace`: the use count a restarted code starts from."""
    trainer = Trainer(
        small_config(
            **{
                "model.quantizer": "plain",
                "model.codebook_dim": "3",
                "train.dead_code_grace": "0.02",
                "train.dead_code_min_hits": "0.0",
            }
        )
    )
    rng = np.random.default_rng(1)
    n_levels = 2
    books = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(n_levels)]
    inputs = [rng.normal(size=(1, 6, 3)).astype(np.float32) for _ in range(n_levels)]
    counts = [np.array([6.0, 0, 0, 0]), np.array([3.0, 3.0, 0, 0])]
    out = types.SimpleNamespace(
        projected=tuple(map(jnp.asarray, inputs)),
        stats={f"level{i}/counts": jnp.asarray(c) for i, c in enumerate(counts)},
    )
    usage = jnp.asarray([[0.5, 0.5, 0.005, 0.5], [0.005, 0.5, 0.5, 0.005]], jnp.float32)
    params = {"params": {"quantizer": {f"level{i}": {"codebook": b} for i, b in enumerate(books)}}}
    new, new_usage, restarted = trainer._restart_dead_codes(params, usage, out, jax.random.key(0))
    decay = trainer.config.train.dead_code_decay
    want = decay * np.asarray(usage) + (1 - decay) * np.stack(counts)
    dead = want < trainer.config.train.dead_code_threshold
    assert dead.sum() == 2 and int(restarted) == 2  # level 0 code 2, level 1 code 3
    np.testing.assert_allclose(new_usage, np.where(dead, 0.02, want), rtol=1e-6)
    for i in range(n_levels):
        moved = np.any(
            np.asarray(new["params"]["quantizer"][f"level{i}"]["codebook"]) != books[i], -1
        )
        np.testing.assert_array_equal(moved, dead[i])


def test_a_grace_not_above_the_threshold_is_refused():
    with pytest.raises(ConfigError, match="dead_code_grace=0.01 is not above"):
        Trainer(small_config(**{"train.dead_code_grace": "0.01"}))
