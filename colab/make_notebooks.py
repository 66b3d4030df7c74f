"""Writes the notebooks of colab/ (outputs cleared): `python colab/make_notebooks.py`.

Edit a notebook in its template, `templates/NAME.md`, and rerun this script. In a template each
fenced ```python block is a code cell (```python parameters: the cell tagged `parameters`) and
the markdown between blocks is a markdown cell. The script fills in the shared values: `@BADGE@`
(the Open in Colab badge), `@INSTALL@` and `@INSTALL_WITH_JAX_EXTRA@` (the install cell of
`templates/install.md`) and `@REPO_URL@`. Cell ids are the notebook's name and the cell's index,
so rerunning the script rewrites the same bytes.
`tests/test_notebooks.py` checks that the committed notebooks are what this script writes.
Notebooks are thin glue over the library: they call `jax_codec`'s Python entry points and
commands, and define no functions or classes of their own.
"""

from __future__ import annotations

import os
import re
import sys

import nbformat

# The repository the notebooks install from and the Colab badges point to (a placeholder
# until the project has a public home: replace `your-org` here and rerun this script).
REPO_URL = "https://github.com/your-org/jax_codec"
COLAB_URL = "https://colab.research.google.com/github/your-org/jax_codec/blob/main/colab/{name}"
BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "templates")

# Notebook -> what it asks Colab for besides the defaults (`metadata.colab`).
NOTEBOOKS = {
    "01_quickstart.ipynb": {},
    "02_train_on_tpu.ipynb": {"accelerator": "TPU"},
    "03_evaluate.ipynb": {},
}

CODE_FENCE = re.compile(r"```python(?: (parameters))?")


def parse_cells(text: str) -> list[tuple[str, str]]:
    """Splits a template into (kind, source) cells, kind one of "md", "code", "parameters"."""
    cells, kind, lines = [], "md", []

    def end_markdown() -> None:
        if "\n".join(lines).strip():
            cells.append(("md", "\n".join(lines).strip("\n")))

    for number, line in enumerate(text.splitlines(), 1):
        if kind == "md" and (fence := CODE_FENCE.fullmatch(line)):
            end_markdown()
            kind, lines = fence.group(1) or "code", []
        elif kind == "md" and line.startswith("```"):
            raise ValueError(f"line {number}: code cells start with ```python, not {line!r}")
        elif kind != "md" and line == "```":
            cells.append((kind, "\n".join(lines)))
            kind, lines = "md", []
        else:
            lines.append(line)
    if kind != "md":
        raise ValueError("a ```python block is not closed with ```")
    end_markdown()
    return cells


def _read(name: str) -> str:
    with open(os.path.join(TEMPLATES, name), encoding="utf-8") as f:
        return f.read()


def install_cells() -> dict[str, str]:
    """The two variants of the install cell of templates/install.md, by placeholder."""
    install, accelerator = [src for kind, src in parse_cells(_read("install.md")) if kind == "code"]
    plain = install.replace("@ACCELERATOR@\n", "").replace("@JAX_EXTRA@", "")
    with_extra = install.replace("@ACCELERATOR@\n", f"\n{accelerator}\n\n")
    return {
        "@INSTALL@": plain,
        "@INSTALL_WITH_JAX_EXTRA@": with_extra.replace("@JAX_EXTRA@", " {JAX_EXTRA}"),
    }


def build(name: str) -> nbformat.NotebookNode:
    stem = os.path.splitext(name)[0]
    text = _read(stem + ".md")
    values = {
        **install_cells(),
        "@BADGE@": BADGE.format(url=COLAB_URL.format(name=name)),
        "@REPO_URL@": REPO_URL,  # after the install cell, which holds it
    }
    for key, value in values.items():
        text = text.replace(key, value)
    unknown = set(re.findall(r"@[A-Z_]+@", text))
    if unknown:
        raise ValueError(f"templates/{stem}.md: unknown placeholders {sorted(unknown)}")

    nb = nbformat.v4.new_notebook()
    for i, (kind, source) in enumerate(parse_cells(text)):
        if kind == "md":
            cell = nbformat.v4.new_markdown_cell(source)
        else:
            cell = nbformat.v4.new_code_cell(source)
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
    nb.metadata["colab"] = {"provenance": [], "toc_visible": True, **NOTEBOOKS[name]}
    return nb


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
