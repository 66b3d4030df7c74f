"""jax_codec: a neural audio codec for music in JAX/Flax."""

__version__ = "0.1.0"
