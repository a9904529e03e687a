"""One short SimCLR run with both callbacks, on 1 process or as a 2-process CPU DDP (gloo).

Run as a script by tests/test_callbacks_ddp.py (Lightning's DDP launcher re-runs this file for
rank 1); ``run(devices, out_dir)`` is also called in-process for the 1-process reference.
Rank zero writes ``result.json``: the callback's history and the logged metrics.
"""

from __future__ import annotations

import json
import os
import sys

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from lightly_temperature import HardnessMonitor, TemperatureAnalysis
from tests._simclr_digits import TinySimCLR, probe_loader, train_loader
from tests.conftest import make_trainer


def run(devices: int, out_dir: str) -> dict:
    torch.set_num_threads(1)
    pl.seed_everything(0)
    model = TinySimCLR(lr=0.0, batch_norm=False, gather_distributed=True)  # weights stay put
    # 101 samples (odd: the ranks' shares differ in size), augmented views, batches of 16.
    # The backbone's features: at initialisation the head's output is nearly collapsed.
    analysis = TemperatureAnalysis(
        probe_loader(150, batch_size=16),
        max_samples=101,
        seed=5,
        embed=lambda module, x: module.backbone(x),
    )
    monitor = HardnessMonitor(log_every_n_steps=1)
    trainer = make_trainer(
        out_dir,
        1,
        [analysis, monitor],
        CSVLogger(out_dir, name="csv", version=0),
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        limit_train_batches=2,
    )
    trainer.fit(model, train_loader(256, 32))
    result = {
        "history": analysis.history,
        "logged": {
            k: float(v) for k, v in trainer.callback_metrics.items() if "temperature_analysis" in k
        },
        "hardness_steps": [row["step"] for row in monitor.history],
        "world_size": trainer.world_size,
    }
    if trainer.is_global_zero:
        with open(os.path.join(out_dir, "result.json"), "w") as f:
            json.dump(result, f)
    return result


if __name__ == "__main__":
    run(int(sys.argv[1]), sys.argv[2])
