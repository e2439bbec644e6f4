"""``mask_outputs=True``: a perturbation method on a causal LM masks the earlier output elements too,
so each output row scores them, as a gradient method's row does; checked against forwards written
by hand."""

import numpy as np
import pytest
import torch

from interp_text import InterpTextError, Saliency, load_default
from interp_text.perturbation import KernelShap, Lime, Occlusion, Sobol

PROMPT, ANSWER = "The capital of France is", " Paris. The capital"


@pytest.fixture(scope="module")
def facts():
    return load_default("facts")


def _logit(model, ids: list[int], position: int, token: int) -> float:
    with torch.no_grad():
        return float(model(torch.tensor([ids])).logits[0, position, token])


# The long prompt passes PREFIX_MIN tokens: rows masked in the output reuse the unmasked prefix's cache.
@pytest.mark.parametrize("prompt", [PROMPT, "Here is a fact. Did you know? Quiz time. Fun fact: " + PROMPT])
def test_occlusion_of_an_earlier_output_word_is_the_logit_it_moves(prompt, facts):
    model, tok = facts
    e = Occlusion(model, tok, mask_outputs=True).explain(prompt, targets=ANSWER)
    prompt_ids = tok(prompt)["input_ids"]
    out_ids = tok(ANSWER, add_special_tokens=False)["input_ids"]
    ids, n, p = prompt_ids + out_ids, len(prompt_ids), len(e.elements)
    assert e.columns[p - 5 : p] == ["The", "capital", "of", "France", "is"] and e.columns[p:] == e.output_elements
    assert e.output_elements == ["Paris", ".", "The", "capital"] and len(out_ids) == 4  # one token each
    for r in range(4):  # row r: output token r, read at position n - 1 + r
        clean = _logit(model, ids, n - 1 + r, out_ids[r])
        for c in range(4):
            got = e.scores[r, p + c]
            if c >= r:  # not before it: NaN, never a zero attribution
                assert np.isnan(got)
                continue
            masked = list(ids)
            masked[n + c] = tok.pad_token_id  # the replacement: GPT-2 has no mask token
            assert got == pytest.approx(clean - _logit(model, masked, n - 1 + r, out_ids[r]), abs=1e-5)
    # The prompt's columns are those of the prompt-only explanation: the same masked inputs.
    alone = Occlusion(model, tok).explain(prompt, targets=ANSWER)
    np.testing.assert_allclose(e.scores[:, :p], alone.scores[:, :p], rtol=1e-6, atol=1e-6)
    assert np.isnan(alone.scores[:, p:]).all()
    assert e.options["mask_outputs"] is True and "mask_outputs" not in alone.options


@pytest.mark.parametrize("method", [KernelShap, Lime, Sobol])
def test_every_method_scores_earlier_outputs_and_batches_as_alone(method, facts):
    model, tok = facts
    explainer = method(model, tok, mask_outputs=True)
    prompts = [PROMPT, "The capital of Italy is"]
    both = explainer.explain(prompts, targets=[ANSWER, " Rome."])
    for prompt, target, together in zip(prompts, [ANSWER, " Rome."], both):
        alone = explainer.explain(prompt, targets=target)
        np.testing.assert_allclose(together.scores, alone.scores, rtol=1e-6, atol=1e-7)
        n_in, n_out = len(together.elements), len(together.output_elements)
        later = np.triu(np.ones((n_out, n_out), dtype=bool))  # column c >= row r
        assert np.isnan(together.scores[:, n_in:][later]).all()
        assert np.isfinite(together.scores[:, n_in:][~later]).all()
        assert np.isfinite(together.scores[:, :n_in]).all()
    # The answer's period reads "Paris" more than any prompt word (the model learnt "Paris" then ".").
    period = both[0].scores[1]
    assert np.nanargmax(np.abs(period)) == 5


def test_mask_outputs_is_for_causal_lms_and_a_bool(facts, bert, wp_tokenizer, t5, bpe):
    model, tok = facts
    with pytest.raises(InterpTextError, match=r"^mask_outputs='yes' must be True or False\.$"):
        Occlusion(model, tok, mask_outputs="yes")
    with pytest.raises(InterpTextError) as caught:
        Occlusion(bert, wp_tokenizer, mask_outputs=True)
    assert str(caught.value) == (
        "mask_outputs=True masks a causal LM's earlier output words; BertForSequenceClassification is a classifier, "
        "which has no output words: drop it."
    )
    with pytest.raises(InterpTextError, match=r"is an encoder-decoder, whose outputs are not masked: drop it\.$"):
        Lime(t5, bpe, mask_outputs=True)
    with pytest.raises(InterpTextError, match=r"unknown option\(s\) \['mask_outputs'\]"):
        Saliency(model, tok, mask_outputs=True)  # a gradient method's rows read every earlier output already


def test_the_command_line_takes_mask_outputs(capsys):
    from interp_text.cli import main

    base = ["explain", "--no-color", "--model", "facts", "--target", " Paris. The", PROMPT]
    assert main([*base, "--method", "occlusion", "--mask-outputs"]) == 0
    shown = capsys.readouterr().out
    assert "out:Paris[" in shown  # the '.' row reads the earlier output word
    assert main([*base, "--method", "saliency", "--mask-outputs"]) != 0
    assert (
        "--mask-outputs is for the perturbation methods (occlusion, lime, kernelshap, sobol); saliency's rows score "
        "the earlier output words already." in capsys.readouterr().err
    )
