"""Everything that touches the user's model goes through here and is undone on exit."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch

from .errors import InterpTextError
from .tasks import unwrapped


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model reads its input: its input embeddings' device (the first of a model that
    ``device_map`` spread over several)."""
    embeddings = getattr(model, "get_input_embeddings", None)
    weight = getattr(embeddings() if callable(embeddings) else None, "weight", None)
    if isinstance(weight, torch.Tensor):
        return weight.device
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def dispatched(model: torch.nn.Module) -> bool:
    """Whether ``device_map`` spread the model over several devices (accelerate moves activations)."""
    device_map = getattr(model, "hf_device_map", None) or {}
    return len({str(d) for d in device_map.values()}) > 1


def checked_device(device) -> torch.device | None:
    """``device`` as a torch.device, refused here when torch cannot compute on it."""
    if device is None:
        return None
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InterpTextError(
            f"device={device!r} is not a device torch knows ({e}); pass 'cpu', 'cuda' or 'cuda:1'."
        ) from None
    if d.type == "meta":
        raise InterpTextError("device='meta' holds no weights, so nothing can be computed there; pass 'cpu' or 'cuda'.")
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise InterpTextError(
                f"device={device!r}: torch here has no CUDA device (torch.cuda.is_available() is False); "
                "pass device='cpu', or leave device unset to compute where the model is."
            )
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise InterpTextError(
                f"device={device!r}: there are {torch.cuda.device_count()} CUDA devices (cuda:0.."
                f"cuda:{torch.cuda.device_count() - 1})."
            )
    if d.type == "mps" and not torch.backends.mps.is_available():
        raise InterpTextError(f"device={device!r}: torch here has no MPS device; pass device='cpu'.")
    if d.type not in ("cpu", "cuda", "mps"):  # xpu, hpu, xla, a backend's own: usable only where installed
        try:
            torch.empty(0, device=d)
        except Exception as e:  # torch says it otherwise for each (RuntimeError, ModuleNotFoundError, ...)
            why = str(e).strip().split(". ")[0][:160]  # its first sentence
            raise InterpTextError(
                f"device={device!r}: torch here cannot compute on it ({type(e).__name__}: {why}); "
                "pass device='cpu' (or 'cuda'), or leave device unset to compute where the model is."
            ) from None
    return d


_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_BY_ID: dict[int, threading.RLock] = {}
_LOCKS_LOCK = threading.Lock()


def call_lock(obj) -> threading.RLock:
    """One re-entrant lock per model (or tokenizer): calls from several threads (a web app's
    workers) that change and restore its state one after another, never interleaved. Interleaved,
    a call restored train mode in the middle of another (dropout in its scores) and the last to
    finish restored the flags it found switched off, leaving the user's model without gradients."""
    with _LOCKS_LOCK:
        try:
            return _LOCKS.setdefault(obj, threading.RLock())
        except TypeError:  # no weak reference to it (tokenizers' Tokenizer before 0.21): by id, kept
            return _LOCKS_BY_ID.setdefault(id(obj), threading.RLock())


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@contextmanager
def explaining(
    model: torch.nn.Module, device: torch.device | None = None, pad_id: int | None = None, backward: bool = False
) -> Iterator[torch.nn.Module]:
    """Eval mode, no parameter gradients, named outputs, optionally on ``device``; all restored on exit.

    With ``backward``, parameter ``requires_grad`` is switched off so autograd records only the path
    to the input embeddings (less memory, no parameter gradients); without, only the LM head's weight
    is switched on (see below). Dropout is off so scores are deterministic.

    ``pad_id``: a sequence classifier that reads its last token (GPT-2, Llama, ...) refuses a batch
    of more than one row when ``config.pad_token_id`` is unset, as they come from
    ``from_pretrained``. Rows here are never padded and go in as embeddings, so such a model reads
    the last position whatever the id: it is set to ``pad_id`` for the call, and the model's warning
    that padding in ``inputs_embeds`` goes undetected is held back.

    ``backward``: the call takes backwards (a gradient method), several per forward; a model compiled
    in place (``model.compile()``) may free what its backward needs after one, so its uncompiled
    forward runs for the call (``torch.compile(model)`` wrappers: see ``GradientMethod``).
    """
    # One lock for a model and its wrappers: torch.compile's, a PEFT model's (a gradient method
    # runs the compiled model's inner module, a perturbation method the wrapper).
    with call_lock(unwrapped(model)):
        with _explaining(model, device, pad_id, backward) as guarded:
            yield guarded


@contextmanager
def _explaining(
    model: torch.nn.Module, device: torch.device | None, pad_id: int | None, backward: bool
) -> Iterator[torch.nn.Module]:
    if device is not None and dispatched(model):
        raise InterpTextError(
            f"the model is spread over the devices {sorted({str(d) for d in model.hf_device_map.values()})} "
            f"(device_map), so it cannot be moved to device={str(device)!r}: leave device unset to compute where it is."
        )
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    head = model.get_output_embeddings() if callable(getattr(model, "get_output_embeddings", None)) else None
    head_weight = getattr(head, "weight", None)
    original_device = model_device(model)
    moved = device is not None and device != original_device
    config = getattr(model, "config", None)
    set_pad = pad_id is not None and config is not None and getattr(config, "pad_token_id", 0) is None
    # A config with return_dict=False makes forwards return tuples, whose parts the library (and some
    # models' own heads) read by name: named outputs for the call.
    tuples = {id(c): c for m, _ in modes if getattr(c := getattr(m, "config", None), "return_dict", True) is False}
    compiled = getattr(model, "_compiled_call_impl", None) if backward else None
    quiet = _DropMessage("will not detect padding tokens in `inputs_embeds`")
    # The warning comes from the classifier's own module, which a wrapper (a PEFT model) may hold.
    names = {getattr(type(m).forward, "__module__", None) for m, _ in modes if hasattr(m, "config")}
    logs = [logging.getLogger(name) for name in names if name]
    if backward and any(p.is_inference() for p, _ in flags):
        raise InterpTextError(
            f"{type(model).__name__}'s weights are inference tensors (the model was built or loaded under "
            "torch.inference_mode()), which autograd cannot differentiate through: load it outside inference_mode, "
            "or explain it with a perturbation method (Occlusion, Lime, KernelShap, Sobol), which needs no gradient."
        )
    # Each change registers its undo as soon as it is made: every undo runs on exit, even if another fails.
    with ExitStack() as undo:
        if any(mode for _, mode in modes):  # eval() walks every module: only when one is training
            undo.callback(_restore_modes, modes, model)
            model.eval()
        undo.callback(_restore_flags, flags)
        if backward:
            for p, flag in flags:
                if flag:
                    p.requires_grad_(False)
        elif (
            isinstance(head_weight, torch.nn.Parameter)
            and head_weight.is_floating_point()
            and not head_weight.is_inference()  # its flag cannot be switched on outside inference_mode
        ):
            # Forward-only calls run under no_grad / inference_mode, which record nothing whatever the
            # flags. But torch's CPU linear is several times slower on a 3-D input that is not
            # contiguous (the LM head's, sliced to the scored positions by logits_to_keep) when its
            # weight does not require grad (torch 2.13: 1.6 s against 0.23 s for GPT-2's head on 64 rows
            # of 6 positions): the head's weight requires grad for the call, a frozen model's too.
            head_weight.requires_grad_(True)
        if set_pad:
            undo.callback(setattr, config, "pad_token_id", None)
            config.pad_token_id = pad_id
        for c in tuples.values():
            undo.callback(setattr, c, "return_dict", False)
            c.return_dict = True
        if compiled is not None:
            undo.callback(setattr, model, "_compiled_call_impl", compiled)
            model._compiled_call_impl = None
        for log in logs:
            undo.callback(log.removeFilter, quiet)
            log.addFilter(quiet)
        if moved:
            undo.callback(model.to, original_device)
            model.to(device)
        yield model


def _restore_flags(flags: list[tuple[torch.nn.Parameter, bool]]) -> None:
    for p, flag in flags:
        if p.requires_grad != flag:
            if p.is_inference():  # an inference tensor takes requires_grad=True inside inference_mode only
                with torch.inference_mode():
                    p.requires_grad_(flag)
            else:
                p.requires_grad_(flag)


def _restore_modes(modes: list[tuple[torch.nn.Module, bool]], model: torch.nn.Module | None = None) -> None:
    """Every module's mode as it was; a module the model made during the call (BigBird swaps in
    full-attention modules for short inputs) takes its parent's."""
    for m, mode in modes:
        if m.training != mode:
            m.training = mode
    if model is None:
        return
    known = {id(m) for m, _ in modes}
    parents = {"": model}
    for name, m in model.named_modules():
        parents[name] = m
        if id(m) not in known and name:
            m.training = parents[name.rpartition(".")[0]].training
