r"""`python -m jax_codec.convert --from {dac,encodec,snac} --checkpoint FILE --config PRESET
--output DIR`.

Converts a PyTorch checkpoint (`.pth` / `.th` state dict, or `.safetensors`) to a jax_codec
checkpoint directory that `jax_codec.inference.load_codec(DIR)`, the CLI's `--checkpoint DIR`
and `python -m jax_codec.train --init_from=DIR` read. Bad input exits with code 2 and a one-line
`error: ...` naming the first missing, mis-shaped or unused tensor. A SNAC release is a plain
state dict (`pytorch_model.bin`); its `config.json`, when it lies beside the file, is checked
against the preset too.

DAC training runs save the discriminator apart from the generator (`<save_path>/<tag>/dac/` and
`<tag>/discriminator/weights.pth`): pass the `<tag>` folder (or its `dac/weights.pth`) as
`--checkpoint` and both are converted, so that `train --init_from=DIR` starts from the
discriminators too; `--discriminator FILE` names one explicitly, `--discriminator none` skips it.
"""

from __future__ import annotations

import argparse
import os
import sys


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m jax_codec.convert",
        description="Convert a PyTorch DAC / EnCodec / SNAC checkpoint to a jax_codec checkpoint.",
    )
    parser.add_argument("--from", dest="source", required=True, choices=("dac", "encodec", "snac"))
    parser.add_argument(
        "--checkpoint",
        required=True,
        help=".pth / .th / .safetensors file; for DAC also the folder a training run saved "
        "(<save_path>/<tag>, holding dac/weights.pth)",
    )
    parser.add_argument(
        "--discriminator",
        default="auto",
        help="DAC only: the discriminator weights of a DAC training run "
        "(<save_path>/<tag>/discriminator/weights.pth), converted too so that "
        "`train --init_from` starts from them. Default 'auto': that file when it lies beside "
        "<tag>/dac/weights.pth; 'none': convert the generator only. Released DAC weights "
        "hold no discriminator.",
    )
    parser.add_argument(
        "--config",
        required=True,
        help="preset, e.g. configs/dac_44khz.py, configs/encodec_24khz.py, configs/snac_32khz.py",
    )
    parser.add_argument("--output", required=True, help="directory to write")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --output if it already exists"
    )
    parser.add_argument(
        "--trust_checkpoint",
        action="store_true",
        help="unpickle the file fully if torch.load(weights_only=True) refuses it (runs code "
        "from the file: only for files you trust)",
    )
    args = parser.parse_args(argv)

    from jax_codec.config import ConfigError, load_config
    from jax_codec.convert.core import ConversionError, convert_checkpoint

    if os.path.exists(args.output) and not args.overwrite:
        print(f"error: {args.output} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
    except ValueError as e:  # ConfigError, or a preset's unknown variant
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        checkpoint, discriminator = args.checkpoint, None
        if args.source == "dac":
            from jax_codec.convert.discriminator import dac_checkpoint_files

            checkpoint, discriminator = dac_checkpoint_files(checkpoint, args.discriminator)
        elif args.discriminator not in ("auto", "none"):
            raise ConversionError(f"--discriminator is for --from dac, not {args.source}")
        out = convert_checkpoint(
            args.source,
            checkpoint,
            config,
            args.output,
            trust=args.trust_checkpoint,
            discriminator=discriminator,
        )
    except (ConfigError, ConversionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({config.get('name', '')}); load it with jax_codec.inference.load_codec")
    if discriminator is not None:
        print(f"with the discriminators of {discriminator} (train --init_from starts from them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
