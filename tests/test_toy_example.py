"""examples/toy_quadrants.py: the Intuitive Guide's quadrant demo, in its quick mode."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from tests.conftest import ROOT, load_script, run_python

EXAMPLE = ROOT / "examples" / "toy_quadrants.py"


def _load_example():
    return load_script(EXAMPLE)


def _same_and_cross_quadrant_similarity(features, labels):
    z = F.normalize(features, dim=1)
    sims = z @ z.T
    same = labels.view(-1, 1) == labels.view(1, -1)
    cross = ~same
    same.fill_diagonal_(False)
    return sims[same].mean().item(), sims[cross].mean().item()


def test_samples_are_the_articles_quadrants():
    toy = _load_example()
    samples, labels = toy.make_samples()
    assert (
        samples.shape == (100, 2) and labels.tolist() == [0] * 25 + [1] * 25 + [2] * 25 + [3] * 25
    )
    signs = torch.sign(samples)
    expected = {0: (1, 1), 1: (-1, 1), 2: (-1, -1), 3: (1, -1)}
    for c, (sx, sy) in expected.items():
        assert (signs[labels == c] == torch.tensor([sx, sy], dtype=signs.dtype)).all()


def test_training_pulls_quadrants_together_and_pushes_them_apart():
    """Contrastive training at tau = 0.05 (the article's section 2): points of a quadrant get
    more similar, points of different quadrants less similar (cosine similarity)."""
    toy = _load_example()
    samples, labels = toy.make_samples()
    encoder = toy.make_encoder()
    with torch.no_grad():
        same_before, cross_before = _same_and_cross_quadrant_similarity(encoder(samples), labels)
    trained = toy.train(encoder, samples, labels, temperature=0.05, steps=1500, lr=3e-3)
    with torch.no_grad():
        same_after, cross_after = _same_and_cross_quadrant_similarity(trained(samples), labels)
        unchanged = _same_and_cross_quadrant_similarity(encoder(samples), labels)
    assert same_after > same_before + 0.1
    assert cross_after < cross_before - 0.03
    # The original encoder is left untouched (the article deep-copies it).
    assert unchanged == (same_before, cross_before)


def test_quick_mode_writes_the_grid_png(tmp_path):
    output = tmp_path / "quadrants.png"
    done = run_python(EXAMPLE, "--quick", "--output", output, timeout=120)
    assert done.returncode == 0, done.stderr
    assert output.read_bytes()[:4] == b"\x89PNG"
    assert f"saved {output}" in done.stdout
