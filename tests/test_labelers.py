"""Simulated labelers: Bradley-Terry choices at a temperature, Plackett-Luce rankings, and
agreement rates that match their predictions; the review task's gold reward."""

import numpy as np
import pytest

from minirlhf.envs import make_task
from minirlhf.envs.labelers import (Labeler, agreement_rate, gold_agreement,
                                    predicted_agreement, predicted_gold_agreement,
                                    temperature_for_gold_agreement)


def gold_pairs(n=20000, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=n), rng.normal(size=n)


@pytest.mark.parametrize("target", [0.6, 0.7, 0.85])
def test_measured_agreement_matches_the_temperatures_prediction(target):
    a, b = gold_pairs()
    tau = temperature_for_gold_agreement(a, b, target)
    labeler = Labeler(tau)
    assert predicted_gold_agreement(labeler, a, b) == pytest.approx(target, abs=1e-6)
    rng = np.random.default_rng(1)
    l1, l2 = labeler.compare(rng, a, b), labeler.compare(rng, a, b)
    n = len(a)
    # Within 4 standard errors of a proportion over n comparisons.
    se = lambda p: 4 * np.sqrt(p * (1 - p) / n)
    assert gold_agreement(l1, a, b) == pytest.approx(target, abs=se(target))
    pred = predicted_agreement(labeler, a, b)
    assert agreement_rate(l1, l2) == pytest.approx(pred, abs=se(pred))
    # Two labelers agree with each other less than each agrees with the truth.
    assert pred < target


def test_temperature_extremes_and_errors():
    a, b = np.array([1.0, 0.0, 2.0]), np.array([0.0, 1.0, 2.0])
    np.testing.assert_array_equal(Labeler(0.0).prob_prefers_a(a, b), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(Labeler(1e6).prob_prefers_a(a, b), 0.5, atol=1e-5)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        Labeler(-1.0)
    with pytest.raises(ValueError, match="target agreement must be in"):
        temperature_for_gold_agreement(a, b, 0.4)
    with pytest.raises(ValueError, match="gold tie"):
        temperature_for_gold_agreement(b[2:], b[2:], 0.7)


def test_rankings_follow_plackett_luce():
    rng = np.random.default_rng(0)
    gold = np.tile([[0.0, 1.0, 2.0]], (30000, 1))
    tau = 0.8
    order = Labeler(tau).rank(rng, gold)
    assert sorted(order[0].tolist()) == [0, 1, 2]
    # P(item 2 ranked first) = softmax(g / tau)[2]
    p_first = np.exp(gold[0] / tau) / np.exp(gold[0] / tau).sum()
    assert np.mean(order[:, 0] == 2) == pytest.approx(p_first[2], abs=0.01)
    # The pairwise marginal of a ranking is the Bradley-Terry pair probability.
    pos = np.argsort(order, axis=1)  # pos[:, i] = rank of item i
    assert np.mean(pos[:, 1] < pos[:, 0]) == pytest.approx(
        float(Labeler(tau).prob_prefers_a(1.0, 0.0)), abs=0.01)
    assert (Labeler(0.0).rank(rng, gold[:5]) == [2, 1, 0]).all()
    with pytest.raises(ValueError, match=r"\(N, K >= 2\)"):
        Labeler(1.0).rank(rng, np.zeros(3))


def test_gold_reward_prefers_fluent_positive_reviews_and_punishes_babble():
    task = make_task("reviews")
    positive = task.gold_reward(" great. i loved the crust. rating: 5/5")
    negative = task.gold_reward(" awful. i hated the sauce. rating: 1/5")
    neutral = task.gold_reward(" okay. i saw the crust. rating: 3/5")
    babble = task.gold_reward(" great great great great great")
    noise = task.gold_reward(" xqz great zzz")
    assert positive > neutral > negative
    assert babble < neutral and noise < neutral  # cannot be maxed by repeating "great"
    assert task.gold_reward("") == -2.0
    assert positive == pytest.approx(np.tanh(1.0) + 0.25, abs=1e-6)  # 2 positive words


@pytest.mark.parametrize("response, stated, agrees, mismatch", [
    (" great. i loved the crust. rating: 5/5", 5, True, 0.0),
    (" great. i loved the crust. rating: 4/5", 4, True, 0.0),
    (" great. i loved the crust. rating: 3/5", 3, False, 0.5),  # one star below 4
    (" great. i loved the crust. rating: 1/5", 1, False, 1.0),  # three stars off, capped at 2
    (" awful. i hated the sauce. rating: 5/5", 5, False, 1.0),
    (" okay. i saw the crust. rating: 3/5", 3, True, 0.0),
    (" great. i hated the crust. rating: 5/5", 5, False, 1.0),  # one each way: neutral, 3
    (" great. i loved the crust.", None, False, 0.0),  # no rating: the format bonus is lost
])
def test_rating_agreement_by_hand(response, stated, agrees, mismatch):
    task = make_task("reviews")
    assert task.stated_rating(response) == stated
    assert task.rating_agrees(response) == agrees
    assert task.rating_mismatch(response) == mismatch


def test_gold_reward_punishes_a_rating_that_contradicts_the_words():
    task = make_task("reviews")
    words = " great. i loved the crust."
    gold = {k: task.gold_reward(f"{words} rating: {k}/5") for k in range(1, 6)}
    assert gold[5] == gold[4] == pytest.approx(np.tanh(1.0) + 0.25, abs=1e-6)
    assert gold[3] == pytest.approx(gold[5] - 0.25, abs=1e-6)
    assert gold[2] == gold[1] == pytest.approx(gold[5] - 0.5, abs=1e-6)
    assert gold[1] < task.gold_reward(words) < gold[5]  # a wrong rating is worse than none
    neutral = " okay. i saw the crust."
    assert task.gold_reward(neutral + " rating: 3/5") > task.gold_reward(neutral + " rating: 5/5")
    # The demonstrator always rates as its words say, so SFT learns consistent ratings.
    assert all(task.rating_agrees(r) for _, r in task.demonstrations(500, seed=0))
