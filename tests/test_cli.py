"""The command line end to end, on the bundled models."""

import importlib
import io
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from interp_text import GRADIENT_METHODS, PERTURBATION_METHODS, Explanation
from interp_text.cli import all_methods, main, parse_target

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
        (["explain", ""], "the text is empty"),
        (["explain", "ok", "--method", "magic"], "--method 'magic' is not known"),
        (["explain", "ok", "--model", "no/such/folder"], "cannot load 'no/such/folder': there is no such folder"),
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


def test_only_a_cut_off_result_line_is_taken_for_one(tmp_path, capsys):
    from interp_text.cli import half_written

    line = json.dumps({"id": "t-1", "text": "Ünïcode ✓", "elements": ["a"]}, ensure_ascii=False).encode()
    # Cut anywhere, inside '{"id": ' too, and after a number's point or exponent ({"id": 2. of 2.5).
    for key in ("t-1", 2.5, -1500.0, 1e-07, 7):
        line = json.dumps({"id": key, "text": "Ünïcode ✓", "elements": ["a"]}, ensure_ascii=False).encode()
        assert all(half_written(line[:k]) for k in range(1, len(line))), key
    assert not half_written(b'{"id": "mine", "note": "not JSON')
    assert not half_written(b'{"id": 2.5x') and not half_written(b'{"ids": 1') and not half_written(b"[")
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"text": "The food was good."}) + "\n")
    mine = tmp_path / "mine.jsonl"
    mine.write_text('{"id": "mine", "note": "not JSON')
    assert main(["explain", "--input", str(inp), "--output", str(mine)]) == 2
    assert "is not a result written by interp-text" in capsys.readouterr().err
    assert mine.read_text() == '{"id": "mine", "note": "not JSON'  # left as it was


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


RESULT = {"id": 0, "text": "Good.", "elements": ["Good", "."], "scores": [[0.5, 0.1]]}


@pytest.mark.parametrize(
    "content,line,why",
    [
        ("my notes\nmore notes\n", 1, "not JSON"),
        ('{\n  "a": 1\n}\n', 1, "not JSON"),
        ("a last line without newline", 1, "not JSON"),
        (json.dumps(RESULT) + '\n{"text": "Good."}\n', 2, 'no "id"'),
        (json.dumps({**RESULT, "id": [1]}) + "\n", 1, 'its "id" is a list'),
        ("[1, 2]\n", 1, "a JSON list, not an object"),
    ],
)
def test_file_mode_leaves_a_file_it_did_not_write_alone(tmp_path, capsys, content, line, why):
    inp, out = tmp_path / "in.jsonl", tmp_path / "notes.txt"
    inp.write_text('{"text": "The food was good."}\n')
    out.write_text(content)
    assert main(["explain", "--input", str(inp), "--output", str(out)]) == 2
    assert out.read_text() == content
    assert capsys.readouterr().err == (
        f"interp-text: error: {out}:{line} is not a result written by interp-text ({why}); the file is left as "
        f"it is: choose another --output, or delete {out} to start over.\n"
    )


def test_file_mode_resumes_after_a_result_cut_before_its_newline(tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["The food was good.", "I hated the soup."]))
    argv = ["explain", "--input", str(inp), "--output", str(out), "--n-perturbations", "2"]
    assert main(argv) == 0
    full = out.read_text()
    out.write_text(full.splitlines()[0])  # the first result, cut off just before its newline
    assert main(argv) == 0
    got = out.read_text()
    assert got.endswith("\n") and got.splitlines()[0] == full.splitlines()[0]
    # The second text ran alone this time, not batched with the first: the same numbers up to rounding.
    again, before = (json.loads(text.splitlines()[1]) for text in (got, full))
    np.testing.assert_allclose(again.pop("scores"), before.pop("scores"), rtol=1e-5, atol=1e-12)
    assert again["targets"][0].pop("score") == pytest.approx(before["targets"][0].pop("score"), rel=1e-6)
    assert again["targets"][0].pop("probability") == pytest.approx(before["targets"][0].pop("probability"), rel=1e-6)
    assert again == before and len(got.splitlines()) == 2


def test_file_mode_keeps_a_line_separator_inside_a_text(tmp_path, capsys):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps({"text": "The food was good.\u2028I loved it."}, ensure_ascii=False) + "\n")
    argv = ["explain", "--input", str(inp), "--output", str(out), "--n-perturbations", "2"]
    assert main(argv) == 0
    assert main(argv) == 0
    assert "nothing to do: all 1 texts are already in" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8").count("\n") == 1


@pytest.mark.parametrize(
    "lines,message",
    [
        (['{"text": "Good.", "id": [1]}'], ':1 has an "id" that is a list; use a string or a number.'),
        (
            ['{"text": "Good."}', '{"text": "Bad.", "id": 0}'],
            ":2 repeats the id 0 of line 1; give each text its own id (a rerun skips the ids already in --output).",
        ),
        (
            ['{"text": "Good."}', '{"text": "Bad.", "target": 5, "id": "b"}'],
            ":2 (id 'b'): target 5 is out of range: the model has 2 classes (0..1).",
        ),
        (
            ['{"text": "Good."}', '{"text": "  ", "id": "b"}'],
            ":2 (id 'b'): the text is empty; pass a text with at least one non-space character.",
        ),
    ],
)
def test_file_mode_errors_name_the_line(tmp_path, capsys, lines, message):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(line + "\n" for line in lines))
    assert main(["explain", "--input", str(inp), "--output", str(out), "--n-perturbations", "2"]) == 2
    assert capsys.readouterr().err == f"interp-text: error: {inp}{message}\n"


def test_generation_target_is_the_text_to_force(capsys):
    argv = ["explain", "The capital of France is", "--task", "generation", "--method", "saliency", "--target", " Paris"]
    assert main(argv) == 0
    assert "'Paris' p=0.97" in capsys.readouterr().out


UNSPACED = (
    "starts with a token of probability 5.6e-07, and the same word after a space with one of 9.7e-01: a forced "
    "text is tokenized as written, and this tokenizer writes the space before a word into the word's token. To force "
    "the word after the prompt, pass ' Paris'.\n"
)


def test_warnings_are_one_line_of_the_command_naming_the_text_as_given(tmp_path, capsys):
    # Not Python's "cli.py:530: UserWarning: ..." and its source line, and not the library's "prompt 0".
    argv = ["explain", "The capital of France is", "--task", "generation", "--method", "saliency", "--target", "Paris"]
    assert main(argv) == 0
    assert capsys.readouterr().err == f"interp-text: warning: the forced target of the prompt ('Paris') {UNSPACED}"
    records = [{"text": "The capital of France is", "target": t} for t in (" Paris", "Paris")]
    _, inp, out = file_run(tmp_path, records)
    assert (
        main(["explain", "--input", str(inp), "--output", str(out), "--task", "generation", "--method", "saliency"])
        == 0
    )
    err = capsys.readouterr().err.splitlines(keepends=True)
    assert err[0] == f"interp-text: warning: the forced target of {inp}:2 (id 1) ('Paris') {UNSPACED}"
    assert not any(line.startswith("interp-text: warning") for line in err[1:])  # shown once, not again per line


def test_warnings_keep_the_users_words_and_pythons_filters(tmp_path, capsys):
    # A forced target quoting "prompt 5": only the library's own index is renamed (it crashed: no line 5).
    records = [{"text": "The capital of France is", "target": "Paris, as prompt 5 says"}]
    _, inp, out = file_run(tmp_path, records)
    assert (
        main(["explain", "--input", str(inp), "--output", str(out), "--task", "generation", "--method", "saliency"])
        == 0
    )
    err = capsys.readouterr().err
    assert f"the forced target of {inp}:1 (id 0) ('Paris, as prompt 5 says')" in err
    argv = ["explain", "The capital of France is", "--task", "generation", "--method", "saliency", "--target", "Paris"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # python -W ignore, PYTHONWARNINGS=ignore
        assert main(argv) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "value,task,target",
    [
        ("1", "classification", 1),
        ("-1", "classification", -1),
        ("positive", "classification", "positive"),
        ("4", "causal_lm", "4"),
        ("4", "seq2seq", "4"),
        (None, "classification", None),
    ],
)
def test_parse_target(value, task, target):
    assert parse_target(value, task) == target


@pytest.mark.parametrize(
    "argv,message",
    [
        (["explain", "--input", "x.jsonl", "--output", "y.jsonl", "--texts-per-call", "0"], "--texts-per-call"),
        (["explain", "ok", "--batch-size", "0"], "--batch-size"),
        (["explain", "ok", "--n-perturbations", "-3"], "--n-perturbations"),
        (["explain", "ok", "--max-new-tokens", "x"], "--max-new-tokens"),
        (["compare", "--n-texts", "0"], "--n-texts"),
    ],
)
def test_counts_must_be_positive(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    value = argv[-1]
    assert (
        f"error: argument {message}: must be a positive integer (1, 2, ...), got '{value}'" in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["explain", "ok", "--input", "x.jsonl", "--output", "y.jsonl"],
            "got a text ('ok') and --input x.jsonl; pass one or the other, not both.",
        ),
        (
            ["explain", "ok", "--task", "generation", "--model", "sentiment"],
            "--task generation does not fit --model 'sentiment': it is a classifier (BertForSequenceClassification); "
            "pass --task classification, or leave --task out to use what the model does.",
        ),
        (
            ["explain", "ok", "--task", "classification", "--model", "facts"],
            "--task classification does not fit --model 'facts': it generates text (GPT2LMHeadModel); "
            "pass --task generation, or leave --task out to use what the model does.",
        ),
        (
            ["explain", "ok", "--device", "cuda:0"],
            "--device cuda:0: no CUDA device is available to torch here; use --device cpu.",
        ),
        (
            ["explain", "--input", "x.jsonl", "--output", "y.jsonl", "--html", "p.html"],
            "--html writes one explanation; with --input, results go to --output.",
        ),
        (
            ["explain", "ok", "--output", "y.jsonl"],
            "--output is for --input FILE.jsonl; for one text use --json or --html.",
        ),
        (
            ["explain", "ok", "--texts-per-call", "5"],
            "--texts-per-call is for --input FILE.jsonl; one text is explained in one call.",
        ),
        (
            ["explain", "ok", "--model", "sentiment", "--max-new-tokens", "3"],
            "--max-new-tokens is for generation; this model is a classifier.",
        ),
        (
            ["explain", "The capital is", "--model", "facts", "--target", " Paris", "--max-new-tokens", "3"],
            "--max-new-tokens is for a generated output, and --target forces the output, so nothing is generated: "
            "drop one of them.",
        ),
        (
            [
                "explain",
                "The food was good and the staff were kind.",
                "--method",
                "kernelshap",
                "--n-perturbations",
                "3",
            ],
            # In the command line's words: the library says n_perturbations=3.
            "the text has 10 elements, and --n-perturbations 3 coalitions (in complementary pairs, one equation "
            "each) cannot determine 10 Shapley values; pass --n-perturbations >= 18 (several times more gives "
            "steadier values) or a coarser granularity.",
        ),
    ],
)
def test_error_messages(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(argv) == 2
    assert capsys.readouterr().err == f"interp-text: error: {message}\n"


def test_help_lists_every_method(capsys):
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    out = capsys.readouterr().out
    assert set(all_methods()) == {*GRADIENT_METHODS, *PERTURBATION_METHODS} and len(all_methods()) == 11
    for name in all_methods():
        assert name in out


def test_choices_take_any_case(tmp_path):
    js = tmp_path / "e.json"
    argv = ["explain", "Good food.", "--granularity", "WORD", "--aggregation", "Max", "--method", "saliency"]
    assert main([*argv, "--inference-mode", "SOFTMAX", "--json", str(js)]) == 0
    expl = Explanation.load(js)
    assert (expl.granularity, expl.aggregation, expl.inference_mode) == ("word", "max", "softmax")


@pytest.mark.parametrize(
    "value,methods",
    [("occlusion, lime", ["occlusion", "lime"]), (" Saliency ,,vargrad, ", ["Saliency", "vargrad"])],
)
def test_compare_methods_ignore_spaces_and_empty_items(value, methods, monkeypatch, capsys):
    compare_module = importlib.import_module("interp_text.comparison")
    got = {}

    def compare_default(n_texts, methods, data, progress):
        got.update(n_texts=n_texts, methods=methods, data=data, progress=progress)
        return [{"method": "Occlusion", "deletion": 0.5, "insertion": 0.5, "rationale_ap": None, "seconds": 1.0}]

    monkeypatch.setattr(compare_module, "compare_default", compare_default)
    assert main(["compare", "--methods", value, "--n-texts", "2"]) == 0
    assert got == {"n_texts": 2, "methods": methods, "data": "sentiment", "progress": False}  # no terminal
    out = capsys.readouterr().out.splitlines()
    assert out[2].startswith("Occlusion")
    assert out[-1].startswith("seconds: one call per method, after an untimed one")


@pytest.mark.parametrize(
    "value,message",
    [
        (",,", "--methods ',,' names no method; pass comma-separated names from {}, such as 'occlusion,lime'."),
        (" , ", "--methods ' , ' names no method; pass comma-separated names from {}, such as 'occlusion,lime'."),
        ("", "--methods '' names no method; pass comma-separated names from {}, such as 'occlusion,lime'."),
        (
            "occlusion, magic",
            "--methods 'occlusion, magic' names the unknown method 'magic'; pass comma-separated names from {}, "
            "such as 'occlusion,lime'.",
        ),
    ],
)
def test_compare_methods_errors(value, message, capsys):
    assert main(["compare", "--methods", value, "--n-texts", "1"]) == 2
    assert capsys.readouterr().err == f"interp-text: error: {message.format(sorted(all_methods()))}\n"


# --------------------------------------------------------------------------- file mode: resuming safely
def file_run(tmp_path, records, *options):
    """Write ``records`` as the input file; return the argv of a file-mode run over it, and the paths."""
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in records))
    return ["explain", "--input", str(inp), "--output", str(out), "--n-perturbations", "2", *options], inp, out


def test_file_mode_refuses_results_of_texts_that_moved(tmp_path, capsys):
    texts = ["The food was good.", "I hated the soup.", "Lovely room."]
    argv, inp, out = file_run(tmp_path, [{"text": t} for t in texts])
    assert main(argv) == 0
    written = out.read_text()
    # A line inserted at the top: ids (line numbers) 0..2 are now other texts.
    inp.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["A new first line.", *texts]))
    capsys.readouterr()
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"interp-text: error: {out} does not hold the results of {inp}: for id 0 ({inp}:1) it explains the text "
        f"'The food was good.', but the input is 'A new first line.'. Results are matched to inputs by id (a "
        f'line\'s number when it has no "id"), so adding or removing lines shifts them; use another --output, or '
        f'delete {out} to start over (give each line an "id" to keep its result when lines move).\n'
    )
    assert out.read_text() == written  # nothing appended


def test_file_mode_refuses_results_of_another_text_pair(tmp_path, capsys):
    argv, inp, out = file_run(tmp_path, [{"text": "The food was good.", "text_pair": "Lovely room."}])
    assert main(argv) == 0
    # The same characters, read as one text: not what the result explains.
    inp.write_text(json.dumps({"text": "The food was good.\nLovely room."}) + "\n")
    capsys.readouterr()
    assert main(argv) == 2
    assert (
        f"for id 0 ({inp}:1) it explains the text {{'text': 'The food was good.', 'text_pair': 'Lovely room.'}}, "
        "but the input is 'The food was good.\\nLovely room.'." in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "options,why",
    [
        (["--granularity", "sentence"], "granularity 'word', this run 'sentence'"),
        (["--method", "smoothgrad"], "method 'VarGrad', this run 'SmoothGrad'"),
        (["--aggregation", "max"], "aggregation 'mean', this run 'max'"),
        (["--inference-mode", "softmax"], "--inference-mode 'logits', this run 'softmax'"),
        (["--n-perturbations", "3"], "--n-perturbations 2, this run 3"),
        (["--seed", "1"], "seed 0, this run 1"),
        (["--model", "facts"], "task 'classification', this run 'causal_lm'"),
    ],
)
def test_file_mode_refuses_results_made_with_other_settings(tmp_path, capsys, options, why):
    argv, inp, out = file_run(tmp_path, [{"text": "The food was good."}, {"text": "I hated the soup."}])
    assert main(argv) == 0
    out.write_text(out.read_text().splitlines()[0] + "\n")  # id 1 still to do
    written = out.read_text()
    capsys.readouterr()
    assert main([*argv, *options]) == 2
    assert capsys.readouterr().err == (
        f"interp-text: error: {out} holds results made with other settings: id 0 ({inp}:1) was explained with "
        f"{why}. Rerun with the same settings to resume, or use another --output, or delete {out} to start over.\n"
    )
    assert out.read_text() == written
    assert main(argv) == 0  # the same settings resume
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [0, 1]


@pytest.mark.parametrize(
    "target,records,why",
    [
        ("negative", [{"text": "The food was good."}], "class(es) ['positive'] there, this run ['negative']"),
        ("all", [{"text": "The food was good."}], "class(es) ['positive'] there, this run ['negative', 'positive']"),
        (None, [{"text": "The food was good.", "target": 0}], "class(es) ['positive'] there, this run ['negative']"),
    ],
)
def test_file_mode_refuses_results_for_other_targets(tmp_path, capsys, target, records, why):
    argv, inp, out = file_run(tmp_path, [{"text": "The food was good."}])
    assert main(argv) == 0  # the predicted class: positive
    inp.write_text("".join(json.dumps(r) + "\n" for r in records))
    capsys.readouterr()
    assert main(argv + ([] if target is None else ["--target", target])) == 2
    assert capsys.readouterr().err == (
        f"interp-text: error: {out} holds results for other targets: id 0 ({inp}:1) explains {why}. Rerun with "
        f"the same --target (and input targets) to resume, or use another --output, or delete {out} to start over.\n"
    )
    inp.write_text(json.dumps({"text": "The food was good."}) + "\n")
    assert main([*argv, "--target", "positive"]) == 0  # the class it explains, named: the same result
    assert "nothing to do: all 1 texts are already in" in capsys.readouterr().err


def test_file_mode_refuses_a_forced_output_it_did_not_explain(tmp_path, capsys):
    records = [{"text": "The capital of France is"}]
    argv, inp, out = file_run(tmp_path, records, "--task", "generation", "--method", "saliency")
    argv = [a for a in argv if a not in ("--n-perturbations", "2")]
    assert main([*argv, "--target", " Paris"]) == 0
    capsys.readouterr()
    assert main([*argv, "--target", " Berlin"]) == 2
    assert f"id 0 ({inp}:1) explains the output ' Paris' there, this run forces ' Berlin'." in capsys.readouterr().err
    assert main([*argv, "--target", " Paris"]) == 0
    assert "nothing to do: all 1 texts are already in" in capsys.readouterr().err


def test_file_mode_refuses_to_resume_with_another_model_or_output_length(tmp_path, capsys):
    records = [{"text": "The capital of France is"}, {"text": "The capital of Spain is", "target": " Madrid"}]
    argv, inp, out = file_run(tmp_path, records, "--task", "generation", "--method", "saliency")
    argv = [a for a in argv if a not in ("--n-perturbations", "2")]
    assert main([*argv, "--max-new-tokens", "2", "--texts-per-call", "1"]) == 0
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["model"] for r in written] == ["facts", "facts"]
    assert [r["options"].get("generation") for r in written] == [{"max_new_tokens": 2}, None]  # the forced one: none
    assert len(written[0]["output_ids"]) == 2
    out.write_text(out.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")  # as if cut after one
    capsys.readouterr()
    assert main([*argv, "--max-new-tokens", "3"]) == 2
    err = capsys.readouterr().err
    assert f"id 0 ({inp}:1) was explained with --max-new-tokens 2, this run 3." in err
    assert main(argv) == 2
    assert "was explained with --max-new-tokens 2, this run 20 (not given: the default)." in capsys.readouterr().err
    import shutil

    copy = shutil.copytree(ROOT / "interp_text" / "bundled" / "facts", tmp_path / "facts_copy")
    assert main([*argv, "--max-new-tokens", "2", "--model", str(copy)]) == 2
    assert (
        f"holds results of another model: id 0 ({inp}:1) was explained with the model 'facts', this run loads "
        f"{str(copy.resolve())!r}. Rerun with --model facts to resume" in capsys.readouterr().err
    )
    assert main([*argv, "--max-new-tokens", "2"]) == 0  # as first asked: the second line runs
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2


def test_file_mode_resumes_with_the_default_output_length_spelled_out(tmp_path, capsys):
    """A run without --max-new-tokens generated 20 tokens, the default: resuming with
    --max-new-tokens 20 asks for the same outputs, and the other way round."""
    records = [{"text": "The capital of France is"}, {"text": "The capital of Spain is"}]
    argv, inp, out = file_run(tmp_path, records, "--task", "generation", "--method", "saliency")
    argv = [a for a in argv if a not in ("--n-perturbations", "2")]
    assert main([*argv, "--texts-per-call", "1"]) == 0
    first = out.read_text(encoding="utf-8").splitlines()
    out.write_text(first[0] + "\n", encoding="utf-8")  # as if cut after one
    assert main([*argv, "--max-new-tokens", "20"]) == 0
    again = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    before = json.loads(first[1])
    assert len(again) == 2 and again[1]["output_ids"] == before["output_ids"] and len(before["output_ids"]) > 1
    assert again[1]["scores"] == before["scores"]
    out.write_text(first[0] + "\n", encoding="utf-8")
    assert main([*argv, "--max-new-tokens", "19"]) == 2
    assert "was explained with --max-new-tokens 20 (not given: the default), this run 19." in capsys.readouterr().err


def test_file_mode_resumes_results_written_before_the_model_was_recorded(tmp_path, capsys):
    records = [{"text": "The capital of France is"}, {"text": "The capital of Spain is"}]
    argv, inp, out = file_run(tmp_path, records, "--task", "generation", "--method", "saliency")
    argv = [a for a in argv if a not in ("--n-perturbations", "2")] + ["--max-new-tokens", "2"]
    assert main(argv) == 0
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    del first["model"], first["options"]["generation"]  # as an earlier version wrote it
    out.write_text(json.dumps(first) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(argv) == 0  # nothing recorded to compare: resumed
    assert "1 explanations written" in capsys.readouterr().err


def test_file_mode_with_an_empty_input_and_max_new_tokens_has_nothing_to_do(tmp_path, capsys):
    argv, inp, out = file_run(tmp_path, [], "--task", "generation", "--method", "saliency")
    argv = [a for a in argv if a not in ("--n-perturbations", "2")] + ["--max-new-tokens", "2"]
    assert main(argv) == 0
    assert capsys.readouterr().err == f"nothing to do: {inp} holds no text\n"


def test_file_mode_with_every_output_forced_refuses_max_new_tokens(tmp_path, capsys):
    records = [{"text": "The capital of Spain is", "target": " Madrid"}]
    argv, inp, out = file_run(tmp_path, records, "--task", "generation", "--method", "saliency")
    argv = [a for a in argv if a not in ("--n-perturbations", "2")] + ["--max-new-tokens", "2"]
    assert main(argv) == 2
    assert (
        f"--max-new-tokens is for generated outputs, but every line of {inp} forces its output (a target), so "
        "nothing is generated; drop --max-new-tokens." in capsys.readouterr().err
    )
    assert not out.exists()


# --------------------------------------------------------------------------- progress and version
def test_progress_in_a_log_is_plain_lines(tmp_path, capsys):
    argv, inp, out = file_run(tmp_path, [{"text": f"The food was good {i}."} for i in range(4)])
    assert main([*argv, "--texts-per-call", "1"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err  # standard error is no terminal here: nothing to redraw
    lines = err.splitlines()
    assert [line.split(",")[0] for line in lines[:-1]] == ["1/4 texts", "2/4 texts", "3/4 texts", "4/4 texts"]
    assert all(re.fullmatch(r"\d/4 texts, \d+\.\ds", line) for line in lines[:-1])
    assert lines[-1] == f"4 explanations written to {out} (0 were already there)"


def test_progress_on_a_terminal_is_a_bar(tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    argv, inp, out = file_run(tmp_path, [{"text": "The food was good."}, {"text": "I hated the soup."}])
    monkeypatch.setattr("sys.stderr", Terminal())
    assert main([*argv, "--texts-per-call", "1"]) == 0
    err = sys.stderr.getvalue()
    assert re.fullmatch(
        r"\r\[#{15}\.{15}\] 1/2 texts, \d+\.\ds\r\[#{30}\] 2/2 texts, \d+\.\ds\n"
        + re.escape(f"2 explanations written to {out} (0 were already there)\n"),
        err,
    )


def test_version(capsys):
    from interp_text import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"interp-text {__version__}\n"


def test_a_console_that_cannot_show_the_text_gets_escapes_and_names_the_fix(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "e.json"
    run = subprocess.run(
        [sys.executable, "-m", "interp_text", "explain", "Nice 😀 food", "--method", "occlusion", "--json", str(out)],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "cp1252"},
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.decode("cp1252").endswith(
        "interp-text: this console's encoding (cp1252) cannot show every character of the text or output: they are "
        "written as escapes (\\U0001f600); set PYTHONIOENCODING=utf-8 (or use a UTF-8 console) to see them.\n"
    )
    shown = run.stdout.decode("cp1252").splitlines()
    assert shown[2].startswith("Nice[") and " \\U0001f600[" in shown[2] and shown[-1] == f"JSON written to {out}"
    assert json.loads(out.read_text(encoding="utf-8"))["text"] == "Nice 😀 food"
    # A prompt the console writes, with an output it cannot: the note still comes.
    command = ["explain", "The capital of France is", "--task", "generation", "--method", "occlusion"]
    run = subprocess.run(
        [sys.executable, "-m", "interp_text", *command, "--target", " Paris 😀"],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert b"cannot show every character of the text or output" in run.stderr
    assert b"\\U0001f600" in run.stdout


def test_the_compare_table_is_ascii_where_stdout_is(monkeypatch):
    import io

    from interp_text.comparison import format_table

    rows = [{"method": "Occlusion", "deletion": 0.5, "insertion": 0.7, "rationale_ap": 0.9, "seconds": 1.0}]
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(io.BytesIO(), encoding="ascii"))
    table = format_table(rows)
    table.encode("ascii")
    assert "deletion (lower better)" in table and "rationale AP (higher better)" in table


def test_an_input_file_with_a_utf8_bom_is_read(tmp_path):
    from interp_text.cli import read_jsonl_inputs

    path = tmp_path / "in.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "good food"}\n{"text": "cold"}\n')
    assert [r["text"] for _, r in read_jsonl_inputs(path)] == ["good food", "cold"]


def test_file_mode_refuses_a_file_of_other_settings_whatever_the_ids(tmp_path, capsys):
    """Results whose ids are not in this input are still this file's: another method there is refused,
    not mixed in."""
    argv, inp, out = file_run(tmp_path, [{"id": "a", "text": "The food was good."}])
    assert main(argv) == 0
    inp.write_text(json.dumps({"id": "b", "text": "I hated the soup."}) + "\n")
    capsys.readouterr()
    assert main([*argv, "--granularity", "token"]) == 2
    assert capsys.readouterr().err == (
        f"interp-text: error: {out} holds results made with other settings: id 'a' ({out}:1) was explained with "
        "granularity 'word', this run 'token'. Rerun with the same settings to resume, or use another --output, "
        f"or delete {out} to start over.\n"
    )
    assert len(out.read_text().splitlines()) == 1


def test_file_mode_refuses_to_generate_what_was_forced(tmp_path, capsys):
    record = {"id": "jp", "text": "The official language of Japan is", "target": " French."}
    argv, inp, out = file_run(tmp_path, [record], "--task", "generation", "--method", "saliency")
    argv = [a for a in argv if a not in ("--n-perturbations", "2")]
    assert main(argv) == 0
    inp.write_text(json.dumps({"id": "jp", "text": record["text"]}) + "\n")  # the target dropped
    capsys.readouterr()
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(
        f"interp-text: error: {out} holds results for other targets: id 'jp' ({inp}:1) explains the forced output "
        "' French.' there (a target), this run generates one."
    )


@pytest.mark.parametrize(
    "content,message",
    [
        (b'{"text": "caf\xe9"}\n', "{inp}:1 is not UTF-8 (byte 0xe9 at column 14); save the file as UTF-8."),
        (
            b'{"text": "Rome is in", "targets": " Italy"}\n',
            '{inp}:1 has the key "targets"; did you mean "target"?',
        ),
        (
            b'{"id": 1, "text": "a"}\n{"id": NaN, "text": "b"}\n',
            '{inp}:2 has the "id" NaN, which JSON has no number for; use a string or a number.',
        ),
        (
            b'{"id": 1, "text": "a"}\n{"id": true, "text": "b"}\n{"id": 1.0, "text": "c"}\n{"id": "1", "text": "d"}\n'
            b'{"id": 1, "text": "e"}\n',
            "{inp}:5 repeats the id 1 of line 1; give each text its own id (a rerun skips the ids already in --output).",
        ),
    ],
)
def test_file_mode_input_errors_name_the_line(content, message, tmp_path, capsys):
    argv, inp, out = file_run(tmp_path, [])
    inp.write_bytes(content)
    assert main(argv) == 2
    assert capsys.readouterr().err == f"interp-text: error: {message.format(inp=inp)}\n"


def test_a_line_that_fails_keeps_the_results_before_it_and_a_rerun_goes_on_from_it(tmp_path, capsys):
    records = [{"text": "Good food.", "id": i} for i in range(4)]
    records[2]["text"] = "good " * 200  # too long for the model: found as it runs, in the same call as the others
    argv, inp, out = file_run(tmp_path, records)
    out = tmp_path / "new folder" / "out.jsonl"  # --output's folder is made, as --html's and --json's are
    argv[argv.index("--output") + 1] = str(out)
    assert main(argv) == 2
    assert re.search(rf"{re.escape(str(inp))}:3 \(id 2\): the text has \d+ tokens", capsys.readouterr().err)
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [0, 1]
    records[2]["text"] = "Good food."
    inp.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(argv) == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [0, 1, 2, 3]
    assert "2 explanations written to" in capsys.readouterr().err


def test_a_bad_target_or_text_anywhere_is_refused_before_any_line_runs(tmp_path, capsys):
    records = [{"text": "Good food."}] * 50 + [{"text": "Bad food.", "target": "neutral"}]
    argv, inp, out = file_run(tmp_path, records)
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"interp-text: error: {inp}:51 (id 50): target 'neutral' is not a class name; the classes are ['negative', "
        "'positive'].\n"
    )
    assert not out.exists()
    inp.write_text(json.dumps({"text": "Good."}) + "\n" + json.dumps({"text": " "}) + "\n")
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"interp-text: error: {inp}:2 (id 1): the text is empty; pass a text with at least one non-space character.\n"
    )
    # Read as the call reads them: one entry of a list of texts, not a list of its own.
    for bad, why in (
        ({"text": "Good.", "target": [[0, 1]]}, "target [0, 1] must be a class index (int) or class name (str)."),
        ({"text": ["Good.", "Bad."]}, "the text is a list but not chat messages;"),
    ):
        inp.write_text(json.dumps({"text": "Good."}) + "\n" + json.dumps(bad) + "\n")
        assert main([*argv, "--texts-per-call", "1"]) == 2
        assert capsys.readouterr().err.startswith(f"interp-text: error: {inp}:2 (id 1): {why}")
        assert not out.exists()


def test_file_mode_keeps_the_users_own_keys_unread(tmp_path):
    argv, inp, out = file_run(tmp_path, [{"text": "The food was good.", "label": "pos", "source": "web"}])
    assert main(argv) == 0
    assert json.loads(out.read_text())["text"] == "The food was good."


def test_file_mode_refuses_an_output_with_a_repeated_id(tmp_path, capsys):
    argv, inp, out = file_run(tmp_path, [{"id": "a", "text": "The food was good."}])
    assert main(argv) == 0
    out.write_text(out.read_text() * 2)
    capsys.readouterr()
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"interp-text: error: {out}:2 repeats the id 'a' of line 1 (two runs wrote to it?); the file is left as it "
        f"is: delete one of the two lines, choose another --output, or delete {out} to start over.\n"
    )


def test_file_mode_default_target_with_max_new_tokens_generates_the_lines_without_one(tmp_path):
    """--target is each line's default there: a line whose "target" is null still generates."""
    records = [{"text": "The capital of France is"}, {"text": "The capital of Germany is", "target": None}]
    argv, inp, out = file_run(tmp_path, records[:1], "--task", "generation", "--method", "saliency")
    inp.write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = [a for a in argv if a not in ("--n-perturbations", "2")] + ["--target", " Paris", "--max-new-tokens", "2"]
    assert main(argv) == 0
    first, second = (json.loads(line) for line in out.read_text().splitlines())
    assert first["output_text"] == " Paris" and first["options"].get("forced")
    assert second["options"]["generation"] == {"max_new_tokens": 2} and "forced" not in second["options"]


def test_file_mode_reads_ids_of_the_users_own_and_a_bom(tmp_path, capsys):
    argv, inp, out = file_run(tmp_path, [])
    inp.write_text(json.dumps({"text": "The food was good.", "idx": 3, "uid": "a"}) + "\n")
    assert main(argv) == 0  # "idx" and "uid" are the user's own keys, not misspelt ids
    inp.write_bytes(b'\xef\xbb\xbf{"text": "caf\xe9"}\n')
    capsys.readouterr()
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"interp-text: error: {inp}:1 is not UTF-8 (byte 0xe9 at column 17); save the file as UTF-8.\n"
    )


def test_file_mode_names_the_forced_output_before_generation_options(tmp_path, capsys):
    record = {"id": 7, "text": "The capital of France is", "target": " Paris"}
    argv, inp, out = file_run(tmp_path, [record], "--task", "generation", "--method", "saliency")
    argv = [a for a in argv if a not in ("--n-perturbations", "2")]
    assert main(argv) == 0
    inp.write_text(json.dumps({"id": 7, "text": record["text"]}) + "\n")
    capsys.readouterr()
    assert main([*argv, "--max-new-tokens", "3"]) == 2
    assert "explains the forced output ' Paris' there (a target), this run generates one" in capsys.readouterr().err


@pytest.mark.parametrize("file_run", [True, False])
def test_an_interruption_says_results_are_kept_only_where_they_are(file_run, tmp_path, capsys, monkeypatch):
    import interp_text.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_compare", interrupted)
    monkeypatch.setattr(cli, "explain_file", interrupted)
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps({"text": "The food was good."}) + "\n")
    argv = ["explain", "--input", str(inp), "--output", str(out)] if file_run else ["compare", "--n-texts", "2"]
    assert main(argv) == 130
    kept = "; finished results are kept, rerun to resume" if file_run else ""
    assert capsys.readouterr().err == f"\ninterp-text: interrupted{kept}.\n"


def test_an_interruption_while_torch_loads_is_an_interruption(tmp_path, capsys, monkeypatch):
    """Some of torch's and transformers' imports turn a Ctrl-C into another error (a RuntimeError from
    a class being built): exit 130 with the one line, not a traceback and exit 1."""
    import interp_text.cli as cli

    def importing(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as err:
            raise RuntimeError("Error calling __set_name__ on 'Field' instance") from err

    monkeypatch.setattr(cli, "run_command", importing)
    assert main(["compare", "--n-texts", "2"]) == 130
    assert capsys.readouterr().err == "\ninterp-text: interrupted.\n"
    monkeypatch.setattr(cli, "run_command", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # any other error stays what it is
        main(["compare", "--n-texts", "2"])


def test_the_command_starts_without_torch():
    """--help answers at once (it took 2.4 s to import torch), and a Ctrl-C in the first seconds reaches main()."""
    code = (
        "import sys, contextlib, io\n"
        "from interp_text.cli import main, METHOD_NAMES\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['explain', '--help'])\n"
        "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr
    from interp_text.cli import METHOD_NAMES
    from interp_text.methods import GRADIENT_METHODS
    from interp_text.perturbation import PERTURBATION_METHODS

    assert METHOD_NAMES == {"gradient": tuple(GRADIENT_METHODS), "perturbation": tuple(PERTURBATION_METHODS)}


def test_compare_draws_its_bars_on_a_terminal_only(monkeypatch, capsys):
    argv = ["compare", "--methods", "occlusion", "--n-texts", "2"]
    assert main(argv) == 0
    assert capsys.readouterr().err == ""  # a log would keep every redraw
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(argv) == 0
    lines = capsys.readouterr().err.split("\n")
    assert "Occlusion: [" in lines[0] and "Deletion+Insertion: [" in lines[1] and lines[2:] == [""]


def test_compare_on_the_facts_data(capsys):
    """The facts GPT-2 on its prompts, answers forced, ranked against each prompt's deciding words."""
    assert main(["compare", "--data", "facts", "--methods", "occlusion,saliency", "--n-texts", "3"]) == 0
    table = capsys.readouterr().out.split("\n\n")[0].splitlines()
    assert "rationale AP" in table[0] and [line.split()[0] for line in table[2:]] == ["Occlusion", "Saliency"]
    for line in table[2:]:
        deletion, insertion, ap = (float(v) for v in line.split()[1:4])
        assert 0 <= deletion <= 1 and 0 <= insertion <= 1 and 0 < ap <= 1
    with pytest.raises(SystemExit):  # argparse refuses it, with the choices
        main(["compare", "--data", "news"])
    assert "invalid choice: 'news'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "message,shown",
    [
        (
            "pass n_perturbations >= 10 or granularity='sentence'.",
            "pass --n-perturbations >= 10 or --granularity sentence.",
        ),
        ("batch_size=64 ran out; pass batch_size=32.", "--batch-size 64 ran out; pass --batch-size 32."),
        (
            "max_new_tokens=9 is too many; lower max_new_tokens.",
            "--max-new-tokens 9 is too many; lower --max-new-tokens.",
        ),
        ("leave targets=None to explain what it generates", "leave out --target to explain what it generates"),
        # Paths and quoted values hold what the user wrote: a Hydra sweep's "seed=1" folder, a class named so.
        ("No such file or directory: 'sweep/seed=1/in.jsonl'", "No such file or directory: 'sweep/seed=1/in.jsonl'"),
        ("cannot load 'runs/batch_size=8,seed=2/ckpt'", "cannot load 'runs/batch_size=8,seed=2/ckpt'"),
        ("target 'seed=3' is not a class name", "target 'seed=3' is not a class name"),
    ],
)
def test_messages_name_flags_not_python_arguments(message, shown):
    from interp_text.cli import as_flags

    assert as_flags(message) == shown


def test_a_path_with_an_option_name_in_it_is_shown_as_given(tmp_path, capsys):
    folder = tmp_path / "seed=1"
    folder.mkdir()
    assert main(["explain", "--input", str(folder / "in.jsonl"), "--output", str(folder / "out.jsonl")]) == 2
    assert str(folder / "in.jsonl") in capsys.readouterr().err


def test_a_reader_that_stops_early_stops_the_command_quietly():
    """`interp-text ... | head -1`: the pipe closes before the command writes, and it printed
    "interp-text: error: [Errno 32] Broken pipe" and exited 2, as if it had failed."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "interp_text", "explain", "The food was good.", "--method", "saliency"]
    done = subprocess.run(cmd, env=env, stdout=write, stderr=subprocess.PIPE, text=True, timeout=300)
    os.close(write)
    assert done.returncode == 141 and done.stderr == ""


def test_a_broken_pipe_elsewhere_is_an_error_like_any_other(monkeypatch, capfd):
    """Only a closed standard output stops quietly: a pipe the command writes to itself (an --output
    FIFO whose reader died) is reported, with the failing status."""
    from interp_text import cli

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "cmd_demo", broken)
    assert cli.main(["demo"]) == 2
    assert capfd.readouterr().err == "interp-text: error: [Errno 32] Broken pipe\n"


def test_compare_names_the_flag_for_more_texts_than_the_split_has(capsys):
    assert main(["compare", "--data", "facts", "--n-texts", "500"]) == 2
    assert capsys.readouterr().err == (
        "interp-text: error: --n-texts 500: the facts test split has 137 distinct texts; pass --n-texts 137 or fewer.\n"
    )


def test_output_to_a_pipe_streams_instead_of_waiting_to_read_it(tmp_path):
    """Reading a FIFO's earlier results blocked for ever: only a regular file holds results to resume."""
    import subprocess
    import threading

    inp, fifo = tmp_path / "in.jsonl", tmp_path / "out.fifo"
    inp.write_text('{"text": "The food was good."}\n')
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    argv = [sys.executable, "-m", "interp_text", "explain", "--input", str(inp), "--output", str(fifo)]
    run = subprocess.run(argv + ["--method", "occlusion"], capture_output=True, text=True, timeout=120)
    reader.join(timeout=30)
    assert run.returncode == 0, run.stderr
    assert json.loads(got[0])["text"] == "The food was good."


def test_target_all_to_a_generator_is_told_in_the_words_of_where_it_was_given(tmp_path, capsys):
    """--target is a string (never token ids); a line's "target" is that key, not --target."""
    why = "'all' means every class of a classifier, but this model generates; leave out "
    assert main(["explain", "The capital of France is", "--task", "generation", "--target", "all"]) == 2
    assert capsys.readouterr().err == (
        f"interp-text: error: --target all: {why}--target to explain what it generates, or force a text. To force "
        "the word itself, pass ' all' (with the space before it).\n"
    )
    argv, inp, out = file_run(tmp_path, [{"text": "The capital of France is", "target": "all"}], "--task", "generation")
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f'interp-text: error: {inp}:1 (id 0): "target": \'all\' (the prompt): {why}"target" to explain what it '
        "generates, or force a text. To force the word itself, pass ' all' (with the space before it) or its token ids.\n"
    )
    assert not out.exists()


def test_file_mode_paths_that_cannot_be_a_run_are_named_before_the_model_loads(tmp_path, capsys, monkeypatch):
    argv, inp, out = file_run(tmp_path, [{"text": "The food was good."}])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()

    def refused(inp_, out_):
        assert main(["explain", "--input", inp_, "--output", out_]) == 2
        return capsys.readouterr().err

    assert refused(str(inp), "-") == (
        "interp-text: error: --output -: give a file path (--output /dev/stdout reads or writes the terminal or a "
        "pipe, where there is one).\n"
    )
    assert refused("-", "o.jsonl").startswith("interp-text: error: --input -: give a file path (--input /dev/stdin")
    assert refused(str(inp), "adir") == (
        "interp-text: error: --output adir is a folder; give the file to write, such as adir/results.jsonl.\n"
    )
    assert refused(str(inp), "newdir/") == (
        "interp-text: error: --output newdir/ is a folder; give the file to write, such as newdir/results.jsonl.\n"
    )
    assert refused(str(inp), str(inp)) == (
        f"interp-text: error: --output {inp} is the --input file; give another file to write the results to.\n"
    )
    assert refused(str(inp), f"{inp}/o.jsonl") == (
        f"interp-text: error: --output {inp}/o.jsonl: {inp} is a file, not a folder; give another path.\n"
    )
    assert (
        refused("adir", "o.jsonl")
        == "interp-text: error: --input adir is a folder; give the JSON-lines file to read.\n"
    )
    assert not (tmp_path / "-").exists() and not (tmp_path / "newdir").exists()


def test_file_mode_refuses_an_id_with_a_lone_surrogate_before_any_line_runs(tmp_path, capsys):
    argv, inp, out = file_run(tmp_path, [{"text": "Good."}, {"id": "s\udc80", "text": "Bad."}])
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"interp-text: error: {inp}:2 has an \"id\" holding a lone surrogate ('s\\udc80'), which is not valid "
        "Unicode and cannot be written; use another id.\n"
    )
    assert not out.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="no flock")
def test_file_mode_refuses_an_output_another_run_is_writing(tmp_path, capsys):
    """Two runs appending at once wrote every id twice, which every later resume refused."""
    import fcntl

    argv, inp, out = file_run(tmp_path, [{"text": "The food was good."}, {"text": "Lovely room."}])
    with out.open("a") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # a run writing it now
        assert main(argv) == 2
        assert capsys.readouterr().err == (
            f"interp-text: error: {out} is being written by another interp-text run; wait for it to end (then rerun "
            "this command for what is left), or choose another --output.\n"
        )
    assert out.read_text() == ""
    assert main(argv) == 0 and len(out.read_text().splitlines()) == 2


def test_file_mode_skips_what_a_run_that_ended_meanwhile_wrote(tmp_path, monkeypatch):
    """Results another run appended after this one read the file, before it took the lock, are not written again."""
    import interp_text.cli as cli

    records = [{"text": "The food was good."}, {"text": "Lovely room."}, {"text": "I hated the soup."}]
    argv, inp, out = file_run(tmp_path, records)
    assert main([*argv[:4], str(tmp_path / "first.jsonl"), *argv[5:]]) == 0
    first_two = "".join((tmp_path / "first.jsonl").read_text().splitlines(keepends=True)[:2])
    real = cli.load_model

    def meanwhile(*args):  # while this run loads its model, another one writes two lines and ends
        out.write_text(first_two)
        return real(*args)

    monkeypatch.setattr(cli, "load_model", meanwhile)
    assert main(argv) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in lines] == [0, 1, 2]


def test_an_option_the_command_does_not_take_is_named_with_the_one_meant(capsys):
    """Refused by the command's own parser (its usage, not the top level's), with the closest option."""
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--texts", "4"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: interp-text compare ")
    assert err.endswith("interp-text compare: error: unrecognized arguments: --texts 4 (did you mean --n-texts?)\n")
    with pytest.raises(SystemExit):
        main(["explain", "good", "food"])
    assert capsys.readouterr().err.endswith("interp-text explain: error: unrecognized arguments: food\n")


def test_a_second_target_is_refused_not_silently_taken(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["explain", "good", "--target", "1", "--target", "0"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.endswith(
        "interp-text explain: error: --target was given twice ('1', '0'); one per run (a classifier's every "
        "class: --target all)\n"
    )


def test_a_file_name_of_the_other_format_is_refused_before_explaining(tmp_path, capsys, monkeypatch):
    import interp_text.cli as cli

    monkeypatch.setattr(cli, "load_model", lambda *a: pytest.fail("loaded a model for a run it then refuses"))
    for flag, name, other in (("--json", "out.html", "--html"), ("--html", "out.json", "--json")):
        assert main(["explain", "good", flag, str(tmp_path / name)]) == 2
        assert capsys.readouterr().err == (
            f"interp-text: error: {flag} {tmp_path / name} names another format than {flag} writes: use {other} "
            f"{tmp_path / name}.\n"
        )


def test_a_txt_input_file_is_one_plain_text_per_line(tmp_path):
    inp = tmp_path / "texts.txt"
    inp.write_bytes(b'The food was good.\r\n\n{"text": "not JSON here"}\nBad service. \n')
    out = tmp_path / "out.jsonl"
    assert main(["explain", "--input", str(inp), "--output", str(out), "--method", "saliency"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["text"]) for r in records] == [
        (0, "The food was good."),
        (2, '{"text": "not JSON here"}'),
        (3, "Bad service. "),
    ]
    bad = tmp_path / "texts.jsonl"
    bad.write_text("The food was good.\n")
    assert main(["explain", "--input", str(bad), "--output", str(tmp_path / "o2.jsonl")]) == 2


def test_compare_on_your_own_model_and_texts(tmp_path, capsys, monkeypatch):
    """--model and --input: the methods side by side on the user's texts (no rationales: no AP column);
    its table's numbers are compare()'s on the same texts."""
    from interp_text import compare, load_default

    inp = tmp_path / "texts.txt"
    inp.write_text("The food was good.\nThe staff were not friendly.\nI hated the soup.\n")
    argv = ["compare", "--model", "sentiment", "--input", str(inp), "--methods", "occlusion,saliency"]
    assert main([*argv, "--n-texts", "2"]) == 0
    table = capsys.readouterr().out.split("\n\n")[0].splitlines()
    assert table[0].split() == ["method", "deletion", "↓", "insertion", "↑", "seconds"]
    model, tok = load_default("sentiment")
    rows = compare(model, tok, ["The food was good.", "The staff were not friendly."], ["occlusion", "saliency"])
    for line, row in zip(table[2:], rows):
        assert line.split()[:3] == [row["method"], f"{row['deletion']:.3f}", f"{row['insertion']:.3f}"]
    import interp_text.comparison as comparison

    ran = []
    monkeypatch.setattr(comparison, "compare", lambda model, tok, texts, methods, **kw: ran.append(methods) or [])
    assert main(["compare", "--model", "sentiment", "--input", str(inp)]) == 0
    assert ran == [list(comparison.ALL_METHODS)]  # every method, as on bundled data
    capsys.readouterr()
    for extra, message in (
        ([], "compare --model needs --input FILE too (without either, it runs on bundled data)."),
        (["--input", str(inp), "--data", "facts"], "--data picks bundled data; with --model and --input, drop it."),
    ):
        assert main(["compare", "--model", "sentiment", *extra]) == 2
        assert capsys.readouterr().err == f"interp-text: error: {message}\n"


def test_file_mode_refuses_a_page_name_for_its_json_lines(tmp_path, capsys):
    inp = tmp_path / "texts.txt"
    inp.write_text("The food was good.\n")
    assert main(["explain", "--input", str(inp), "--output", str(tmp_path / "out.html")]) == 2
    assert capsys.readouterr().err.startswith(
        f"interp-text: error: --output {tmp_path / 'out.html'} names a page, but --output writes JSON lines"
    )
    assert not (tmp_path / "out.html").exists()
