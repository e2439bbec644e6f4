"""The command line end to end, on the bundled models."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from interp_text import Explanation
from interp_text.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_color(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")


def test_explain_prints_and_writes(tmp_path, capsys):
    html, js = tmp_path / "e.html", tmp_path / "e.json"
    assert (
        main(["explain", "The food was not good.", "--html", str(html), "--json", str(js), "--n-perturbations", "5"])
        == 0
    )
    out = capsys.readouterr().out
    assert "not[" in out and "good[" in out and "negative" in out
    expl = Explanation.load(js)
    assert expl.method == "VarGrad" and expl.elements == ["The", "food", "was", "not", "good", "."]
    assert "<span" in html.read_text() and "not" in html.read_text()


def test_explain_generation_with_bundled_lm(capsys):
    assert (
        main(
            [
                "explain",
                "The capital of France is",
                "--task",
                "generation",
                "--method",
                "saliency",
                "--max-new-tokens",
                "4",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Paris" in out and "France" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["explain", ""], "text 0 is empty"),
        (["explain", "ok", "--method", "magic"], "--method 'magic' is not known"),
        (["explain", "ok", "--model", "no/such/folder"], "neither a bundled model"),
        (["explain", "ok", "--target", "7"], "target 7 is out of range"),
        (["explain", "ok", "--method", "occlusion", "--n-perturbations", "3"], "does not apply to occlusion"),
        (["explain", "--input", "x.jsonl"], "--input needs --output"),
    ],
)
def test_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.startswith("interp-text: error:")


def test_file_mode_resumes_after_an_interrupted_run(tmp_path):
    texts = ["The food was good.", "The staff were not friendly.", "I hated the soup.", "Lovely room."]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp_path / "out.jsonl"
    argv = ["explain", "--input", str(inp), "--output", str(out), "--texts-per-call", "2", "--n-perturbations", "4"]
    assert main(argv) == 0
    full = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in full] == [0, 1, 2, 3]
    # An interruption after the first chunk, in the middle of writing the third line:
    out.write_text("".join(json.dumps(r) + "\n" for r in full[:2]) + json.dumps(full[2])[:40])
    assert main(argv) == 0
    resumed = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in resumed] == [0, 1, 2, 3]
    for a, b in zip(full, resumed):
        np.testing.assert_allclose(np.array(a["scores"], float), np.array(b["scores"], float), rtol=1e-6)
    # A third run has nothing left to do and changes nothing.
    before = out.read_text()
    assert main(argv) == 0
    assert out.read_text() == before


def test_killed_run_keeps_finished_chunks(tmp_path):
    texts = [f"The food was good number {i}." for i in range(40)]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"text": t, "id": f"t{i}"}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "out.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "interp_text",
        "explain",
        "--input",
        str(inp),
        "--output",
        str(out),
        "--texts-per-call",
        "1",
        "--n-perturbations",
        "2",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    # Wait for the first results, then kill the run mid-way.
    import time

    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    kept = [json.loads(line)["id"] for line in out.read_text().splitlines() if line.endswith("}")]
    assert len(kept) >= 3
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(f"t{i}" for i in range(40)) and len(ids) == 40


def test_help_and_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "interp_text", "explain", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0 and "--granularity" in done.stdout and "--input" in done.stdout


def test_demo_writes_a_page(tmp_path, capsys):
    page = tmp_path / "demo.html"
    assert main(["demo", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "Paris" in out and "page written" in out
    assert page.read_text().count("<span") > 10
