"""The layout's normalisation and exclusion columns: the same numbers as the direct forms."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from lightly_temperature import HardContrastiveLoss
from lightly_temperature.losses import layout as layout_module
from lightly_temperature.losses.layout import in_batch_layout, normalized


def _views(n: int = 9, d: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out0 = torch.randn(n, d, generator=g) * torch.rand(n, 1, generator=g) * 5
    out1 = torch.randn(n, d, generator=g)
    out1[2] = 0.0  # a zero row: F.normalize's eps
    return out0.requires_grad_(True), out1.requires_grad_(True)


def test_stacked_normalisation_equals_f_normalize_on_each_view_bit_for_bit():
    # The stacked form exists to issue fewer operations; it must not change a single bit of
    # the values or of the gradients (the anchors' and the float64 positive's).
    out0, out1 = _views()
    ref0, ref1 = (t.detach().clone().requires_grad_(True) for t in (out0, out1))
    g = torch.Generator().manual_seed(1)
    grad_anchors = torch.randn(18, 6, generator=g)
    grad_positive = torch.randn(9, generator=g, dtype=torch.float64)

    views = normalized(out0, out1)
    anchors = views.stacked.flatten(0, 1)
    positive = views.positive_exact()
    torch.autograd.backward([anchors, positive], [grad_anchors, grad_positive])

    u0, u1 = F.normalize(ref0, dim=1), F.normalize(ref1, dim=1)
    ref_anchors = torch.cat([u0, u1])
    ref_positive = (u0.double() * u1.double()).sum(dim=1)
    torch.autograd.backward([ref_anchors, ref_positive], [grad_anchors, grad_positive])

    assert torch.equal(anchors, ref_anchors)
    assert torch.equal(views.view0, u0) and torch.equal(views.view1, u1)
    assert torch.equal(positive, ref_positive)
    assert torch.equal(out0.grad, ref0.grad) and torch.equal(out1.grad, ref1.grad)


def test_in_batch_columns_are_each_anchor_and_its_positive():
    layout = in_batch_layout(normalized(*_views(n=4)), gather_distributed=False)
    assert layout.self_col.tolist() == list(range(8))
    assert layout.pos_col.tolist() == [4, 5, 6, 7, 0, 1, 2, 3]
    assert layout.num_negatives == 6


def test_columns_built_in_a_validation_loop_serve_training():
    # The columns are built once per batch shape; a first call from Lightning's validation
    # loop (inference mode) must not leave tensors that training cannot use.
    n = 45
    layout_module._in_batch_columns.cache_clear()  # built here first, in inference mode
    loss_fn = HardContrastiveLoss(temperature=0.3, hard_negatives=3)
    with torch.inference_mode():
        loss_fn(*(t.detach() for t in _views(n=n)))
        layout = in_batch_layout(normalized(*_views(n=n)), gather_distributed=False)
    # Inference tensors cannot be saved for backward: a path that gathered with them under
    # autograd would fail in training.
    assert not layout.self_col.is_inference() and not layout.pos_col.is_inference()
    out0, out1 = _views(n=n, seed=2)
    loss_fn(out0, out1).backward()
    assert torch.isfinite(out0.grad).all() and out0.grad.abs().sum() > 0
