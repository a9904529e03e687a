"""Evaluation of one trained run, with the library's own pieces: kNN and linear-probe accuracy
on frozen backbone features, and the analysis metrics of :class:`TemperatureAnalysis`.

- Embedding: :func:`lightly_temperature.probe.embed_probe`, the pass TemperatureAnalysis runs
  (eval mode, ``torch.no_grad``, each probe sample's augmentations seeded by its index).
- uniformity (``-L_uniformity``, t = 2), tolerance and the top-10 false-negative rate:
  :func:`~lightly_temperature.probe.probe_metrics` of the embeddings of the plain
  (un-augmented) test images, a one-view probe; alignment, the positive / top-10 negative
  similarities and the effective number of negatives (at the run's temperature and K; NaN
  for a loss whose temperature only rescales it): ``probe_metrics`` of two augmented views
  of the test images. Each number is what a ``TemperatureAnalysis`` given that
  probe (``max_samples=None``, ``seed`` = the run's seed) computes for the trained module.
- kNN accuracy: Lightly's ``knn_predict`` (cosine similarity, k nearest train features,
  temperature-weighted votes) of each test image against the train features.
- Few-shot accuracy (``fewshot_accuracy_{k}`` for each k of ``few_shot``): 1-NN by cosine
  similarity of the projections of the plain test images to k labelled projections per class
  of the plain train images, mean (and standard deviation) over seeded label draws: the
  ``few_shot`` values of ``probe_metrics`` with the train split as the labelled pool.
- Linear accuracy: scikit-learn's logistic regression on standardised, frozen backbone
  features of the train split, scored on the test split.

Example:
    >>> from lightly_temperature.study.evaluate import evaluate_run
    >>> evaluation = evaluate_run(model, data, device=torch.device("cpu"))
    >>> evaluation.metrics["knn_accuracy"], evaluation.metrics["uniformity"]
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import torch
from lightly.utils.benchmarking import knn_predict
from torch import Tensor, nn
from torch.nn import functional as F

from lightly_temperature._validation import HardNegatives
from lightly_temperature.metrics import DEFAULT_DRAWS
from lightly_temperature.probe import default_embed, embed_probe, probe_metrics
from lightly_temperature.study.config import DEFAULT_FEW_SHOT
from lightly_temperature.study.data import StudyData

#: The analysis metrics of a run and the probe each is measured on.
PLAIN_METRICS = (  # the plain test images
    "uniformity",
    "tolerance",
    "embedding_spread",
    "false_negatives",
)
#: Two augmented views of the test images.
VIEW_METRICS = ("alignment", "similarities", "effective_negatives")
#: Hardest negatives per anchor of the similarity distributions (the paper's Fig. 8).
TOP_K = 10


@dataclass
class Evaluation:
    """Metrics of a run and the raw similarities behind the distribution plot (None when the
    embeddings are not finite: then the analysis metrics are NaN)."""

    metrics: dict[str, float]
    positive_similarities: Tensor | None  # (N,)
    top_negative_similarities: Tensor | None  # (N, 10)


def backbone_features(module: nn.Module, x: Tensor) -> Tensor:
    """``backbone(x).flatten(1)``: the frozen features of the kNN and linear probes."""
    return module.backbone(x).flatten(start_dim=1)  # type: ignore[operator]


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
    forward_context: Callable[[], Any] = contextlib.nullcontext,
    temperature: float | None = None,
    hard_negatives: HardNegatives = None,
    few_shot: Sequence[int] = DEFAULT_FEW_SHOT,
    few_shot_draws: int = DEFAULT_DRAWS,
) -> Evaluation:
    """Evaluates ``model`` (with ``backbone`` and ``projection_head`` attributes) on ``data``.

    ``seed`` seeds the probe views' augmentations (per sample, as TemperatureAnalysis does);
    ``forward_context`` is the context of each forward (the trainer's precision);
    ``temperature`` and ``hard_negatives``: the loss's softmax temperature (None when it has
    none) and K, for the effective number of negatives; ``few_shot``: the labels per class
    of the few-shot accuracies (each k at most the train split's smallest class), averaged
    over ``few_shot_draws`` label draws.
    """
    model.to(device)

    def embed(loader, embed_fn=default_embed):
        return embed_probe(
            model, loader, embed_fn, seed=seed, device=device, forward_context=forward_context
        )

    train = embed(data.plain_loader("train", batch_size), backbone_features)
    test = embed(data.plain_loader("test", batch_size), backbone_features)
    plain = probe_metrics(
        embed(data.plain_loader("test", batch_size)),
        PLAIN_METRICS,
        top_k=TOP_K,
        few_shot=few_shot,
        few_shot_pool=embed(data.plain_loader("train", batch_size)) if few_shot else None,
        few_shot_draws=few_shot_draws,
    ).values
    # results.csv's column: the top-10 false-negative rate.
    plain["false_negative_rate"] = plain.pop(f"top{TOP_K}_false_negative_rate")
    views = probe_metrics(
        embed(data.probe_loader(batch_size)),
        VIEW_METRICS,
        top_k=TOP_K,
        temperature=temperature,
        hard_negatives=hard_negatives,
    )
    if train.labels is None or test.labels is None:
        raise ValueError("the plain train and test loaders must give (images, labels) batches")
    metrics = {
        "knn_accuracy": knn_accuracy(
            train.z0, train.labels, test.z0, test.labels, data.num_classes, k=knn_k, t=knn_t
        ),
        "linear_accuracy": linear_accuracy(train.z0, train.labels, test.z0, test.labels),
        **plain,
        **views.values,
    }
    positive, negatives = views.positive, views.negatives
    return Evaluation(
        metrics,
        None if positive is None else positive.cpu(),
        None if negatives is None else negatives.cpu(),
    )
