"""The colab/ notebooks: structure (fast), and each one run top to bottom on CPU (slow).

The slow tests execute every cell in a Jupyter kernel of this interpreter (a kernel spec
written to a temporary directory, so nothing depends on the machine's installed kernels), in a
temporary working directory, with the notebook's `parameters` cell followed by an injected
cell that shrinks steps, seconds and files (papermill's convention). A failing cell fails the
test. They need nbformat, nbclient and ipykernel (and matplotlib, ffmpeg for the evaluation).
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys

import pytest
from conftest import subprocess_env

nbformat = pytest.importorskip("nbformat")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLAB = os.path.join(REPO, "colab")
NOTEBOOKS = ("01_quickstart.ipynb", "02_train_on_tpu.ipynb", "03_evaluate.ipynb")
BADGE_URL = "https://colab.research.google.com/github/{org}/jax_codec/blob/main/colab/{name}"
KERNEL_NAME = "jax_codec_notebook_test"
CELL_TIMEOUT_S = 600
# What the notebooks write into their working directory (never the repository's).
NOTEBOOK_OUTPUTS = {"runs", "eval", "eval_songs", "compressed", "listen", "song.wav", "jax_codec"}


def _read(name: str):
    return nbformat.read(os.path.join(COLAB, name), as_version=4)


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell must be tagged `parameters`"
    return cells[0]


def _parameter_names(nb) -> set[str]:
    names = set()
    for node in ast.parse(_parameters_cell(nb).source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.dump(node)
        assert isinstance(node.targets[0], ast.Name), ast.dump(node)
        ast.literal_eval(node.value)  # plain values only, so a runner can replace them
        names.add(node.targets[0].id)
    return names


# --------------------------------------------------------------------------- structure (fast)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_structure(name):
    nb = _read(name)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    badge = re.search(
        r"\(https://colab\.research\.google\.com/github/([^/]+)/jax_codec/[^)]*\)", first.source
    )
    assert badge, "the first cell needs an Open in Colab badge"
    assert badge.group(0)[1:-1] == BADGE_URL.format(org=badge.group(1), name=name)
    assert "colab-badge.svg" in first.source

    code = _code_cells(nb)
    install = code[0].source
    assert "pip install" in install and 'find_spec("jax_codec")' in install
    assert '"google.colab" in sys.modules' in install

    params = _parameters_cell(nb)
    assert params.cell_type == "code"
    assert nb.cells.index(params) < nb.cells.index(code[2]), "parameters come before the work"
    assert _parameter_names(nb)

    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "clear the outputs"
        assert not cell.get("attachments")
    text = "\n".join(c.source for c in code)
    assert re.search(r"^\s*(async\s+)?(def|class)\s", text, re.M) is None, (
        "notebooks are glue: import the library, define nothing"
    )
    assert "from jax_codec" in text


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_cells_compile(name):
    """Every code cell is valid IPython (magics and `!` lines included)."""
    transformer = pytest.importorskip("IPython.core.inputtransformer2").TransformerManager()
    for i, cell in enumerate(_code_cells(_read(name))):
        compile(transformer.transform_cell(cell.source), f"{name} cell {i}", "exec")


def _generator():
    sys.path.insert(0, COLAB)
    try:
        import make_notebooks
    finally:
        sys.path.remove(COLAB)
    return make_notebooks


def test_template_cells():
    """A template's ```python blocks are code cells and the markdown between them markdown cells."""
    parse_cells = _generator().parse_cells
    text = "# Title\n\ntext\n\n```python\nimport os\n\nx = 1\n```\n```python parameters\nn = 2\n```\n\n## Next\n"
    assert parse_cells(text) == [
        ("md", "# Title\n\ntext"),
        ("code", "import os\n\nx = 1"),
        ("parameters", "n = 2"),
        ("md", "## Next"),
    ]
    for broken in ("```python\nx = 1\n", "```py\nx = 1\n```\n"):
        with pytest.raises(ValueError, match="```python"):
            parse_cells(broken)


def test_notebooks_match_generator():
    """The committed notebooks are what colab/make_notebooks.py writes (outputs cleared)."""
    make_notebooks = _generator()
    assert tuple(make_notebooks.NOTEBOOKS) == NOTEBOOKS
    for name in NOTEBOOKS:
        with open(os.path.join(COLAB, name), encoding="utf-8") as f:
            assert f.read() == make_notebooks.render(name), (
                f"colab/{name} is stale: run python colab/make_notebooks.py"
            )


# --------------------------------------------------------------------------- execution (slow)


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory):
    """A kernel spec running this interpreter, on one CPU device (JAX on CPU, no display)."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    root = tmp_path_factory.mktemp("kernels")
    spec_dir = root / KERNEL_NAME
    spec_dir.mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "jax_codec tests",
        "language": "python",
        "env": {
            "JAX_PLATFORMS": "cpu",
            # One device: the runlocal batch of 4 splits over it, and the tests' 8 fake devices
            # (conftest) do not leak into the kernel.
            "XLA_FLAGS": subprocess_env()["XLA_FLAGS"],
            "MPLBACKEND": "Agg",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        },
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return [str(root)]


def _run_notebook(name: str, workdir, kernel_dirs, overrides: dict):
    """Executes colab/NAME in `workdir` with `overrides` injected after the parameters cell."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    nb = _read(name)
    unknown = set(overrides) - _parameter_names(nb)
    assert not unknown, f"not parameters of {name}: {unknown}"
    lines = ["# Parameters injected by tests/test_notebooks.py"]
    lines += [f"{k} = {v!r}" for k, v in overrides.items()]
    injected = nbformat.v4.new_code_cell("\n".join(lines))
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(nb.cells.index(_parameters_cell(nb)) + 1, injected)

    specs = KernelSpecManager(kernel_dirs=kernel_dirs, ensure_native_kernel=False)
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
    client = NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT_S,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(workdir)}},
    )
    before = set(os.listdir(REPO)) | set(os.listdir(COLAB))
    client.execute()
    new = (set(os.listdir(REPO)) | set(os.listdir(COLAB))) - before
    assert not new & NOTEBOOK_OUTPUTS, f"{name} wrote {new} into the repository"
    return nb


def _text(nb) -> str:
    out = []
    for cell in _code_cells(nb):
        for o in cell.outputs:
            out.append(o.get("text", "") or "".join(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def _write_songs(folder, count: int, seconds: float) -> None:
    import soundfile as sf

    from jax_codec.data.synthetic import render_song

    folder.mkdir()
    for i in range(count):
        sf.write(folder / f"song{i}.wav", render_song(seconds, 50 + i), 44100)


@pytest.mark.slow
def test_quickstart_runs(tmp_path, kernel_dirs):
    import soundfile as sf

    from jax_codec import bitstream

    nb = _run_notebook(
        "01_quickstart.ipynb",
        tmp_path,
        kernel_dirs,
        {"num_steps": 2, "song_seconds": 1.5, "kbps": (0.25, 6.0), "priors_seconds": 4.0},
    )
    assert (tmp_path / "runs/quickstart/best/priors.npz").exists()
    for rate, codebooks in ((0.25, 1), (6.0, 4)):
        facts = bitstream.info(str(tmp_path / f"compressed/song_{rate}kbps.jcodec"))
        assert facts["n_quantizers"] == codebooks and facts["entropy_mode"]
        info = sf.info(str(tmp_path / f"compressed/song_{rate}kbps.wav"))
        assert (info.frames, info.samplerate) == (round(1.5 * 44100), 44100)
    assert (tmp_path / "compressed/song_spectrograms.png").stat().st_size > 10_000
    html = [o.get("data", {}).get("text/html", "") for c in _code_cells(nb) for o in c.outputs]
    assert sum("<audio" in h for h in html) == 3  # the original and two bitrates


@pytest.mark.slow
def test_train_on_tpu_runs_on_cpu(tmp_path, kernel_dirs):
    _write_songs(tmp_path / "music", 2, 2.0)
    nb = _run_notebook(
        "02_train_on_tpu.ipynb",
        tmp_path,
        kernel_dirs,
        {
            "workdir": "runs/tpu",
            "data_source": f"folder:{tmp_path / 'music'}",
            "steps_before_stop": 2,
            "num_steps": 4,
            "log_every": 1,
            "show_tensorboard": False,
            "run_preflight": True,
        },
    )
    text = _text(nb)
    assert "config base:runlocal (base_runlocal)" in text and "mesh: {'data': 1, 'fsdp': 1}" in text
    assert "preflight base_runlocal: mesh data=1 x fsdp=1" in text
    assert "stopped at step 2" in text
    assert "resumed at step 2, trained to step 4" in text
    run = tmp_path / "runs/tpu"
    assert {"2", "4"} <= set(os.listdir(run / "checkpoints"))
    report = json.loads((run / "data_report.json").read_text())
    assert report and "folder" in json.dumps(report)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {1, 2, 3, 4} <= set(steps)


@pytest.mark.slow
def test_evaluate_runs(tmp_path, kernel_dirs):
    _run_notebook(
        "03_evaluate.ipynb",
        tmp_path,
        kernel_dirs,
        {
            "train_steps": 2,
            "num_files": 2,
            "file_seconds": 1.5,
            "segment_seconds": 0.0,
            "n_quantizers": "1,4",
        },
    )
    out = tmp_path / "eval/notebook"
    rows = json.loads((out / "results.json").read_text())
    assert {r["codec"] for r in rows} == {"base_runlocal", "opus", "mp3"}
    assert {r["n_quantizers"] for r in rows} == {1, 4} and len(rows) == 2 * 2 * 3
    assert (out / "rd_mel_distance.png").exists() and (out / "summary.md").exists()
    assert (tmp_path / "listen/ours.wav").exists()
