"""Statistics of an evaluation: metric values per row (`measure`), and means with 95%
confidence intervals per codec and setting (`mean_ci`, `summarize`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from jax_codec.cli_errors import one_line

METRIC_DIGITS = 9  # significant digits kept of each metric value (see `measure`)


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[int, float, float]:
    """`(n, mean, half_width)` of the finite `values`: the two-sided `confidence` interval of
    the mean from the t distribution with n - 1 degrees of freedom, `mean ± half_width`.
    NaN half-width for n = 1 (no interval), NaN mean for n = 0."""
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return 0, math.nan, math.nan
    mean = float(v.mean())
    if n == 1:
        return 1, mean, math.nan
    from scipy import stats

    t = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1))
    return n, mean, t * float(v.std(ddof=1)) / math.sqrt(n)


def measure(ref: np.ndarray, est: np.ndarray, sr: int, names: Sequence[str]):
    """`(values, problems)`: each metric of `names` (NaN where it cannot be computed, with the
    reason in `problems`), rounded to `METRIC_DIGITS` significant digits.

    The rounding is what makes repeated runs byte-identical: some metric code (ViSQOL's FFTs,
    BLAS) varies in the last bit or two (~1e-15 relative) with memory alignment. The stereo
    metrics (`metrics.STEREO_METRICS`) are NaN without a problem for a reference that is not
    stereo: they do not apply.
    """
    from jax_codec.evaluation import metrics

    values, problems = {}, []
    stereo = np.ndim(ref) == 2 and np.shape(ref)[0] == 2
    for name in names:
        if name in metrics.STEREO_METRICS and not stereo:
            values[name] = math.nan
            continue
        try:
            v = metrics.compute_all(ref, est, sr, [name])[name]
            values[name] = float(f"{v:.{METRIC_DIGITS}g}") if math.isfinite(v) else v
        except (ValueError, metrics.MissingDependencyError) as e:
            values[name] = math.nan
            problems.append(f"{name}: {one_line(e)}")
    return values, problems


def per_file(rows: Sequence[Mapping], name: str) -> list[float]:
    """The mean of `name` over each file's rows (its excerpts, finite values only), one value
    per file in the order the rows first name them: excerpts of one file are not independent
    samples, so intervals are taken over files."""
    values: dict[object, list[float]] = {}
    for i, r in enumerate(rows):
        v = float(r.get(name, math.nan))
        key = r.get("file", ("row", i))  # a row without a file is a file of its own
        values.setdefault(key, [])
        if math.isfinite(v):
            values[key].append(v)
    return [float(np.mean(v)) if v else math.nan for v in values.values()]


def summarize(rows: Sequence[Mapping], metric_names: Sequence[str]) -> list[dict]:
    """One entry per (codec, setting), ordered by setting then codec (in the order the rows
    first name them): mean actual kbps, files, excerpts, and per metric `{n, mean, ci95}` over
    files (a file's value is the mean over its excerpts; n = files with a finite value; ci95 =
    the half-width of the 95% interval of the mean; NaN for one file)."""
    order: dict[str, int] = {}
    groups: dict[tuple, list[Mapping]] = {}
    for r in rows:
        order.setdefault(r["codec"], len(order))
        groups.setdefault((r["codec"], r["n_quantizers"]), []).append(r)
    out = []
    for (codec, k), members in sorted(groups.items(), key=lambda g: (g[0][1], order[g[0][0]])):
        _, kbps, kbps_ci = mean_ci(per_file(members, "actual_kbps"))
        entry = {
            "codec": codec,
            "kind": members[0]["kind"],
            "n_quantizers": k,
            "files": len({r.get("file", ("row", i)) for i, r in enumerate(members)}),
            "excerpts": len(members),
            "errors": sum(1 for r in members if r.get("error")),
            "kbps": kbps,
            "kbps_ci95": kbps_ci,
            "metrics": {},
        }
        for name in metric_names:
            n, mean, half = mean_ci(per_file(members, name))
            entry["metrics"][name] = {"n": n, "mean": mean, "ci95": half}
        out.append(entry)
    return out
