"""Two tiny models shipped with the package, whose correct explanations are known.

* ``"sentiment"``: a 2-layer BERT classifier (negative / positive) trained on
  ``interp_text.data.sentiment_examples``; the deciding words are the
  sentiment word and its negation.
* ``"facts"``: a 3-layer GPT-2 that has memorised ``interp_text.data.all_facts``
  ("The capital of France is" -> " Paris"); the deciding words are the
  entity and the relation word.

Both load from folders inside the package, so no network is needed.
Retrain with ``python -m interp_text.bundled.train``.
"""

from pathlib import Path

NAMES = ("sentiment", "facts")


def default_path(name: str) -> Path:
    """Folder of the bundled model ``name`` ("sentiment" or "facts")."""
    if name not in NAMES:
        import difflib

        from ..errors import InterpTextError

        close = difflib.get_close_matches(str(name).lower(), NAMES, 1, 0.6)
        meant = f" (did you mean {close[0]!r}?)" if close else ""
        raise InterpTextError(f"unknown bundled model {name!r}{meant}; choose one of {', '.join(map(repr, NAMES))}.")
    return Path(__file__).parent / name


def load_default(name: str):
    """Load the bundled model ``name`` and its tokenizer, model in eval mode."""
    path = default_path(name)
    # Imported here so that `import interp_text.bundled` stays cheap.
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from ..loading import check_versions

    check_versions()
    from transformers.utils import logging as hf_logging

    auto = AutoModelForSequenceClassification if name == "sentiment" else AutoModelForCausalLM
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a 0.1 M-parameter model loads at once: no bar in the user's output
    try:
        model = auto.from_pretrained(path)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model.eval()
    return model, tokenizer
