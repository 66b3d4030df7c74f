"""Test setup: 8 fake CPU devices for sharding tests, set before JAX starts."""

import os
import tempfile

# Tests check correctness, not speed: XLA's LLVM backend at -O0 compiles the models several times
# faster on CPU (what a cold test run spends most of its time on) and runs them somewhat slower.
FAST_COMPILE = "--xla_backend_optimization_level=0"
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {FAST_COMPILE}")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests (and the CLI subprocesses they start) compile the same functions many times: share a
# persistent compilation cache for the session.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"jax_codec_test_cache_{os.getuid()}"),
)

import pytest  # noqa: E402


def subprocess_env(devices: int = 1, **extra: str) -> dict[str, str]:
    """The environment for a command a test starts: `devices` fake CPU devices, the tests'
    fast-compile XLA option and compilation cache, plus `extra` variables."""
    flags = f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}"
    return dict(os.environ, XLA_FLAGS=flags, **extra)


def louder(params, factor=4.0):
    """Scale the decoder's weights so outputs are large enough for tolerances to mean
    something (random-init DAC decoders are near silent)."""
    import jax

    def f(path, v):
        name = jax.tree_util.keystr(path)
        return v * factor if "decoder" in name and "weight_g" in name else v

    return jax.tree_util.tree_map_with_path(f, params)


def model_input(x, rate: int, target_db: float = -18.0):
    """(`x` ``[C, T]`` or ``[T, C]`` (when T > C) scaled as `compress` scales a file at
    `rate` before the model, the gain in dB): to `data.normalize_db` by `levels`."""
    import numpy as np

    from jax_codec import levels

    a = np.asarray(x, np.float32)
    ct = a if a.shape[0] <= a.shape[-1] else a.T
    gain = levels.normalizing_gain(levels.level_db(ct, rate), float(np.abs(a).max()), target_db)
    return a * np.float32(levels.db_to_gain(gain)), gain


def grow_params(mono_params, codec):
    """`codec`'s (stereo) weights from a mono model's: equal where the shapes agree (all but
    the encoder's first and the decoder's last conv, or, with delayed fusion, the blocks where
    the channels meet or part); where an axis is longer, the mono weights then a different
    copy of them, so two channels take different paths; where it is shorter, the first
    entries. Saves compiling a second `init`."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    x = jax.ShapeDtypeStruct((1, codec.length_multiple, codec.channels), jnp.float32)
    target = jax.eval_shape(codec.init, jax.random.key(0), x)

    def grow(leaf, want):
        a = np.asarray(leaf)
        for axis, n in enumerate(want.shape):
            while a.shape[axis] < n:
                a = np.concatenate([a, 0.8 * np.roll(a, 1, axis=0)], axis=axis)
            a = np.take(a, np.arange(n), axis=axis)
        return a

    return jax.tree.map(grow, mono_params, target)


@pytest.fixture(scope="session")
def runlocal_codec():
    """(codec, params) of configs/base.py:runlocal, initialised once per test session.

    Compiling `init` costs far more than `apply` on CPU, so tests share these weights. The
    non-causal variant has the same parameter tree, so it can reuse them.
    """
    import jax
    import jax.numpy as jnp

    from jax_codec.config import load_config
    from jax_codec.models.codec import build_codec

    codec = build_codec(load_config("configs/base.py:runlocal").model)
    params = jax.jit(codec.init)(jax.random.key(0), jnp.zeros((1, 4096, 1)))
    return codec, params


@pytest.fixture(params=["custom", "reference"])
def kernel_mode(request, monkeypatch):
    """Runs a test once with the hand-written kernels and once with the plain XLA ops
    (`jax_codec.models.kernels`; the switch is read when a function is traced)."""
    monkeypatch.setenv("JAX_CODEC_KERNELS", request.param)
    return request.param


# Memory one test worker needs at most (the heaviest tests compile 8-device train steps).
WORKER_MEMORY_BYTES = 4 << 30


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject's addopts): one worker per core, as many as memory allows, at most
    8. The tests are CPU-bound (compiling, mostly on one thread), so two cores run two."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, _available_memory() // WORKER_MEMORY_BYTES, 8))


def _available_memory() -> int:
    """Bytes of memory available to new processes (Linux's MemAvailable), or a guess."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return WORKER_MEMORY_BYTES * 8


# Modules whose tests take longest (CLI runs of the train command, sharded train steps, the
# streaming and converter equivalences), longest first. They are collected first so that, in
# parallel runs, they start at once instead of ending the run alone: xdist's worksteal hands
# each worker a contiguous share of the list and steals from the *end* of a worker's queue, so
# a module at the front also stays on one worker and builds its module fixtures once.
LONG_MODULES = (
    "test_train_cli.py",
    "test_train_step.py",
    "test_streaming.py",
    "test_dac_recipe.py",
    "test_convert.py",
    "test_evaluate.py",
)


def pytest_collection_modifyitems(config, items):
    """The `LONG_MODULES` first (a stable reorder of whole modules: fixtures keep their scope
    grouping); tests marked `slow` run only when asked for (`pytest -m slow`, or any -m naming
    slow)."""
    rank = {name: i for i, name in enumerate(LONG_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
    if "slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="slow; run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
