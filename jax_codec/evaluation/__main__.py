"""`python -m jax_codec evaluate` (aliases: `python -m jax_codec.evaluate`,
`python -m jax_codec.evaluation`): the command.

See `jax_codec.evaluation.run` for what is measured and written. Errors in the arguments or the
data print one `error: ...` line and exit with code 2 (`jax_codec.cli_errors`).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

from jax_codec.cli_errors import ArgumentParser, CliError, guarded, one_line
from jax_codec.evaluation import run
from jax_codec.evaluation.report import safe_name
from jax_codec.evaluation.run import (
    DEFAULT_BASELINES,
    DEFAULT_SEGMENT_SECONDS,
    DEFAULT_SPECTROGRAMS,
    MIN_SECONDS,
    SPEECH_METRICS,
    EvaluatedCodec,
    Plan,
    find_audio_files,
)


def parse_n_quantizers(text: str | None) -> list[int] | None:
    """ "1,2,4" -> [1, 2, 4] (sorted, unique); None stays None (the default ladder)."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p.isdigit() or int(p) < 1 for p in parts):
        raise CliError(
            f"--n_quantizers must be a comma-separated list of positive integers, e.g. 1,2,4; "
            f"got {text!r}"
        )
    return sorted({int(p) for p in parts})


def default_ladder(num_quantizers: int) -> list[int]:
    """Powers of two up to the model's quantizer count, and the count itself: 8 -> 1, 2, 4, 8;
    9 -> 1, 2, 4, 8, 9."""
    out, k = [], 1
    while k < num_quantizers:
        out.append(k)
        k *= 2
    return out + [int(num_quantizers)]


def parse_baselines(text: str | None) -> list[str]:
    from jax_codec.evaluation.baselines import CODECS

    if text is None:
        return list(DEFAULT_BASELINES)
    names = [p.strip().lower() for p in str(text).split(",") if p.strip()]
    if names == ["none"]:
        return []
    bad = [n for n in names if n not in CODECS]
    if bad or not names:
        raise CliError(
            f"--baselines: unknown codec(s) {', '.join(bad) or repr(text)}; valid: "
            f"{', '.join(CODECS)} or none"
        )
    return list(dict.fromkeys(names))


def select_metrics(text: str | None, speech: bool) -> list[str]:
    """The metric names to compute: `--metrics` (validated, packages checked), else every
    available music metric, plus the available speech metrics with `--speech`."""
    from jax_codec.evaluation import metrics

    available = metrics.available_metrics()
    if text is None:
        names = [n for n in available if n not in SPEECH_METRICS]
        if speech:
            names += [n for n in SPEECH_METRICS if n in available]
        return names
    names = list(dict.fromkeys(p.strip() for p in str(text).split(",") if p.strip()))
    if speech:
        names += [n for n in SPEECH_METRICS if n not in names]
    bad = [n for n in names if n not in metrics.METRICS]
    if bad or not names:
        raise CliError(
            f"--metrics: unknown metric(s) {', '.join(bad) or repr(text)}; valid: "
            f"{', '.join(metrics.METRICS)}"
        )
    missing = [n for n in names if n not in available]
    if missing:
        packages = {"visqol": "visqol-python"}
        need = sorted({packages.get(metrics.METRICS[n][1], metrics.METRICS[n][1]) for n in missing})
        raise CliError(
            f"--metrics {', '.join(missing)} need(s) {', '.join(need)}: pip install "
            f"{' '.join(need)} (or pip install 'jax_codec[eval]')"
        )
    return names


def load_model(args, checkpoint, kind, taken: set[str], notes: list[str]) -> EvaluatedCodec:
    """The `--checkpoint`/`--config` model (`checkpoint` None) or a `--compare` one, with its
    row label (made unique among `taken`) and settings; notes what it skips."""
    from jax_codec.inference.cli import load_from_args

    m = load_from_args(args, checkpoint, priors=None if args.entropy == "off" else "auto")
    if m.priors is None and args.entropy == "on":
        raise CliError(
            f"--entropy on needs priors for {m.name or '?'}: none found; make them with "
            "`python -m jax_codec priors --checkpoint DIR`"
        )
    label = m.name or (os.path.basename(os.path.normpath(checkpoint)) if checkpoint else "model")
    base, i = label, 2
    while label in taken:
        label, i = f"{base}-{i}", i + 1
    taken.add(label)
    nq = m.codec.num_quantizers
    wanted = parse_n_quantizers(args.n_quantizers)
    if wanted is None:
        settings = default_ladder(nq)
    elif kind == "ours":
        if wanted[-1] > nq:
            raise CliError(
                f"--n_quantizers {args.n_quantizers}: the model has {nq} quantizers "
                f"(use values in 1..{nq})"
            )
        settings = wanted
    else:
        settings = [k for k in wanted if k <= nq]
        if len(settings) < len(wanted):
            notes.append(
                f"{label} has {nq} quantizers: --n_quantizers above {nq} were skipped for it"
            )
        if not settings:
            raise CliError(
                f"--compare {checkpoint}: none of --n_quantizers fit its {nq} quantizers"
            )
    if checkpoint or args.checkpoint:  # a --compare one, or ours from --checkpoint
        source = f"checkpoint `{checkpoint or args.checkpoint}`"
    else:
        source = f"random init of `{args.config}`, seed {args.seed}"
    return EvaluatedCodec(label, m, settings, source, kind)


def plan_from_args(args: argparse.Namespace) -> Plan:
    """Checks everything that needs no model, so mistakes fail fast (`CliError`)."""
    from jax_codec.data.sources import local_audio_path
    from jax_codec.evaluation import baselines as bl

    if not args.data:
        raise CliError(
            "--data PATH is required (an audio file or a folder of audio, or folder:PATH)"
        )
    try:
        data_path = local_audio_path(args.data)
    except ValueError as e:
        raise CliError(str(e)) from None
    if bool(args.checkpoint) == bool(args.config):
        raise CliError("give either --checkpoint DIR or --config FILE --random_init")
    parse_n_quantizers(args.n_quantizers)
    names = parse_baselines(args.baselines)
    seg = args.segment_seconds
    if seg is None or not math.isfinite(seg) or seg < 0 or 0 < seg < MIN_SECONDS:
        raise CliError(
            f"--segment_seconds must be at least {MIN_SECONDS} (or 0: whole files), got {seg}"
        )
    if args.excerpts < 1:
        raise CliError(f"--excerpts must be at least 1, got {args.excerpts}")
    if args.excerpts > 1 and not seg:
        raise CliError(
            f"--excerpts {args.excerpts} needs --segment_seconds > 0 (the excerpts' length); "
            "0 measures whole files"
        )
    if args.max_files is not None and args.max_files < 1:
        raise CliError(f"--max_files must be positive, got {args.max_files}")
    if args.spectrograms < 0:
        raise CliError(f"--spectrograms must be >= 0, got {args.spectrograms}")
    compare = [c.strip() for c in (args.compare or "").split(",") if c.strip()]
    for c in compare:
        if not os.path.exists(c):
            raise CliError(f"--compare {c}: no such checkpoint directory")
    root, files = find_audio_files(data_path)
    if args.max_files:
        files = files[: args.max_files]
    metric_names = select_metrics(args.metrics, args.speech)
    ffmpeg = None
    if names:
        try:
            ffmpeg = bl.ffmpeg_path()
            have = bl.available_encoders(ffmpeg)
        except (bl.FFmpegNotFoundError, bl.BaselineError) as e:
            raise CliError(f"--baselines {','.join(names)} need ffmpeg: {one_line(e)}") from None
        lacking = [n for n in names if bl.CODECS[n].encoder not in have]
        if lacking:
            encoders = ", ".join(bl.CODECS[n].encoder for n in lacking)
            raise CliError(
                f"the ffmpeg at {ffmpeg} has no {encoders} encoder (for {', '.join(lacking)}): "
                f"{bl.INSTALL_HINT}; or drop them from --baselines"
            )
    return Plan(
        args.data, root, files, names, metric_names, compare, ffmpeg, seg, args.excerpts,
        args.spectrograms, args.window_frames,
    )  # fmt: skip


def build_parser(prog: str = "python -m jax_codec evaluate") -> argparse.ArgumentParser:
    from jax_codec.inference.cli import add_model_args, add_n_quantizers_arg

    p = ArgumentParser(
        prog=prog,
        description="Evaluate a codec against Opus, MP3 and other checkpoints at matched "
        "bitrates: per-file CSV/JSON, a summary table with 95% intervals, plots.",
        epilog=f"example:\n  {prog} --checkpoint runs/try --data folder:songs/ "
        "--n_quantizers 1,2,4,8 --baselines opus,mp3",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(p)
    p.add_argument(
        "--data",
        help="audio to evaluate: folder:PATH (searched recursively) or a plain path (an audio "
        "file or a folder)",
    )
    add_n_quantizers_arg(p, several=True)
    p.add_argument(
        "--baselines",
        help=f"classic codecs via ffmpeg: opus,mp3,vorbis,aac or none (default: "
        f"{','.join(DEFAULT_BASELINES)})",
    )
    p.add_argument(
        "--compare",
        help="other checkpoints (comma-separated), evaluated the same way (a mono model codes "
        "a stereo file as dual mono: the comparison for a joint-stereo model)",
    )
    p.add_argument("--output", help="output folder (default: eval/<model name>)")
    p.add_argument(
        "--segment_seconds",
        type=float,
        default=DEFAULT_SEGMENT_SECONDS,
        help="evaluate the first S seconds of each file (0: whole files)",
    )
    p.add_argument(
        "--excerpts",
        type=int,
        default=1,
        help="evaluate N excerpts of --segment_seconds per file, evenly spread from its start "
        "to its end (intervals stay over files: a file counts once, as its excerpts' mean)",
    )
    p.add_argument("--max_files", type=int, help="evaluate the first N files (sorted)")
    p.add_argument(
        "--metrics",
        help="comma-separated metric names (default: all available; the stereo ones, "
        "mel_distance_mid/_side, ild_difference, icc_difference, apply to stereo files)",
    )
    p.add_argument("--speech", action="store_true", help="add the speech metrics (PESQ, STOI)")
    p.add_argument(
        "--entropy",
        choices=("auto", "on", "off"),
        default="auto",
        help="range code with the checkpoint's priors: auto = when it has them",
    )
    p.add_argument(
        "--spectrograms",
        type=int,
        default=DEFAULT_SPECTROGRAMS,
        help="files to draw spectrogram comparisons for",
    )
    p.add_argument("--window_frames", type=int, help="latent frames per processing window")
    return p


def evaluate(args: argparse.Namespace) -> dict:
    """The evaluation the command line `args` asks for; returns its report."""
    p = plan_from_args(args)
    notes: list[str] = []
    taken = set(p.baselines)
    ours = load_model(args, None, "ours", taken, notes)
    models = [ours] + [load_model(args, c, "neural", taken, notes) for c in p.compare]
    output = args.output or os.path.join("eval", safe_name(ours.label))
    return run.evaluate(p, models, output, notes)


def main(argv: Sequence[str] | None = None, prog: str = "python -m jax_codec evaluate") -> int:
    args = build_parser(prog).parse_args(argv)

    def body():
        report = evaluate(args)
        print(report["overview"])
        print(
            f"wrote {report['output']}: results.csv, results.json ({report['rows']} rows, "
            f"{report['files']} files), summary.md, summary.json, {len(report['figures'])} figures"
        )
        for n in report["notes"]:
            print(f"note: {n}", file=sys.stderr)

    return guarded(body)


if __name__ == "__main__":
    sys.exit(main())
