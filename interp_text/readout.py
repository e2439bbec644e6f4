"""A classifier reads its last layer at one position: that layer computed there only.

A BERT-style sequence classifier (BERT, RoBERTa, XLM-R, ELECTRA, CamemBERT...) reads its last
encoder layer at the first token only (its pooler or head takes ``[:, 0]``). That layer's keys and
values need every position, but its query, attention output, feed-forward block and layer norms
need only that one. ``Readout`` runs the last layer there only: the layer is handed the first
position (everything per-position in it runs on one row), and its self-attention's output is
replaced by the first position's attention over all the keys and values of the full input.

The layer's own modules do all the work but the attention's core (the query, key and value
projections, and the softmax attention, which ``torch.nn.functional.scaled_dot_product_attention``
computes as the model's ``sdpa`` and ``eager`` implementations do). Whether that reproduces the
model is not assumed: ``PerturbationEngine`` compares it with the model's own forward on real
rows once per explainer, and keeps the full forward when the two differ (a head that pools every
position, relative positions, a layer unlike BERT's).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from .tasks import unwrapped

POSITION = 0  # the position a BERT-style classifier reads


def last_layer(model: torch.nn.Module) -> torch.nn.Module | None:
    """The last encoder layer of a BERT-style classifier, if the readout can run it; else None.

    BERT-style: ``base_model.encoder.layer[-1]`` with ``attention.self.{query,key,value}`` linear
    projections, absolute positions, no decoder or cross-attention. The model must be in eval mode
    (dropout would make the two paths differ) and carry no hooks below its top module (a hook on a
    layer or on the encoder would see one position where it expects all of them).
    """
    inner = unwrapped(model)
    base = getattr(inner, "base_model", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if base is None or base is inner or not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        return None
    layer = layers[-1]
    attention = getattr(getattr(layer, "attention", None), "self", None)
    projections = [getattr(attention, name, None) for name in ("query", "key", "value")]
    if not all(isinstance(p, torch.nn.Linear) for p in projections):
        return None
    config = getattr(inner, "config", None)
    if (
        not isinstance(getattr(attention, "num_attention_heads", None), int)
        or not isinstance(getattr(attention, "attention_head_size", None), int)
        or getattr(attention, "position_embedding_type", "absolute") != "absolute"
        or getattr(config, "position_embedding_type", "absolute") not in (None, "absolute")
        or getattr(config, "is_decoder", False)
        or getattr(config, "add_cross_attention", False)
        or hasattr(layer, "crossattention")
        or getattr(inner, "hf_device_map", None)
    ):
        return None
    if inner.training or _hooked(inner):
        return None
    return layer


def _hooked(model: torch.nn.Module) -> bool:
    """Whether a module below ``model``, or every module (global hooks), has a forward hook."""
    from torch.nn.modules import module as nn_module

    if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules() if m is not model)


def key(model: torch.nn.Module, layer: torch.nn.Module) -> tuple:
    """What a check of the readout of ``layer`` (``last_layer(model)``) depends on besides what
    ``last_layer`` checks on every call: the layer, its dtype and device, and the attention
    implementation."""
    implementation = getattr(getattr(unwrapped(model), "config", None), "_attn_implementation", None)
    weight = layer.attention.self.query.weight
    return (id(layer), weight.dtype, weight.device, implementation)


class Readout:
    """Runs ``layer`` (a ``last_layer``) at ``POSITION`` only while ``active()``."""

    def __init__(self, layer: torch.nn.Module):
        self.layer = layer
        self.attention = layer.attention.self
        self.hidden: torch.Tensor | None = None  # (rows, seq, hidden) the layer's input
        self.mask: torch.Tensor | None = None

    @contextmanager
    def active(self) -> Iterator[None]:
        handles = [
            self.layer.register_forward_pre_hook(self._one_position, with_kwargs=True),
            self.attention.register_forward_hook(self._attend),
        ]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            self.hidden = self.mask = None

    def _one_position(self, module, args, kwargs):
        """The layer's input: kept whole for the keys and values, handed on at ``POSITION`` only."""
        hidden = args[0] if args else kwargs["hidden_states"]  # (rows, seq, hidden)
        self.hidden = hidden
        one = hidden[:, POSITION : POSITION + 1]  # (rows, 1, hidden)
        if args:
            args = (one, *args[1:])
        else:
            kwargs = {**kwargs, "hidden_states": one}
        # The mask reaches the attention here only; the layer's own one-position pass reads none.
        if len(args) > 1:
            self.mask, args = args[1], (args[0], None, *args[2:])
        else:
            self.mask = kwargs.get("attention_mask")
            if "attention_mask" in kwargs:
                kwargs = {**kwargs, "attention_mask": None}
        return args, kwargs

    def _attend(self, module, args, output):
        """The attention's output at ``POSITION``: its query over the keys and values of every position."""
        h = self.hidden
        rows, seq, _ = h.shape
        heads, size = module.num_attention_heads, module.attention_head_size
        q = (
            module.query(h[:, POSITION : POSITION + 1]).view(rows, 1, heads, size).transpose(1, 2)
        )  # (rows, heads, 1, size)
        k = module.key(h).view(rows, seq, heads, size).transpose(1, 2)  # (rows, heads, seq, size)
        v = module.value(h).view(rows, seq, heads, size).transpose(1, 2)
        mask = self.mask
        if mask is not None:
            if mask.dim() == 2:  # (rows, seq) 1 = attend: a padding mask as flash attention takes it
                mask = mask[:, None, None, :].bool()
            elif mask.shape[-2] > 1:  # (rows, 1, seq, seq): the query's row
                mask = mask[..., POSITION : POSITION + 1, :]
        scale = getattr(module, "scaling", None) or 1 / math.sqrt(size)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)  # (rows, heads, 1, size)
        a = a.transpose(1, 2).reshape(rows, 1, heads * size)  # (rows, 1, hidden)
        if isinstance(output, tuple):
            return (a, *output[1:])
        return a
