"""Simulated, noisy labelers who compare or rank completions by a hidden gold reward.

Real labelers disagree: Ziegler et al. 2019 measured about 60 % agreement between labelers,
Stiennon et al. 2020 about 72 % (deck "Large Language Models and RL from Human Feedback",
slide "Belief Distribution and Human Noise": "Disagreement between human preferences occurs within
datasets"). A simulated labeler here is the Bradley-Terry model itself, applied to the gold
reward g with a temperature tau:

    P(labeler prefers a over b) = sigma((g_a - g_b) / tau)

tau -> 0 is a perfect labeler, large tau a coin flip. Rankings of K completions follow the
Plackett-Luce model with the same scores g / tau (its pairwise marginal for K = 2 is
exactly the formula above), sampled with the Gumbel trick. The labelers know nothing about
text: they take gold rewards, so any task with a gold reward can use them.

All randomness comes from an explicit `numpy.random.Generator`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -500, 500)))


@dataclass(frozen=True)
class Labeler:
    """A labeler who chooses by Bradley-Terry on the gold reward, at temperature tau."""

    temperature: float

    def __post_init__(self):
        if not self.temperature >= 0:
            raise ValueError(f"Labeler.temperature must be >= 0, got {self.temperature!r}")

    def prob_prefers_a(self, gold_a, gold_b) -> np.ndarray:
        """P(a > b) = sigma((g_a - g_b) / tau); a perfect labeler (tau = 0) gives 1, 0 or
        0.5 (ties)."""
        gap = np.asarray(gold_a, float) - np.asarray(gold_b, float)
        if self.temperature == 0:
            return np.where(gap > 0, 1.0, np.where(gap < 0, 0.0, 0.5))
        return _sigmoid(gap / self.temperature)

    def compare(self, rng: np.random.Generator, gold_a, gold_b) -> np.ndarray:
        """(N,) bool: True where this labeler prefers a over b."""
        p = self.prob_prefers_a(gold_a, gold_b)
        return rng.random(p.shape) < p

    def rank(self, rng: np.random.Generator, gold) -> np.ndarray:
        """(N, K) gold rewards -> (N, K) indices of the completions, best first.

        Plackett-Luce: sort g / tau + Gumbel noise (ties broken at random when tau = 0).
        """
        gold = np.asarray(gold, float)
        if gold.ndim != 2 or gold.shape[1] < 2:
            raise ValueError(f"rank needs gold rewards of shape (N, K >= 2), got {gold.shape}")
        noise = rng.gumbel(size=gold.shape)
        if self.temperature == 0:
            keys = gold + 1e-9 * noise  # a tie-break only
        else:
            keys = gold / self.temperature + noise
        return np.argsort(-keys, axis=1, kind="stable")


def gold_agreement(labels: np.ndarray, gold_a, gold_b) -> float:
    """Share of comparisons (gold ties excluded) where the label matches the gold order."""
    gold_a, gold_b = np.asarray(gold_a, float), np.asarray(gold_b, float)
    decided = gold_a != gold_b
    if not decided.any():
        return float("nan")
    return float(np.mean(np.asarray(labels)[decided] == (gold_a > gold_b)[decided]))


def agreement_rate(labels_1: np.ndarray, labels_2: np.ndarray) -> float:
    """Measured agreement between two labelers on the same comparisons."""
    labels_1, labels_2 = np.asarray(labels_1, bool), np.asarray(labels_2, bool)
    if labels_1.shape != labels_2.shape:
        raise ValueError(f"label arrays differ in shape: {labels_1.shape} vs {labels_2.shape}")
    return float(np.mean(labels_1 == labels_2))


def predicted_agreement(labeler: Labeler, gold_a, gold_b) -> float:
    """Expected agreement of two independent labelers with this temperature:
    mean over comparisons of p^2 + (1 - p)^2, p = P(a > b)."""
    p = labeler.prob_prefers_a(gold_a, gold_b)
    return float(np.mean(p ** 2 + (1 - p) ** 2))


def predicted_gold_agreement(labeler: Labeler, gold_a, gold_b) -> float:
    """Expected share of labels that follow the gold order (gold ties excluded):
    mean of sigma(|g_a - g_b| / tau)."""
    gold_a, gold_b = np.asarray(gold_a, float), np.asarray(gold_b, float)
    decided = gold_a != gold_b
    gap = np.abs(gold_a - gold_b)[decided]
    return float(np.mean(Labeler(labeler.temperature).prob_prefers_a(gap, 0.0)))


def temperature_for_gold_agreement(gold_a, gold_b, target: float) -> float:
    """The temperature at which a labeler follows the gold order on a share `target` of
    these comparisons (bisection: the share falls from 1 to 0.5 as tau grows)."""
    if not 0.5 < target < 1.0:
        raise ValueError(f"target agreement must be in (0.5, 1), got {target!r}")
    gold_a, gold_b = np.asarray(gold_a, float), np.asarray(gold_b, float)
    if not (gold_a != gold_b).any():
        raise ValueError("every comparison is a gold tie: no temperature can reach a target")
    lo, hi = 1e-6, 1.0
    while predicted_gold_agreement(Labeler(hi), gold_a, gold_b) > target:
        hi *= 2.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if predicted_gold_agreement(Labeler(mid), gold_a, gold_b) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
