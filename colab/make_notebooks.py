r"""Writes the notebooks of colab/ (outputs cleared): `python colab/make_notebooks.py`.

The .ipynb files are generated from the cells below so that the three notebooks share one
install cell and one badge, and so that a diff of this file reviews a notebook change.
`tests/test_notebooks.py` checks that the committed notebooks are what this script writes.
Notebooks are thin glue over the library: they call `jax_codec`'s Python entry points and
commands, and define no functions or classes of their own.
"""

from __future__ import annotations

import os
import sys
import textwrap

import nbformat

# The repository the notebooks install from and the Colab badges point to (a placeholder
# until the project has a public home: replace `your-org` here and rerun this script).
REPO_URL = "https://github.com/your-org/jax_codec"
COLAB_URL = "https://colab.research.google.com/github/your-org/jax_codec/blob/main/colab/{name}"
BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"

HERE = os.path.dirname(os.path.abspath(__file__))


def _src(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def install_cell(extra_jax: bool = False) -> str:
    """The install cell: clone + pip install on Colab/Kaggle, nothing in a local checkout."""
    accel = _src(
        """
        # On a TPU or GPU runtime, install the matching JAX build alongside.
        import shutil

        if os.path.exists("/dev/accel0") or os.path.exists("/dev/vfio/0") or "TPU_ACCELERATOR_TYPE" in os.environ:
            JAX_EXTRA = '"jax[tpu]"'
        elif shutil.which("nvidia-smi"):
            JAX_EXTRA = '"jax[cuda12]"'
        else:
            JAX_EXTRA = ""
        """
    )
    text = _src(
        """
        # Install jax_codec (Colab, Kaggle): clone the repository and pip-install it
        # and pip install it. Skipped where jax_codec is already importable from a checkout
        # (`pip install -e .` locally), and on a second run of this cell.
        import importlib
        import importlib.util
        import os
        import sys

        REPO_URL = "@REPO_URL@"
        IN_COLAB = "google.colab" in sys.modules
        @ACCEL@
        _spec = importlib.util.find_spec("jax_codec")
        _checkout = _spec and os.path.dirname(os.path.dirname(os.path.abspath(_spec.origin)))
        if _checkout and os.path.isdir(os.path.join(_checkout, "configs")):
            REPO_DIR = _checkout  # a local checkout: nothing to install
        else:
            REPO_DIR = os.path.abspath("jax_codec")
            if not os.path.isdir(REPO_DIR):
                !git clone -q --depth 1 {REPO_URL} {REPO_DIR}
            if _spec is None:
                %pip install -q "{REPO_DIR}[eval]"@PIP_EXTRA@
                importlib.invalidate_caches()
        print("jax_codec from", REPO_DIR)
        """
    )
    text = text.replace("@REPO_URL@", REPO_URL)
    text = text.replace("@ACCEL@\n", ("\n" + accel + "\n\n") if extra_jax else "")
    return text.replace("@PIP_EXTRA@", " {JAX_EXTRA}" if extra_jax else "")


def badge(name: str, title: str, text: str) -> str:
    return f"# {title}\n\n{BADGE.format(url=COLAB_URL.format(name=name))}\n\n{_src(text)}"


def notebook(name: str, cells: list[tuple[str, str]], colab: dict | None = None):
    nb = nbformat.v4.new_notebook()
    stem = os.path.splitext(name)[0]
    for i, (kind, text) in enumerate(cells):
        if kind == "md":
            cell = nbformat.v4.new_markdown_cell(text)
        else:
            cell = nbformat.v4.new_code_cell(text)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
        cell.id = f"{stem.replace('_', '-')}-{i:02d}"
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["colab"] = {"provenance": [], "toc_visible": True, **(colab or {})}
    return nb


# --------------------------------------------------------------------------- 01 quickstart

QUICKSTART = [
    (
        "md",
        badge(
            "01_quickstart.ipynb",
            "jax_codec quickstart: train, compress, listen",
            """
            Train the small CPU configuration of the codec (`configs/base.py:runlocal`) for a few
            minutes on the built-in synthetic music, then compress and decompress an audio file
            with the real `python -m jax_codec compress` / `decompress` commands, listen to the
            result at several bitrates, and compare spectrograms and file sizes.

            Any runtime works (CPU, GPU or TPU); on a 2-core CPU the first steps wait about two
            minutes for XLA to compile, then the small model trains at about one step a second.
            Run the cells top to bottom; rerunning the training cell resumes from the work dir.
            """,
        ),
    ),
    ("code", install_cell()),
    (
        "parameters",
        _src(
            """
            # Parameters (papermill convention: a runner may override them in a cell after this one).
            config = "base:runlocal"  # a preset of jax_codec.configs and its variant
            num_steps = 300  # train steps (the first ones compile; then ~1 step/s on a 2-core CPU)
            data_source = "synthetic"  # or "folder:/content/drive/MyDrive/music" (wav/flac/ogg/opus/mp3)
            overrides = {}  # any other config field, e.g. {"train.batch_size": "8"}
            workdir = "runs/quickstart"  # checkpoints, best/ export, TensorBoard; rerunning resumes
            input_audio = ""  # a file to compress; "" = a generated synthetic song
            song_seconds = 10.0  # length of that song
            song_seed = 7  # which song
            kbps = (0.25, 1.0, 6.0)  # bitrates to compress at (per channel; the most codebooks that fit)
            priors_seconds = 60.0  # training audio encoded for entropy-coding priors (0: bit packing only)
            """
        ),
    ),
    (
        "md",
        _src(
            """
            ## Train

            `train_and_evaluate(config, workdir)` is what `python -m jax_codec.train` runs. It
            evaluates at step 0 and at the end (mel distance and SI-SDR at every bitrate), keeps
            the best weights in `workdir/best/` and checkpoints in `workdir/checkpoints/`.
            """
        ),
    ),
    (
        "code",
        _src(
            """
            import jax

            from jax_codec.config import apply_overrides, load_config
            from jax_codec.training.loop import train_and_evaluate

            print("devices:", jax.devices())
            cfg = load_config(config)
            apply_overrides(cfg, {**overrides, "data.source": data_source, "train.num_steps": str(num_steps)})
            metrics = train_and_evaluate(cfg, workdir)
            print(f"step {metrics['step']}:", {k: round(v, 3) for k, v in metrics.items() if k.startswith("eval/mel")})
            """
        ),
    ),
    (
        "md",
        _src(
            """
            ## Entropy-coding priors

            `python -m jax_codec priors` encodes some training audio once and stores how often
            each code occurs (`priors.npz` next to the weights). `compress` then range codes the
            codes with them instead of packing 8 or 10 bits per code.
            """
        ),
    ),
    (
        "code",
        _src(
            """
            from jax_codec.__main__ import main as jax_codec_cli  # `python -m jax_codec ...`

            if priors_seconds > 0:
                assert jax_codec_cli(["priors", "--checkpoint", workdir, "--seconds", str(priors_seconds)]) == 0
            """
        ),
    ),
    (
        "md",
        _src(
            """
            ## Compress and decompress a file

            The same as `python -m jax_codec compress IN OUT.jcodec --checkpoint WORKDIR --kbps X`
            and `python -m jax_codec decompress OUT.jcodec OUT.wav --checkpoint WORKDIR`. To try
            your own music on Colab, upload it (`from google.colab import files; files.upload()`)
            and set `input_audio` to its name.
            """
        ),
    ),
    (
        "code",
        _src(
            """
            import soundfile as sf

            from jax_codec import bitstream
            from jax_codec.data.synthetic import render_song

            if not input_audio:
                input_audio = "song.wav"
                sr = cfg.model.sample_rate
                sf.write(input_audio, render_song(song_seconds, song_seed, sr), sr)
            os.makedirs("compressed", exist_ok=True)
            stem = os.path.join("compressed", os.path.splitext(os.path.basename(input_audio))[0])
            sf.write(stem + ".flac", *sf.read(input_audio))  # lossless, for comparison
            outputs = []
            for rate in kbps:
                coded, decoded = f"{stem}_{rate}kbps.jcodec", f"{stem}_{rate}kbps.wav"
                assert jax_codec_cli(["compress", input_audio, coded, "--checkpoint", workdir, "--kbps", str(rate)]) == 0
                assert jax_codec_cli(["decompress", coded, decoded, "--checkpoint", workdir]) == 0
                outputs.append((coded, decoded, bitstream.info(coded)))
            assert jax_codec_cli(["info", outputs[-1][0]]) == 0
            """
        ),
    ),
    (
        "md",
        _src(
            """
            ## File size and bitrate

            *Actual* kbps is the `.jcodec` file's size over the duration (header and chunk framing
            included, so short files pay a few hundred bits extra); *nominal* kbps is the code
            rate before entropy coding.
            """
        ),
    ),
    (
        "code",
        _src(
            """
            from IPython.display import Audio, Image, Markdown, display

            original, sr = sf.read(input_audio, dtype="float32", always_2d=True)
            seconds = len(original) / sr
            table = ["| file | bytes | kbps | codebooks | smaller than the input |", "|---|---:|---:|---:|---:|"]
            input_bytes = os.path.getsize(input_audio)
            for path in (input_audio, stem + ".flac"):
                size = os.path.getsize(path)
                table.append(f"| {os.path.basename(path)} | {size} | {size * 8 / seconds / 1e3:.1f} | | {input_bytes / size:.1f}x |")
            for coded, _, facts in outputs:
                table.append(
                    f"| {os.path.basename(coded)} | {facts['file_size_bytes']} | {facts['actual_kbps']:.3f} "
                    f"(nominal {facts['nominal_kbps']:.3f}, {facts['entropy_coding']}) | {facts['n_quantizers']}/{len(facts['strides'])} "
                    f"| {input_bytes / facts['file_size_bytes']:.0f}x |"
                )
            display(Markdown("\\n".join(table)))
            """
        ),
    ),
    (
        "md",
        _src(
            """
            ## Listen and look

            The spectrograms come from `jax_codec.evaluation.plots` (the figures of
            `python -m jax_codec.evaluate`). A few minutes of training give a blurry but
            recognisable reconstruction; the full model (`configs/base.py`) trained for days on
            real music is another matter.
            """
        ),
    ),
    (
        "code",
        _src(
            """
            from jax_codec.evaluation import plots

            signals = {"original": original.T}
            display(Markdown("**original**"), Audio(original.T, rate=sr))
            for _, decoded, facts in outputs:
                label = f"{facts['actual_kbps']:.2f} kbps ({facts['n_quantizers']}/{len(facts['strides'])} codebooks)"
                signals[label] = sf.read(decoded, dtype="float32", always_2d=True)[0].T
                display(Markdown(f"**{label}**"), Audio(signals[label], rate=sr))
            figure = plots.spectrogram_comparison(signals, sr, title=os.path.basename(input_audio))
            display(Image(plots.save(figure, stem + "_spectrograms.png")))
            """
        ),
    ),
    (
        "md",
        _src(
            """
            ## Next

            - `02_train_on_tpu.ipynb`: the full model on a TPU or GPU with your own audio,
              TensorBoard, checkpoints on Drive or GCS, stop and resume.
            - `03_evaluate.ipynb`: rate-distortion curves against Opus and MP3.
            - `python -m jax_codec demo --checkpoint WORKDIR`: the interactive web demo.
            """
        ),
    ),
]


# --------------------------------------------------------------------------- 02 TPU training

TPU = [
    (
        "md",
        badge(
            "02_train_on_tpu.ipynb",
            "Train jax_codec on a TPU (or GPU)",
            """
            Train the flagship codec on a Colab or Kaggle accelerator with your own audio:
            see the devices and the mesh the trainer builds, watch TensorBoard while it trains,
            keep the checkpoints on Google Drive or in a GCS bucket, stop, and resume.

            **Runtime**: *Runtime → Change runtime type → TPU* (or a GPU). On a TPU the notebook
            trains `configs/tpu_v5e.py:v5e8` (bf16), on a GPU `configs/base.py`, and on a CPU the
            small `configs/base.py:runlocal` (the same code path, just slower).

            **Data**: a folder of wav/flac/ogg/opus/mp3 on Drive (`folder:/content/drive/...`),
            a folder prepared with `python -m jax_codec.data.prepare` (`prepared:PATH`, faster to
            read), a bucket (`folder:gs://...`) or a TFDS dataset in ArrayRecord format
            (`tfds:NAME/SPLIT`, built with `tfds build NAME --file_format=array_record`). When
            the folder is not there the notebook falls back to the built-in synthetic music.
            """,
        ),
    ),
    ("code", install_cell(extra_jax=True)),
    (
        "parameters",
        _src(
            """
            # Parameters (papermill convention: a runner may override them in a cell after this one).
            workdir = "/content/drive/MyDrive/jax_codec/runs/base"  # on Drive, gs://BUCKET/runs/base, or local
            data_source = "folder:/content/drive/MyDrive/music"  # folder:, prepared:, tfds: or synthetic
            tfds_data_dir = ""  # TFDS data_dir for tfds: sources ("": ~/tensorflow_datasets)
            config = ""  # "": tpu_v5e:v5e8 on a TPU, base on a GPU, base:runlocal on a CPU
            rows_per_device = 8  # accelerators: global batch = rows x devices (0: the config's batch)
            steps_before_stop = 1000  # first session: train to this step and stop
            num_steps = 2000  # second session: resume and train to this step
            log_every = 50  # steps between logged scalars
            eval_every = 500  # steps between evaluations (audio and spectrograms in TensorBoard)
            checkpoint_every = 500  # steps between checkpoints
            overrides = {}  # any other config field, e.g. {"mesh.fsdp": "2"}
            show_tensorboard = True  # start TensorBoard inline (Colab, Jupyter)
            run_preflight = True  # compile the step first and print memory per device and FLOPs
            """
        ),
    ),
    (
        "md",
        _src(
            """
            ## Devices and mesh

            There is no `pmap`: one `jax.jit` over a `('data', 'fsdp')` mesh of every device. The
            global batch is split over all devices; the state is replicated (or split over `fsdp`).
            """
        ),
    ),
    (
        "code",
        _src(
            """
            import jax

            from jax_codec.config import apply_overrides, load_config
            from jax_codec.training import sharding
            from jax_codec.training.loop import train_and_evaluate, validate_run

            platform = jax.devices()[0].platform
            print(f"{jax.device_count()} {platform} device(s):", jax.devices())
            if not config:
                config = {"tpu": "tpu_v5e:v5e8", "gpu": "base"}.get(platform, "base:runlocal")
            cfg = load_config(config)
            settings = {"train.log_every": str(log_every), "train.eval_every": str(eval_every), "train.checkpoint_every": str(checkpoint_every)}
            if platform != "cpu" and rows_per_device:
                settings["train.batch_size"] = str(rows_per_device * jax.device_count())
            apply_overrides(cfg, {**settings, **overrides})
            mesh = sharding.make_mesh(cfg.mesh)
            validate_run(cfg, mesh)  # the batch must split over the devices
            batch = sharding.batch_sharding(mesh)
            print(f"config {config} ({cfg.name}), global batch {cfg.train.batch_size}")
            print("mesh:", dict(mesh.shape), "\\n", mesh.devices)
            print("batch sharding:", batch.spec, "->", cfg.train.batch_size // mesh.size, "rows per device")
            """
        ),
    ),
    (
        "md",
        _src(
            """
            ## Where the run and the data live

            A work dir on Drive (or `gs://BUCKET/...`, after authenticating) outlives the runtime:
            rerun this notebook on a fresh runtime and training resumes from the latest checkpoint.
            With a `gs://` work dir the checkpoints go to the bucket and TensorBoard events to
            `runs/_remote/NAME/` on the runtime.
            """
        ),
    ),
    (
        "code",
        _src(
            """
            from etils import epath

            kind, _, data_path = data_source.partition(":")
            if IN_COLAB and "/content/drive" in workdir + data_path:
                from google.colab import drive

                drive.mount("/content/drive")
            if not IN_COLAB and workdir.startswith("/content/drive"):
                workdir = os.path.join("runs", cfg.name)
                print("not on Colab: work dir", workdir)
            if "gs://" in workdir + data_path:
                if IN_COLAB:
                    from google.colab import auth

                    auth.authenticate_user()
                if importlib.util.find_spec("gcsfs") is None:
                    %pip install -q gcsfs
            if kind in ("folder", "prepared") and not epath.Path(data_path).exists():
                print(f"{data_path} not found: training on the built-in synthetic music instead")
                data_source = "synthetic"
            apply_overrides(cfg, {"data.source": data_source, "data.tfds_data_dir": tfds_data_dir})
            remote = "://" in workdir
            # train_and_evaluate writes TensorBoard events to the work dir, or for a bucket locally:
            logdir = os.path.join("runs", "_remote", epath.Path(workdir).name) if remote else workdir
            logdir = os.path.join(logdir, "tensorboard")
            print(f"work dir {workdir}, data {data_source}, TensorBoard {logdir}")
            """
        ),
    ),
    (
        "code",
        _src(
            """
            # Optional: compile the train step for this mesh and check its memory before training.
            if run_preflight:
                from jax_codec.training import preflight

                print(preflight.format_report(preflight.run(cfg), cfg.name, False))
            """
        ),
    ),
    (
        "md",
        _src(
            """
            ## TensorBoard

            Scalars (losses, gradient norms, code usage), audio at several bitrates and
            spectrograms; the view refreshes while the next cells train.
            """
        ),
    ),
    (
        "code",
        _src(
            """
            from IPython import get_ipython

            ipython = get_ipython()
            if show_tensorboard and ipython is not None and importlib.util.find_spec("tensorboard"):
                os.makedirs(logdir, exist_ok=True)
                ipython.run_line_magic("load_ext", "tensorboard")
                ipython.run_line_magic("tensorboard", f"--logdir {logdir}")
            else:
                print(f"TensorBoard skipped; later: tensorboard --logdir {logdir}")
            """
        ),
    ),
    (
        "md",
        _src(
            """
            ## Train, then stop

            This session trains to `steps_before_stop` and saves a checkpoint. Interrupting the
            cell (*Runtime → Interrupt execution*, Ctrl-C, or a preemption's SIGTERM) does the
            same at the current step: the trainer saves a checkpoint and returns.
            """
        ),
    ),
    (
        "code",
        _src(
            """
            apply_overrides(cfg, {"train.num_steps": str(steps_before_stop)})
            metrics = train_and_evaluate(cfg, workdir)
            print("stopped at step", metrics["step"])
            """
        ),
    ),
    (
        "md",
        _src(
            """
            ## Resume

            Running the training again with the same work dir (here, or on a new runtime) restores
            the latest complete checkpoint: the train state and the data iterator's position, so
            the run sees exactly the batches it would have seen without the stop.
            """
        ),
    ),
    (
        "code",
        _src(
            """
            saved = sorted(int(p.name) for p in (epath.Path(workdir) / "checkpoints").iterdir() if p.name.isdigit())
            print("checkpoints:", saved)
            apply_overrides(cfg, {"train.num_steps": str(num_steps)})
            metrics = train_and_evaluate(cfg, workdir)
            print(f"resumed at step {saved[-1]}, trained to step {metrics['step']}")
            print({k: round(v, 3) for k, v in metrics.items() if k.startswith("eval/mel")})
            """
        ),
    ),
    (
        "md",
        _src(
            """
            ## Next

            - Compress files with the trained model: `python -m jax_codec compress song.flac
              song.jcodec --checkpoint WORKDIR` (see `01_quickstart.ipynb`), after
              `python -m jax_codec priors --checkpoint WORKDIR` for entropy coding.
            - Evaluate it against Opus and MP3: `03_evaluate.ipynb`.
            - Pods and multi-host runs: `launch/README.md`.
            """
        ),
    ),
]


# --------------------------------------------------------------------------- 03 evaluation

EVALUATE = [
    (
        "md",
        badge(
            "03_evaluate.ipynb",
            "Evaluate jax_codec against Opus and MP3",
            """
            Run the evaluation suite (`python -m jax_codec.evaluate`) on a few files: our codec
            through its real bitstream at several bitrates, and Opus and MP3 (through ffmpeg) at
            the bitrate ours actually spent. Then look at the rate-distortion curves and the
            summary table with 95% confidence intervals, and listen to the codecs side by side.

            Give it a trained checkpoint (`checkpoint`, e.g. the work dir of
            `02_train_on_tpu.ipynb`) and a folder of music (`data`); without them it trains the
            small `configs/base.py:runlocal` model for a few minutes and generates a few songs.
            """,
        ),
    ),
    ("code", install_cell()),
    (
        "parameters",
        _src(
            """
            # Parameters (papermill convention: a runner may override them in a cell after this one).
            checkpoint = ""  # a work dir or best/ export; "": train configs/base.py:runlocal first
            train_steps = 300  # steps of that training run
            workdir = "runs/evaluate_runlocal"  # where it trains (reruns resume)
            data = ""  # an audio file or a folder (searched recursively); "": generated songs
            num_files = 4  # generated songs
            file_seconds = 10.0  # their length
            segment_seconds = 10.0  # evaluate the first S seconds of each file (0: whole files)
            n_quantizers = ""  # our settings, e.g. "1,2,4" ("": powers of two up to all)
            baselines = "opus,mp3"  # classic codecs via ffmpeg (opus, mp3, vorbis, aac)
            compare = ""  # other checkpoints, comma-separated (e.g. a converted DAC preset)
            metric_names = ""  # e.g. "mel_distance,si_sdr,visqol" ("": every available metric)
            output = "eval/notebook"  # results.csv/json, summary.md/json, figures
            rd_metrics = "mel_distance,stft_distance,si_sdr,visqol"  # rate-distortion plots shown
            listen_file = 0  # which file (sorted) to listen to
            """
        ),
    ),
    (
        "md",
        _src(
            """
            ## A model and some music

            Skipped when `checkpoint` and `data` are given.
            """
        ),
    ),
    (
        "code",
        _src(
            """
            import soundfile as sf

            from jax_codec.config import apply_overrides, load_config
            from jax_codec.data.synthetic import render_song
            from jax_codec.training.loop import train_and_evaluate

            if not checkpoint:
                cfg = load_config("base:runlocal")
                apply_overrides(cfg, {"train.num_steps": str(train_steps)})
                train_and_evaluate(cfg, workdir)
                checkpoint = workdir
            if not data:
                data = "eval_songs"
                os.makedirs(data, exist_ok=True)
                for i in range(num_files):
                    sf.write(os.path.join(data, f"song{i}.wav"), render_song(file_seconds, 100 + i), 44100)
            print("checkpoint", checkpoint, "data", data)
            """
        ),
    ),
    (
        "md",
        _src(
            """
            ## Run the evaluation

            Exactly `python -m jax_codec.evaluate --checkpoint ... --data ... --baselines opus,mp3`.
            It prints the means and writes everything to `output`.
            """
        ),
    ),
    (
        "code",
        _src(
            """
            from jax_codec.evaluation import main as evaluate_cli  # `python -m jax_codec.evaluate`

            argv = ["--checkpoint", checkpoint, "--data", data, "--baselines", baselines, "--output", output]
            argv += ["--segment_seconds", str(segment_seconds)]
            for flag, value in (("--n_quantizers", n_quantizers), ("--compare", compare), ("--metrics", metric_names)):
                argv += [flag, value] if value else []
            assert evaluate_cli(argv) == 0
            print(sorted(os.listdir(output)))
            """
        ),
    ),
    (
        "md",
        _src(
            """
            ## Rate-distortion curves

            One line per codec: the mean over files at each setting, against the *actual* bitrate
            (classic codecs cannot go as low as a neural one and overshoot at low rates), with
            95% confidence intervals.
            """
        ),
    ),
    (
        "code",
        _src(
            """
            from IPython.display import Audio, Image, Markdown, display

            for name in rd_metrics.split(","):
                path = os.path.join(output, f"rd_{name.strip()}.png")
                if os.path.exists(path):
                    display(Image(path))
                else:
                    print(f"no {path} (metric not computed)")
            """
        ),
    ),
    ("md", "## Summary table\n\nMean and 95% confidence interval per metric, codec and setting."),
    (
        "code",
        _src(
            """
            with open(os.path.join(output, "summary.md")) as f:
                display(Markdown(f.read()))
            """
        ),
    ),
    (
        "md",
        _src(
            """
            ## Spectrograms and code usage

            The original, ours and Opus at a middle setting for the first files, and how evenly
            each level's codebook is used.
            """
        ),
    ),
    (
        "code",
        _src(
            """
            for name in sorted(os.listdir(output)):
                if name.startswith(("spectrogram_", "codes_")) and name.endswith(".png"):
                    display(Markdown(f"`{name}`"), Image(os.path.join(output, name)))
            """
        ),
    ),
    (
        "md",
        _src(
            """
            ## Listen

            One file at a middle setting: our codec through `compress`/`decompress`, and Opus and
            MP3 given the same target bitrate as in the evaluation (`encoder_kbps`), on the same
            reference signal the metrics used.
            """
        ),
    ),
    (
        "code",
        _src(
            """
            import json

            from jax_codec.__main__ import main as jax_codec_cli  # `python -m jax_codec ...`
            from jax_codec.evaluation import encode_decode
            from jax_codec.evaluation.run import find_audio_files, load_segment

            with open(os.path.join(output, "results.json")) as f:
                rows = [r for r in json.load(f) if not r["error"]]
            root, files = find_audio_files(data)
            name = files[listen_file]
            ours = [r for r in rows if r["file"] == name and r["kind"] == "ours"]
            settings = sorted({r["n_quantizers"] for r in ours})
            setting = settings[len(settings) // 2]
            ours = next(r for r in ours if r["n_quantizers"] == setting)
            sr = ours["sample_rate"]
            reference = load_segment(os.path.join(root, name), sr, segment_seconds)  # [C, T]
            os.makedirs("listen", exist_ok=True)
            sf.write("listen/reference.wav", reference.T, sr)
            assert jax_codec_cli(["compress", "listen/reference.wav", "listen/ours.jcodec", "--checkpoint", checkpoint, "--n_quantizers", str(setting)]) == 0
            assert jax_codec_cli(["decompress", "listen/ours.jcodec", "listen/ours.wav", "--checkpoint", checkpoint]) == 0
            display(Markdown(f"**{name}: original**"), Audio(reference, rate=sr))
            decoded = sf.read("listen/ours.wav", dtype="float32", always_2d=True)[0].T
            display(Markdown(f"**{ours['codec']}, {setting} codebooks: {ours['actual_kbps']:.2f} kbps**"), Audio(decoded, rate=sr))
            for r in rows:
                if r["file"] == name and r["kind"] == "baseline" and r["n_quantizers"] == setting:
                    audio, actual = encode_decode(reference, sr, r["codec"], r["encoder_kbps"])
                    display(Markdown(f"**{r['codec']}: {actual:.2f} kbps**"), Audio(audio, rate=sr))
            """
        ),
    ),
]


NOTEBOOKS = {
    "01_quickstart.ipynb": (QUICKSTART, None),
    "02_train_on_tpu.ipynb": (TPU, {"accelerator": "TPU"}),
    "03_evaluate.ipynb": (EVALUATE, None),
}


def build(name: str):
    cells, colab = NOTEBOOKS[name]
    return notebook(name, cells, colab)


def render(name: str) -> str:
    """The notebook file's text, as written to colab/NAME."""
    nb = build(name)
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def main() -> int:
    for name in NOTEBOOKS:
        with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
            f.write(render(name))
        print("wrote", os.path.join(HERE, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
