"""`python -m jax_codec COMMAND ...` (or `jax-codec COMMAND ...`): every command-line tool.

  train       train a codec (absl flags: --config=configs/base.py --config.train.batch_size=8)
  evaluate    a codec against Opus, MP3 and other checkpoints at matched bitrates
  convert     PyTorch DAC / EnCodec / SNAC weights -> a jax_codec checkpoint
  prepare     decode a folder of audio once into a prepared (ArrayRecord) folder
  compress    audio file -> .jcodec (bounded memory); many files, batched, with --output_dir
  decompress  .jcodec -> audio file; many files, batched, with --output_dir
  stream      encode+decode chunk by chunk, in real time
  info        architecture summary of a config, or header and bitrate of a .jcodec file
  priors      entropy-coding priors from training audio
  demo        interactive web demo (Gradio)
  export      encoder, decoder or a streaming step as StableHLO, ONNX or LiteRT (runs without us)

`python -m jax_codec COMMAND --help` lists a command's flags and shows an example. The module
entry points (`python -m jax_codec.train`, `.evaluate`, `.convert`, `.data.prepare`) are
aliases of the same commands.

One vocabulary: `--checkpoint` is a run or export directory, `--data` a data source spec
(`folder:PATH`, `prepared:PATH`, `tfds:NAME/SPLIT`, `synthetic`; a plain path where a command
reads audio files), `--n_quantizers` the codebooks used (K, or a comma-separated list where a
command runs several settings), `--config` a preset with `--config.x=y` overrides.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence

from jax_codec.cli_errors import ArgumentParser, CliError, guarded, report

PROG = "python -m jax_codec"
ABSL_HELP = ("-h", "--help", "-?", "--helpshort")


def _run_absl(module_name: str, command: str, argv: list[str]) -> int:
    """Runs the absl `main` of `module_name` on `argv` (flags, `--config.x=y` overrides)."""
    module = importlib.import_module(module_name)
    prog = f"{PROG} {command}"
    if any(a in ABSL_HELP for a in argv):
        # absl's help prints the docstring of `__main__` (this module): print the command's.
        from absl import flags

        print(f"usage: {prog} [flags]\n\n{module.__doc__.strip()}\n")
        print(f"flags:{flags.FLAGS.module_help(module_name)}")
        return 0
    from absl import app

    sys.argv = [prog, *argv]  # ml_collections reads config overrides from sys.argv
    parser = getattr(module, "parse_flags", None)
    if parser is None:
        app.run(module.main, argv=sys.argv)
    else:
        app.run(module.main, argv=sys.argv, flags_parser=parser)
    return 0  # app.run exits


def _evaluate(argv: list[str]) -> int:
    from jax_codec.evaluation.__main__ import main

    return main(argv, prog=f"{PROG} evaluate")


def _convert(argv: list[str]) -> int:
    from jax_codec.convert.__main__ import main

    return main(argv, prog=f"{PROG} convert")


# Commands with their own parser (absl or argparse): their arguments go to them untouched.
DELEGATED: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "train": (
        "train a codec (absl flags; --config.x=y overrides)",
        lambda argv: _run_absl("jax_codec.train", "train", argv),
    ),
    "evaluate": ("a codec against Opus, MP3 and other checkpoints", _evaluate),
    "convert": ("PyTorch DAC / EnCodec / SNAC weights -> a jax_codec checkpoint", _convert),
    "prepare": (
        "decode a folder of audio once into a prepared folder",
        lambda argv: _run_absl("jax_codec.data.prepare", "prepare", argv),
    ),
}
COMMANDS = (
    *DELEGATED,
    *("compress", "decompress", "stream", "info", "priors", "demo", "export"),
)


def split_config_overrides(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """(the other arguments, {"model.latent_dim": "64"}) from `--config.model.latent_dim=64`
    or `--config.model.latent_dim 64`, as the train command reads them."""
    rest, overrides, i = [], {}, 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            key, sep, value = arg[len("--config.") :].partition("=")
            if not sep:
                if i + 1 == len(argv):
                    raise CliError(f"{arg} needs a value, e.g. {arg}=VALUE")
                value, i = argv[i + 1], i + 1
            overrides[key] = value
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def _cmd_info(args: argparse.Namespace) -> int:
    if args.file and not args.config:
        if args.overrides:
            return report(CliError("--config.x=y overrides need --config, not a .jcodec file"))
        from jax_codec.inference.compress import cmd_info

        return cmd_info(args)
    from jax_codec.config import ConfigError

    return guarded(lambda: _config_info(args), usage=(ConfigError,))


def _config_info(args: argparse.Namespace) -> None:
    from jax_codec.config import apply_overrides, load_config
    from jax_codec.models.summary import codec_summary, format_summary

    if args.file:
        raise CliError("give either FILE.jcodec or --config, not both")
    if not args.config:
        raise CliError("info needs --config=configs/FILE.py[:variant] or a .jcodec file")
    config = load_config(args.config)
    apply_overrides(config, args.overrides)
    summary = codec_summary(config)
    print(json.dumps(summary) if args.json else format_summary(summary))


def build_parser() -> argparse.ArgumentParser:
    """The command tree; the `DELEGATED` commands appear in it for `--help` only."""
    from jax_codec.demo.cli import add_demo_parser
    from jax_codec.export.cli import add_export_parser
    from jax_codec.inference.cli import add_command, add_stream_parser
    from jax_codec.inference.compress import add_parsers

    parser = ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, _) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    info = add_command(
        sub,
        "info",
        "summary of a codec config, or of a .jcodec file",
        "--config=configs/base.py:runlocal --config.model.latent_dim=64 --json",
        "song.jcodec --json",
    )
    info.add_argument("file", nargs="?", help="a .jcodec file (instead of --config)")
    info.add_argument(
        "--config", help="configs/FILE.py[:variant,...]; --config.x=y overrides a field"
    )
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=_cmd_info)
    add_stream_parser(sub)
    add_parsers(sub)
    add_demo_parser(sub)
    add_export_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        return DELEGATED[argv[0]][1](argv[1:])
    overrides: dict[str, str] = {}
    if argv and argv[0] == "info":
        try:
            argv, overrides = split_config_overrides(argv)
        except CliError as e:
            build_parser().error(str(e))
    args = build_parser().parse_args(argv)
    args.overrides = overrides
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
