"""The train step's codebook maintenance, between optimizer steps: EnCodec's codebook update
(`train.codebook_ema_decay`) and dead-code restarts (`train.dead_code_*`). Pure and jit-able;
`gen_params` is the generator's variables, `out` the step's `CodecOutput` (its codes, the
levels' inputs `projected`, per-level `stats` counts and `n_quantizers`)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jax_codec.models.quantizer import restart_dead_codes

Array = jax.Array


def codebook_ema(gen_params: Any, out: Any, decay: float) -> Any:
    """EnCodec's codebook update (`train.codebook_ema_decay`): every code used in the
    batch moves `1 - decay` of the way to the mean of the inputs it coded; unused codes stay
    (the dead-code restart handles those). The codebooks then follow the encoder's output
    however far it moves, which the codebook loss's Adam steps (about the learning rate per
    step) cannot."""
    qparams = dict(gen_params["params"]["quantizer"])
    for i, (z_e, c) in enumerate(zip(out.projected, out.codes, strict=True)):
        level = dict(qparams[f"level{i}"])
        book = level["codebook"]
        mask = (i < out.n_quantizers).astype(jnp.float32)[:, None]  # [B, 1]
        w = jnp.broadcast_to(mask, c.shape)
        x = jax.lax.stop_gradient(z_e).astype(jnp.float32) * w[..., None]
        sums = jnp.zeros(book.shape, jnp.float32).at[c].add(x)
        counts = out.stats[f"level{i}/counts"]
        means = sums / jnp.maximum(counts, 1.0)[:, None]
        new = decay * book.astype(jnp.float32) + (1.0 - decay) * means
        level["codebook"] = jnp.where(counts[:, None] > 0, new, book).astype(book.dtype)
        qparams[f"level{i}"] = level
    params = dict(gen_params["params"])
    params["quantizer"] = qparams
    return {**gen_params, "params": params}


def restart_dead_levels(gen_params: Any, usage: Array, out: Any, key: Array, train: Any):
    """EnCodec's dead-code expiry on every level, under `train`'s `dead_code_*` settings:
    returns (params, usage, #restarted)."""
    threshold = train.dead_code_threshold
    qparams = dict(gen_params["params"]["quantizer"])
    new_usage, total = [], jnp.zeros((), jnp.float32)
    for i, z_e in enumerate(out.projected):
        counts = out.stats[f"level{i}/counts"]
        decay = dead_code_decay(train, z_e.size // z_e.shape[-1], usage.shape[1])
        u = decay * usage[i] + (1.0 - decay) * counts
        level = dict(qparams[f"level{i}"])
        candidates = jax.lax.stop_gradient(z_e.reshape(-1, z_e.shape[-1]))
        level["codebook"], dead = restart_dead_codes(
            level["codebook"],
            u,
            candidates,
            jax.random.fold_in(key, i),
            threshold,
            clip_norm=train.get("dead_code_clip_norm", True),
        )
        qparams[f"level{i}"] = level
        # Restarted codes get a new grace period.
        new_usage.append(jnp.where(dead, train.get("dead_code_grace", 1.0), u))
        total = total + jnp.sum(dead)
    params = dict(gen_params["params"])
    params["quantizer"] = qparams
    return {**gen_params, "params": params}, jnp.stack(new_usage), total


def dead_code_decay(train: Any, vectors_per_step: int, codebook_size: int) -> float:
    """The decay of a level's EMA of per-step code counts (`train.dead_code_decay`), slowed
    where a step holds few vectors so that the EMA's window (``1 / (1 - decay)`` steps) holds
    at least `train.dead_code_min_hits` uses of a code used at the uniform rate.

    With few vectors per step (one 1 s crop: 19 at a stride-4 level of a 75 Hz model, for 256
    codes) a 20-step window expects ~1.5 uses of such a code, so chance alone expires live
    codes every step and the codebooks churn; at the batch sizes of an accelerator run the
    configured decay stands."""
    decay = float(train.dead_code_decay)
    hits = float(train.get("dead_code_min_hits", 0.0))
    if hits <= 0:
        return decay
    return max(decay, 1.0 - vectors_per_step / (hits * codebook_size))
