"""One way for every command to turn an error into a message and an exit code.

Exit codes: 0 ok; 2 bad arguments or input (`CliError`, and the `usage` error types a command
names, e.g. `ConfigError`); 1 a bad or mismatched `.jcodec`/priors file, an I/O failure or
anything unexpected; 130 interrupted. The message is one line on stderr, `error: ...`.
`JAX_CODEC_DEBUG=1` re-raises unexpected errors with their traceback.

Imports nothing heavy: the light packages (`jax_codec.evaluation`) use it too.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

USAGE = 2  # exit code of bad arguments or input
FAILURE = 1  # exit code of bad files, I/O and unexpected errors
INTERRUPTED = 130


class CliError(Exception):
    """A user-facing error in the arguments or the input: one line on stderr, exit code 2."""


class ArgumentParser(argparse.ArgumentParser):
    """Reports usage errors as one line (`error: ...`), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"error: {message} (see {self.prog} --help)\n")


def one_line(e: BaseException | str) -> str:
    """The message of `e` on one line (its lines joined by "; "), or its type's name."""
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return "; ".join(lines) or (type(e).__name__ if isinstance(e, BaseException) else "")


def classify(e: BaseException, usage: tuple[type[BaseException], ...] = ()) -> tuple[int, str]:
    """`(exit code, one-line message)` for `e`; `usage` error types count as `CliError`."""
    from jax_codec.bitstream.entropy import BitstreamError

    if isinstance(e, (CliError, *usage)):
        return USAGE, one_line(e)
    if isinstance(e, KeyboardInterrupt):
        return INTERRUPTED, "interrupted; no output written"
    if isinstance(e, BitstreamError):
        return FAILURE, one_line(e)
    if isinstance(e, MemoryError):
        return FAILURE, "out of memory"
    if isinstance(e, OSError):
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        return FAILURE, f"{where}{e.strerror or one_line(e)}"
    return FAILURE, f"unexpected {type(e).__name__}: {one_line(e)}"


def report(e: BaseException, usage: tuple[type[BaseException], ...] = ()) -> int:
    """Prints `error: ...` (one line) for `e` on stderr; returns its exit code."""
    code, message = classify(e, usage)
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def guarded(fn: Callable[[], int | None], usage: tuple[type[BaseException], ...] = ()) -> int:
    """Runs a command body; returns its exit code (None: 0), or reports what it raised.

    Unexpected errors (not `CliError`, a `usage` type or `BitstreamError`) are re-raised with
    their traceback when `JAX_CODEC_DEBUG` is set.
    """
    from jax_codec.bitstream.entropy import BitstreamError

    try:
        return fn() or 0
    except (Exception, KeyboardInterrupt) as e:
        expected = (CliError, BitstreamError, KeyboardInterrupt, *usage)
        if os.environ.get("JAX_CODEC_DEBUG") and not isinstance(e, expected):
            raise
        return report(e, usage)


def fail(e: BaseException | str, code: int = USAGE) -> NoReturn:
    """Prints `error: ...` (one line) and exits with `code`; for absl entry points."""
    print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
    sys.exit(code)
