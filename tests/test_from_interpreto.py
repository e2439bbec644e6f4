"""A script written for interpreto, ported by changing its imports: what it says that means something
else here is refused naming our counterpart, never silently read otherwise."""

import enum

import pytest

from interp_text import (
    Granularity,
    IntegratedGradients,
    InterpTextError,
    Lime,
    Saliency,
    Sobol,
)
from interp_text.metrics import Deletion

SHARED = (
    "batch_size, granularity, granularity_aggregation_strategy, device, inference_mode, token_reduction, task, "
    "seed, targets_per_backward, progress, truncation"
)


def _message(make):
    with pytest.raises(InterpTextError) as caught:
        make()
    return str(caught.value)


def test_interpretos_saliency_option_names_the_method_it_means(sentiment):
    m, t = sentiment
    assert _message(lambda: Saliency(m, t, input_x_gradient=True)) == (
        f"Saliency got unknown option(s) ['input_x_gradient']; it has no options of its own (besides {SHARED}). "
        "interpreto's Saliency(input_x_gradient=True), its default, is InputXGradient(model, tokenizer, "
        "token_reduction='abs_mean') here, and input_x_gradient=False is Saliency(token_reduction='abs_mean'); this "
        "Saliency is the gradient's L2 norm."
    )


@pytest.mark.parametrize(
    "make, meant",
    [
        (lambda m, t: IntegratedGradients(m, t, n_perturbations=50), "n_interpolations"),
        (lambda m, t: Deletion(m, t, n_perturbations=10), "steps"),
        (lambda m, t: Sobol(m, t, sobol_indices_order="first"), "order"),
        (lambda m, t: Lime(m, t, distance_function="cosine"), "distance"),
    ],
)
def test_interpretos_option_names_point_to_ours(make, meant, sentiment):
    assert f"(did you mean {meant!r}?)" in _message(lambda: make(*sentiment))


def test_an_option_with_no_counterpart_says_so(sentiment):
    m, t = sentiment
    assert _message(lambda: Lime(m, t, perturb_probability=0.5)).endswith(
        "Lime here draws how many elements to mask uniformly from 1 to n, then which; there is no per-element "
        "probability to set."
    )
    assert _message(lambda: IntegratedGradients(m, t, input_x_gradient=False)).endswith(
        "This IntegratedGradients is (e - b) times the path's mean gradient, whose scores sum to f(x) - f(b); "
        "interpreto's input_x_gradient has no counterpart."
    )
    assert _message(lambda: Lime(m, t, kernel_width=None)) == (
        "kernel_width=None: leave it out for the default, 0.25, or pass a number > 0."
    )
    ig = IntegratedGradients(m, t)
    assert "(did you mean 'n_interpolations'?)" in _message(lambda: setattr(ig, "n_perturbations", 5))


def test_another_librarys_enum_member_means_ours_by_name(sentiment):
    m, t = sentiment

    class TheirGranularity(enum.Enum):  # interpreto's enums have their own classes
        WORD = "word"
        PART_SENTENCE = "part_sentence"

    class TheirModes(enum.Enum):
        SOFTMAX = "softmax"

    theirs = Saliency(m, t, granularity=TheirGranularity.WORD, inference_mode=TheirModes.SOFTMAX)
    assert theirs.settings.granularity is Granularity.WORD
    assert theirs.explain("Good food.").scores.tolist() == (
        Saliency(m, t, inference_mode="softmax").explain("Good food.").scores.tolist()
    )
    assert _message(lambda: Saliency(m, t, granularity=TheirGranularity.PART_SENTENCE)).startswith(
        "granularity=<TheirGranularity.PART_SENTENCE: 'part_sentence'> is not valid; use one of "
    )


def test_one_texts_explanation_is_not_a_list_and_says_so(sentiment):
    m, t = sentiment
    one = Saliency(m, t).explain("The food was good.")
    said = (
        "an Explanation is one text's: explain(text) returns one, explain([text, ...]) a list of them. Its numbers "
        "are .scores (targets x elements), its elements .elements, its targets .targets"
    )
    with pytest.raises(TypeError, match=r"^an Explanation is one text's") as caught:
        one[0]
    assert str(caught.value) == said
    with pytest.raises(TypeError) as caught:
        for _ in one:
            pass
    assert str(caught.value) == said
    assert Saliency(m, t).explain(["The food was good."])[0] == one
    from collections.abc import Iterable

    assert not isinstance(one, Iterable)  # code that checks (pandas, JSON encoders) still sees one object


def test_interpretos_enums_for_string_options_read_as_their_names(sentiment):
    m, t = sentiment

    class SobolIndicesOrders(enum.Enum):  # interpreto's, as its classes spell them
        FIRST_ORDER = "first order"
        TOTAL_ORDER = "total order"

    class SequenceSamplers(enum.Enum):
        SOBOL = "qmc.Sobol"

    def hamming_distance(mask):  # interpreto's DistancesFromMask holds staticmethods: plain functions
        return mask

    def euclidean_distance(mask):
        return mask

    class DistancesFromMask(enum.Enum):
        HAMMING = staticmethod(hamming_distance)
        EUCLIDEAN = staticmethod(euclidean_distance)

    sobol = Sobol(m, t, order=SobolIndicesOrders.FIRST_ORDER, sampler=SequenceSamplers.SOBOL)
    assert (sobol.settings.options["order"], sobol.settings.options["sampler"]) == ("first", "sobol")
    assert Lime(m, t, distance=DistancesFromMask.HAMMING).settings.options["distance"] == "hamming"
    assert _message(lambda: Lime(m, t, distance=DistancesFromMask.EUCLIDEAN)) == (
        "distance='euclidean' is not valid; use 'cosine' or 'hamming'."
    )
