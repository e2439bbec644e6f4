"""What an explainer accepts as its model: a model and its tokenizer, a transformers pipeline, a
bundled model's name, or a folder or Hugging Face Hub name to load both from."""

from __future__ import annotations

import os
from typing import Any

import torch

from .errors import InterpTextError
from .model_guard import checked_device


def _auto_class(config, task: str | None):
    """The Auto class that loads ``config``'s model for ``task`` (None: what its architecture says)."""
    import transformers

    arch = " ".join(getattr(config, "architectures", None) or [])
    if task == "classification" or (task is None and "ForSequenceClassification" in arch):
        return transformers.AutoModelForSequenceClassification
    if task == "seq2seq" or (task in (None, "generation") and getattr(config, "is_encoder_decoder", False)):
        return transformers.AutoModelForSeq2SeqLM
    return transformers.AutoModelForCausalLM


def load(name: str, task: str | None = None, device: Any = None) -> tuple[torch.nn.Module, Any]:
    """The model ``name`` (bundled, a folder, or a Hub id) in eval mode, on ``device``, and its tokenizer.

    ``task`` picks the head where the checkpoint's architecture does not (a base checkpoint
    loaded as a classifier); None keeps what the checkpoint was saved as.
    """
    from .bundled import NAMES, load_default

    device = checked_device(device)
    if name in NAMES:
        model, tokenizer = load_default(name)
    else:
        import transformers

        try:
            config = transformers.AutoConfig.from_pretrained(name)
            model = _auto_class(config, task).from_pretrained(name)
            tokenizer = transformers.AutoTokenizer.from_pretrained(name)
        except OSError as err:
            reason = str(err).strip().splitlines()[0]
            raise InterpTextError(
                f"cannot load {name!r}: it is not a bundled model ({', '.join(NAMES)}) or a folder saved with "
                f"save_pretrained, and the Hugging Face Hub did not give it ({reason})"
            ) from None
        model.eval()
    if device is not None:
        model.to(device)
    return model, tokenizer


def _is_pipeline(x: Any) -> bool:
    return not isinstance(x, torch.nn.Module) and isinstance(getattr(x, "model", None), torch.nn.Module)


def resolve(model: Any, tokenizer: Any, task: str | None = None, device: Any = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from what an explainer was given.

    A name or path loads the model (on ``device``) and, unless one is given, its tokenizer; a
    pipeline gives its model and tokenizer; a tokenizer may be a name or path too.
    """
    if isinstance(model, (str, os.PathLike)):
        model, own = load(os.fspath(model), task, device)
        tokenizer = own if tokenizer is None else tokenizer
    elif _is_pipeline(model):
        tokenizer = model.tokenizer if tokenizer is None else tokenizer
        model = model.model
    if isinstance(tokenizer, (str, os.PathLike)):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(os.fspath(tokenizer))
    if tokenizer is None:
        raise InterpTextError(
            f"no tokenizer for {type(model).__name__}: pass it (Method(model, tokenizer)), or pass the model "
            "by name or folder (Method('path/to/model')), which loads both."
        )
    return model, tokenizer
