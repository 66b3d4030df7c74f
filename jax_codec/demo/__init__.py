"""The interactive demo: `python -m jax_codec demo` (see `jax_codec.demo.cli`).

- `process`: what happens to an upload, as plain functions (`load_upload`, `run_codec`,
  `run_stream`), testable without a browser.
- `engine`: `DemoModel`, the codec compiled once for a few padded input lengths.
- `app`: the Gradio page (`build_app`); `cli`: the command.

Nothing is imported here: Gradio and JAX load only when the demo runs.
"""
