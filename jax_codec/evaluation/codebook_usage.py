"""Codebook usage: per quantizer level, the fraction of the codebook used, the entropy of the
code distribution in bits and its perplexity (numpy, deterministic)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def code_histograms(
    codes: np.ndarray | Sequence[np.ndarray], codebook_size: int | Sequence[int]
) -> list[np.ndarray]:
    """Per-level code counts ``[codebook_size]`` (int64).

    `codes`: one integer array per quantizer level (any shape, e.g. the codec's tuple of
    ``[B, F / stride_i]`` arrays), or one array whose first axis indexes levels. Counts of
    several files can be added before `code_usage_from_counts`.
    """
    if isinstance(codes, np.ndarray) and codes.ndim < 2:
        raise ValueError(
            f"codes of shape {codes.shape}: pass one array per level, or [levels, ...]"
        )
    levels = list(codes)
    sizes = (
        [int(codebook_size)] * len(levels)
        if np.ndim(codebook_size) == 0
        else [int(k) for k in codebook_size]
    )
    if len(sizes) != len(levels):
        raise ValueError(f"{len(sizes)} codebook sizes for {len(levels)} levels")
    counts = []
    for i, (c, k) in enumerate(zip(levels, sizes, strict=True)):
        c = np.asarray(c)
        if c.size and not np.issubdtype(c.dtype, np.integer):
            raise ValueError(f"codes of level {i} are {c.dtype}, expected integers")
        c = c.astype(np.int64).ravel()
        if k < 1:
            raise ValueError(f"codebook size must be positive, got {k}")
        if c.size and (c.min() < 0 or c.max() >= k):
            raise ValueError(f"codes of level {i} span [{c.min()}, {c.max()}], outside [0, {k})")
        counts.append(np.bincount(c, minlength=k))
    return counts


def code_usage_from_counts(counts: Sequence[np.ndarray]) -> list[dict[str, float]]:
    """Per level: `usage` (fraction of codebook entries used at least once), `entropy_bits`
    (of the empirical code distribution), `perplexity` (2 ** entropy: the effective number of
    codes), `n_codes` (codes counted). NaN statistics for a level with no codes."""
    out = []
    for level, cnt in enumerate(counts):
        cnt = np.asarray(cnt, dtype=np.float64)
        n = float(cnt.sum())
        if n == 0:
            out.append(
                {
                    "level": level,
                    "usage": math.nan,
                    "entropy_bits": math.nan,
                    "perplexity": math.nan,
                    "n_codes": 0,
                }
            )
            continue
        p = cnt[cnt > 0] / n
        entropy = float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: no "-0.0" for one code
        out.append(
            {
                "level": level,
                "usage": float((cnt > 0).sum() / cnt.size),
                "entropy_bits": entropy,
                "perplexity": float(2.0**entropy),
                "n_codes": int(n),
            }
        )
    return out


def code_usage(
    codes: np.ndarray | Sequence[np.ndarray], codebook_size: int | Sequence[int]
) -> list[dict[str, float]]:
    """Codebook usage, code entropy (bits) and perplexity per quantizer level; see
    `code_histograms` for `codes` and `code_usage_from_counts` for the fields."""
    return code_usage_from_counts(code_histograms(codes, codebook_size))


def flatten_code_usage(stats: Sequence[dict[str, float]]) -> dict[str, float]:
    """`code_usage` output as flat columns: `code_usage_l0`, `code_entropy_bits_l0`,
    `code_perplexity_l0`, ... (for CSV/JSON rows)."""
    flat = {}
    for s in stats:
        i = s["level"]
        flat[f"code_usage_l{i}"] = s["usage"]
        flat[f"code_entropy_bits_l{i}"] = s["entropy_bits"]
        flat[f"code_perplexity_l{i}"] = s["perplexity"]
    return flat
