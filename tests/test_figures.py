"""The similarity figures' x range: fitted to the data, within [-1, 1]."""

import math

import torch

from lightly_temperature.figures import fitted_range


def test_fitted_range_holds_the_data_rounded_out_to_tenths():
    positive = torch.tensor([0.72, 0.98])
    negatives = torch.tensor([[0.81, 0.90]])
    assert fitted_range(positive, negatives) == (0.6, 1.0)  # 0.67 -> 0.6, 1.03 -> 1 (the limit)
    low, high = fitted_range(torch.tensor([-0.61, -0.43]))
    assert math.isclose(low, -0.7) and math.isclose(high, -0.3)
    # A single value still gets a range of 0.2, and the range never leaves [-1, 1].
    low, high = fitted_range(torch.tensor([0.5]))
    assert math.isclose(low, 0.4) and math.isclose(high, 0.6)
    assert fitted_range(torch.tensor([-1.0, 1.0])) == (-1.0, 1.0)
    assert fitted_range(torch.tensor([0.99, 1.0])) == (0.8, 1.0)


def test_fitted_range_ignores_values_that_are_not_finite():
    assert fitted_range(torch.tensor([float("nan")]), torch.tensor([])) == (-1.0, 1.0)
    low, high = fitted_range(torch.tensor([float("nan"), 0.3, float("inf")]))
    assert math.isclose(low, 0.2) and math.isclose(high, 0.4)
