"""`python -m jax_codec.evaluate`: a codec against Opus, MP3 and other checkpoints.

See `jax_codec.evaluation.run` for what is measured and written, and README ("Evaluate against
Opus and MP3").
"""

import sys

from jax_codec.evaluation.run import main

if __name__ == "__main__":
    sys.exit(main())
