"""``truncation=True``: a text over the model's limit is cut between words to what fits, and explained
exactly as that part would be on its own; without it the error offers it."""

import json
import subprocess
import sys

import numpy as np
import pytest

from interp_text import IntegratedGradients, InterpTextError, Saliency
from interp_text.metrics import rationale_average_precision
from interp_text.perturbation import Occlusion

LONG_REVIEW = "We stayed for two nights and the breakfast was delicious. " * 8  # 'delicious': 6 WordPiece pieces


def _n_tokens(tokenizer, text):
    return len(tokenizer(text)["input_ids"])


def test_without_truncation_a_long_text_is_refused_naming_it(sentiment, facts):
    model, tok = sentiment
    n = _n_tokens(tok, LONG_REVIEW)
    with pytest.raises(InterpTextError) as caught:
        Saliency(model, tok).explain(LONG_REVIEW)
    assert str(caught.value) == (
        f"text 0 has {n} tokens but the model accepts at most 64; shorten the text, or build the explainer with "
        "truncation=True to explain the start of the text that fits."
    )
    lm, bpe = facts
    with pytest.raises(InterpTextError, match=r"to explain the end of the prompt that fits\.$"):
        Saliency(lm, bpe).explain("Here is a fact. " * 20 + "The capital of France is", targets=" Paris")


@pytest.mark.parametrize("method", [Saliency, IntegratedGradients, Occlusion])
def test_a_classifier_keeps_the_start_of_the_text_cut_between_words(method, sentiment):
    model, tok = sentiment
    cut = method(model, tok, truncation=True).explain([LONG_REVIEW, "The staff were rude."])
    kept = cut[0].text
    assert LONG_REVIEW.startswith(kept) and len(kept) < len(LONG_REVIEW)
    assert _n_tokens(tok, kept) <= 64 < _n_tokens(tok, kept + LONG_REVIEW[len(kept) :].split(" ", 2)[1])
    assert LONG_REVIEW[len(kept)] == " " and kept[-1] != " "  # cut at a space: no word split
    alone = method(model, tok).explain([kept, "The staff were rude."])
    for a, b in zip(cut, alone):
        assert a.text == b.text and a.spans == b.spans
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6, atol=1e-9)


def test_a_word_of_several_pieces_at_the_limit_is_dropped_whole(sentiment):
    model, tok = sentiment
    # Pad the text so that the limit falls inside 'delicious' (6 pieces), then check the cut.
    for filler in range(1, 8):
        text = "Ok " * filler + LONG_REVIEW
        enc = tok(text, return_offsets_mapping=True)
        start, end = enc["offset_mapping"][63 - 1]  # the last content token that would fit, before [SEP]
        if text[start:end] != text[start:].split(" ")[0].rstrip(".") and "delicious".startswith(
            text[start:end].lower()
        ):
            break
    else:
        pytest.skip("no filler puts the limit inside 'delicious'")
    kept = Saliency(model, tok, truncation=True).explain(text).text
    assert kept.endswith("breakfast was"), kept[-30:]


def test_left_truncation_side_keeps_the_end_and_leaves_the_tokenizer_as_it_was(sentiment):
    model, tok = sentiment
    tok.truncation_side = "left"
    try:
        kept = Saliency(model, tok, truncation=True).explain(LONG_REVIEW + "The end.").text
    finally:
        tok.truncation_side = "right"
    assert (LONG_REVIEW + "The end.").endswith(kept) and kept[0].isalnum()
    assert _n_tokens(tok, kept) <= 64
    assert tok.backend_tokenizer.truncation is None


def test_a_causal_prompt_keeps_its_end_with_room_for_the_output(facts):
    lm, bpe = facts
    prompt = "Here is a fact. " * 20 + "The capital of France is"
    forced = Saliency(lm, bpe, truncation=True).explain(prompt, targets=" Paris.")
    assert prompt.endswith(forced.text) and forced.text.endswith("The capital of France is")
    assert forced.output_text == " Paris."
    n_prompt = len(bpe(forced.text)["input_ids"])
    assert n_prompt + len(bpe(" Paris.")["input_ids"]) <= 64
    alone = Saliency(lm, bpe).explain(forced.text, targets=" Paris.")
    np.testing.assert_allclose(forced.scores, alone.scores, rtol=1e-6, atol=1e-9)
    generated = Saliency(lm, bpe, truncation=True).explain(prompt, max_new_tokens=3)
    assert len(bpe(generated.text)["input_ids"]) <= 64 - 3 and generated.output_text.startswith(" Paris")
    default = Saliency(lm, bpe, truncation=True).explain(prompt)  # room for the default 20 new tokens
    assert len(bpe(default.text)["input_ids"]) <= 64 - 20


def test_truncation_must_be_a_bool_and_leaves_pairs_to_the_user(sentiment):
    model, tok = sentiment
    with pytest.raises(InterpTextError, match=r"^truncation='yes' must be True or False\.$"):
        Saliency(model, tok, truncation="yes")
    assert Saliency(model, tok, truncation=True).truncation is True
    pair = {"text": LONG_REVIEW, "text_pair": "The food was good."}
    with pytest.raises(InterpTextError) as caught:
        Saliency(model, tok, truncation=True).explain(pair)
    assert str(caught.value).endswith(
        "but the model accepts at most 64; shorten the text (truncation=True cuts plain strings only, not a text "
        "pair or a conversation)."
    )


def test_the_command_line_takes_truncation(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "interp_text", *args], capture_output=True, text=True)

    refused = run("explain", "--no-color", LONG_REVIEW)
    assert refused.returncode != 0
    assert "or pass --truncation to explain the start of the text that fits." in refused.stderr
    done = run("explain", "--no-color", "--truncation", "--json", str(tmp_path / "x.json"), LONG_REVIEW)
    assert done.returncode == 0, done.stderr
    assert "delicious" in done.stdout
    compared = run("compare", "--truncation")
    assert compared.returncode != 0
    assert "--truncation is for your texts (--model and --input)" in compared.stderr


def test_a_file_run_with_truncation_resumes_and_records_it(tmp_path, capsys):
    from interp_text.cli import main

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps({"text": LONG_REVIEW, "id": 1}) + "\n", encoding="utf-8")
    assert main(["explain", "--input", str(inp), "--output", str(out), "--truncation"]) == 0
    record = json.loads(out.read_text(encoding="utf-8"))
    assert LONG_REVIEW.startswith(record["text"]) and record["text"] != LONG_REVIEW
    assert record["options"]["truncated"] == {"start": 0, "end": len(record["text"]), "of": len(LONG_REVIEW)}
    inp.write_text(inp.read_text(encoding="utf-8") + json.dumps({"text": "The food was bad.", "id": 2}) + "\n")
    assert main(["explain", "--input", str(inp), "--output", str(out), "--truncation"]) == 0  # resumes
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2
    assert main(["explain", "--input", str(inp), "--output", str(out)]) != 0
    assert f"{out} holds results made with --truncation: id 1 ({inp}:1) was cut to fit the model. Rerun with " in (
        capsys.readouterr().err
    )


def test_following_the_advice_to_pass_truncation_resumes_a_file_run(tmp_path, capsys):
    """A file run stopped at a long text; rerun with --truncation as told, it goes on: the texts that
    fit are the same either way."""
    from interp_text.cli import main

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps({"text": "The food was bad.", "id": 1}) + "\n", encoding="utf-8")
    assert main(["explain", "--input", str(inp), "--output", str(out)]) == 0
    inp.write_text(inp.read_text(encoding="utf-8") + json.dumps({"text": LONG_REVIEW, "id": 2}) + "\n")
    assert main(["explain", "--input", str(inp), "--output", str(out)]) != 0
    assert "or pass --truncation to explain the start of the text that fits" in capsys.readouterr().err
    assert main(["explain", "--input", str(inp), "--output", str(out), "--truncation"]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2


def test_a_cut_is_recorded_and_shown(sentiment):
    model, tok = sentiment
    e = Saliency(model, tok, truncation=True).explain(LONG_REVIEW)
    assert e.options["truncated"] == {"start": 0, "end": len(e.text), "of": len(LONG_REVIEW)}
    note = f"cut to fit the model (truncation=True): characters 0-{len(e.text)} of {len(LONG_REVIEW)} explained"
    assert e.to_terminal(color=False).splitlines()[1] == note
    assert note in e.to_html()
    assert "truncated" not in Saliency(model, tok, truncation=True).explain("The food was good.").options


def test_a_prompt_the_default_output_shrinks_to_fit_is_not_cut(facts):
    """Without max_new_tokens the default 20 shrinks to fit a prompt that leaves room, as without
    truncation=True: such a prompt is explained whole (cutting it changed the bundled GPT-2's answer)."""
    lm, bpe = facts
    prompt = "Here is a fact. " * 8 + "The continent of Ghana is"
    n = len(bpe(prompt)["input_ids"])
    assert 44 < n < 64
    whole = Saliency(lm, bpe).explain(prompt)
    cut = Saliency(lm, bpe, truncation=True).explain(prompt)
    assert cut.text == prompt and cut.output_text == whole.output_text and "truncated" not in cut.options
    longer = "Here is a fact. " * 20 + "The continent of Ghana is"  # no room for a token: cut, to leave 20
    e = Saliency(lm, bpe, truncation=True).explain(longer)
    assert len(bpe(e.text)["input_ids"]) <= 44 and longer.endswith(e.text)
    assert e.options["truncated"] == {"start": len(longer) - len(e.text), "end": len(longer), "of": len(longer)}


@pytest.mark.parametrize("truncation", [False, True])
def test_an_output_that_fills_the_model_alone_is_named_not_the_prompt(truncation, facts):
    """No prompt leaves such an output room, so cutting it cannot help and shortening it is no fix."""
    lm, bpe = facts
    prompt = "Here is a fact. " * 20 + "The capital of France is"
    explainer = Saliency(lm, bpe, truncation=truncation)
    with pytest.raises(InterpTextError) as caught:
        explainer.explain(prompt, max_new_tokens=64)
    assert str(caught.value) == (
        "max_new_tokens=64 leaves no room for a prompt: the 64 tokens the model accepts at most hold prompt and "
        "output together; lower max_new_tokens."
    )
    with pytest.raises(InterpTextError) as caught:
        explainer.explain(prompt, targets=" Rome" * 70)
    assert str(caught.value) == (
        "the target of prompt 0 has 70 tokens: the 64 tokens the model accepts at most hold prompt and output "
        "together; shorten the target (the forced output)."
    )
    with pytest.raises(InterpTextError, match=r"^explain\(\) options \['max_new_tokens'\] are for generation"):
        explainer.explain("The capital of Italy is", targets=" Rome", max_new_tokens=64)  # nothing is generated


def test_a_left_truncating_tokenizer_is_offered_its_end(sentiment):
    model, tok = sentiment
    tok.truncation_side = "left"
    try:
        with pytest.raises(InterpTextError, match=r"truncation=True to explain the end of the text that fits\.$"):
            Saliency(model, tok).explain(LONG_REVIEW)
    finally:
        tok.truncation_side = "right"


def test_compare_explains_the_output_of_the_prompt_it_explains_and_moves_the_rationales(facts, sentiment):
    from interp_text import compare

    lm, bpe = facts
    head = "Here is a fact. " * 20
    prompt = head + "The capital of France is"
    rows = compare(lm, bpe, [prompt], ["occlusion"], truncation=True, rationales=[[(len(head) + 15, len(head) + 21)]])
    e = Occlusion(lm, bpe, truncation=True).explain(prompt)  # generated from the prompt it cuts
    generated = Saliency(lm, bpe).explain(e.text)  # the same prompt, whole: the same output
    assert generated.output_text == e.output_text
    # "France", moved into the kept part, is found; the model reads it first here.
    assert rows[0]["rationale_ap"] == pytest.approx(
        rationale_average_precision(e, [(e.text.index("France"), e.text.index("France") + 6)], absolute=True)
    )
    model, tok = sentiment
    dropped = compare(
        model,
        tok,
        [LONG_REVIEW],
        ["occlusion"],
        truncation=True,
        rationales=[[(len(LONG_REVIEW) - 11, len(LONG_REVIEW) - 2)]],
    )
    assert dropped[0]["rationale_ap"] is None  # its only deciding word was cut away: nothing to rank
