"""Tests for jax_codec/training/checkpoints.py: Orbax save/restore, data position, preemption."""

import os
import shutil
import signal

import flax
import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jax_codec.training import checkpoints


@flax.struct.dataclass
class TinyState:
    """A train-state-shaped pytree: step, params, optimizer state."""

    step: jax.Array
    params: dict
    opt_state: optax.OptState


def make_state(features: int = 8, fill: float = 1.0) -> TinyState:
    """Parameters sharded over all (fake) devices on their first axis, as FSDP would."""
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    params = {
        "dense": {
            "kernel": jnp.full((jax.device_count() * 2, features), fill),
            "bias": jnp.arange(features, dtype=jnp.float32) * fill,
        }
    }
    state = TinyState(
        step=jnp.asarray(0, jnp.int32), params=params, opt_state=optax.adam(1e-3).init(params)
    )

    def place(x: jax.Array) -> jax.Array:
        spec = P("data") if x.ndim and x.shape[0] % jax.device_count() == 0 else P()
        return jax.device_put(x, NamedSharding(mesh, spec))

    return jax.tree.map(place, state)


def abstract(state: TinyState) -> TinyState:
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )


def data_iterator() -> grain.DatasetIterator:
    return iter(grain.MapDataset.range(100).shuffle(seed=0).batch(4))


def host_copy(state: TinyState) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(state)]


def assert_same(restored: TinyState, expected: list[np.ndarray]) -> None:
    leaves = jax.tree.leaves(restored)
    assert len(leaves) == len(expected)
    for got, want in zip(leaves, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)


def test_round_trip_restores_state_shardings_and_data_position(tmp_path):
    state = make_state(fill=3.0)
    expected = host_copy(state)
    it = data_iterator()
    for _ in range(5):
        next(it)
    with checkpoints.Checkpointer(tmp_path, save_every=5) as ckpt:
        assert ckpt.maybe_save(5, state, it, {"model": {"dim": 8}}) is False
        # The train step donates the state right after saving: the async save must not need
        # the device buffers any more, nor the iterator's later position.
        for x in jax.tree.leaves(state):
            x.delete()
        batch_after_step_5 = next(it)
        next(it)
    assert (tmp_path / "checkpoints" / "5" / "state").is_dir()

    fresh = make_state(fill=0.0)  # what a new process would build
    it2 = data_iterator()
    with checkpoints.Checkpointer(tmp_path, save_every=5) as ckpt:
        restored_state, step = ckpt.restore_latest(abstract(fresh), it2)
        config = ckpt.read_config()
    assert step == 5
    assert isinstance(restored_state, TinyState)
    assert_same(restored_state, expected)
    for got, want in zip(jax.tree.leaves(restored_state), jax.tree.leaves(fresh), strict=True):
        assert got.sharding == want.sharding
    np.testing.assert_array_equal(next(it2), batch_after_step_5)
    assert config["step"] == 5
    assert config["config"] == {"model": {"dim": 8}}
    assert config["jax_version"] == jax.__version__


def test_restore_latest_on_empty_workdir_returns_none(tmp_path):
    with checkpoints.Checkpointer(tmp_path) as ckpt:
        assert ckpt.restore_latest(abstract(make_state()), data_iterator()) is None
        assert ckpt.latest_step is None


def test_schedule_latest_step_and_max_to_keep(tmp_path):
    with checkpoints.Checkpointer(tmp_path, max_to_keep=2, save_every=2) as ckpt:
        for step in range(1, 8):
            assert ckpt.maybe_save(step, make_state(fill=float(step))) is False
        ckpt.wait()
        assert ckpt.all_steps() == [4, 6]
        # The loop's final forced save at an already saved step is a no-op, not an error.
        assert ckpt.save(6, make_state(fill=-1.0), force=True) is False
        assert ckpt.save(7, make_state(fill=7.0)) is False  # off schedule, not forced
        assert ckpt.save(7, make_state(fill=7.0), force=True) is True
        ckpt.wait()
        assert ckpt.all_steps() == [6, 7]
    on_disk = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert on_disk == ["6", "7"]

    with checkpoints.Checkpointer(tmp_path, max_to_keep=2, save_every=2) as ckpt:
        # No iterator was saved: restoring with one leaves it at the start, with a warning.
        it = data_iterator()
        state, step = ckpt.restore_latest(abstract(make_state()), it)
    assert step == 7
    assert_same(state, host_copy(make_state(fill=7.0)))
    np.testing.assert_array_equal(next(it), next(data_iterator()))


def test_mismatched_shapes_give_a_clear_error(tmp_path):
    with checkpoints.Checkpointer(tmp_path, save_every=1) as ckpt:
        ckpt.save(3, make_state(features=8), force=True)
    with checkpoints.Checkpointer(tmp_path) as ckpt:
        with pytest.raises(checkpoints.CheckpointMismatchError) as info:
            ckpt.restore_latest(abstract(make_state(features=16)))
    message = str(info.value)
    assert str(tmp_path / "checkpoints" / "3") in message
    assert "config changed" in message
    assert "params/dense/bias: shape (8,) in the checkpoint, (16,) in this run" in message
    # No chained Orbax traceback below ours.
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_mismatched_structure_gives_a_clear_error(tmp_path):
    with checkpoints.Checkpointer(tmp_path) as ckpt:
        ckpt.save(3, make_state(), force=True)
    bigger = make_state()
    bigger = bigger.replace(params={**bigger.params, "extra": {"scale": jnp.ones(3)}})
    with checkpoints.Checkpointer(tmp_path) as ckpt:
        with pytest.raises(checkpoints.CheckpointMismatchError) as info:
            ckpt.restore_latest(abstract(bigger))
    message = str(info.value)
    assert "params/extra/scale: expected by this run, missing in the checkpoint" in message
    assert "config changed" in message
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_sigterm_saves_then_stops_and_handler_is_restored(tmp_path):
    sentinel = signal.getsignal(signal.SIGTERM)
    ckpt = checkpoints.Checkpointer(tmp_path, save_every=1000, handle_sigterm=True)
    try:
        # Without our handler the signal would kill the test run instead of failing it.
        assert signal.getsignal(signal.SIGTERM) not in (sentinel, signal.SIG_DFL)
        assert ckpt.maybe_save(6, make_state(), data_iterator()) is False
        assert ckpt.all_steps() == []
        os.kill(os.getpid(), signal.SIGTERM)
        assert ckpt.preemption_requested
        assert ckpt.maybe_save(7, make_state(fill=7.0), data_iterator()) is True
        # The preemption save is finished when maybe_save returns: the process may exit now.
        assert ckpt.all_steps() == [7]
        assert (tmp_path / "checkpoints" / "7" / "data").is_dir()
    finally:
        ckpt.close()
        if signal.getsignal(signal.SIGTERM) is not sentinel:
            signal.signal(signal.SIGTERM, sentinel)
            pytest.fail("close() did not restore the previous SIGTERM handler")
    with checkpoints.Checkpointer(tmp_path, handle_sigterm=False) as ckpt:
        state, step = ckpt.restore_latest(abstract(make_state()))
    assert step == 7
    assert_same(state, host_copy(make_state(fill=7.0)))


def test_interrupted_saves_are_ignored(tmp_path, monkeypatch):
    it = data_iterator()
    next(it)
    ckpt = checkpoints.Checkpointer(tmp_path, save_every=2)
    ckpt.maybe_save(2, make_state(fill=2.0), it)
    ckpt.wait()
    batch_after_step_2 = next(it)

    # Crash mid-save: the state item fails after the step's tmp directory was created and the
    # other items were started.
    async def crash(*args, **kwargs):
        raise RuntimeError("simulated crash")

    with monkeypatch.context() as patch:
        patch.setattr(checkpoints.ocp.PyTreeCheckpointHandler, "async_save", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            ckpt.maybe_save(4, make_state(fill=4.0), it)
    ckpt.close()
    root = tmp_path / "checkpoints"
    assert any(".orbax-checkpoint-tmp" in p.name for p in root.iterdir())
    # A complete-looking step that was never renamed (killed just before the commit).
    shutil.copytree(root / "2", root / "6.orbax-checkpoint-tmp-1700000000")

    it2 = data_iterator()
    with checkpoints.Checkpointer(tmp_path, save_every=2) as ckpt:
        state, step = ckpt.restore_latest(abstract(make_state()), it2)
        assert step == 2
        assert_same(state, host_copy(make_state(fill=2.0)))
        np.testing.assert_array_equal(next(it2), batch_after_step_2)
        # The run goes on and saves the same steps again.
        ckpt.maybe_save(4, make_state(fill=4.0), it2)
        ckpt.maybe_save(6, make_state(fill=6.0), it2)
        ckpt.wait()
        assert ckpt.all_steps() == [2, 4, 6]
        state, step = ckpt.restore_latest(abstract(make_state()))
    assert step == 6
    assert_same(state, host_copy(make_state(fill=6.0)))


def test_single_process_saves_compile_nothing(tmp_path):
    # Orbax's default splits each replicated array into one slice per device, a compiled
    # `lax.slice` per shape: hundreds of compiles and seconds per save of a real train state.
    # Within one process our handlers write each array from one replica instead.
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    replicated = NamedSharding(mesh, P())
    params = {
        f"w{i}": jax.device_put(jnp.full((jax.device_count() * (i + 1), 3), float(i)), replicated)
        for i in range(6)
    }
    compiles = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        with checkpoints.Checkpointer(tmp_path, handle_sigterm=False) as ckpt:
            ckpt.save(1, params, force=True)
        checkpoints.save_pytree(tmp_path / "export", params)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiles == []
    with checkpoints.Checkpointer(tmp_path, handle_sigterm=False) as ckpt:
        restored, step = ckpt.restore_latest(abstract(params))
    assert step == 1
    for k, v in params.items():
        np.testing.assert_array_equal(np.asarray(restored[k]), np.asarray(v))
    exported = ocp.StandardCheckpointer().restore(tmp_path / "export")
    for k, v in params.items():
        np.testing.assert_array_equal(np.asarray(exported[k]), np.asarray(v))
