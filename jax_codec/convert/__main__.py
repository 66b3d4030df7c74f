r"""`python -m jax_codec convert --from {dac,encodec,snac,spectrostream} --weights FILE
--config PRESET --output DIR` (alias: `python -m jax_codec.convert`).

Converts PyTorch weights (a `.pth` / `.th` state dict, or `.safetensors`), or SpectroStream's
JAX weights (magenta-rt's safetensors files: `jax_codec.convert.spectrostream`), to a jax_codec
checkpoint directory that `jax_codec.inference.load_codec(DIR)`, the CLI's `--checkpoint DIR`
and `python -m jax_codec train --init_from=DIR` read. Bad input exits with code 2 and a one-line
`error: ...` naming the first missing, mis-shaped or unused tensor. A SNAC release is a plain
state dict (`pytorch_model.bin`); its `config.json`, when it lies beside the file, is checked
against the preset too.

DAC training runs save the discriminator apart from the generator (`<save_path>/<tag>/dac/` and
`<tag>/discriminator/weights.pth`): pass the `<tag>` folder (or its `dac/weights.pth`) as
`--weights` and both are converted, so that `train --init_from=DIR` starts from the
discriminators too; `--discriminator FILE` names one explicitly, `--discriminator none` skips it.

`--checkpoint` means a run or export directory in every other command, so the weights flag
here is `--weights`; `--checkpoint FILE` (and `--trust_checkpoint`) still work, with a notice.
"""

from __future__ import annotations

import argparse
import os
import sys

from jax_codec.cli_errors import ArgumentParser, CliError, guarded

EXAMPLE = (
    "{prog} --from dac --weights weights.pth --config configs/dac_44khz.py "
    "--output runs/dac_44khz_converted"
)
DEPRECATED = {"checkpoint": "weights", "trust_checkpoint": "trust_weights"}


def main(argv: list[str] | None = None, prog: str = "python -m jax_codec convert") -> int:
    parser = ArgumentParser(
        prog=prog,
        description="Convert PyTorch DAC / EnCodec / SNAC weights, or SpectroStream's JAX "
        "weights (magenta-rt), to a jax_codec checkpoint.",
        epilog="example:\n  " + EXAMPLE.format(prog=prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--from", dest="source", required=True, choices=("dac", "encodec", "snac", "spectrostream")
    )
    parser.add_argument(
        "--weights",
        help="PyTorch weights: a .pth / .th / .safetensors file; for DAC also the folder a "
        "training run saved (<save_path>/<tag>, holding dac/weights.pth); for SpectroStream "
        "magenta-rt's .safetensors file (encoder.safetensors beside it is read too) or a "
        "folder of them",
    )
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)  # deprecated: --weights
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
        help="preset, e.g. configs/dac_44khz.py, configs/encodec_24khz.py, "
        "configs/snac_32khz.py, configs/spectrostream_48khz.py",
    )
    parser.add_argument("--output", required=True, help="directory to write")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --output if it already exists"
    )
    parser.add_argument(
        "--trust_weights",
        action="store_true",
        help="unpickle the file fully if torch.load(weights_only=True) refuses it (runs code "
        "from the file: only for files you trust)",
    )
    parser.add_argument("--trust_checkpoint", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for old, new in DEPRECATED.items():
        if getattr(args, old):
            print(f"note: --{old} is deprecated here; use --{new}", file=sys.stderr)
    if args.weights and args.checkpoint:
        parser.error("give --weights only (--checkpoint is its deprecated name)")
    args.weights = args.weights or args.checkpoint
    args.trust_weights = args.trust_weights or args.trust_checkpoint
    if not args.weights:
        parser.error("the following arguments are required: --weights")
    from jax_codec.config import ConfigError
    from jax_codec.convert.core import ConversionError

    return guarded(lambda: convert(args), usage=(ConfigError, ConversionError))


def convert(args: argparse.Namespace) -> None:
    """Runs the conversion the command line asks for; prints where it wrote."""
    from jax_codec.config import load_config
    from jax_codec.convert.core import ConversionError, convert_checkpoint

    if os.path.exists(args.output) and not args.overwrite:
        raise CliError(f"{args.output} exists; pass --overwrite to replace it")
    try:
        config = load_config(args.config)
    except ValueError as e:  # ConfigError, or a preset's unknown variant
        raise CliError(str(e)) from None
    weights, discriminator = args.weights, None
    if args.source == "dac":
        from jax_codec.convert.discriminator import dac_checkpoint_files

        weights, discriminator = dac_checkpoint_files(weights, args.discriminator)
    elif args.discriminator not in ("auto", "none"):
        raise ConversionError(f"--discriminator is for --from dac, not {args.source}")
    out = convert_checkpoint(
        args.source,
        weights,
        config,
        args.output,
        trust=args.trust_weights,
        discriminator=discriminator,
    )
    print(f"wrote {out} ({config.get('name', '')}); load it with jax_codec.inference.load_codec")
    if discriminator is not None:
        print(f"with the discriminators of {discriminator} (train --init_from starts from them)")


if __name__ == "__main__":
    sys.exit(main())
