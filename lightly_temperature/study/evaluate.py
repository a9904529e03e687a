"""Evaluation of one trained run: kNN and linear-probe accuracy on frozen backbone features,
and the paper's analysis metrics on the normalised embeddings the loss sees.

- kNN accuracy: Lightly's ``knn_predict`` (cosine similarity, k nearest train features,
  temperature-weighted votes) of each test image against the train features.
- Linear accuracy: scikit-learn's logistic regression on standardised, frozen backbone
  features of the train split, scored on the test split.
- uniformity (``-L_uniformity``, t = 2) and tolerance on the embeddings of the plain test
  images; alignment and the positive / top-10 negative similarities on two augmented views.

Example:
    >>> from lightly_temperature.study.evaluate import evaluate_run
    >>> evaluation = evaluate_run(model, data, device=torch.device("cpu"))
    >>> evaluation.metrics["knn_accuracy"], evaluation.metrics["uniformity"]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from lightly.utils.benchmarking import knn_predict
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from lightly_temperature import metrics as _metrics
from lightly_temperature.study.data import StudyData


@dataclass
class Evaluation:
    """Metrics of a run and the raw similarities behind the distribution plot."""

    metrics: dict[str, float]
    positive_similarities: Tensor  # (N,)
    top_negative_similarities: Tensor  # (N, 10)


@torch.no_grad()
def _embed_plain(
    fn: Callable[[Tensor], Tensor], loader: DataLoader, device: torch.device
) -> tuple[Tensor, Tensor]:
    outputs, labels = [], []
    for images, targets in loader:
        outputs.append(fn(images.to(device)).flatten(start_dim=1).float())
        labels.append(torch.as_tensor(targets).to(device))
    return torch.cat(outputs), torch.cat(labels)


@torch.no_grad()
def _embed_views(
    fn: Callable[[Tensor], Tensor], loader: DataLoader, device: torch.device
) -> tuple[Tensor, Tensor]:
    z0, z1 = [], []
    for views, _ in loader:
        z0.append(fn(views[0].to(device)).float())
        z1.append(fn(views[1].to(device)).float())
    return torch.cat(z0), torch.cat(z1)


def knn_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    k: int = 20,
    t: float = 0.1,
    chunk: int = 1024,
) -> float:
    """Top-1 accuracy of Lightly's weighted kNN on L2-normalised features."""
    bank = F.normalize(train_features, dim=1).T.contiguous()
    k = min(k, bank.shape[1])
    correct = torch.zeros((), device=test_features.device)
    for start in range(0, test_features.shape[0], chunk):
        feature = F.normalize(test_features[start : start + chunk], dim=1)
        predicted = knn_predict(feature, bank, train_labels, num_classes, knn_k=k, knn_t=t)
        correct += (predicted[:, 0] == test_labels[start : start + chunk]).sum()
    return correct.item() / test_features.shape[0]


def linear_accuracy(
    train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor
) -> float:
    """Test accuracy of a logistic regression (scikit-learn, L-BFGS) trained on the
    standardised frozen train features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=1.0))
    classifier.fit(train_features.cpu().numpy(), train_labels.cpu().numpy())
    return float(classifier.score(test_features.cpu().numpy(), test_labels.cpu().numpy()))


def evaluate_run(
    model: nn.Module,
    data: StudyData,
    device: torch.device,
    batch_size: int = 512,
    knn_k: int = 20,
    knn_t: float = 0.1,
    seed: int = 0,
) -> Evaluation:
    """Evaluates ``model`` (with ``backbone`` and ``projection_head`` attributes) on ``data``.

    Runs in eval mode under ``torch.no_grad``; the augmentations of the probe views are seeded
    with ``seed`` so every run of a study sees the same views.
    """
    was_training = model.training
    model.eval()
    model.to(device)
    backbone: nn.Module = model.backbone  # type: ignore[assignment]
    head: nn.Module = model.projection_head  # type: ignore[assignment]

    def features(x: Tensor) -> Tensor:
        return backbone(x).flatten(start_dim=1)

    def embed(x: Tensor) -> Tensor:
        return head(features(x))

    try:
        plain = {"batch_size": batch_size, "shuffle": False}
        train_x, train_y = _embed_plain(features, DataLoader(data.train_plain, **plain), device)
        test_x, test_y = _embed_plain(features, DataLoader(data.test_plain, **plain), device)
        z, z_labels = _embed_plain(embed, DataLoader(data.test_plain, **plain), device)
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            z0, z1 = _embed_views(embed, data.probe_loader(batch_size), device)
    finally:
        model.train(was_training)

    with torch.no_grad():
        # 10 as in the paper's Fig. 8, fewer only for a probe of fewer than 6 samples.
        k = min(10, 2 * z0.shape[0] - 2)
        positive, negatives = _metrics.positive_and_top_negative_similarities(z0, z1, k=k)
        metrics = {
            "knn_accuracy": knn_accuracy(
                train_x, train_y, test_x, test_y, data.num_classes, k=knn_k, t=knn_t
            ),
            "linear_accuracy": linear_accuracy(train_x, train_y, test_x, test_y),
            "uniformity": _metrics.uniformity(z).item(),
            "alignment": _metrics.alignment(z0, z1).item(),
            # NaN (not an error) for a probe without two samples of one class.
            "tolerance": _metrics.tolerance(z, z_labels).item()
            if torch.bincount(z_labels).max().item() >= 2
            else math.nan,
            "positive_similarity": positive.mean().item(),
            "top10_negative_similarity": negatives.mean().item(),
        }
    return Evaluation(metrics, positive.cpu(), negatives.cpu())
