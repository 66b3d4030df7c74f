"""Importable presets: `jax_codec.configs.<name>.get_config(arg)` returns a locked ConfigDict.

Load one by name with its variants, as the command line does (`--config=base:runlocal`), or
by file path (`--config=configs/base.py:runlocal`; those files re-export these modules):

    from jax_codec.config import load_config
    config = load_config("base:runlocal")

`common.default_config()` declares every field with its comment; each preset changes values.
"""

# The presets, by module name (`load_config` accepts these names).
PRESETS = (
    "base",
    "dac_16khz",
    "dac_24khz",
    "dac_44khz",
    "encodec_24khz",
    "gpu_h100",
    "music48",
    "snac_24khz",
    "snac_32khz",
    "snac_44khz",
    "spectrostream_48khz",
    "tpu_v5e",
)
