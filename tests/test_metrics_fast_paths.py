"""The metrics' fast paths against the direct computations they replace."""

from __future__ import annotations

import pytest
import torch

from lightly_temperature.metrics import uniformity_loss
from lightly_temperature.metrics.similarities import _top_k_column_values, _top_k_values


@pytest.mark.parametrize("width, k", [(80, 10), (1003, 10), (4099, 3), (650, 1), (30, 10)])
def test_grouped_top_k_equals_topk(width, k):
    g = torch.Generator().manual_seed(width)
    sims = torch.rand(17, width, generator=g) * 2 - 1
    sims[:, 5] = float("-inf")
    sims[3, -1] = 5.0  # the largest entry in the left-over columns
    sims[4] = sims[4].round(decimals=1)  # many ties
    got = _top_k_values(sims, k, sorted=True)
    torch.testing.assert_close(got, sims.topk(k, dim=1).values, rtol=0, atol=0)


@pytest.mark.parametrize("rows, k", [(80, 10), (1003, 10), (4099, 3), (650, 1), (30, 10)])
def test_grouped_top_k_down_the_columns_equals_topk_of_the_transpose(rows, k):
    g = torch.Generator().manual_seed(rows)
    sims = torch.rand(rows, 17, generator=g) * 2 - 1
    sims[5, :] = float("-inf")
    sims[-1, 3] = 5.0  # the largest entry in the left-over rows
    sims[:, 4] = sims[:, 4].round(decimals=1)  # many ties
    got = _top_k_column_values(sims, k).sort(dim=1, descending=True).values
    torch.testing.assert_close(got, sims.T.topk(k, dim=1).values, rtol=0, atol=0)


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_uniformity_loss_equals_the_direct_log_mean_exp(chunk):
    z = torch.randn(150, 12, generator=torch.Generator().manual_seed(chunk), dtype=torch.float64)
    zn = torch.nn.functional.normalize(z, dim=1)
    sq = torch.cdist(zn, zn).pow(2)
    off = ~torch.eye(150, dtype=torch.bool)
    expected = sq[off].mul(-2.0).exp().mean().log()
    got = uniformity_loss(z, chunk_size=chunk)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
