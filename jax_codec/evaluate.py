"""`python -m jax_codec.evaluate`: a codec against Opus, MP3 and other checkpoints.

An alias of `python -m jax_codec.evaluation` (`jax_codec/evaluation/__main__.py`); see
`jax_codec.evaluation.run` for what is measured and written, and docs/evaluation.md.
"""

import sys

from jax_codec.evaluation.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
