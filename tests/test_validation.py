"""Every bad argument raises ValueError naming the argument and its value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightly_temperature import (
    HardContrastiveLoss,
    HardSimpleLoss,
    SimpleLoss,
    build_loss,
    contrastive_loss,
    relative_penalties,
    simple_loss,
)
from lightly_temperature._validation import (
    check_choice,
    check_int,
    check_ints,
    check_non_negative,
    check_positive,
    check_unit_interval,
)

CLASSES = [HardContrastiveLoss, SimpleLoss, HardSimpleLoss]


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("temperature", [0.0, -0.5, float("nan"), float("inf"), "0.5", True])
def test_bad_temperature_in_constructor(cls, temperature):
    with pytest.raises(ValueError, match=r"temperature.*" + repr(temperature)[:3]):
        cls(temperature=temperature)


@pytest.mark.parametrize("cls", CLASSES)
def test_bad_temperature_set_between_steps(cls):
    loss_fn = cls()
    with pytest.raises(ValueError, match=r"temperature.*-1"):
        loss_fn.temperature = -1.0
    loss_fn.temperature = 0.2  # a valid change is accepted
    assert loss_fn.temperature == 0.2


@pytest.mark.parametrize("cls", [HardContrastiveLoss, HardSimpleLoss])
@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        (0, r"hard_negatives.*>= 1.*0"),
        (-3, r"hard_negatives.*-3"),
        (0.0, r"hard_negatives.*0\.0"),
        (1.5, r"hard_negatives.*1\.5"),
        (-0.1, r"hard_negatives.*-0\.1"),
        (float("nan"), r"hard_negatives.*nan"),
        (True, r"hard_negatives.*True"),
        ("4", r"hard_negatives.*'4'"),
    ],
)
def test_bad_hard_negatives(cls, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        cls(hard_negatives=value)


def test_bad_hard_negatives_in_functional_core():
    pos, neg = torch.zeros(2), torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"hard_negatives.*0"):
        contrastive_loss(pos, neg, 0.5, hard_negatives=0)
    with pytest.raises(ValueError, match=r"hard_negatives.*2\.0"):
        simple_loss(pos, neg, hard_negatives=2.0)
    with pytest.raises(ValueError, match=r"temperature.*0"):
        relative_penalties(neg, 0)
    with pytest.raises(ValueError, match=r"negatives.*\(3, 3\)"):
        contrastive_loss(pos, torch.zeros(3, 3), 0.5)
    with pytest.raises(ValueError, match=r"reduction.*'avg'"):
        contrastive_loss(pos, neg, 0.5, reduction="avg")


@pytest.mark.parametrize("cls", CLASSES)
def test_out0_out1_shapes(cls):
    loss_fn = cls()
    with pytest.raises(
        ValueError, match=r"out0 and out1 must have the same shape.*\(4, 8\).*\(5, 8\)"
    ):
        loss_fn(torch.randn(4, 8), torch.randn(5, 8))
    with pytest.raises(ValueError, match=r"out0 must be 2-D.*\(4, 8, 2\)"):
        loss_fn(torch.randn(4, 8, 2), torch.randn(4, 8, 2))
    with pytest.raises(ValueError, match=r"out1 must be 2-D.*\(4,\)"):
        loss_fn(torch.randn(4, 8), torch.randn(4))


@pytest.mark.parametrize("cls", CLASSES)
def test_memory_bank_dim_mismatch(cls):
    loss_fn = cls(memory_bank_size=(32, 16))
    with pytest.raises(ValueError, match=r"memory_bank_size=\(32, 16\).*16-d.*8-d"):
        loss_fn(torch.randn(4, 8), torch.randn(4, 8))


@pytest.mark.parametrize("cls", CLASSES)
def test_memory_bank_size_as_plain_int_is_rejected_like_lightly(cls):
    with pytest.raises(ValueError, match="size=4096"):
        cls(memory_bank_size=4096)


def test_bad_negative_weight():
    with pytest.raises(ValueError, match=r"negative_weight.*-1"):
        SimpleLoss(negative_weight=-1.0)


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (check_positive, 0, "lr must be a finite float > 0, got 0"),
        (check_positive, float("inf"), "lr must be a finite float > 0, got inf"),
        (check_positive, True, "lr must be a finite float > 0, got True"),
        (check_non_negative, -1e-9, "lr must be a finite float >= 0, got -1e-09"),
        (check_non_negative, float("nan"), "lr must be a finite float >= 0, got nan"),
        (check_non_negative, "0", "lr must be a finite float >= 0, got '0'"),
        (check_unit_interval, 1.5, r"lr must be a float in \[0, 1\], got 1.5"),
        (check_unit_interval, -0.0001, r"lr must be a float in \[0, 1\], got -0.0001"),
        (check_unit_interval, False, r"lr must be a float in \[0, 1\], got False"),
    ],
)
def test_number_checks_name_the_argument_and_its_value(check, value, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        check(value, "lr")


def test_number_checks_return_floats_at_their_bounds():
    assert check_positive(3, "lr") == 3.0 and isinstance(check_positive(3, "lr"), float)
    assert check_non_negative(0, "weight_decay") == 0.0
    assert (check_unit_interval(0, "m"), check_unit_interval(1, "m")) == (0.0, 1.0)


def test_int_choice_and_sequence_checks():
    assert check_int(2, "batch_size", 2) == 2 and check_int(None, "threads", 1, True) is None
    with pytest.raises(ValueError, match=r"^batch_size must be an int >= 2, got 1$"):
        check_int(1, "batch_size", 2)
    with pytest.raises(ValueError, match=r"^epochs must be an int >= 1, got 2.0$"):
        check_int(2.0, "epochs", 1)
    with pytest.raises(ValueError, match=r"^threads must be None or an int >= 1, got True$"):
        check_int(True, "threads", 1, optional=True)
    assert check_ints([160, 190], "lr_milestones", 1) == (160, 190)
    assert check_ints((), "lr_milestones", 1) == ()
    with pytest.raises(ValueError, match=r"^lr_milestones must be ints >= 1, got \[160, 0\]$"):
        check_ints([160, 0], "lr_milestones", 1)
    assert check_choice("sgd", "optimizer", ("sgd", "adamw")) == "sgd"
    with pytest.raises(ValueError, match=r"^optimizer must be one of sgd, adamw, got 'adam'$"):
        check_choice("adam", "optimizer", ("sgd", "adamw"))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_tensor_temperatures_are_checked_like_numbers(bad):
    with pytest.raises(ValueError, match=r"temperature must be a finite float > 0, got"):
        HardContrastiveLoss(temperature=torch.tensor(bad))
    with pytest.raises(ValueError, match=r"temperature must be a finite float > 0, got"):
        contrastive_loss(torch.tensor([0.5]), torch.tensor([[0.1]]), temperature=torch.tensor(bad))
    with pytest.raises(ValueError, match="temperature must be a floating tensor"):
        HardContrastiveLoss(temperature=torch.tensor(1))


def test_a_learnable_temperature_pushed_below_zero_fails_at_the_next_forward():
    loss_fn = HardContrastiveLoss(temperature=torch.nn.Parameter(torch.tensor(0.3)))
    out0, out1 = torch.randn(4, 3), torch.randn(4, 3)
    loss_fn(out0, out1)
    with torch.no_grad():
        loss_fn.temperature.fill_(-0.5)  # as an optimizer step could
    with pytest.raises(ValueError, match=r"temperature must be a finite float > 0, got -0.5"):
        loss_fn(out0, out1)


def test_numpy_numbers_are_accepted_where_python_numbers_are():
    out0, out1 = torch.randn(6, 4), torch.randn(6, 4)
    expected = HardContrastiveLoss(temperature=0.5, hard_negatives=5)(out0, out1)
    loss_fn = HardContrastiveLoss(temperature=np.float32(0.5), hard_negatives=np.int64(5))
    assert loss_fn.hard_negatives == 5 and type(loss_fn.hard_negatives) is int
    assert torch.equal(loss_fn(out0, out1), expected)
    fraction = HardContrastiveLoss(hard_negatives=np.float32(0.25))
    assert fraction.hard_negatives == 0.25 and type(fraction.hard_negatives) is float
    assert HardSimpleLoss(hard_negatives=np.int32(3)).hard_negatives == 3
    assert build_loss("hard_contrastive", temperature=np.float64(0.2)).temperature == 0.2
    for bad in (np.int64(0), np.float32(1.5), np.bool_(True)):
        with pytest.raises(ValueError, match="hard_negatives"):
            HardContrastiveLoss(hard_negatives=bad)


def _functional_edges():
    from lightly_temperature.functional import info_nce_from_logits, top_k_negatives

    negatives, positive = torch.randn(4, 6), torch.randn(4)
    return [
        (lambda: top_k_negatives(negatives, 0), "k must be an int >= 1, got 0"),
        (lambda: top_k_negatives(negatives, -1), "k must be an int >= 1, got -1"),
        (lambda: top_k_negatives(torch.randn(6), 2), "negatives must be 2-D .* shape \\(6,\\)"),
        (lambda: top_k_negatives(torch.tensor(1.0), 2), "negatives must be 2-D .* shape \\(\\)"),
        (
            lambda: top_k_negatives(negatives, 2, num_negatives=7),
            "num_negatives must be None or an int in \\[1, 6\\] .*, got 7",
        ),
        (
            lambda: contrastive_loss(positive, negatives, 0.5, 2, num_negatives=9),
            "num_negatives must be None or an int in \\[1, 6\\] .*, got 9",
        ),
        (
            lambda: simple_loss(positive, negatives, num_negatives=9),
            "num_negatives must be None or an int in \\[1, 6\\] .*, got 9",
        ),
        (
            lambda: info_nce_from_logits(torch.randn(4), torch.randn(4)),
            "negative_logits must be 2-D .* shape \\(4,\\)",
        ),
        (
            lambda: info_nce_from_logits(torch.tensor(1.0), torch.tensor(1.0)),
            "positive_logits must be 1-D \\(anchors,\\), got shape \\(\\)",
        ),
        (
            lambda: contrastive_loss(positive, torch.randn(4, 0)),
            "at least one column, got shape \\(4, 0\\)",
        ),
        (
            lambda: contrastive_loss(positive.bool(), negatives),
            "positive must be a real floating-point tensor, got dtype torch.bool",
        ),
        (
            lambda: relative_penalties(torch.randn(2, 3, 4), 0.5),
            "negatives must be 1-D .* or 2-D .*, got shape \\(2, 3, 4\\)",
        ),
        (lambda: relative_penalties(torch.tensor(1.0), 0.5), "got shape \\(\\)"),
        (
            lambda: relative_penalties(torch.randn(3, 4, dtype=torch.cfloat), 0.5),
            "negatives must be a real floating-point tensor, got dtype torch.complex64",
        ),
    ]


@pytest.mark.parametrize("index", range(14))
def test_functional_edges_raise_value_errors_naming_the_argument(index):
    call, message = _functional_edges()[index]
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize(
    ("out", "message"),
    [
        (torch.randn(4, 3, dtype=torch.cfloat), "out0 must be a real floating-point tensor, got"),
        (torch.ones(4, 3, dtype=torch.bool), "dtype torch.bool"),
        (torch.ones(4, 3, dtype=torch.long), "dtype torch.int64"),
        (torch.randn(4, 0), "out0 must have at least one dimension, got shape \\(4, 0\\)"),
    ],
)
def test_losses_refuse_embeddings_that_are_not_real_vectors(cls, out, message):
    with pytest.raises(ValueError, match=message):
        cls()(out, out.clone())


def test_effective_rank_of_non_finite_embeddings_is_nan_like_the_other_metrics():
    from lightly_temperature.metrics import effective_rank, tolerance, uniformity

    z = torch.randn(20, 5)
    z[0, 0] = float("nan")
    assert torch.isnan(effective_rank(z))
    assert torch.isnan(uniformity(z)) and torch.isnan(tolerance(z, torch.arange(20) % 3))
    z[0, 0] = float("inf")
    assert torch.isnan(effective_rank(z))
