"""The loss registry: built-in names, run-time registration, entry-point plugins, errors."""

from importlib import metadata

import pytest
import torch
from lightly.loss import DCLLoss, DCLWLoss, MACLLoss, NTXentLoss
from torch import nn

from lightly_temperature import (
    ContrastiveLoss,
    DebiasedContrastiveLoss,
    HardContrastiveLoss,
    HardSimpleLoss,
    HCLLoss,
    SimpleLoss,
    available_losses,
    build_loss,
    register_loss,
    registry,
)
from lightly_temperature.registry import ENTRY_POINT_GROUP, get_loss_class, unregister_loss


def fake_entry_points(monkeypatch, **targets):
    """Declares entry points ``name = target`` in the group, as an installed plugin would."""
    points = [metadata.EntryPoint(n, t, ENTRY_POINT_GROUP) for n, t in targets.items()]
    other = metadata.EntryPoint("unrelated", "os:getcwd", "some.other.group")

    def entry_points(**params):
        return [p for p in [*points, other] if p.group == params.get("group")]

    monkeypatch.setattr(metadata, "entry_points", entry_points)


@pytest.fixture(autouse=True)
def _clean_registry(monkeypatch):
    """Each test sees only the built-ins, and no installed plugin."""
    monkeypatch.setattr(registry, "_registered", {})
    fake_entry_points(monkeypatch)


def test_builtin_names_map_to_the_classes():
    assert available_losses() == [
        "contrastive",
        "dcl",
        "dclw",
        "debiased",
        "hard_contrastive",
        "hard_simple",
        "hcl",
        "macl",
        "ntxent",
        "simple",
    ]
    assert get_loss_class("ntxent") is NTXentLoss  # Lightly's own class, reused
    # Lightly's decoupled and model-aware losses, reused as they are
    assert get_loss_class("dcl") is DCLLoss
    assert get_loss_class("dclw") is DCLWLoss
    assert get_loss_class("macl") is MACLLoss
    assert get_loss_class("hcl") is HCLLoss
    assert get_loss_class("contrastive") is ContrastiveLoss
    assert get_loss_class("debiased") is DebiasedContrastiveLoss
    assert get_loss_class("hard_contrastive") is HardContrastiveLoss
    assert get_loss_class("simple") is SimpleLoss
    assert get_loss_class("hard_simple") is HardSimpleLoss
    assert type(build_loss("ntxent")) is NTXentLoss


def test_names_are_case_and_dash_insensitive():
    assert isinstance(build_loss("Hard-Contrastive"), HardContrastiveLoss)
    assert isinstance(build_loss(" HARD_SIMPLE "), HardSimpleLoss)


def test_build_loss_passes_arguments():
    loss = build_loss(
        "hard_contrastive",
        temperature=0.2,
        memory_bank_size=(64, 8),
        gather_distributed=True,
        hard_negatives=7,
    )
    assert (loss.temperature, loss.hard_negatives, loss.gather_distributed) == (0.2, 7, True)
    assert tuple(loss.memory_bank.size) == (64, 8)
    ntxent = build_loss("ntxent", temperature=0.3)
    assert ntxent.temperature == 0.3


def test_built_losses_compute_the_reference_values():
    torch.manual_seed(0)
    out0, out1 = torch.randn(16, 8), torch.randn(16, 8)
    expected = NTXentLoss(temperature=0.3)(out0, out1)
    plain = build_loss("hard_contrastive", temperature=0.3, hard_negatives=None)(out0, out1)
    torch.testing.assert_close(plain, expected)
    assert build_loss("ntxent", temperature=0.3)(out0, out1) == expected


def test_unknown_name_lists_the_known_names():
    with pytest.raises(ValueError, match="unknown loss 'infonce'") as error:
        build_loss("infonce")
    for name in ("hard_contrastive", "hard_simple", "ntxent", "simple"):
        assert name in str(error.value)


@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_bad_names_are_rejected(name):
    with pytest.raises(ValueError, match="loss name must be a non-empty string"):
        build_loss(name)


def test_argument_the_loss_does_not_take():
    with pytest.raises(ValueError, match="does not take the argument.*hard_negatives") as e:
        build_loss("ntxent", hard_negatives=5)
    assert "temperature, memory_bank_size, gather_distributed" in str(e.value)


def test_bad_argument_value_is_the_loss_own_error():
    with pytest.raises(ValueError, match="temperature"):
        build_loss("hard_contrastive", temperature=-1.0)
    with pytest.raises(ValueError, match="hard_negatives"):
        build_loss("hard_simple", hard_negatives=0)


class TinyLoss(nn.Module):
    def __init__(self, temperature: float = 0.5, scale: float = 1.0) -> None:
        super().__init__()
        self.temperature, self.scale = temperature, scale

    def forward(self, out0, out1):
        return self.scale * (out0 - out1).pow(2).mean() / self.temperature


def test_register_loss_as_function_and_decorator():
    assert register_loss("tiny", TinyLoss) is TinyLoss
    assert "tiny" in available_losses()
    loss = build_loss("tiny", scale=2.0)
    assert isinstance(loss, TinyLoss) and loss.scale == 2.0

    @register_loss("Tiny-Two")
    class TinyTwo(TinyLoss):
        pass

    assert isinstance(build_loss("tiny_two"), TinyTwo)
    register_loss("tiny", TinyLoss)  # the same class again is not an error
    unregister_loss("tiny")
    assert "tiny" not in available_losses()


def test_factory_functions_with_kwargs_are_accepted():
    register_loss("tiny_factory", lambda **kwargs: TinyLoss(**kwargs))
    assert build_loss("tiny_factory", temperature=0.1).temperature == 0.1


def test_register_errors():
    register_loss("tiny", TinyLoss)
    with pytest.raises(ValueError, match="already registered.*overwrite=True"):
        register_loss("tiny", HardContrastiveLoss)
    register_loss("tiny", HardContrastiveLoss, overwrite=True)
    assert get_loss_class("tiny") is HardContrastiveLoss
    with pytest.raises(ValueError, match="'ntxent' is built in"):
        register_loss("ntxent", TinyLoss, overwrite=True)
    with pytest.raises(ValueError, match="needs a loss class or callable, got 42"):
        register_loss("number", 42)
    with pytest.raises(ValueError, match="was not registered"):
        unregister_loss("hard_contrastive")


def test_factory_must_return_a_module():
    register_loss("not_a_module", lambda: "loss")
    with pytest.raises(ValueError, match="must build a torch.nn.Module.*returned str"):
        build_loss("not_a_module")


def test_entry_point_plugins_are_listed_and_loaded_lazily(monkeypatch):
    fake_entry_points(
        monkeypatch,
        plugin_hard="lightly_temperature.losses:HardContrastiveLoss",
        broken="a_package_that_is_not_installed:Loss",
        ntxent="test_registry:TinyLoss",  # a plugin cannot shadow a built-in name
    )
    assert available_losses() == sorted([*registry._BUILTIN, "broken", "plugin_hard"])
    loss = build_loss("plugin_hard", hard_negatives=3)
    assert isinstance(loss, HardContrastiveLoss) and loss.hard_negatives == 3
    assert type(build_loss("ntxent")) is NTXentLoss
    # the broken plugin does not stop the others; asking for it names its entry point
    with pytest.raises(
        ValueError,
        match="'broken = a_package_that_is_not_installed:Loss'.*"
        "failed to load: ModuleNotFoundError",
    ):
        build_loss("broken")
    with pytest.raises(ValueError, match="unknown loss 'nope'; known losses: broken, "):
        build_loss("nope")


def test_entry_point_must_be_callable(monkeypatch):
    fake_entry_points(monkeypatch, version="lightly_temperature:__version__")
    with pytest.raises(ValueError, match="must point to a loss class or callable, got '0"):
        build_loss("version")
