"""Streaming statistics over perturbation samples: memory does not grow with their number."""

from __future__ import annotations

import torch


class Streaming:
    """Element-wise mean, mean of squares or unbiased variance of samples that arrive in chunks.

    Chunks are merged with Chan et al.'s pairwise update, in float64, so the result does not
    depend on how samples were split into batches (up to rounding).
    """

    def __init__(self, statistic: str):
        assert statistic in ("mean", "mean_of_squares", "variance"), statistic
        self.statistic = statistic
        self.n = 0
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
            self.n, self.mean = k, batch_mean
            if self.statistic == "variance":
                self.m2 = ((x - batch_mean) ** 2).sum(0)
            return
        total = self.n + k
        delta = batch_mean - self.mean
        if self.statistic == "variance":
            self.m2 = self.m2 + ((x - batch_mean) ** 2).sum(0) + delta**2 * (self.n * k / total)
        self.mean = self.mean + delta * (k / total)
        self.n = total

    def result(self) -> torch.Tensor:
        assert self.mean is not None, "no samples"
        if self.statistic == "variance":
            return self.m2 / (self.n - 1)
        return self.mean
