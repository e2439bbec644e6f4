"""What an explainer accepts as its model: a model and its tokenizer, a transformers pipeline, a
bundled model's name, or a folder or Hugging Face Hub name to load both from."""

from __future__ import annotations

import difflib
import os
import re
import weakref
from pathlib import Path
from typing import Any

import torch

from .bundled import load_default
from .errors import InterpTextError
from .model_guard import checked_device
from .tasks import CAUSAL_LM, CLASSIFICATION, SEQ2SEQ, task_of_class

# A folder holds a tokenizer if it holds one of these (what save_pretrained writes, per kind).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "tokenizer.model",
    "sentencepiece.bpe.model",
    "source.spm",
)
# transformers' own errors for what cannot be loaded: not found, not a model, unreadable.
LOAD_ERRORS = (OSError, ValueError, KeyError, EnvironmentError)


def _model_class(name: str, config, task: str | None):
    """The class that loads ``name``'s model for ``task``: the one it was saved as, when that has a
    head this library explains; else, for a checkpoint without one, the Auto class ``task`` names."""
    import transformers

    saved = next(
        (c for c in (getattr(transformers, a, None) for a in getattr(config, "architectures", None) or []) if c),
        None,
    )
    saved_task = task_of_class(saved, config) if saved is not None else None
    if saved_task is not None:
        if task in (None, saved_task) or (task == "generation" and saved_task in (CAUSAL_LM, SEQ2SEQ)):
            return saved
        raise InterpTextError(
            f"task={task!r} does not fit {name!r}: it was saved as {saved.__name__}, a {saved_task} model; leave "
            f"task unset (or pass task={saved_task!r})."
        )
    named = list(getattr(config, "architectures", None) or [])
    if task is None and saved is None and named:
        raise InterpTextError(
            f"{name!r} was saved as {', '.join(named)}, which transformers does not have (a class of your own?); "
            "load the model with that class and pass it, or pass task='classification', 'causal_lm' or 'seq2seq' "
            "to load it with transformers' class for that task (a saved head loads where its weights' names match)."
        )
    if task is None:
        what = f"a {saved.__name__} checkpoint" if saved is not None else "a checkpoint that names no architecture"
        raise InterpTextError(
            f"{name!r} is {what}, with no classification or language-model head to explain; pass task="
            "'classification', 'causal_lm' or 'seq2seq' to load it with one (a new head is untrained), or load a "
            "fine-tuned model."
        )
    if task == CLASSIFICATION:
        return transformers.AutoModelForSequenceClassification
    if task == SEQ2SEQ or (task == "generation" and getattr(config, "is_encoder_decoder", False)):
        return transformers.AutoModelForSeq2SeqLM
    return transformers.AutoModelForCausalLM


# A Hugging Face Hub repository id: "name" or "owner/name", of letters, digits, "-", "_" and ".".
_HUB_ID = re.compile(r"(?:\w[\w\-.]*/)?\w[\w\-.]*")  # no leading "." or "-": "./x" is a path


def _failed(name: str, err: Exception) -> InterpTextError:
    from .bundled import NAMES

    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    # Asked of the Hub (no such folder here): with no network its client retries for half a minute first.
    asked = not Path(name).exists() and os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in (
        "1",
        "true",
        "yes",
        "on",
    )
    return InterpTextError(
        f"cannot load {name!r}: it is not a bundled model ({', '.join(NAMES)}) or a folder saved with "
        f"save_pretrained, and the Hugging Face Hub did not give it ({reason})"
        + ("; with no network, set HF_HUB_OFFLINE=1 to read only the local cache, at once" if asked else "")
    )


def _refuse_what_the_hub_would_refuse(name: str) -> None:
    """Refuse, at once, a name only the Hub could still answer, with a no after half a minute offline:
    a misspelt bundled name, a file, a path that does not exist."""
    from .bundled import NAMES

    close = difflib.get_close_matches(name.lower(), NAMES, n=1, cutoff=0.75)
    if close and not Path(name).exists() and "/" not in name:
        raise InterpTextError(
            f"{name!r} is not a bundled model or a folder here; did you mean {close[0]!r}? (A Hub model of that "
            "name: pass it as owner/name.)"
        )
    if Path(name).is_file():
        raise InterpTextError(f"{name!r} is a file; pass the folder save_pretrained wrote.")
    if not Path(name).exists() and not _HUB_ID.fullmatch(name):  # a path: asking the Hub only waits for a no
        raise InterpTextError(
            f"cannot load {name!r}: there is no such folder (from {os.getcwd()}), and it is not a bundled model "
            f"({', '.join(NAMES)}) or a Hugging Face Hub name (owner/name)."
        )


def load_tokenizer(name: str):
    """The tokenizer saved in folder (or Hub repo) ``name``; a folder must hold its files (transformers
    would otherwise make one with a vocabulary of five tokens, and every word would be unknown)."""
    from transformers import AutoTokenizer

    from .bundled import default_path

    if _is_bundled(name):  # a bundled model's name ("sentiment"): its tokenizer
        return AutoTokenizer.from_pretrained(default_path(name.lower()))
    _refuse_what_the_hub_would_refuse(name)
    folder = Path(name)
    if folder.is_dir() and not any((folder / f).exists() for f in TOKENIZER_FILES):
        raise InterpTextError(
            f"{name!r} holds no tokenizer (none of {', '.join(TOKENIZER_FILES[:4])}, ...): save it there with "
            "tokenizer.save_pretrained(folder), or pass the tokenizer."
        )
    try:
        return AutoTokenizer.from_pretrained(name)
    except LOAD_ERRORS as err:
        raise _failed(name, err) from None


# Models loaded by name, while something holds them: explainers and metrics given one name share one
# copy (one model in memory; evaluate_together and compare see the same model).
_LOADED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_TOKENIZERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # such a model -> its tokenizer


def load(name: str, task: str | None = None, device: Any = None, tokenizer: bool = True) -> tuple[torch.nn.Module, Any]:
    """The model ``name`` (bundled, a folder, or a Hub id) in eval mode, on ``device``, and its
    tokenizer (None when ``tokenizer`` is False). A name loaded before, whose model is still held,
    gives that model (and tokenizer) again.

    ``task`` picks the head of a checkpoint saved without one; a checkpoint saved with one loads
    as it was saved, and a ``task`` that contradicts it is refused.
    """
    device = checked_device(device)
    # from_pretrained loads on the CPU; a bundled model loads as it is whatever the task (checked after).
    key = (_source(name), None if _is_bundled(name) else task, str(device or "cpu"))
    model = _LOADED.get(key)
    if model is None:
        model, own = _load(name, task, device, tokenizer)
        _LOADED[key] = model
    else:
        own = _TOKENIZERS.get(model)
        if tokenizer and own is None:  # loaded before with a tokenizer of the caller's: its own now
            own = load_default(name.lower())[1] if _is_bundled(name) else load_tokenizer(name)
    if own is not None:
        _TOKENIZERS[model] = own
    return model, own if tokenizer else None


def _is_bundled(name: str) -> bool:
    from .bundled import NAMES

    return not Path(name).exists() and name.lower() in NAMES


def _source(name: str) -> tuple:
    """What ``name`` loads from: a bundled or Hub name as such; a folder as its absolute path and
    its files' sizes and times, so that a folder saved again loads again."""
    path = Path(name)
    if not path.is_dir():
        return (name.lower() if _is_bundled(name) else name,)
    files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in path.iterdir() if f.is_file())
    return (str(path.resolve()), *files)


def _load(name: str, task: str | None, device: Any, tokenizer: bool) -> tuple[torch.nn.Module, Any]:

    if _is_bundled(name):
        model, own = load_default(name.lower())
    else:
        _refuse_what_the_hub_would_refuse(name)
        if Path(name).is_dir() and not (Path(name) / "config.json").exists():
            # Before transformers 5.1, AutoConfig guesses a model type from the path's name (".../empty" holds "mpt").
            raise InterpTextError(
                f"cannot load {name!r}: the folder holds no config.json; save the model there with "
                "model.save_pretrained(folder), or pass a bundled model's name or a Hub id."
            )
        import transformers

        check_versions()
        try:
            config = transformers.AutoConfig.from_pretrained(name)
        except LOAD_ERRORS as err:
            raise _failed(name, err) from None
        cls = _model_class(name, config, task)
        own = load_tokenizer(name) if tokenizer else None  # before the weights: a missing tokenizer fails fast
        try:
            model = cls.from_pretrained(name)
        except LOAD_ERRORS as err:
            raise _failed(name, err) from None
        model.eval()
    if device is not None:
        model.to(device)
    return model, own if tokenizer else None


def check_versions() -> None:
    """transformers 5 needs torch 2.6 or later, but pip does not know it (it is in transformers' own
    ``torch`` extra), so an environment with an older torch installs cleanly and fails at the first
    model: refused here with both ways out, not with transformers' traceback."""
    import transformers

    major = int(transformers.__version__.split(".")[0])
    torch_version = tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2])
    if major >= 5 and torch_version < (2, 6):
        raise InterpTextError(
            f"transformers {transformers.__version__} needs torch 2.6 or later, and torch {torch.__version__} is "
            'installed: upgrade torch (pip install "torch>=2.6"), or keep this torch with transformers 4 '
            '(pip install "transformers>=4.45,<5").'
        )


def _is_pipeline(x: Any) -> bool:
    return not isinstance(x, torch.nn.Module) and isinstance(getattr(x, "model", None), torch.nn.Module)


def resolve(model: Any, tokenizer: Any, task: str | None = None, device: Any = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from what an explainer was given.

    A name or path loads the model (on ``device``) and, unless one is given, its tokenizer; a
    pipeline gives its model and tokenizer; a tokenizer may be a name or path too.
    """
    if isinstance(model, (str, os.PathLike)):
        model, own = load(os.fspath(model), task, device, tokenizer=tokenizer is None)
        tokenizer = own if tokenizer is None else tokenizer
    elif _is_pipeline(model):
        tokenizer = model.tokenizer if tokenizer is None else tokenizer
        model = model.model
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = load_tokenizer(os.fspath(tokenizer))
    if tokenizer is None and isinstance(model, torch.nn.Module):  # anything else: check_model names it
        raise InterpTextError(
            f"no tokenizer for {type(model).__name__}: pass it (Method(model, tokenizer)), or pass the model "
            "by name or folder (Method('path/to/model')), which loads both."
        )
    return model, tokenizer
