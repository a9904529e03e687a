"""SimCLR (or MoCo) from the command line with Lightning's LightningCLI, on the digits.

The loss is chosen by arguments, like any other hyperparameter:

    python examples/lightning_cli.py fit --config examples/lightning_cli_simclr.yaml
    python examples/lightning_cli.py fit --config examples/lightning_cli_simclr.yaml \\
        --model.temperature 0.3 --model.loss hard_contrastive --model.hard_negatives 0.0819
    python examples/lightning_cli.py fit --config examples/lightning_cli_simclr.yaml \\
        --model.loss ntxent --model.hard_negatives default
    python examples/lightning_cli.py fit --help      # every argument, with its type

``--model.temperature`` is a float (default: the loss's own), ``--model.hard_negatives`` an int
K, a fraction alpha, ``null`` (all negatives) or ``default`` (the loss's own). The config
attaches ``TemperatureAnalysis`` and ``HardnessMonitor`` as trainer callbacks; the probe is the
data module's validation loader. For MoCo, build the CLI with ``MoCo`` instead of ``SimCLR``
(``main(model_class=MoCo)``).
"""

from __future__ import annotations

from collections.abc import Sequence

from pytorch_lightning.cli import LightningCLI

from lightly_temperature.data import DigitsDataModule
from lightly_temperature.models import SimCLR


def main(args: Sequence[str] | None = None, model_class: type = SimCLR) -> LightningCLI:
    """Runs LightningCLI on ``args`` (default: the command line)."""
    return LightningCLI(
        model_class,
        DigitsDataModule,
        args=None if args is None else list(args),
        save_config_kwargs={"overwrite": True},
    )


if __name__ == "__main__":
    main()
