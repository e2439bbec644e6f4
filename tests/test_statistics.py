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


@pytest.mark.parametrize("chunks", [[10], [1] * 10, [3, 3, 4]])
def test_streaming_keeps_its_mean_in_the_given_row(chunks):
    # The engine hands each target a row of one (targets, seq) buffer made before the backwards, so
    # that no per-target tensor is allocated between them (see Engine._gradient_pass).
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 6, generator=g, dtype=torch.float64) + 50
    buffer = torch.full((3, 6), float("nan"), dtype=torch.float64)
    st = Streaming("mean", out=buffer[1])
    start = 0
    for k in chunks:
        st.update(x[start : start + k].float())  # float32 chunks, as gradients come
        start += k
    assert st.result().data_ptr() == buffer[1].data_ptr()
    torch.testing.assert_close(buffer[1], x.float().double().mean(0))
    assert torch.isnan(buffer[[0, 2]]).all()  # the other targets' rows are untouched
