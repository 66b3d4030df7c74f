"""`python -m jax_codec demo`: the interactive web demo (Gradio), served until interrupted.

    python -m jax_codec demo (--checkpoint DIR | --config FILE --random_init) [--port 7860]
        [--host 127.0.0.1] [--max_seconds 30]

Loads the model, compiles its encoder and decoder for the few padded input lengths the demo
uses (`DemoModel.warmup`), generates the example songs, then serves the page at
http://HOST:PORT. `--host 0.0.0.0` serves the network. Errors in the arguments or the model
print one `error: ...` line and exit with code 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from jax_codec.cli_errors import CliError, guarded
from jax_codec.inference.cli import add_command, add_model_args, load_from_args

MAX_UPLOAD = "200mb"  # larger uploads are refused by the server (only --max_seconds are used)


def cmd_demo(args: argparse.Namespace) -> int:
    return guarded(lambda: serve(args))


def serve(args: argparse.Namespace) -> None:
    """Loads the model, compiles it, and serves the page until interrupted."""
    if not (args.max_seconds > 0 and args.max_seconds <= 600):
        raise CliError(f"--max_seconds must be in (0, 600], got {args.max_seconds}")
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be in 0..65535, got {args.port}")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise CliError("the demo needs gradio: pip install 'jax_codec[demo]'") from None
    from jax_codec.demo.app import build_app, model_summary
    from jax_codec.demo.engine import DemoModel

    # The priors `compress --entropy auto` would use.
    source = args.checkpoint or f"{args.config} (random init, seed {args.seed})"
    model = DemoModel(load_from_args(args), args.max_seconds, source=source)
    print(model_summary(model).splitlines()[1].replace("*", ""), file=sys.stderr, flush=True)
    buckets = ", ".join(f"{b / model.sample_rate:.1f}" for b in model.buckets) or "exact lengths"
    print(f"compiling the encoder and decoder (input lengths {buckets} s)...", file=sys.stderr)
    seconds = model.warmup()
    print(f"compiled in {seconds:.1f} s", file=sys.stderr, flush=True)
    workdir = tempfile.mkdtemp(prefix="jax_codec_demo_")
    try:
        app = build_app(model, workdir=workdir)
        app.queue(default_concurrency_limit=1)
        app.launch(
            server_name=args.host,
            server_port=args.port,
            allowed_paths=[workdir],
            max_file_size=MAX_UPLOAD,
            show_error=True,
            ssr_mode=False,
        )
    except OSError as e:  # e.g. the port is taken
        raise CliError(f"cannot serve on {args.host}:{args.port}: {e}") from None
    except KeyboardInterrupt:
        pass
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def add_demo_parser(sub) -> None:
    p = add_command(
        sub,
        "demo",
        "interactive web demo: compare with Opus, stream",
        "--checkpoint runs/base --port 7860",
        "--config configs/base.py:runlocal --random_init --max_seconds 10",
    )
    add_model_args(p)
    p.add_argument("--port", type=int, default=7860, help="port to serve on")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: network)")
    p.add_argument(
        "--max_seconds",
        type=float,
        default=30.0,
        help="longest input in seconds; longer uploads are trimmed",
    )
    p.set_defaults(func=cmd_demo)
