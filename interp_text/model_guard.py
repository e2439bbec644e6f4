"""Everything that touches the user's model goes through here and is undone on exit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@contextmanager
def explaining(model: torch.nn.Module, device: torch.device | None = None) -> Iterator[torch.nn.Module]:
    """Eval mode, no parameter gradients, optionally on ``device``; all restored on exit.

    Parameter ``requires_grad`` is switched off so autograd records only the path to the input
    embeddings (less memory, no parameter gradients), and dropout is off so scores are
    deterministic.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    original_device = model_device(model)
    moved = device is not None and device != original_device
    try:
        if any(mode for _, mode in modes):  # eval() walks every module: only when one is training
            model.eval()
        for p, flag in flags:
            if flag:
                p.requires_grad_(False)
        if moved:
            model.to(device)
        yield model
    finally:
        if moved:
            model.to(original_device)
        for p, flag in flags:
            if p.requires_grad != flag:
                p.requires_grad_(flag)
        for m, mode in modes:
            if m.training != mode:
                m.training = mode
