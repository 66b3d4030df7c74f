"""Adversarial losses (LSGAN, hinge) and feature matching over several discriminators.

Each discriminator contributes one logits array (any shape, e.g. `[B, F, 1]` or
`[B, H, W, 1]`) and one list of intermediate feature maps. Inputs are lists over
discriminators; feature maps are lists (discriminators) of lists (layers). Pass the feature maps
without the final logits.

- "lsgan" (HiFi-GAN, DAC): D: mean((1 - real)^2) + mean(fake^2); G: mean((1 - fake)^2).
- "hinge" (MelGAN, EnCodec/audiocraft): D: mean(relu(1 - real)) + mean(relu(1 + fake));
  G: -mean(fake).

Per-discriminator (and, for feature matching, per-layer) terms are summed (`reduction="sum"`,
as DAC and HiFi-GAN) or averaged (`"mean"`, as EnCodec's normalised loss).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

Array = jax.Array

ADVERSARIAL_KINDS = ("lsgan", "hinge")


def _check_kind(kind: str) -> None:
    if kind not in ADVERSARIAL_KINDS:
        raise ValueError(
            f"unknown adversarial loss kind {kind!r}; valid kinds: {ADVERSARIAL_KINDS}"
        )


def _combine(terms: list[Array], reduction: str) -> Array:
    if reduction not in ("sum", "mean"):
        raise ValueError(f"unknown reduction {reduction!r}; valid: 'sum', 'mean'")
    if not terms:
        return jnp.zeros((), jnp.float32)
    total = sum(terms)
    return total / len(terms) if reduction == "mean" else total


def discriminator_loss(
    real_logits: Sequence[Array],
    fake_logits: Sequence[Array],
    kind: str = "lsgan",
    reduction: str = "sum",
) -> Array:
    """Discriminator loss over discriminators; lists of logits of any shape -> scalar.

    `fake_logits` should come from a stop-gradient generator output (the caller decides).
    """
    _check_kind(kind)
    if len(real_logits) != len(fake_logits):
        raise ValueError(f"{len(real_logits)} real vs {len(fake_logits)} fake logit arrays")
    terms = []
    for real, fake in zip(real_logits, fake_logits, strict=True):
        if kind == "lsgan":
            terms.append(jnp.mean((1.0 - real) ** 2) + jnp.mean(fake**2))
        else:
            terms.append(jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake)))
    return _combine(terms, reduction)


def generator_adv_loss(
    fake_logits: Sequence[Array], kind: str = "lsgan", reduction: str = "sum"
) -> Array:
    """Generator adversarial loss; list of logits on generated audio -> scalar."""
    _check_kind(kind)
    if kind == "lsgan":
        terms = [jnp.mean((1.0 - fake) ** 2) for fake in fake_logits]
    else:
        terms = [-jnp.mean(fake) for fake in fake_logits]
    return _combine(terms, reduction)


def feature_matching_loss(
    real_feats: Sequence[Sequence[Array]],
    fake_feats: Sequence[Sequence[Array]],
    reduction: str = "sum",
) -> Array:
    """L1 between discriminator features of real and generated audio -> scalar.

    Mean absolute difference per feature map, then over the layers and the discriminators
    either summed (`"sum"`, DAC's and HiFi-GAN's definition, which DAC's weight of 2 assumes)
    or averaged (`"mean"`: mean over each discriminator's layers, then over discriminators).
    Real features carry no gradient.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"unknown reduction {reduction!r}; valid: 'sum', 'mean'")
    if len(real_feats) != len(fake_feats):
        raise ValueError(f"{len(real_feats)} real vs {len(fake_feats)} fake feature lists")
    terms = []
    for real_layers, fake_layers in zip(real_feats, fake_feats, strict=True):
        if len(real_layers) != len(fake_layers):
            raise ValueError(f"{len(real_layers)} real vs {len(fake_layers)} fake feature maps")
        if not real_layers:
            continue
        per_layer = [
            jnp.mean(jnp.abs(fake - jax.lax.stop_gradient(real)))
            for real, fake in zip(real_layers, fake_layers, strict=True)
        ]
        terms.append(sum(per_layer) if reduction == "sum" else sum(per_layer) / len(per_layer))
    return _combine(terms, reduction)
