"""TemperatureAnalysis and HardnessMonitor in real short SimCLR runs on digits."""

from __future__ import annotations

import math
import sys
import types
import warnings

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from lightly_temperature import (
    HardContrastiveLoss,
    HardnessMonitor,
    TemperatureAnalysis,
    alignment,
    effective_rank,
    hardness_statistics,
    positive_and_top_negative_similarities,
    std_of_l2_normalized,
    tolerance,
    uniformity,
)
from lightly_temperature.callbacks._outputs import log_histograms
from lightly_temperature.figures import SimilarityFigure, save_similarity_figure
from lightly_temperature.losses import SimilarityBatch
from tests._simclr_digits import TinySimCLR, digits_tensors, probe_loader, train_loader
from tests.conftest import make_trainer, read_csv

KEYS = [
    "temperature_analysis/uniformity",
    "temperature_analysis/alignment",
    "temperature_analysis/tolerance",
    "temperature_analysis/positive_similarity",
    "temperature_analysis/top10_negative_similarity",
    "temperature_analysis/effective_rank",
    "temperature_analysis/std_of_l2_normalized",
]
HARDNESS_KEYS = [
    "hardness/positive_similarity",
    "hardness/top10_negative_similarity",
    "hardness/positive_probability",
    "hardness/penalty_entropy",
    "hardness/temperature",
]


# --- a real run with both callbacks, two loggers, and a resume ---------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    pl.seed_everything(0, workers=True)

    def run(max_epochs, ckpt_path=None, csv_version=0):
        analysis = TemperatureAnalysis(probe_loader(120), every_n_epochs=1, max_samples=100)
        monitor = HardnessMonitor()
        checkpoint = ModelCheckpoint(dirpath=str(root / "ckpt"), save_last=True)
        loggers = [
            TensorBoardLogger(str(root), name="tb", version=0),
            CSVLogger(str(root), name="csv", version=csv_version),
        ]
        trainer = make_trainer(
            root,
            max_epochs,
            [analysis, monitor, checkpoint],
            loggers,
            log_every_n_steps=2,
            limit_train_batches=3,
        )
        model = TinySimCLR(temperature=0.5, hard_negatives=0.5)
        trainer.fit(model, train_loader(256, 64), ckpt_path=ckpt_path)
        return trainer, analysis, monitor, model

    first = run(2)
    first_history = [dict(row) for row in first[1].history]
    first_hardness = [dict(row) for row in first[2].history]
    first_metrics = {k: float(v) for k, v in first[0].callback_metrics.items()}
    # Same TensorBoard directory (history.csv is rewritten there), a new CSVLogger version.
    resumed = run(3, ckpt_path=str(root / "ckpt" / "last.ckpt"), csv_version=1)
    return types.SimpleNamespace(
        root=root,
        first=first,
        first_history=first_history,
        first_hardness=first_hardness,
        first_metrics=first_metrics,
        resumed=resumed,
    )


def test_keys_are_logged_with_finite_values(trained):
    metrics = trained.first_metrics
    for key in KEYS:
        assert key in metrics, key
        assert math.isfinite(metrics[key]), (key, metrics[key])
    assert 0 < metrics["temperature_analysis/uniformity"] <= 4 * 100 / 99
    assert 0 <= metrics["temperature_analysis/alignment"] <= 4
    assert 1 <= metrics["temperature_analysis/effective_rank"] <= 16
    # Fig. 8 quantities: the positive is more similar than the hardest negatives on average.
    assert (
        metrics["temperature_analysis/positive_similarity"]
        > metrics["temperature_analysis/top10_negative_similarity"] - 0.5
    )


def test_csv_logger_receives_both_callbacks(trained):
    rows = read_csv(trained.root / "csv" / "version_0" / "metrics.csv")
    columns = set(rows[0])
    assert set(KEYS) <= columns
    assert set(HARDNESS_KEYS) <= columns
    epoch_rows = [r for r in rows if r["temperature_analysis/uniformity"]]
    assert [int(r["epoch"]) for r in epoch_rows] == [0, 1]
    resumed_rows = read_csv(trained.root / "csv" / "version_1" / "metrics.csv")
    epoch_rows = [r for r in resumed_rows if r["temperature_analysis/uniformity"]]
    assert [int(r["epoch"]) for r in epoch_rows] == [2]
    hardness_rows = [r for r in rows if r["hardness/temperature"]]
    assert hardness_rows and all(float(r["hardness/temperature"]) == 0.5 for r in hardness_rows)
    for r in hardness_rows:
        assert 0 < float(r["hardness/positive_probability"]) < 1
        # 64 samples -> 126 negatives, hard_negatives=0.5 -> K = 63: entropy in [0, log 63]
        assert 0 <= float(r["hardness/penalty_entropy"]) <= math.log(63) + 1e-5


def test_pngs_histograms_and_history_csv_exist(trained):
    out_dir = trained.root / "tb" / "version_0" / "temperature_analysis"
    pngs = sorted(p.name for p in out_dir.glob("*.png"))
    assert pngs == [
        "similarities_epoch0000_step0000003.png",
        "similarities_epoch0001_step0000006.png",
        "similarities_epoch0002_step0000009.png",
    ]
    assert all((out_dir / p).stat().st_size > 1000 for p in pngs)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(
        str(trained.root / "tb" / "version_0"),
        size_guidance={"histograms": 0, "images": 0},  # keep all
    ).Reload()
    tags = events.Tags()["histograms"]
    assert "temperature_analysis/positive_similarity_hist" in tags
    assert "temperature_analysis/top10_negative_similarity_hist" in tags
    steps = [e.step for e in events.Histograms("temperature_analysis/positive_similarity_hist")]
    assert steps == [3, 6, 9]
    # The figure reaches TensorBoard as an image, once per evaluation: the PNG's pixels.
    assert events.Tags()["images"] == ["temperature_analysis/similarities"]
    images = events.Images("temperature_analysis/similarities")
    assert [image.step for image in images] == [3, 6, 9]
    from io import BytesIO

    from PIL import Image

    for image, png in zip(images, pngs):
        logged = np.asarray(Image.open(BytesIO(image.encoded_image_string)).convert("RGB"))
        written = np.asarray(Image.open(out_dir / png).convert("RGB"))
        assert logged.shape == written.shape and np.array_equal(logged, written)


def test_resumed_run_continues_the_history(trained):
    analysis, monitor = trained.resumed[1], trained.resumed[2]
    assert [r["epoch"] for r in analysis.history] == [0, 1, 2]
    assert analysis.history[:2] == trained.first_history
    assert monitor.history[: len(trained.first_hardness)] == trained.first_hardness
    assert len(monitor.history) > len(trained.first_hardness)
    rows = read_csv(trained.root / "tb" / "version_0" / "temperature_analysis" / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [int(r["num_samples"]) for r in rows] == [100, 100, 100]
    for row, saved in zip(rows[:2], trained.first_history):
        assert float(row["uniformity"]) == pytest.approx(saved["uniformity"], rel=1e-6)


# --- exactness of the metric pass ------------------------------------------------------------


def _direct_metrics(model, loader):
    model.eval()
    z0s, z1s, labels = [], [], []
    with torch.no_grad():
        for (x0, x1), y in loader:
            z0s.append(model(x0))
            z1s.append(model(x1))
            labels.append(y)
    z0, z1, y = torch.cat(z0s), torch.cat(z1s), torch.cat(labels)
    pos, neg = positive_and_top_negative_similarities(z0, z1, k=10)
    return {
        "uniformity": uniformity(z0).item(),
        "alignment": alignment(z0, z1).item(),
        "tolerance": tolerance(z0, y).item(),
        "positive_similarity": pos.mean().item(),
        "top10_negative_similarity": neg.mean().item(),
        "effective_rank": effective_rank(z0).item(),
        "std_of_l2_normalized": std_of_l2_normalized(z0).item(),
    }


def test_callback_values_equal_a_direct_computation(tmp_path):
    pl.seed_everything(1)
    probe = probe_loader(90, batch_size=32, augmented=False)
    analysis = TemperatureAnalysis(probe, save_figures=False, save_csv=False)
    model = TinySimCLR(batch_norm=False)
    trainer = make_trainer(tmp_path, 1, [analysis], limit_train_batches=2)
    trainer.fit(model, train_loader(128, 64))
    expected = _direct_metrics(model, probe)
    got = analysis.history[-1]
    assert got["num_samples"] == 90
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_eval_mode_restored_per_module_and_rng_untouched(tmp_path):
    model = TinySimCLR(batch_norm=True)
    seen_modes = []

    def embed(module, x):
        seen_modes.append((module.training, module.projection_head.training))
        return module(x)

    class FreezeHead(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            pl_module.projection_head.layers[1].eval()  # a BatchNorm kept frozen by the user

    class Check(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            self.state_before = torch.random.get_rng_state()

    class After(pl.Callback):  # runs after TemperatureAnalysis: callbacks run in list order
        def on_train_epoch_end(self, trainer, pl_module):
            self.state_after = torch.random.get_rng_state()
            self.modes = {name: m.training for name, m in pl_module.named_modules()}

    check, after = Check(), After()
    analysis = TemperatureAnalysis(probe_loader(60), embed=embed, save_figures=False)
    trainer = make_trainer(
        tmp_path, 1, [FreezeHead(), check, analysis, after], limit_train_batches=1
    )
    trainer.fit(model, train_loader(128, 64))
    assert len(analysis.history) == 1
    assert seen_modes and all(mode == (False, False) for mode in seen_modes)
    assert after.modes[""] and after.modes["backbone"] and after.modes["projection_head"]
    assert not after.modes["projection_head.layers.1"]  # the user's eval() survives
    assert sum(not training for training in after.modes.values()) == 1
    assert torch.equal(after.state_after, check.state_before)  # training's RNG is untouched


def test_every_n_steps_writes_to_loggers_at_those_steps(tmp_path):
    analysis = TemperatureAnalysis(
        probe_loader(40), every_n_epochs=None, every_n_steps=2, metrics=("uniformity",)
    )
    logger = CSVLogger(str(tmp_path), name="csv", version=0)
    trainer = make_trainer(
        tmp_path, 1, [analysis], logger, limit_train_batches=4, log_every_n_steps=50
    )
    trainer.fit(TinySimCLR(), train_loader(256, 64))
    assert [r["step"] for r in analysis.history] == [2, 4]
    rows = [
        r
        for r in read_csv(tmp_path / "csv" / "version_0" / "metrics.csv")
        if r.get("temperature_analysis/uniformity")
    ]
    assert [int(r["step"]) for r in rows] == [1, 3]  # Lightning's 0-based logging steps
    assert [float(r["temperature_analysis/uniformity"]) for r in rows] == pytest.approx(
        [r["uniformity"] for r in analysis.history]
    )


# --- bad input -----------------------------------------------------------------------------


def test_probe_without_labels_skips_tolerance_with_one_warning(tmp_path):
    probe = probe_loader(40, with_labels=False)
    analysis = TemperatureAnalysis(probe, save_figures=False, save_csv=False)
    trainer = make_trainer(tmp_path, 2, [analysis], limit_train_batches=1)
    with pytest.warns(UserWarning, match="no labels") as record:
        trainer.fit(TinySimCLR(), train_loader(128, 64))
    assert sum("no labels" in str(w.message) for w in record) == 1
    assert len(analysis.history) == 2
    for row in analysis.history:
        assert math.isnan(row["tolerance"])
        assert math.isfinite(row["uniformity"]) and math.isfinite(row["alignment"])


def test_single_view_probe_skips_alignment_and_similarities(tmp_path):
    probe = probe_loader(40, num_views=1)
    analysis = TemperatureAnalysis(probe, save_figures=False, save_csv=False)
    trainer = make_trainer(tmp_path, 1, [analysis], limit_train_batches=1)
    with pytest.warns(UserWarning, match="one view"):
        trainer.fit(TinySimCLR(), train_loader(128, 64))
    row = analysis.history[-1]
    assert math.isnan(row["alignment"]) and math.isnan(row["positive_similarity"])
    assert math.isfinite(row["tolerance"]) and math.isfinite(row["uniformity"])


def test_non_finite_embeddings_log_nan_and_training_goes_on(tmp_path):
    def embed(module, x):
        z = module(x).clone()
        z[3, 0] = float("nan")  # one bad value in each probe batch
        return z

    analysis = TemperatureAnalysis(probe_loader(40), embed=embed)
    logger = CSVLogger(str(tmp_path), name="csv", version=0)
    trainer = make_trainer(tmp_path, 2, [analysis], logger, limit_train_batches=1)
    with pytest.warns(UserWarning, match="NaN or inf"):
        trainer.fit(TinySimCLR(), train_loader(128, 64))
    assert trainer.current_epoch == 2  # both epochs ran
    metrics = {k: v for k, v in analysis.history[-1].items() if not k.startswith("temperature")}
    assert all(math.isnan(v) for v in metrics.values() if isinstance(v, float))
    assert analysis.history[-1]["temperature"] == 0.5  # the loss's τ, recorded as it is
    assert math.isnan(float(trainer.callback_metrics["temperature_analysis/uniformity"]))


def test_a_collapse_is_flagged_in_the_log(tmp_path):
    def embed(module, x):  # every probe image near one direction: a collapsed embedding
        z = module(x)
        return torch.ones_like(z) + 0.01 * z

    analysis = TemperatureAnalysis(probe_loader(40), embed=embed)
    trainer = make_trainer(tmp_path, 1, [analysis], limit_train_batches=1)
    with pytest.warns(UserWarning, match=r"embeddings are collapsed at epoch 0.*spread 0\.0"):
        trainer.fit(TinySimCLR(), train_loader(128, 64))
    assert analysis.history[-1]["embedding_spread"] < 0.05
    # Raw pixels spread enough (about 0.6 here). An untrained projection head does not: it
    # maps every image near one direction (spread about 0.05), and is flagged as well.
    pixels = TemperatureAnalysis(probe_loader(40), embed=lambda module, x: x.flatten(1) - 0.3)
    trainer = make_trainer(tmp_path, 1, [pixels], limit_train_batches=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*collapsed.*")
        trainer.fit(TinySimCLR(), train_loader(128, 64))
    assert pixels.history[-1]["embedding_spread"] > 0.25


def test_empty_probe_is_an_error_at_setup(tmp_path):
    empty = DataLoader(TensorDataset(torch.zeros(0, 1, 8, 8)), batch_size=4)
    with pytest.raises(ValueError, match="dataloader is empty"):
        TemperatureAnalysis(empty)
    analysis = TemperatureAnalysis()  # falls back to the validation loader: empty too
    trainer = make_trainer(tmp_path, 1, [analysis], limit_train_batches=1)
    with pytest.raises(ValueError, match="the probe dataloader is empty"):
        trainer.fit(TinySimCLR(), train_loader(128, 64), val_dataloaders=empty)


def test_large_probe_is_subsampled_with_a_fixed_seed(tmp_path):
    probe = probe_loader(300, batch_size=64, augmented=False)
    a, b, c = (
        TemperatureAnalysis(probe, max_samples=77, seed=s, save_figures=False, save_csv=False)
        for s in (3, 3, 4)
    )
    model = TinySimCLR(lr=0.0, batch_norm=False)  # unchanged by training
    make_trainer(tmp_path, 1, [a, c], limit_train_batches=1).fit(model, train_loader(128, 64))
    make_trainer(tmp_path, 1, [b], limit_train_batches=1).fit(model, train_loader(128, 64))
    assert a.history[-1]["num_samples"] == 77
    assert a.history[-1]["uniformity"] == b.history[-1]["uniformity"]
    assert a.history[-1]["uniformity"] != c.history[-1]["uniformity"]


def test_validation_loader_is_the_default_probe(tmp_path):
    analysis = TemperatureAnalysis(save_figures=False, save_csv=False)
    trainer = make_trainer(tmp_path, 1, [analysis], limit_train_batches=1, limit_val_batches=0)
    trainer.fit(TinySimCLR(), train_loader(128, 64), val_dataloaders=probe_loader(50))
    assert analysis.history[-1]["num_samples"] == 50


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"every_n_epochs": -1}, "every_n_epochs"),
        ({"every_n_steps": 0}, "every_n_steps"),
        ({"max_samples": 1}, "max_samples"),
        ({"metrics": ("uniformity", "accuracy")}, "metrics"),
        ({"top_k": 0}, "top_k"),
        ({"embed": 3}, "embed"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TemperatureAnalysis(probe_loader(10), **kwargs)


# --- HardnessMonitor ---------------------------------------------------------------------------


@pytest.mark.parametrize("hard_negatives", [5, 12, None])  # K < k, K > k, all 14 negatives
def test_hardness_statistics_match_a_reference(hard_negatives):
    torch.manual_seed(0)
    loss_fn = HardContrastiveLoss(temperature=0.3, hard_negatives=hard_negatives)
    out0, out1 = torch.randn(8, 6), torch.randn(8, 6)
    loss = loss_fn(out0, out1)
    stats = hardness_statistics(loss_fn.similarities(out0, out1), hard_negatives, k=10)
    z = F.normalize(torch.cat([out0, out1]), dim=1)
    sims = z @ z.T
    n, i = 8, torch.arange(8)
    pos = torch.cat([sims[i, i + n], sims[i + n, i]])
    mask = ~torch.eye(2 * n, dtype=torch.bool)
    mask[torch.arange(n), torch.arange(n) + n] = False
    mask[torch.arange(n) + n, torch.arange(n)] = False
    negs = sims[mask].reshape(2 * n, 2 * n - 2)
    used = negs.topk(hard_negatives or negs.shape[1], dim=1).values
    top10 = negs.topk(10, dim=1).values
    p_pos = torch.exp(pos / 0.3) / (torch.exp(pos / 0.3) + torch.exp(used / 0.3).sum(1))
    r = torch.softmax(used / 0.3, dim=1)
    entropy = -(r * r.log()).sum(1)
    assert stats["positive_similarity"].item() == pytest.approx(pos.mean().item(), abs=1e-6)
    assert stats["top10_negative_similarity"].item() == pytest.approx(top10.mean().item(), abs=1e-6)
    assert stats["positive_probability"].item() == pytest.approx(p_pos.mean().item(), rel=1e-5)
    # The loss is the mean of -log P_ii over the anchors.
    assert loss.item() == pytest.approx(-p_pos.log().mean().item(), rel=1e-5)
    assert stats["penalty_entropy"].item() == pytest.approx(entropy.mean().item(), rel=1e-5)
    assert stats["temperature"].item() == pytest.approx(0.3)


def test_hardness_entropy_limits():
    # Equal negatives: entropy log K; one dominant negative at a tiny tau: entropy ~ 0.
    negatives = torch.tensor([[0.2, 0.2, 0.2, 0.2]])
    batch = SimilarityBatch(torch.tensor([0.9]), negatives, 4, 0.5)
    assert hardness_statistics(batch)["penalty_entropy"].item() == pytest.approx(math.log(4))
    negatives = torch.tensor([[0.9, 0.2, float("-inf"), 0.1]])
    batch = SimilarityBatch(torch.tensor([0.9]), negatives, 3, 0.01)
    stats = hardness_statistics(batch, k=10)
    assert stats["penalty_entropy"].item() == pytest.approx(0.0, abs=1e-6)
    assert stats["top10_negative_similarity"].item() == pytest.approx((0.9 + 0.2 + 0.1) / 3)
    assert stats["positive_probability"].item() == pytest.approx(0.5, abs=1e-6)


def test_hardness_monitor_computes_only_on_logging_steps(tmp_path, monkeypatch):
    import lightly_temperature.callbacks.hardness_monitor as hm

    calls = []
    real = hm.hardness_statistics
    monkeypatch.setattr(hm, "hardness_statistics", lambda *a, **k: calls.append(1) or real(*a, **k))
    monitor = HardnessMonitor(log_every_n_steps=3)
    logger = CSVLogger(str(tmp_path), name="csv", version=0)
    trainer = make_trainer(
        tmp_path, 1, [monitor], logger, limit_train_batches=7, log_every_n_steps=1
    )
    model = TinySimCLR()
    hooked = []  # whether the monitor watches the loss's calls, step by step

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            hooked.append(len(model.criterion._forward_pre_hooks))

    trainer.callbacks.append(Probe())  # runs after the monitor's hook of the same step
    trainer.fit(model, train_loader(512, 64))
    assert [row["step"] for row in monitor.history] == [2, 5]
    assert len(calls) == 2
    # The loss is watched only on the logged steps: the others pay nothing.
    assert hooked == [0, 0, 1, 0, 0, 1, 0]
    rows = [
        r
        for r in read_csv(tmp_path / "csv" / "version_0" / "metrics.csv")
        if r.get("hardness/temperature")
    ]
    assert [int(r["step"]) for r in rows] == [2, 5]
    assert not model.criterion._forward_pre_hooks  # nothing left on the loss


def test_hardness_monitor_needs_a_contrastive_loss(tmp_path):
    class NoLoss(TinySimCLR):
        def __init__(self):
            super().__init__()
            del self.criterion

    trainer = make_trainer(tmp_path, 1, [HardnessMonitor()], limit_train_batches=1)
    with pytest.raises(ValueError, match="HardnessMonitor found no NTXentLoss or lightly_temp"):
        trainer.fit(NoLoss(), train_loader(128, 64))
    with pytest.raises(ValueError, match="log_every_n_steps"):
        HardnessMonitor(log_every_n_steps=0)
    with pytest.raises(ValueError, match="loss must be"):
        HardnessMonitor(loss=torch.nn.MSELoss())


# --- W&B histograms by duck typing (wandb is not installed) -----------------------------------


def test_wandb_histograms_by_duck_typing(monkeypatch):
    logged = []

    class Histogram:
        def __init__(self, values):
            self.values = values

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Histogram=Histogram))

    class WandbLogger:
        experiment = types.SimpleNamespace(log=logged.append)

    trainer = types.SimpleNamespace(loggers=[WandbLogger()])
    log_histograms(trainer, {"a": torch.tensor([0.5, -0.25])}, step=7)
    assert logged[0]["trainer/global_step"] == 7
    assert logged[0]["a"].values.tolist() == [0.5, -0.25]


def test_digits_helper_is_real_data():
    images, labels = digits_tensors(50)
    assert images.shape == (50, 1, 8, 8) and labels.unique().numel() == 10


def test_iterable_probe_takes_the_first_max_samples(tmp_path):
    from torch.utils.data import IterableDataset

    from lightly_temperature.data import digits_dataset
    from tests._simclr_digits import FIXED_VIEWS

    dataset = digits_dataset(indices=range(100), augment=FIXED_VIEWS)

    class Stream(IterableDataset):  # LightlyDataset's (views, label, filename) items
        def __iter__(self):
            return ((*dataset[i], f"{i}.png") for i in range(len(dataset)))

    probe = DataLoader(Stream(), batch_size=16)
    analysis = TemperatureAnalysis(probe, max_samples=40, save_figures=False, save_csv=False)
    model = TinySimCLR(lr=0.0, batch_norm=False)
    make_trainer(tmp_path, 1, [analysis], limit_train_batches=1).fit(model, train_loader(128, 64))
    assert analysis.history[-1]["num_samples"] == 40
    first40 = DataLoader(digits_dataset(indices=range(40), augment=FIXED_VIEWS), batch_size=40)
    assert analysis.history[-1]["uniformity"] == pytest.approx(
        _direct_metrics(model, first40)["uniformity"], rel=1e-5
    )


def _reference_similarity_png(path, positive, negatives, title, k):
    """The figure drawn from scratch with ax.hist, as the callback first did."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3.5))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    bins = [i / 50 - 1 for i in range(101)]
    top = 0.0
    for values, label in ((positive, "positive"), (negatives.reshape(-1), f"top-{k} negatives")):
        density, _, _ = ax.hist(
            values.numpy(), bins=bins, density=True, alpha=0.6, histtype="stepfilled", label=label
        )
        top = max(top, float(density.max()))
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.set_xlim(-1, 1)
    ax.set_ylim(0, top / 0.75)  # the peaks below the legend's quarter
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    figure.subplots_adjust(left=0.13, right=0.97, bottom=0.14, top=0.9)
    figure.savefig(path, dpi=100)


def test_reused_similarity_figure_draws_what_a_fresh_figure_draws(tmp_path):
    # The callback keeps one figure and redraws only what changes per evaluation: every PNG
    # must have the pixels of the figure drawn from scratch, whatever the y range.
    from PIL import Image

    def pixels(path):
        return torch.from_numpy(np.asarray(Image.open(path)).copy())

    generator = torch.Generator().manual_seed(0)
    figure = SimilarityFigure(k=10)
    for i, (n, spread) in enumerate([(50, 0.2), (400, 0.02), (30, 0.5)]):
        positive = (torch.randn(n, generator=generator) * spread + 0.3 * i).clamp(-1, 1)
        negatives = (torch.randn(n, 10, generator=generator) * spread - 0.2 * i).clamp(-1, 1)
        reused, reference = tmp_path / f"reused{i}.png", tmp_path / f"reference{i}.png"
        title = f"epoch {i}: uniformity {i}.123"
        figure.save(str(reused), positive, negatives, title)
        _reference_similarity_png(reference, positive, negatives, title, 10)
        assert torch.equal(pixels(reused), pixels(reference)), f"evaluation {i}"
    save_similarity_figure(str(tmp_path / "fresh.png"), positive, negatives, title, k=10)
    assert (tmp_path / "fresh.png").read_bytes() == (tmp_path / "reused2.png").read_bytes()
    assert not torch.equal(pixels(tmp_path / "reused1.png"), pixels(tmp_path / "reused2.png"))


def test_similarity_figure_is_rebuilt_after_pickling(tmp_path):
    import pickle

    analysis = TemperatureAnalysis(probe_loader(20))
    analysis._figure.save(str(tmp_path / "a.png"), torch.rand(5), torch.rand(5, 3), "a")
    copy = pickle.loads(pickle.dumps(analysis))
    assert copy._figure._parts is None and copy._figure.k == 10
    copy._figure.save(str(tmp_path / "b.png"), torch.rand(5), torch.rand(5, 3), "b")
    assert (tmp_path / "b.png").stat().st_size > 1000


class _DictProbe(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        return {"image": torch.zeros(1, 8, 8), "label": index % 2}


class _CountSteps(pl.Callback):
    def __init__(self):
        self.steps = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.steps += 1


def test_bad_probe_is_refused_before_training_with_the_accepted_formats(tmp_path):
    images = torch.zeros(10, 1, 8, 8)
    with pytest.raises(ValueError, match=r"dataloader must be a DataLoader .* got a tensor of "):
        TemperatureAnalysis(images)
    with pytest.raises(ValueError, match=r"\(views, labels\), \(views, labels, filenames\)"):
        TemperatureAnalysis(images)

    analysis = TemperatureAnalysis(DataLoader(_DictProbe(), batch_size=4), every_n_epochs=5)
    counter = _CountSteps()
    trainer = make_trainer(tmp_path, 5, [analysis, counter], limit_train_batches=1)
    with pytest.raises(ValueError, match=r"the probe dataloader: probe batches must be .*got dict"):
        trainer.fit(TinySimCLR(), train_loader(128, 64))
    assert counter.steps == 0


class _ForwardIsTheBackbone(TinySimCLR):
    """A module whose forward gives backbone features and keeps its head elsewhere."""

    def __init__(self):
        super().__init__()
        self.head = self.projection_head
        del self.projection_head

    def forward(self, x):
        return self.backbone(x).flatten(start_dim=1)

    def training_step(self, batch, batch_idx):
        x0, x1 = batch[0]
        return self.criterion(self.head(self(x0)), self.head(self(x1)))


def test_embedding_with_forward_is_said_once(tmp_path):
    analysis = TemperatureAnalysis(probe_loader(40), save_figures=False, save_csv=False)
    trainer = make_trainer(tmp_path, 2, [analysis], limit_train_batches=1)
    with pytest.warns(UserWarning, match="embedded with its forward") as record:
        trainer.fit(_ForwardIsTheBackbone(), train_loader(128, 64))
    said = [str(w.message) for w in record if "embedded with its forward" in str(w.message)]
    assert len(said) == 1 and "gives 32-d embeddings" in said[0]
    assert len(analysis.history) == 2

    # A module with backbone and projection_head is embedded as the loss sees it: not said.
    import warnings

    analysis = TemperatureAnalysis(probe_loader(40), save_figures=False, save_csv=False)
    trainer = make_trainer(tmp_path, 1, [analysis], limit_train_batches=1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.fit(TinySimCLR(), train_loader(128, 64))
    assert not [w for w in record if "embedded with its forward" in str(w.message)]
