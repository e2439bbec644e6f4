"""Streaming statistics over perturbation samples: memory does not grow with their number."""

from __future__ import annotations

import torch


class Streaming:
    """Element-wise mean, mean of squares or unbiased variance of samples that arrive in chunks.

    Chunks are merged with Chan et al.'s pairwise update, in float64, so the result does not
    depend on how samples were split into batches (up to rounding).

    ``out``: a float64 tensor of a sample's shape that the mean is kept in, updated in place (a row
    of a buffer made up front, see ``Engine._gradient_pass``); by default one is made at the first chunk.
    """

    def __init__(self, statistic: str, out: torch.Tensor | None = None):
        assert statistic in ("mean", "mean_of_squares", "variance"), statistic
        self.statistic = statistic
        self.n = 0
        self.out = out
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def update(self, samples: torch.Tensor) -> None:
        """Add samples of shape ``(k, ...)``."""
        x = samples.to(torch.float64)
        if self.statistic == "mean_of_squares":
            x = x * x
        k = x.shape[0]
        batch_mean = x.mean(0)
        if self.mean is None:
            self.n, self.mean = k, batch_mean if self.out is None else self.out.copy_(batch_mean)
            if self.statistic == "variance":
                self.m2 = ((x - batch_mean) ** 2).sum(0)
            return
        total = self.n + k
        delta = batch_mean - self.mean
        # In place: a running statistic that lives across batches keeps its memory.
        if self.statistic == "variance":
            self.m2.add_(((x - batch_mean) ** 2).sum(0)).add_(delta**2, alpha=self.n * k / total)
        self.mean.add_(delta, alpha=k / total)
        self.n = total

    def result(self) -> torch.Tensor:
        assert self.mean is not None, "no samples"
        if self.statistic == "variance":
            return self.m2 / (self.n - 1)
        return self.mean
