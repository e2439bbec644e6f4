"""The examples run as a user runs them, and the notebook executes with its highlights."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.mark.parametrize("script", ["classification.py", "generation.py", "batch_file.py"])
def test_example_script_runs(script, tmp_path):
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    if script != "batch_file.py":
        assert (tmp_path / script.replace(".py", ".html")).exists()
    else:
        assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 4


def test_notebook_executes_and_shows_highlights(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(EXAMPLES / "explain.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    html = [
        out["data"]["text/html"]
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if "text/html" in out.get("data", {})
    ]
    assert len(html) == 4  # one classification, all classes, a list, a generation
    assert all("background" in h for h in html)
    assert "capital" in html[-1] and "France" in html[-1]
