r"""Train a codec: `python -m jax_codec.train --config=configs/base.py [--workdir=DIR]`.

Override any config field from the command line, e.g. `--config.train.batch_size=8`.
Without `--workdir` the run writes to `runs/<config name>`; rerunning resumes it.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/base.py[:runlocal]."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config name>).")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from absl import logging

    from jax_codec.config import ConfigError, validate_config

    # Orbax logs every save step at INFO; keep the terminal for the progress bar.
    logging.set_verbosity(logging.WARNING)
    from jax_codec.data.pipeline import DataError
    from jax_codec.training.checkpoints import CheckpointMismatchError
    from jax_codec.training.loop import train_and_evaluate

    config = _CONFIG.value
    if config is None:
        sys.exit("error: --config is required, e.g. --config=configs/base.py")
    try:
        validate_config(config)
        workdir = _WORKDIR.value or os.path.join("runs", config.get("name", "run"))
        train_and_evaluate(config, workdir)
    except (ConfigError, CheckpointMismatchError, DataError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
