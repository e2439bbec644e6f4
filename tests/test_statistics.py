import pytest
import torch

from interp_text.statistics import Streaming


@pytest.mark.parametrize("chunks", [[10], [1] * 10, [3, 3, 4], [2, 8]])
def test_streaming_matches_full_batch(chunks):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 4, 5, generator=g, dtype=torch.float64) * 3 + 100  # offset tests cancellation
    stats = {name: Streaming(name) for name in ("mean", "mean_of_squares", "variance")}
    start = 0
    for k in chunks:
        for s in stats.values():
            s.update(x[start : start + k])
        start += k
    torch.testing.assert_close(stats["mean"].result(), x.mean(0))
    torch.testing.assert_close(stats["mean_of_squares"].result(), (x**2).mean(0))
    torch.testing.assert_close(stats["variance"].result(), x.var(0, unbiased=True))
