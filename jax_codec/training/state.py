"""The train state: generator + discriminator params, optimizer states, step, EMA, counters."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax

Array = jax.Array


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes; a pytree, donated to and returned by the step.

    step: scalar int32, optimizer steps taken (including skipped non-finite ones).
    gen_params / disc_params: `{'params': ...}` variable dicts of the codec and discriminators.
    gen_opt_state / disc_opt_state: optax states.
    ema_params: EMA of `gen_params` (`None` when `train.ema_decay == 0`).
    balancer_state: gradient-balancer EMA (`None` unless `loss.balancer`).
    nonfinite_steps: scalar int32, steps skipped because a loss or gradient was not finite.
    vq_usage: `[K, N]` EMA of per-code use counts per level (`None` if restarts are off).
    """

    step: Array
    gen_params: Any
    disc_params: Any
    gen_opt_state: Any
    disc_opt_state: Any
    ema_params: Any
    balancer_state: Any
    nonfinite_steps: Array
    vq_usage: Any = None
