"""The Gradio page: `build_app(model)` -> `gr.Blocks`; the work is in `jax_codec.demo.process`.

Layout: the input (upload, microphone, or a generated example) and the bitrate (quantizers,
with their kbps) on top; a *Compare* tab (Encode: original, ours and Opus side by side,
spectrograms and their differences, the codes of each level over time, metrics, the `.jcodec`
download) and a *Streaming* tab (the input through the streaming encoder and decoder: latency,
real-time factor, p99 chunk time, the output). A bad upload shows a sentence under the input
as soon as it is chosen and an error on Encode; adjustments (resampled, trimmed, folded) show
as warnings.

Gradio is imported by `build_app` only, so the rest of the package works without it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from jax_codec.demo.process import (
    NON_CAUSAL_NOTICE,
    UploadError,
    format_metrics,
    format_stream,
    load_upload,
    make_examples,
    run_codec,
    run_stream,
    safe_stem,
)

__all__ = ["UploadError", "build_app", "load_upload", "run_codec", "run_stream"]

KEEP_RUNS = 32  # run folders kept on disk; older ones are deleted


def _new_run_dir(workdir: str) -> str:
    runs = os.path.join(workdir, "runs")
    os.makedirs(runs, exist_ok=True)
    old = sorted((os.path.join(runs, d) for d in os.listdir(runs)), key=os.path.getmtime)
    for d in old[: max(0, len(old) - KEEP_RUNS + 1)]:
        shutil.rmtree(d, ignore_errors=True)
    return tempfile.mkdtemp(dir=runs)


def model_summary(model) -> str:
    codec = model.codec
    kind = (
        f"causal (streams with {codec.latency_ms:.1f} ms algorithmic latency)"
        if codec.causal
        else "non-causal (offline only)"
    )
    unit = "kbps for a stereo pair (joint stereo)" if model.joint else "kbps per channel"
    rates = f"{model.kbps(1):.2f} to {model.kbps(model.num_quantizers):.2f} {unit}"
    return (
        f"# jax_codec demo\n"
        f"Model **{model.loaded.name or '?'}** from `{model.source or '?'}`: {codec.sample_rate} Hz, "
        f"{kind}, {model.num_quantizers} quantizers ({rates}). Upload or record up to "
        f"{model.max_seconds:g} s of audio (longer input is trimmed), or pick a generated "
        "example; choose the bitrate and press **Encode**."
    )


def build_app(model, *, workdir: str | None = None, examples: list[str] | None = None):
    """The demo page for a `DemoModel`. Files go to `workdir` (a new temporary folder, deleted
    at exit, by default); `examples` are audio paths (default: generated music)."""
    import gradio as gr

    if workdir is None:
        workdir = tempfile.mkdtemp(prefix="jax_codec_demo_")
        atexit.register(shutil.rmtree, workdir, True)
    if examples is None:
        seconds = min(8.0, model.max_seconds)
        examples = make_examples(os.path.join(workdir, "examples"), model.sample_rate, seconds)
    nq = model.num_quantizers
    choices = [(f"{k} · {model.kbps(k):.2f} kbps", k) for k in range(1, nq + 1)]
    causal = model.codec.causal

    def load(path):
        try:
            return load_upload(path, model.sample_rate, model.max_seconds)
        except UploadError as e:
            raise gr.Error(str(e)) from None

    def describe(path) -> str:
        if not path:
            return ""
        try:
            x, sr, notices = load_upload(path, model.sample_rate, model.max_seconds)
        except UploadError as e:
            return f"⚠️ **{e}**"
        ch = "mono" if x.shape[0] == 1 else "stereo"
        lines = [f"Ready: {x.shape[1] / sr:.2f} s, {ch}, at {sr} Hz."]
        return "\n".join(lines + [f"- {n}" for n in notices])

    def encode(path, k, progress=gr.Progress()):  # noqa: B008 - Gradio's injection idiom
        x, _, notices = load(path)
        for n in notices:
            gr.Warning(n)
        progress(0.1, desc="coding")
        r = run_codec(model, x, int(k or nq), _new_run_dir(workdir), name=safe_stem(path))
        for n in r["notices"]:
            gr.Warning(n)
        status = "\n".join(f"- {n}" for n in notices + r["notices"]) or "Done."
        return (
            status,
            r["original_path"],
            r["reconstruction_path"],
            gr.update(value=r["opus_path"], visible=r["opus_path"] is not None),
            format_metrics(r),
            r["jcodec_path"],
            r["images"]["spectrograms"],
            r["images"]["differences"],
            r["images"]["codes"],
        )

    def stream(path, k):
        if not causal:
            raise gr.Error("This model is non-causal and cannot stream.")
        x, _, notices = load(path)
        for n in notices:
            gr.Warning(n)
        r = run_stream(model, x, int(k or nq), _new_run_dir(workdir), name=safe_stem(path))
        return format_stream(r), r["output_path"]

    def output_audio(label: str, elem_id: str):
        return gr.Audio(label=label, type="filepath", interactive=False, elem_id=elem_id)

    # Gradio's own copies of served files: swept every 30 min, deleted after an hour.
    with gr.Blocks(
        title="jax_codec demo", analytics_enabled=False, delete_cache=(1800, 3600)
    ) as app:
        gr.Markdown(model_summary(model))
        with gr.Row():
            with gr.Column(scale=3):
                audio_in = gr.Audio(
                    sources=["upload", "microphone"],
                    type="filepath",
                    label="Input audio",
                    elem_id="input-audio",
                )
                gr.Examples(
                    examples=[[p] for p in examples],
                    inputs=[audio_in],
                    label="Generated examples (procedural music, made at startup)",
                )
            with gr.Column(scale=2):
                bitrate = gr.Radio(
                    choices,
                    value=nq,
                    label="Bitrate: quantizers · kbps "
                    + ("for the stereo pair, joint" if model.joint else "per channel")
                    + " (nominal)",
                    elem_id="bitrate",
                )
                input_status = gr.Markdown(elem_id="input-status")
        with gr.Tabs():
            with gr.Tab("Compare", id="compare"):
                encode_btn = gr.Button("Encode", variant="primary", elem_id="encode")
                status = gr.Markdown(elem_id="status")
                with gr.Row():
                    a_orig = output_audio("Original (16-bit, model rate)", "audio-original")
                    a_ours = output_audio("jax_codec", "audio-ours")
                    a_opus = output_audio("Opus at the same actual bitrate", "audio-opus")
                metrics_md = gr.Markdown(elem_id="metrics")
                jcodec = gr.File(label=".jcodec file", interactive=False, elem_id="jcodec-file")
                spec = gr.Image(label="Spectrograms", type="filepath", elem_id="spectrograms")
                diff = gr.Image(label="Differences", type="filepath", elem_id="differences")
                codes = gr.Image(
                    label="Codes of each level over time", type="filepath", elem_id="codes"
                )
            with gr.Tab("Streaming", id="streaming"):
                if causal:
                    gr.Markdown(
                        "The input chunk by chunk (20 ms requested, rounded to whole frames) "
                        "through the streaming encoder and decoder, as a live pipeline would."
                    )
                else:
                    gr.Markdown(NON_CAUSAL_NOTICE, elem_id="non-causal")
                stream_btn = gr.Button(
                    "Stream", variant="primary", interactive=causal, elem_id="stream"
                )
                stream_md = gr.Markdown(elem_id="stream-metrics")
                a_stream = output_audio("Streamed output", "audio-stream")
        audio_in.change(describe, [audio_in], [input_status])
        encode_btn.click(
            encode,
            [audio_in, bitrate],
            [status, a_orig, a_ours, a_opus, metrics_md, jcodec, spec, diff, codes],
        )
        stream_btn.click(stream, [audio_in, bitrate], [stream_md, a_stream])
    return app
