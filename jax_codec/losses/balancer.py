"""EnCodec-style loss balancer, functional (after audiocraft's `losses/balancer.py`).

Several losses `l_i(y)` of the generator output `y` have gradients `g_i = dl_i/dy` of unrelated
scales (a mel loss, an adversarial loss, feature matching...), so fixed loss weights are hard to
choose and drift during training. The balancer rescales each gradient by an exponential moving
average of its norm so that, on average, loss i contributes the fraction `w_i / sum(w)` of a
gradient of norm `total_norm`:

    G = sum_i total_norm * w_i / sum(w) * g_i / (eps + ema(||g_i||))

and the caller backpropagates `G` through the generator:

    y, generator_vjp = jax.vjp(lambda p: codec.apply(p, x), params)
    grad_y, balancer_state, metrics = balance_gradients(loss_fns, weights, y, balancer_state)
    (param_grads,) = generator_vjp(grad_y)

Losses that do not depend on `y` alone (codebook/commitment losses) are differentiated the usual
way and added to `param_grads`. Under `jit` over a sharded batch the norms are already computed
over the global batch, so no cross-device averaging is needed. The EMA is bias-corrected (its
weights are normalised, as flashy's averager), so the first step uses the current norms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import jax
import jax.numpy as jnp

Array = jax.Array
BalancerState = dict[str, dict[str, Array]]


def init_balancer_state(names: Iterable[str]) -> BalancerState:
    """EMA state for the named losses: running sums of gradient norms and of EMA weights."""
    names = list(names)
    return {
        "norm_sum": {name: jnp.zeros((), jnp.float32) for name in names},
        "weight_sum": {name: jnp.zeros((), jnp.float32) for name in names},
    }


def _grad_norm(grad: Array, per_batch_item: bool) -> Array:
    if per_batch_item:
        # Norm per example, averaged: independent of the batch size.
        per_item = jnp.sqrt(jnp.sum(grad.reshape(grad.shape[0], -1).astype(jnp.float32) ** 2, 1))
        return per_item.mean()
    return jnp.sqrt(jnp.sum(grad.astype(jnp.float32) ** 2))


def balance_gradients(
    loss_fns: Mapping[str, Callable[[Array], Array]],
    weights: Mapping[str, float],
    y: Array,
    state: BalancerState,
    *,
    balance_grads: bool = True,
    total_norm: float = 1.0,
    ema_decay: float = 0.999,
    per_batch_item: bool = True,
    epsilon: float = 1e-12,
) -> tuple[Array, BalancerState, dict[str, Array]]:
    """Balanced gradient of several losses with respect to the generator output `y`.

    Args:
      loss_fns: name -> `f(y) -> scalar`; close over targets, discriminator params, etc.
      weights: name -> desired share of the gradient (any positive scale).
      y: generator output, e.g. `[B, T]` or `[B, T, C]`; axis 0 is the batch.
      state: from `init_balancer_state(loss_fns)` or a previous call.
      balance_grads: False gives the plain weighted sum `sum_i w_i g_i` (EMA still updated).
      total_norm: reference norm of the balanced gradient.
      ema_decay: decay of the moving average of gradient norms.
      per_batch_item: norms per example, averaged over the batch (audiocraft's default).
      epsilon: added to the averaged norm before dividing.

    Returns:
      `(grad_y, new_state, metrics)`: `grad_y` has the shape of `y`; metrics hold each loss value
      (`loss/<name>`), its raw gradient norm, its EMA share of the summed norms and its scale
      (`balancer/<name>/...`), and `balancer/effective_loss` = sum_i scale_i * l_i.
    """
    missing = set(loss_fns) - set(weights)
    if missing:
        raise ValueError(f"no weight for losses {sorted(missing)}")
    unknown = set(loss_fns) - set(state["norm_sum"])
    if unknown:
        raise ValueError(
            f"balancer state has no entry for {sorted(unknown)}; see init_balancer_state"
        )
    weight_total = sum(float(weights[name]) for name in loss_fns)
    if weight_total <= 0:
        raise ValueError(f"weights must sum to a positive value, got {dict(weights)}")

    values, grads, avg_norms = {}, {}, {}
    new_state: BalancerState = {
        "norm_sum": dict(state["norm_sum"]),
        "weight_sum": dict(state["weight_sum"]),
    }
    metrics: dict[str, Array] = {}
    for name, loss_fn in loss_fns.items():
        values[name], grads[name] = jax.value_and_grad(loss_fn)(y)
        norm = _grad_norm(grads[name], per_batch_item)
        norm_sum = ema_decay * state["norm_sum"][name] + norm
        weight_sum = ema_decay * state["weight_sum"][name] + 1.0
        new_state["norm_sum"][name] = norm_sum
        new_state["weight_sum"][name] = weight_sum
        avg_norms[name] = norm_sum / weight_sum
        metrics[f"loss/{name}"] = values[name]
        metrics[f"balancer/{name}/grad_norm"] = norm

    # As audiocraft: the total norm is approximated by the sum of norms (exact only when the
    # gradients are aligned); it is used for monitoring only.
    norm_total = sum(avg_norms.values())
    grad_y = jnp.zeros_like(y)
    effective_loss = jnp.zeros((), jnp.float32)
    for name in loss_fns:
        if balance_grads:
            share = float(weights[name]) / weight_total
            scale = share * total_norm / (epsilon + avg_norms[name])
        else:
            scale = jnp.asarray(float(weights[name]), jnp.float32)
        grad_y = grad_y + (scale * grads[name]).astype(y.dtype)
        effective_loss = effective_loss + scale * jax.lax.stop_gradient(values[name])
        metrics[f"balancer/{name}/ratio"] = avg_norms[name] / (norm_total + epsilon)
        metrics[f"balancer/{name}/scale"] = scale
    metrics["balancer/effective_loss"] = effective_loss
    return grad_y, new_state, metrics
