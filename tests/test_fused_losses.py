"""The fused loss path (one autograd node, CPU top-K by argpartition) against plain autograd."""

from __future__ import annotations

import pytest
import torch
from lightly.loss import NTXentLoss
from lightly.utils import dist

from lightly_temperature import HardContrastiveLoss, HardSimpleLoss, SimpleLoss, kernels
from lightly_temperature.kernels import LOGSUMEXP, SUM, reduce_logits, reduce_similarities


@pytest.mark.parametrize("shape, k", [((7, 50), 1), ((7, 50), 13), ((40, 300), 24), ((3, 9), 8)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_top_k_indices_select_the_same_set_as_topk(monkeypatch, shape, k, dtype, threads):
    monkeypatch.setattr(kernels, "_SELECTION_CHUNK_ELEMENTS", 100)  # several chunks
    torch.manual_seed(k)
    values = torch.randn(*shape, dtype=dtype)
    values[:, 0] = float("-inf")  # excluded entries are never selected while k < finite
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # 2: chunks are selected in a thread pool
    try:
        index = kernels.top_k_indices(values, k)
    finally:
        torch.set_num_threads(before)
    assert index.shape == (shape[0], k) and index.dtype == torch.int64
    got = values.gather(1, index).sort(dim=1).values
    expected = values.topk(k, dim=1).values.sort(dim=1).values
    assert torch.equal(got, expected)
    assert (index.sort(dim=1).values.diff(dim=1) > 0).all()  # k distinct columns per row


def _selection_widths(monkeypatch) -> list[int]:
    """The row lengths that NumPy's argpartition is called on (the full row: no sampling)."""
    widths: list[int] = []
    real = kernels.np.argpartition

    def spy(array, kth, axis=-1):
        widths.append(array.shape[-1])
        return real(array, kth, axis=axis)

    monkeypatch.setattr(kernels.np, "argpartition", spy)
    return widths


def _assert_top_k(values, index, k):
    assert index.shape == (values.shape[0], k)
    assert (index.sort(dim=1).values.diff(dim=1) > 0).all()  # k distinct columns per row
    got = values.gather(1, index).sort(dim=1).values
    assert torch.equal(got, values.topk(k, dim=1).values.sort(dim=1).values)


@pytest.mark.parametrize("k", [1, 10, 100, 512])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sampled_top_k_selection_is_exact_and_skips_the_full_row(monkeypatch, k, dtype):
    torch.manual_seed(k)
    values = torch.randn(300, 4096, dtype=dtype)
    values[:, :2] = float("-inf")  # excluded columns (the anchor, its positive)
    widths = _selection_widths(monkeypatch)
    _assert_top_k(values, kernels.top_k_indices(values, k), k)
    assert widths and max(widths) < 4096 // 4  # only the short gathered rows were selected


@pytest.mark.parametrize(
    "case", ["all equal", "top values off the sampled columns", "mostly -inf", "ties at the k-th"]
)
def test_sampled_top_k_selection_is_exact_where_the_sample_misleads(monkeypatch, case):
    torch.manual_seed(0)
    values, k = torch.randn(64, 2048), 40
    if case == "all equal":  # a collapsed embedding: every similarity ties
        values = torch.ones(64, 2048)
    elif case == "top values off the sampled columns":  # the sample sees columns 0, 4, 8, ...
        values[:, 1::4] += 100.0
    elif case == "mostly -inf":
        values[:, 100:] = float("-inf")
    else:
        values = torch.randint(0, 8, (64, 2048)).float()  # many ties at every threshold
    widths = _selection_widths(monkeypatch)
    index = kernels.top_k_indices(values, k)
    if case == "all equal" or case == "ties at the k-th":
        assert (index.sort(dim=1).values.diff(dim=1) > 0).all()
        got = values.gather(1, index).sort(dim=1).values
        assert torch.equal(got, values.topk(k, dim=1).values.sort(dim=1).values)
    else:
        _assert_top_k(values, index, k)
    if case == "all equal":
        assert 2048 in widths  # the whole rows were selected


@pytest.mark.parametrize("case", ["random", "top values off the sampled columns", "a NaN"])
def test_sampled_top_k_selection_of_long_rows_is_exact(monkeypatch, case):
    # Rows of 16,384 or more (a MoCo memory bank) are selected one by one, from every 16th.
    torch.manual_seed(0)
    values, k = torch.randn(6, 20000), 1000
    if case == "top values off the sampled columns":
        values[0, 1::16] += 100.0  # row 0 only: the sample misleads its threshold
    elif case == "a NaN":
        values[2, 7] = float("nan")
    widths = _selection_widths(monkeypatch)
    index = kernels.top_k_indices(values, k)
    assert (index.sort(dim=1).values.diff(dim=1) > 0).all()
    if case == "a NaN":  # selected as the largest, as torch.topk does, so the loss is NaN
        assert 7 in index[2].tolist() and widths == [20000]
        values = values.nan_to_num(nan=float("inf"))
    torch.testing.assert_close(
        values.gather(1, index).sort(dim=1).values,
        values.topk(k, dim=1).values.sort(dim=1).values,
        rtol=0,
        atol=0,
    )
    if case == "random":
        assert max(widths) < 20000 // 4


@pytest.mark.parametrize("kind", [LOGSUMEXP, SUM])
@pytest.mark.parametrize("k", [11, 9, 7])
@pytest.mark.parametrize("symmetric", [False, True])
def test_top_k_reduction_keeping_most_columns_equals_autograd(kind, k, symmetric):
    # K > C/2: the C - K smallest of each row are dropped (by argmin when one), the rest
    # reduced over all columns; a sum gives weight 1 to the columns kept.
    torch.manual_seed(k)
    query = torch.randn(12, 4, dtype=torch.float64, requires_grad=True)
    candidates = query if symmetric else torch.randn(12, 4, dtype=torch.float64)
    candidates.requires_grad_(True)
    excluded = torch.arange(12).unsqueeze(1) if symmetric else None  # the anchor itself
    weights = torch.rand(12, dtype=torch.float64)
    out = reduce_similarities(query, candidates, excluded, k - (1 if symmetric else 0), kind)
    ref = _reference(query, candidates, excluded, k - (1 if symmetric else 0), kind)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    inputs = [query] if symmetric else [query, candidates]
    got = torch.autograd.grad((out * weights).sum(), inputs)
    expected = torch.autograd.grad((ref * weights).sum(), inputs)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_top_k_reduction_dropping_one_column_equals_autograd():
    # K = C - 1 (MoCo's 4095 of 4096): the smallest column of each row is dropped by argmin.
    torch.manual_seed(0)
    query = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    candidates = torch.randn(12, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(6, dtype=torch.float64)
    out = reduce_similarities(query, candidates, None, 11, LOGSUMEXP)
    ref = _reference(query, candidates, None, 11, LOGSUMEXP)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    got = torch.autograd.grad((out * weights).sum(), [query, candidates])
    expected = torch.autograd.grad((ref * weights).sum(), [query, candidates])
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_reduce_logits_leaves_its_input_unchanged():
    # The in-place softmax is for the node's own buffer only, never for the caller's logits.
    logits = torch.randn(5, 9)
    logits[:, 0] = float("-inf")
    before = logits.clone()
    for kind in (LOGSUMEXP, SUM, kernels.WEIGHTED_LOGMEANEXP):
        for k in (None, 2, 8, 9):  # 8, 9: most columns kept (1 and 0 dropped)
            if k is None and kind == SUM:
                continue
            reduce_logits(logits, k=k, kind=kind, beta=0.5)
            assert torch.equal(logits, before), (kind, k)


def _reference(query, candidates, excluded, k, kind):
    logits = query @ candidates.T
    if excluded is not None:
        logits = logits.scatter(1, excluded, float("-inf"))
    if k is not None:
        logits = logits.topk(k, dim=1).values
    return torch.logsumexp(logits, 1) if kind == LOGSUMEXP else logits.sum(1)


@pytest.mark.parametrize(
    "k, kind", [(None, LOGSUMEXP), (1, LOGSUMEXP), (5, LOGSUMEXP), (1, SUM), (5, SUM)]
)
@pytest.mark.parametrize("with_excluded", [False, True])
def test_reduce_similarities_value_and_gradients_equal_autograd(k, kind, with_excluded):
    torch.manual_seed(0)
    query = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    candidates = torch.randn(12, 4, dtype=torch.float64, requires_grad=True)
    excluded = torch.stack([torch.arange(6), torch.arange(6) + 6], 1) if with_excluded else None
    weights = torch.rand(6, dtype=torch.float64)  # a non-uniform incoming gradient
    out = reduce_similarities(query, candidates, excluded, k, kind)
    gq, gc = torch.autograd.grad((out * weights).sum(), [query, candidates])
    ref = _reference(query, candidates, excluded, k, kind)
    rq, rc = torch.autograd.grad((ref * weights).sum(), [query, candidates])
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gq, rq, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gc, rc, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "k, kind", [(None, LOGSUMEXP), (1, LOGSUMEXP), (5, LOGSUMEXP), (1, SUM), (5, SUM)]
)
def test_reduce_logits_value_and_gradient_equal_autograd(k, kind):
    """The functional core's row reduction is the losses' one, on given logits."""
    torch.manual_seed(1)
    logits = torch.randn(6, 12, dtype=torch.float64)
    logits[:, 3] = float("-inf")  # not a negative: weight and gradient 0
    logits.requires_grad_(True)
    weights = torch.rand(6, dtype=torch.float64)
    out = reduce_logits(logits, k, kind)
    (grad,) = torch.autograd.grad((out * weights).sum(), [logits])
    ref = logits if k is None else logits.topk(k, dim=1).values
    ref = torch.logsumexp(ref, 1) if kind == LOGSUMEXP else ref.sum(1)
    (expected,) = torch.autograd.grad((ref * weights).sum(), [logits])
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
    assert (grad[:, 3] == 0).all()


def test_hard_loss_gives_exact_zero_gradient_to_bank_rows_outside_top_k():
    # MoCo mode with a bank that requires no gradient: check through the query instead.
    # With K = 1 only the hardest bank entry enters: the query's gradient lies in the span of
    # the query itself, its positive and that one entry.
    torch.manual_seed(0)
    query = torch.randn(1, 4, dtype=torch.float64, requires_grad=True)
    bank = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    out = reduce_similarities(query, bank, None, 1, LOGSUMEXP)
    (grad_bank,) = torch.autograd.grad(out.sum(), [bank])
    hardest = (query @ bank.T).argmax()
    nonzero = grad_bank.abs().sum(1) != 0
    assert nonzero.sum() == 1 and nonzero[hardest]


def test_backward_twice_with_retain_graph_gives_twice_the_gradient():
    torch.manual_seed(0)
    out0 = torch.randn(8, 5, requires_grad=True)
    out1 = torch.randn(8, 5, requires_grad=True)
    # The top-K backward fills its zeros into the forward's logits once; the second backward
    # must not find them spent (SimCLR's symmetric path and MoCo's).
    for hard_negatives, bank in ((None, 0), (3, 0), (None, (16, 5)), (3, (16, 5))):
        loss_fn = HardContrastiveLoss(hard_negatives=hard_negatives, memory_bank_size=bank)
        out0.grad = None
        loss = loss_fn(out0, out1)
        loss.backward(retain_graph=True)
        first = out0.grad.clone()
        loss.backward()
        torch.testing.assert_close(out0.grad, 2 * first)


def test_tensor_temperature_gets_the_ntxent_gradient():
    torch.manual_seed(0)
    out0, out1 = torch.randn(6, 5), torch.randn(6, 5)
    grads = []
    plain = lambda temperature: HardContrastiveLoss(temperature, hard_negatives=None)  # noqa: E731
    for make in (NTXentLoss, plain):
        tau = torch.tensor(0.3, requires_grad=True)
        a = out0.clone().requires_grad_(True)
        loss = make(temperature=tau)(a, out1)
        grads.append((loss.detach(), *torch.autograd.grad(loss, [tau, a])))
    for e, a in zip(*grads):
        torch.testing.assert_close(a, e, atol=1e-6, rtol=1e-5)


def _fake_two_ranks(monkeypatch, other0, other1):
    """Pretends to be rank 1 of 2; rank 0 holds ``other0``/``other1`` (no gradient to them)."""
    monkeypatch.setattr(dist, "world_size", lambda: 2)
    monkeypatch.setattr(dist, "rank", lambda: 1)
    others = iter([])

    def gather(x):
        nonlocal others
        # Each loss gathers out0 then out1 once per call.
        try:
            other = next(others)
        except StopIteration:
            others = iter([other0, other1])
            other = next(others)
        return (other, x)

    monkeypatch.setattr(dist, "gather", gather)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_gather_distributed_layout_equals_ntxent_on_rank_one_of_two(monkeypatch, temperature):
    torch.manual_seed(0)
    other0, other1 = torch.randn(4, 6), torch.randn(4, 6)
    other0 = torch.nn.functional.normalize(other0, dim=1)
    other1 = torch.nn.functional.normalize(other1, dim=1)
    _fake_two_ranks(monkeypatch, other0, other1)
    out0, out1 = torch.randn(4, 6), torch.randn(4, 6)
    results = []
    for loss_fn in (
        NTXentLoss(temperature=temperature, gather_distributed=True),
        HardContrastiveLoss(temperature, gather_distributed=True, hard_negatives=None),
    ):
        a = out0.clone().requires_grad_(True)
        b = out1.clone().requires_grad_(True)
        loss = loss_fn(a, b)
        results.append((loss.detach(), *torch.autograd.grad(loss, [a, b])))
    for e, a in zip(*results):
        torch.testing.assert_close(a, e, atol=1e-6, rtol=1e-5)


def _float64_reference(out0, out1, bank, temperature, k, linear):
    """The loss from the paper's formulas, in float64, on explicit similarity lists."""
    z0 = torch.nn.functional.normalize(out0.double(), dim=1)
    z1 = torch.nn.functional.normalize(out1.double(), dim=1)
    if bank is None:  # SimCLR: 2N anchors, the other 2N - 2 samples of both views
        z = torch.cat([z0, z1])
        n = z0.shape[0]
        rows = []
        for i in range(2 * n):
            others = [j for j in range(2 * n) if j not in (i, (i + n) % (2 * n))]
            rows.append((z[i] @ z[(i + n) % (2 * n)], z[i] @ z[others].T))
    else:  # MoCo: N anchors against the bank
        rows = [(z0[i] @ z1[i], z0[i] @ bank.double().T) for i in range(z0.shape[0])]
    losses = []
    for pos, neg in rows:
        if k is not None:
            neg = neg.topk(min(k, neg.numel())).values
        if linear:
            losses.append((-pos + neg.mean()) / temperature)
        else:
            logits = torch.cat([pos.view(1), neg]) / temperature
            losses.append(torch.logsumexp(logits, 0) - pos / temperature)
    return torch.stack(losses).mean()


@pytest.mark.parametrize("memory_bank_size", [0, (20, 6)])
@pytest.mark.parametrize(
    "make, k, linear",
    [
        (lambda size: HardContrastiveLoss(0.2, size, hard_negatives=None), None, False),
        (lambda size: HardContrastiveLoss(0.2, size, hard_negatives=3), 3, False),
        (lambda size: HardSimpleLoss(0.5, size, hard_negatives=3), 3, True),
        (lambda size: SimpleLoss(0.5, size), None, True),
    ],
)
def test_every_loss_and_mode_equals_a_float64_reference(make, k, linear, memory_bank_size):
    torch.manual_seed(0)
    loss_fn = make(memory_bank_size)
    bank = loss_fn.memory_bank.bank.clone() if memory_bank_size else None
    out0 = torch.randn(5, 6, requires_grad=True)
    out1 = torch.randn(5, 6, requires_grad=True)
    loss = loss_fn(out0, out1)
    grads = torch.autograd.grad(loss, [out0, out1])
    a0 = out0.detach().double().requires_grad_(True)
    a1 = out1.detach().double().requires_grad_(True)
    expected = _float64_reference(a0, a1, bank, loss_fn.temperature, k, linear)
    expected_grads = torch.autograd.grad(expected, [a0, a1])
    torch.testing.assert_close(loss.double(), expected, atol=1e-6, rtol=1e-5)
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g.double(), e, atol=1e-6, rtol=1e-5)
