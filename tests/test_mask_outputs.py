"""``mask_outputs=True``: a perturbation method on a causal LM masks the earlier output elements too,
so each output row scores them, as a gradient method's row does; checked against forwards written
by hand."""

import numpy as np
import pytest
import torch

from interp_text import InterpTextError, Saliency
from interp_text.perturbation import KernelShap, Lime, Occlusion, Sobol

PROMPT, ANSWER = "The capital of France is", " Paris. The capital"


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


def test_kernelshap_gap_counts_every_player_with_outputs_masked(facts):
    """KernelShap's rows sum to f(x) − f(all masked) up to its gap, every column counted: with outputs
    masked, also those a row does not show (its own word, later words), as for integrated gradients.
    A word of several tokens moves its own later tokens, which the row does not show; the gap did
    count that as missing (1.72 on " Eiffel")."""
    model, tok = facts
    prompt_ids = tok(PROMPT)["input_ids"]
    for answer, exhaustive in ((ANSWER, False), (" Eiffel Tower", True)):
        e = KernelShap(model, tok, mask_outputs=True).explain(PROMPT, targets=answer)
        # " Eiffel Tower": 5 + 1 players, 62 coalitions, all scored (exact); the other 5 + 3, 254 > 200: sampled.
        enc = tok(answer, add_special_tokens=False, return_offsets_mapping=True)
        out_ids, n = enc["input_ids"], len(prompt_ids)
        element = [
            next(r for r, (a, b) in enumerate(e.output_spans) if a <= (s + t) // 2 < b)
            for s, t in enc["offset_mapping"]
        ]
        # Every player masked: each prompt word, and each output word but the last.
        last = len(e.output_elements) - 1
        masked = [tok.pad_token_id] * n + [tok.pad_token_id if r < last else t for t, r in zip(out_ids, element)]
        with torch.no_grad():
            clean = model(torch.tensor([prompt_ids + out_ids])).logits[0]
            empty = model(torch.tensor([masked])).logits[0]
        for r in range(len(e.output_elements)):
            tokens = [t for t, m in enumerate(element) if m == r]
            delta = sum(float(clean[n - 1 + t, out_ids[t]] - empty[n - 1 + t, out_ids[t]]) for t in tokens)
            hidden = e.scores[r, len(e.elements) + r :]
            assert np.isnan(hidden).all()
            # KernelShap's fit is efficient over every player: 0, the hidden columns counted.
            assert abs(e.completeness_gap[r]) < 1e-6
            if exhaustive and len(tokens) > 1 and r < last:  # its own tokens move its later ones: not shown
                assert abs(np.nansum(e.scores[r]) - delta) > 0.1
            if exhaustive and (len(tokens) == 1 or r == last):  # the last word is no player
                assert np.nansum(e.scores[r]) == pytest.approx(delta, abs=1e-4)


def test_a_special_token_in_the_output_is_never_masked(facts):
    model, tok = facts
    out = tok(" Paris.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id] + tok(" The")["input_ids"]
    e = Occlusion(model, tok, mask_outputs=True, granularity="all_tokens").explain(PROMPT, targets=out)
    eos = len(e.elements) + e.output_elements.index(tok.eos_token)
    assert np.isnan(e.scores[:, eos]).all()  # not a zero: never masked, as a prompt's special tokens
    assert np.isfinite(e.scores[-1, len(e.elements) : eos]).all()


def test_the_command_line_names_what_mask_outputs_needs(tmp_path, capsys):
    from interp_text.cli import main

    assert main(["explain", "--no-color", "The food was good.", "--mask-outputs"]) != 0
    assert capsys.readouterr().err.endswith(
        "--mask-outputs masks a causal LM's earlier output words; BertForSequenceClassification is a classifier, "
        "which has no output words: drop --mask-outputs.\n"
    )
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text('{"text": "The capital of France is", "target": " Paris."}\n', encoding="utf-8")
    run = ["explain", "--model", "facts", "--method", "occlusion", "--input", str(inp), "--output", str(out)]
    assert main([*run, "--mask-outputs"]) == 0
    inp.write_text(inp.read_text(encoding="utf-8") + '{"text": "The capital of Italy is", "target": " Rome."}\n')
    assert main(run) != 0
    assert "was explained with --mask-outputs, this run without it. Rerun with the same settings" in (
        capsys.readouterr().err
    )
    assert main([*run, "--mask-outputs"]) == 0
