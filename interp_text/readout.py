"""A classifier reads its last layer at one position: that layer computed there only.

A BERT-style sequence classifier (``MODEL_TYPES``: BERT, RoBERTa, XLM-R, ELECTRA, DistilBERT...)
reads its last encoder layer at the first token only (its pooler or head takes ``[:, 0]``). Its
keys and values need every position, but its query, attention output, feed-forward block and
layer norms need only that one. ``Readout`` runs the last layer there only: the layer is handed the first
position (everything per-position in it runs on one row), and its self-attention's output is
replaced by the first position's attention over all the keys and values of the full input.

The layer's own modules do all the work but the attention's core (the query, key and value
projections, and the softmax attention, which ``torch.nn.functional.scaled_dot_product_attention``
computes as the model's ``sdpa`` and ``eager`` implementations do). Whether that reproduces the
model is not assumed: the engine (``Engine._checked_readout``) compares it with the model's own
forward on real rows once per explainer or metric, and keeps the full forward when the two differ
(a head that pools every position, relative positions, a layer unlike BERT's). The gradients flow
through it as through the full layer: it computes the same function of the input.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .tasks import unwrapped

POSITION = 0  # the position a BERT-style classifier reads


@dataclass(frozen=True)
class Family:
    """Where a family's last layer and its self-attention are, by attribute names."""

    layers: tuple[str, ...]  # from the base model to its list of layers
    attention: tuple[str, ...]  # from a layer to its self-attention
    projections: tuple[str, str, str]  # the query, key and value projections in it
    out: str | None  # its output projection, where the self-attention applies it itself


FAMILIES = {
    # BERT and the families copied from it: the output projection is in the layer's next module.
    "bert": Family(("encoder", "layer"), ("attention", "self"), ("query", "key", "value"), None),
    "distilbert": Family(("transformer", "layer"), ("attention",), ("q_lin", "k_lin", "v_lin"), "out_lin"),
}
# The model types whose classifiers are known to read [CLS] through a layer of one of FAMILIES.
# Others built alike are left out: BigBird swaps its attention for long inputs, Nyströmformer,
# YOSO and MRA approximate the softmax attention.
MODEL_TYPES = {
    "bert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "camembert": "bert",
    "electra": "bert",
    "ernie": "bert",
    "data2vec-text": "bert",
    "distilbert": "distilbert",
}


def _path(module, names: tuple[str, ...]):
    for name in names:
        module = getattr(module, name, None)
    return module


def last_layer(model: torch.nn.Module) -> tuple[torch.nn.Module, Family] | None:
    """The last layer of a BERT-style classifier and its ``Family``, if the readout can run it; else None.

    BERT-style: one of ``MODEL_TYPES``, with linear query, key and value projections, absolute
    positions, no decoder or cross-attention. The model must be in eval mode (dropout would make the
    two paths differ; explainers run it so) and carry no hooks below its top module (a hook on a
    layer or on the encoder would see one position where it expects all of them). A compiled model
    runs without: its graph would be traced again each time the readout's hooks come and go.
    """
    inner = unwrapped(model)
    if any(
        getattr(m, "_orig_mod", None) is not None or getattr(m, "_compiled_call_impl", None) for m in (model, inner)
    ):
        return None
    base = getattr(inner, "base_model", None)
    if base is None or base is inner:
        return None
    config = getattr(inner, "config", None)
    family = FAMILIES.get(MODEL_TYPES.get(getattr(config, "model_type", None)))
    if (
        family is None
        or getattr(config, "position_embedding_type", "absolute") not in (None, "absolute")
        or getattr(config, "is_decoder", False)
        or getattr(config, "add_cross_attention", False)
        or getattr(inner, "hf_device_map", None)
        or inner.training
    ):
        return None
    layers = _path(base, family.layers)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        return None
    layer = layers[-1]
    attention = _path(layer, family.attention)
    linear = [getattr(attention, name, None) for name in (*family.projections, *([family.out] if family.out else []))]
    if (
        not all(isinstance(p, torch.nn.Linear) for p in linear)
        or not isinstance(_heads(attention), int)
        or getattr(attention, "position_embedding_type", "absolute") != "absolute"
        or hasattr(layer, "crossattention")
        or _hooked(inner)
    ):
        return None
    return layer, family


def _heads(attention: torch.nn.Module) -> int | None:
    return getattr(attention, "num_attention_heads", None) or getattr(attention, "n_heads", None)


HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _hooked(model: torch.nn.Module) -> bool:
    """Whether a module below ``model``, or every module (global hooks), has a forward or backward hook."""
    from torch.nn.modules import module as nn_module

    if any(getattr(nn_module, f"_global{name}", None) for name in HOOKS):
        return True
    return any(getattr(m, name, None) for m in model.modules() if m is not model for name in HOOKS)


def key(model: torch.nn.Module, found: tuple[torch.nn.Module, Family]) -> tuple:
    """What a check of the readout of ``found`` (``last_layer(model)``) depends on besides what
    ``last_layer`` checks on every call: the model's modules (a head or an attention swapped for
    another), the layer's dtype and device, and the attention implementation."""
    layer, family = found
    inner = unwrapped(model)
    implementation = getattr(getattr(inner, "config", None), "_attn_implementation", None)
    weight = getattr(_path(layer, family.attention), family.projections[0]).weight
    modules = hash(tuple((id(m), type(m)) for m in inner.modules()))  # an id may be reused; with its type less so
    return (modules, weight.dtype, weight.device, implementation)


def _at_position(mask: torch.Tensor | None) -> torch.Tensor | None:
    """An attention mask ``(rows, seq)`` or ``(rows, 1, 1 or seq, seq)``, cut to the query at
    ``POSITION`` where it has one row per query."""
    if mask is None or mask.dim() < 2:
        return mask
    if mask.dim() >= 3 and mask.shape[-2] > 1:
        mask = mask[..., POSITION : POSITION + 1, :]
    return mask


class Readout:
    """Runs the last layer ``found`` (a ``last_layer``) at ``POSITION`` only while ``active()``."""

    def __init__(self, found: tuple[torch.nn.Module, Family]):
        self.layer, self.family = found
        self.attention = _path(self.layer, self.family.attention)
        self.hidden: torch.Tensor | None = None  # (rows, seq, hidden) the layer's input
        self.mask: torch.Tensor | None = None
        self.thread: int | None = None  # the thread whose forwards it runs

    @contextmanager
    def active(self) -> Iterator[None]:
        """The readout for this thread's forwards; another thread's forward of the same model (the
        hooks are the model's) runs as it would without."""
        self.thread = threading.get_ident()
        handles = [
            self.layer.register_forward_pre_hook(self._one_position, with_kwargs=True),
            self.attention.register_forward_hook(self._attend),
        ]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            self.hidden = self.mask = self.thread = None

    def _one_position(self, module, args, kwargs):
        """The layer's input: kept whole for the keys and values, handed on at ``POSITION`` only,
        with its attention mask cut to that one query and key."""
        if threading.get_ident() != self.thread:
            return None
        hidden = args[0] if args else kwargs.get("hidden_states", kwargs.get("x"))  # (rows, seq, hidden)
        self.hidden = hidden
        one = hidden[:, POSITION : POSITION + 1]  # (rows, 1, hidden)
        if args:
            args = (one, *args[1:])
        else:
            kwargs = {**kwargs, ("hidden_states" if "hidden_states" in kwargs else "x"): one}
        if len(args) > 1:
            self.mask = args[1]
            args = (args[0], _one_key(args[1]), *args[2:])
        else:
            name = "attention_mask" if "attention_mask" in kwargs else "attn_mask"
            self.mask = kwargs.get(name)
            if name in kwargs:
                kwargs = {**kwargs, name: _one_key(kwargs[name])}
        return args, kwargs

    def _attend(self, module, args, output):
        """The attention's output at ``POSITION``: its query over the keys and values of every position."""
        if threading.get_ident() != self.thread:
            return None
        h = self.hidden
        rows, seq, _ = h.shape
        query, key_, value = (getattr(module, name) for name in self.family.projections)
        heads = _heads(module)
        size = query.out_features // heads
        q = query(h[:, POSITION : POSITION + 1]).view(rows, 1, heads, size).transpose(1, 2)  # (rows, heads, 1, size)
        k = key_(h).view(rows, seq, heads, size).transpose(1, 2)  # (rows, heads, seq, size)
        v = value(h).view(rows, seq, heads, size).transpose(1, 2)
        mask = self.mask
        if mask is not None and mask.dim() == 2:  # (rows, seq), 1 = attend: a padding mask
            mask = mask[:, None, None, :].bool()
        mask = _at_position(mask)
        scale = getattr(module, "scaling", None) or 1 / math.sqrt(size)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)  # (rows, heads, 1, size)
        a = a.transpose(1, 2).reshape(rows, 1, heads * size)  # (rows, 1, hidden)
        if self.family.out:
            a = getattr(module, self.family.out)(a)
        if isinstance(output, tuple):
            return (a, *output[1:])
        return a


def _one_key(mask: torch.Tensor | None) -> torch.Tensor | None:
    """A mask for the layer's own pass over ``POSITION`` alone: its query's row, its key's column."""
    if mask is None or mask.dim() < 2:
        return mask
    return _at_position(mask)[..., POSITION : POSITION + 1]
