"""Vector quantizers: factorized L2-normalized VQ, and a hierarchical (multi-scale) residual VQ.

One *level* is one codebook applied at its own frame rate: level `i` average-pools the residual
over `strides[i]` frames, quantizes it, and repeats the result back to the full frame rate.
`strides=(1,) * K` is DAC's residual VQ; `strides=(8, 4, 2, 1)` is SNAC's multi-scale VQ; the
default mixes both: a few coarse levels, then full-rate residual levels.

Causality: a pooled frame covers `[k s, (k+1) s)` and is used for exactly those frames, so a
level of stride `s` adds a wait of `s` frames, the "coarse-level wait" counted in
`Codec.latency_samples`. Neither pooling nor upsampling reads past its own block.

Side levels (`side_levels`, joint-stereo models, docs/stereo.md): the latent is the joint
latent `[..., :D]` followed by a side latent `[..., D:]` of `side_dim` dims; the listed levels
quantize the side latent (a residual chain of their own), every other level the joint one, and
each level's output fills only its own part of the latent, the rest zero. A side level's bits
are then read only by what reads the side part (the side decoder, `MidSideDecoders`).

Shapes: B batch, F frames at the full latent rate, D latent dims, d codebook dims, N codes.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from jax_codec.models.kernels import argmax, argmin
from jax_codec.models.layers import SCALED_INIT, WNConv1d

Array = jax.Array


def _l2_normalize(x: Array, eps: float = 1e-12) -> Array:
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


def pool(x: Array, stride: int) -> Array:
    """Mean over non-overlapping blocks of `stride` frames: `[B, F, D] -> [B, F / stride, D]`."""
    if stride == 1:
        return x
    b, f, d = x.shape
    return x.reshape(b, f // stride, stride, d).mean(axis=2)


def upsample(x: Array, stride: int) -> Array:
    """Repeat each frame `stride` times: `[B, F', D] -> [B, F' * stride, D]`."""
    return x if stride == 1 else jnp.repeat(x, stride, axis=1)


class FactorizedVQ(nn.Module):
    """DAC's factorized VQ: project to `codebook_dim`, cosine nearest neighbour, project back.

    `__call__(z [B, F, D]) -> (z_q [B, F, D], codes [B, F], commitment [B], codebook [B],
    z_e [B, F, d])` (z_e: the projected input, candidates for dead-code restarts),
    with a straight-through estimator so gradients reach the encoder through `z_q`.
    """

    input_dim: int
    codebook_size: int = 1024
    codebook_dim: int = 8

    def setup(self):
        self.in_proj = WNConv1d(self.codebook_dim, 1, kernel_init=SCALED_INIT)
        self.out_proj = WNConv1d(self.input_dim, 1, kernel_init=SCALED_INIT)
        self.codebook = self.param(
            "codebook", nn.initializers.normal(1.0), (self.codebook_size, self.codebook_dim)
        )

    def nearest(self, z_e: Array) -> Array:
        """Codes `[B, F]` of the codebook vectors nearest in cosine distance to `z_e [B, F, d]`."""
        sims = jnp.einsum(
            "bfd,nd->bfn",
            _l2_normalize(z_e.astype(jnp.float32)),
            _l2_normalize(self.codebook.astype(jnp.float32)),
            precision=jax.lax.Precision.HIGHEST,
        )
        return argmax(sims)

    def decode_codes(self, codes: Array) -> Array:
        """Codes `[B, F]` -> projected vectors `[B, F, D]`."""
        return self.out_proj(jnp.take(self.codebook, codes, axis=0))

    def __call__(self, z: Array) -> tuple[Array, Array, Array, Array, Array]:
        z_e = self.in_proj(z.astype(jnp.float32))
        codes = self.nearest(z_e)
        z_q = jnp.take(self.codebook, codes, axis=0)
        commitment = jnp.mean(jnp.square(z_e - jax.lax.stop_gradient(z_q)), axis=(1, 2))
        codebook = jnp.mean(jnp.square(jax.lax.stop_gradient(z_e) - z_q), axis=(1, 2))
        # Straight-through, written so the value is exactly z_q (z_e - sg(z_e) == 0 bit for bit):
        # the forward pass then matches decode() exactly, and d z_q / d z_e is the identity.
        # The codebook learns from the codebook loss only (DAC's z_e + sg(z_q - z_e)): the
        # decoder's gradient goes to the encoder, never to the codebook vectors.
        z_q = jax.lax.stop_gradient(z_q) + (z_e - jax.lax.stop_gradient(z_e))
        return self.out_proj(z_q), codes, commitment, codebook, z_e


class PlainVQ(nn.Module):
    """EnCodec's (SoundStream's) VQ: Euclidean nearest neighbour in the latent space itself.

    No projections: the codebook `[N, D]` lives in the `D`-dim latent space. Same interface as
    `FactorizedVQ` (`z_e` is the input itself). EnCodec updates its codebooks by k-means EMA;
    here they learn by the codebook loss, like `FactorizedVQ`'s.
    """

    input_dim: int
    codebook_size: int = 1024

    def setup(self):
        self.codebook = self.param(
            "codebook", nn.initializers.normal(1.0), (self.codebook_size, self.input_dim)
        )

    def nearest(self, z_e: Array) -> Array:
        """Codes `[B, F]` of the codebook vectors nearest in Euclidean distance to `z_e`."""
        x = z_e.astype(jnp.float32)
        e = self.codebook.astype(jnp.float32)
        cross = jnp.einsum("bfd,nd->bfn", x, e, precision=jax.lax.Precision.HIGHEST)
        # |x|^2 - 2 x.e + |e|^2, summed in EnCodec's order.
        dist = jnp.sum(x * x, axis=-1, keepdims=True) - 2 * cross + jnp.sum(e * e, axis=-1)
        return argmin(dist)

    def decode_codes(self, codes: Array) -> Array:
        """Codes `[B, F]` -> codebook vectors `[B, F, D]`."""
        return jnp.take(self.codebook, codes, axis=0)

    def __call__(self, z: Array) -> tuple[Array, Array, Array, Array, Array]:
        z_e = z.astype(jnp.float32)
        codes = self.nearest(z_e)
        z_q = jnp.take(self.codebook, codes, axis=0)
        commitment = jnp.mean(jnp.square(z_e - jax.lax.stop_gradient(z_q)), axis=(1, 2))
        codebook = jnp.mean(jnp.square(jax.lax.stop_gradient(z_e) - z_q), axis=(1, 2))
        return self.straight_through(z_e, z_q), codes, commitment, codebook, z_e

    @staticmethod
    def straight_through(z_e: Array, z_q: Array) -> Array:
        """Value exactly z_q; the codebook learns from the codebook loss only."""
        return jax.lax.stop_gradient(z_q) + (z_e - jax.lax.stop_gradient(z_e))


class EuclideanVQ(PlainVQ):
    """SpectroStream's VQ (`magenta_rt`'s `ResidualVectorQuantizer`): `PlainVQ` with its
    arithmetic, so imported codebooks give its codes bit for bit: the nearest code minimises
    `-2 x.e + |e|^2` (no `|x|^2`, which could merge near-ties when rounded), and the quantized
    value is `x + sg(q - x)` (not exactly `q`), which the next level's residual subtracts.
    """

    def nearest(self, z_e: Array) -> Array:
        x = z_e.astype(jnp.float32).reshape(-1, z_e.shape[-1])
        e = self.codebook.astype(jnp.float32)
        dist = -2 * jnp.einsum("nd,kd->nk", x, e) + jnp.einsum("kd,kd->k", e, e)[None, :]
        return jnp.argmin(dist, axis=-1).astype(jnp.int32).reshape(z_e.shape[:-1])

    @staticmethod
    def straight_through(z_e: Array, z_q: Array) -> Array:
        return z_e + jax.lax.stop_gradient(z_q - z_e)


@flax.struct.dataclass
class QuantizerOutput:
    """Result of `HierarchicalRVQ.__call__`.

    quantized: `[B, F, D]` sum of the used levels (straight-through).
    codes: one `[B, F / strides[i]]` int32 array per level (all levels, used or not).
    n_quantizers: `[B]` number of levels used per example (quantizer dropout).
    commitment, codebook: scalar losses as DAC defines them: per level the mean over the batch
      (examples that do not use the level count as zero), summed over levels.
    residual: per level, the mean square of what the level's output leaves of its input in the
      latent space, `|r_i - out_proj(codebook[c])|^2` with the input `r_i` held fixed (so it
      trains the level's codebook and output projection, never the encoder), reduced as
      `commitment` is. DAC's losses act in each level's 8-dim code space only, so nothing makes
      a level's output match its input and the next level's residual need not shrink
      (`loss.residual_weight`, docs/training.md).
    stats: `level{i}/perplexity`, `level{i}/dead_fraction`, `level{i}/counts` `[N]`,
      `level{i}/latent_error`: `|z - q|^2 / |z|^2` with levels 0..i, over the examples that
      use level i: above 1 when the levels add more than they remove.
    projected: per level, the projected pooled residual `[B, F / strides[i], d]`.
    """

    quantized: Array
    codes: tuple[Array, ...]
    n_quantizers: Array
    commitment: Array
    codebook: Array
    stats: dict
    projected: tuple[Array, ...] = ()
    residual: Array | float = 0.0


class HierarchicalRVQ(nn.Module):
    """Residual VQ whose levels run at their own frame rates (coarse to fine), with dropout.

    `strides[i]` is level i's pooling factor; F must be a multiple of lcm(strides).
    `dropout_prob`: in training, that fraction of examples uses a random number of levels
    in [1, K] (DAC's quantizer dropout), so one model serves every bitrate.
    `kind`: "factorized" (`FactorizedVQ`, DAC), "plain" (`PlainVQ`, EnCodec) or "euclidean"
    (`EuclideanVQ`, SpectroStream); with no projection, `codebook_dim` must equal `input_dim`
    (a side level's, `side_dim`).
    `side_levels`, `side_dim`: the levels that quantize the side latent `[..., input_dim:]`
    (see the module doc); level 0 is always joint. The latent is then `input_dim + side_dim`
    wide, in and out.
    """

    input_dim: int
    strides: Sequence[int] = (4, 2, 1, 1, 1, 1, 1, 1)
    codebook_size: int = 1024
    codebook_dim: int = 8
    dropout_prob: float = 0.5
    kind: str = "factorized"
    side_levels: Sequence[int] = ()
    side_dim: int = 0

    def setup(self):
        side = set(self.side_levels)
        if side and (self.side_dim < 1 or not side <= set(range(1, len(self.strides)))):
            raise ValueError(
                f"side_levels={tuple(self.side_levels)} with side_dim={self.side_dim}: side "
                f"levels are among levels 1..{len(self.strides) - 1} and need side_dim >= 1"
            )
        if self.side_dim and not side:
            raise ValueError(f"side_dim={self.side_dim} without side_levels: set side_dim=0")
        dims = [self.side_dim if i in side else self.input_dim for i in range(self.num_levels)]
        if self.kind == "factorized":
            self.levels = [
                FactorizedVQ(d, self.codebook_size, self.codebook_dim, name=f"level{i}")
                for i, d in enumerate(dims)
            ]
        elif self.kind in ("plain", "euclidean"):
            for d in set(dims):
                if self.codebook_dim != d:
                    raise ValueError(
                        f"a plain VQ has no projection: codebook_dim={self.codebook_dim} must "
                        f"equal the latent dim {d} of the levels that quantize it"
                    )
            vq = PlainVQ if self.kind == "plain" else EuclideanVQ
            self.levels = [vq(d, self.codebook_size, name=f"level{i}") for i, d in enumerate(dims)]
        else:
            raise ValueError(
                f"quantizer kind {self.kind!r}: use 'factorized', 'plain' or 'euclidean'"
            )

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    def is_side(self, i: int) -> bool:
        return i in tuple(self.side_levels)

    def _split(self, z: Array) -> list[Array]:
        """`[B, F, input_dim (+ side_dim)]` -> [joint part, side part] (float32)."""
        z = z.astype(jnp.float32)
        want = self.input_dim + self.side_dim
        if z.shape[-1] != want:
            raise ValueError(f"latent has {z.shape[-1]} dims, this quantizer reads {want}")
        return [z[..., : self.input_dim], z[..., self.input_dim :]]

    def _place(self, i: int, q: Array) -> Array:
        """Level i's output in its own part of the whole latent (zeros in the other part)."""
        if not self.side_dim:
            return q
        before, after = (self.input_dim, 0) if self.is_side(i) else (0, self.side_dim)
        return jnp.pad(q, ((0, 0), (0, 0), (before, after)))

    def decode_level(self, i: int, codes: Array) -> Array:
        """Level i's codes `[B, F']` -> its output in the whole latent `[B, F', D (+ side)]`,
        at the codes' own rate (not upsampled)."""
        return self._place(i, self.levels[i].decode_codes(codes))

    def _level_counts(self, n_quantizers: int | None) -> int:
        n = self.num_levels if n_quantizers is None else int(n_quantizers)
        if not 1 <= n <= self.num_levels:
            raise ValueError(f"n_quantizers={n_quantizers} must be in [1, {self.num_levels}]")
        return n

    def __call__(
        self, z: Array, n_quantizers: int | Array | None = None, train: bool = False
    ) -> QuantizerOutput:
        """`z [B, F, D]` -> QuantizerOutput. Draws from the 'dropout' RNG when training.

        `n_quantizers`: None (all levels, or quantizer dropout when training), one int for
        every example, or an int array `[B]` of levels per example (an explicit dropout draw,
        e.g. to reproduce another implementation's).
        """
        b = z.shape[0]
        k = self.num_levels
        if n_quantizers is not None and jnp.ndim(n_quantizers) == 1:
            if jnp.shape(n_quantizers) != (b,):
                raise ValueError(
                    f"n_quantizers per example has shape {jnp.shape(n_quantizers)}, expected ({b},)"
                )
            n_used = jnp.clip(jnp.asarray(n_quantizers, jnp.int32), 1, k)
        elif train and self.dropout_prob > 0 and n_quantizers is None:
            key_use, key_n = jax.random.split(self.make_rng("dropout"))
            random_n = jax.random.randint(key_n, (b,), 1, k + 1)
            use_dropout = jax.random.uniform(key_use, (b,)) < self.dropout_prob
            n_used = jnp.where(use_dropout, random_n, k)
        else:
            n_used = jnp.full((b,), self._level_counts(n_quantizers), jnp.int32)

        residuals = self._split(z)  # the joint latent's residual chain, the side latent's
        quantized = jnp.zeros(z.shape, jnp.float32)
        codes, stats, projected = [], {}, []
        commitment = codebook = residual_loss = jnp.zeros((), jnp.float32)
        energy = sum(jnp.sum(jnp.square(r), axis=(1, 2)) for r in residuals)  # [B]
        for i, (vq, s) in enumerate(zip(self.levels, self.strides, strict=True)):
            mask = (i < n_used).astype(jnp.float32)  # [B]
            part = int(self.is_side(i))
            residual = residuals[part]
            pooled = pool(residual, s)
            q, c, commit_i, cb_i, z_e = vq(pooled)
            projected.append(z_e)
            # The level's output as a function of its codebook and output projection only.
            left = jax.lax.stop_gradient(pooled) - vq.decode_codes(c)
            residual_loss = residual_loss + jnp.mean(jnp.mean(jnp.square(left), (1, 2)) * mask)
            q = upsample(q, s) * mask[:, None, None]
            residuals[part] = residual - q
            quantized = quantized + self._place(i, q)
            codes.append(c)
            # DAC's reduction: per level the batch mean (unused examples count as 0), summed
            # over levels, so its loss weights (commitment 0.25, codebook 1) mean the same here.
            commitment = commitment + jnp.mean(commit_i * mask)
            codebook = codebook + jnp.mean(cb_i * mask)
            counts = (
                jnp.zeros((self.codebook_size,), jnp.float32)
                .at[c]
                .add(jnp.broadcast_to(mask[:, None], c.shape))
            )
            probs = counts / jnp.maximum(counts.sum(), 1.0)
            entropy = -jnp.sum(jnp.where(probs > 0, probs * jnp.log(probs), 0.0))
            stats[f"level{i}/perplexity"] = jnp.exp(entropy)
            stats[f"level{i}/dead_fraction"] = jnp.mean(counts == 0)
            stats[f"level{i}/counts"] = counts
            # Over the examples that use level i (all of them when none does: then each
            # example's own levels, rather than a meaningless 0).
            rest = jax.lax.stop_gradient(
                sum(jnp.sum(jnp.square(r), axis=(1, 2)) for r in residuals)
            )
            w = jnp.where(jnp.sum(mask) > 0, mask, 1.0)
            stats[f"level{i}/latent_error"] = jnp.sum(rest * w) / jnp.maximum(
                jnp.sum(jax.lax.stop_gradient(energy) * w), 1e-12
            )
        return QuantizerOutput(
            quantized=quantized,
            codes=tuple(codes),
            n_quantizers=n_used,
            commitment=commitment,
            codebook=codebook,
            stats=stats,
            projected=tuple(projected),
            residual=residual_loss,
        )

    def encode(self, z: Array, n_quantizers: int | None = None) -> tuple[Array, ...]:
        """`z [B, F, D]` -> codes of the first `n_quantizers` levels, each `[B, F / s_i]`."""
        n = self._level_counts(n_quantizers)
        residuals = self._split(z)
        codes = []
        for i, (vq, s) in enumerate(zip(self.levels[:n], self.strides[:n], strict=True)):
            part = int(self.is_side(i))
            q, c, _, _, _ = vq(pool(residuals[part], s))
            residuals[part] = residuals[part] - upsample(q, s)
            codes.append(c)
        return tuple(codes)

    def decode(self, codes: Sequence[Array]) -> Array:
        """Codes of the first `len(codes)` levels -> quantized latents `[B, F, D]`."""
        n = self._level_counts(len(codes))
        out = None
        for i, (s, c) in enumerate(zip(self.strides[:n], codes, strict=True)):
            q = upsample(self.decode_level(i, c), s)
            out = q if out is None else out + q
        return out


def restart_dead_codes(
    codebook: Array,
    usage: Array,
    candidates: Array,
    key: Array,
    threshold: float = 1e-3,
    clip_norm: bool = True,
) -> tuple[Array, Array]:
    """Replace rarely used codes by random recent encoder outputs (EnCodec's dead-code expiry).

    codebook `[N, d]`; usage `[N]` an EMA of per-code usage probability; candidates `[M, d]`
    projected encoder outputs (e.g. a level's `in_proj` output for the current batch).
    Returns (new codebook, boolean `[N]` mask of restarted codes). Pure and jit-able, so a train
    step can call it every few hundred steps on the codebook leaf of the params.

    clip_norm: a restarted code is no longer than the level's median live code (the
    candidates' median length when no code is live): only its length is cut, not its
    direction. A cosine nearest neighbour ignores lengths, so a code copied from an outlier
    encoder output is picked by every input pointing its way, its length passes into the next
    level's residual, the restarts there copy larger vectors still, and the commitment loss
    then drags the encoder up to the codebooks: the cascade that blew up diverged runs
    (docs/training.md, "When a run diverges"). Bounding by the longest live code or by the
    batch's own candidates is not enough: once the encoder's output grows for a step, the
    whole batch of candidates is long, and so is every code copied from it.
    """
    dead = usage < threshold
    picks = jax.random.randint(key, (codebook.shape[0],), 0, candidates.shape[0])
    chosen = candidates[picks].astype(jnp.float32)
    if clip_norm:
        code_norms = jnp.linalg.norm(codebook.astype(jnp.float32), axis=-1)
        cand_norms = jnp.linalg.norm(candidates.astype(jnp.float32), axis=-1)
        live_median = jnp.nanmedian(jnp.where(dead, jnp.nan, code_norms))
        bound = jnp.where(jnp.all(dead), jnp.median(cand_norms), live_median)
        norms = jnp.linalg.norm(chosen, axis=-1, keepdims=True)
        chosen = chosen * jnp.minimum(1.0, bound / jnp.maximum(norms, 1e-12))
    new = jnp.where(dead[:, None], chosen.astype(codebook.dtype), codebook)
    return new, dead
