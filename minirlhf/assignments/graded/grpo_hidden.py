"""Assignment 5 (hidden tests). References: the plain-numpy loops below."""

import numpy as np
import pytest


def np_group_advantages(r, kind, floor=1e-3):
    out = np.zeros_like(r, dtype=np.float64)
    G = r.shape[1]
    for b, row in enumerate(r.astype(np.float64)):
        std = row.std(ddof=1)
        if row.max() == row.min() or std < floor:
            continue
        c = row - row.mean()
        out[b] = {"grpo": c / max(std, floor), "dr_grpo": c, "rloo": c * G / (G - 1)}[kind]
    return out


def np_grpo_loss(logp, old, ref, adv, mask, eps, eps_high=None, beta=0.0,
                 aggregation="sequence_mean", max_tokens=None, counts=None):
    hi = eps if eps_high is None else eps_high
    ratio = np.exp(logp - old)
    s = np.minimum(ratio * adv[:, None], np.clip(ratio, 1 - eps, 1 + hi) * adv[:, None])
    log_r = ref - logp
    per_token = s - beta * (np.expm1(log_r) - log_r)
    B, N = mask.shape
    if counts is None:
        counts = (sum(mask[b].any() for b in range(B)), mask.sum())
    responses, tokens = max(counts[0], 1), max(counts[1], 1)
    total = 0.0
    for b in range(B):
        row = sum(per_token[b, t] for t in range(N) if mask[b, t])
        if aggregation == "sequence_mean":
            total += row / max(mask[b].sum(), 1) / responses
        elif aggregation == "token_mean":
            total += row / tokens
        else:
            total += row / (responses * (N if max_tokens is None else max_tokens))
    return -total


def _batch(seed, B=5, N=6):
    rng = np.random.default_rng(seed)
    logp, old, ref = rng.normal(size=(3, B, N)) * 0.3 - 1
    adv = rng.normal(size=B)
    lengths = np.array([N, 2, 3, 1, 0])[:B]  # the last response masked out whole
    mask = np.arange(N)[None, :] < lengths[:, None]
    return logp, old, ref, adv, mask


@pytest.mark.parametrize("kind", ["grpo", "dr_grpo", "rloo"])
def test_group_advantages__random_against_numpy(sub, kind):
    rng = np.random.default_rng(0)
    r = rng.integers(0, 3, size=(6, 5)).astype(np.float32)
    r[0] = 2.0  # a flat group
    r[1] = rng.normal(size=5)  # continuous rewards
    got = sub.advantages.group_advantages(r, kind)
    assert got.shape == r.shape and got.dtype == np.float32
    sub.assert_close(got, np_group_advantages(r, kind), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["grpo", "dr_grpo", "rloo"])
def test_group_advantages__two_responses_and_the_std_floor(sub, kind):
    r = np.asarray([[0.0, 1.0], [3.0, -1.0], [0.5, 0.5 + 1e-6]], np.float32)
    sub.assert_close(sub.advantages.group_advantages(r, kind),
                               np_group_advantages(r, kind), rtol=1e-5, atol=1e-6)
    # A group whose spread is below the floor is flat: advantage exactly 0.
    r = np.asarray([[0.0, 0.05, 0.1, 0.0], [0.0, 1.0, 2.0, 0.0]], np.float32)
    for floor in (1e-3, 0.1, 2.0):
        got = sub.advantages.group_advantages(r, kind, std_floor=floor)
        sub.assert_close(got, np_group_advantages(r, kind, floor), rtol=1e-5,
                                   atol=1e-6, err_msg=f"std_floor {floor}")


def test_group_advantages__float_noise_is_flat_and_large_rewards(sub):
    # Scores of near-identical responses: equal up to float rounding, std ~1e-7.
    base = np.float32(0.7)
    noisy = np.asarray([[base, np.nextafter(base, np.float32(1)), base, base]], np.float32)
    got = sub.advantages.group_advantages(noisy, "grpo")
    assert np.all(got == 0.0), got
    big = np.asarray([[1000.0, 1002.0, 1001.0, 999.0]], np.float32)
    sub.assert_close(sub.advantages.group_advantages(big, "grpo"),
                               np_group_advantages(big, "grpo"), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("aggregation", ["sequence_mean", "token_mean", "constant"])
def test_grpo_loss__each_aggregation_against_numpy(sub, aggregation):
    logp, old, ref, adv, mask = _batch(1)
    for eps_high, beta in [(None, 0.0), (0.28, 0.0), (None, 0.1), (0.3, 0.04)]:
        got = sub.losses.grpo_loss(logp, old, ref, adv, mask, 0.2, eps_high, beta, aggregation)
        want = np_grpo_loss(logp, old, ref, adv, mask, 0.2, eps_high, beta, aggregation)
        sub.assert_close(got, want, rtol=1e-5, atol=1e-7,
                                   err_msg=f"eps_high {eps_high}, beta {beta}")


def test_grpo_loss__max_tokens_and_whole_batch_counts(sub):
    logp, old, ref, adv, mask = _batch(2)
    got = sub.losses.grpo_loss(logp, old, ref, adv, mask, 0.2, aggregation="constant",
                               max_tokens=10)
    sub.assert_close(got, np_grpo_loss(logp, old, ref, adv, mask, 0.2,
                                                 aggregation="constant", max_tokens=10),
                               rtol=1e-5)
    # A microbatch of a larger batch: the whole batch's (responses, tokens) divide.
    for aggregation in ("sequence_mean", "token_mean", "constant"):
        got = sub.losses.grpo_loss(logp, old, ref, adv, mask, 0.2, beta=0.1,
                                   aggregation=aggregation, counts=(np.int32(9),
                                                                   np.int32(31)))
        want = np_grpo_loss(logp, old, ref, adv, mask, 0.2, beta=0.1, aggregation=aggregation,
                            counts=(9, 31))
        sub.assert_close(got, want, rtol=1e-5, err_msg=aggregation)


def _grpo_grad(logp, old, ref, adv, mask, eps, eps_high, beta):
    import jax

    from minirlhf.losses import grpo_loss

    return jax.grad(lambda lp: grpo_loss(lp, old, ref, adv, mask, eps, eps_high, beta,
                                         "token_mean"))(logp)


def test_grpo_loss__gradient_through_both_clips_and_the_kl(sub):
    # Ratios on each side of each bound, advantages of each sign, one token each.
    ratios = np.asarray([0.5, 0.85, 0.95, 1.1, 1.3, 1.6] * 2, np.float32)
    logp = np.log(ratios)[:, None]
    zeros = np.zeros_like(logp)
    ref = zeros - 0.5
    adv = np.asarray([1.0] * 6 + [-1.0] * 6, np.float32)
    mask = np.ones_like(logp, bool)
    for eps_high, beta in [(None, 0.0), (0.4, 0.0), (0.4, 0.2)]:
        got = sub.run(_grpo_grad, logp, zeros, ref, adv, mask, 0.2, eps_high, beta)
        hi = 0.2 if eps_high is None else eps_high
        r = ratios.astype(np.float64)
        unclipped = np.minimum(r * adv, np.clip(r, 0.8, 1 + hi) * adv) == r * adv
        surrogate = np.where(unclipped, r * adv, 0.0)
        log_r = ref[:, 0] - np.log(r)
        kl_grad = -(np.exp(log_r) - 1.0)  # d k3 / d logp
        want = -(surrogate - beta * kl_grad) / 12
        sub.assert_close(got[:, 0], want, rtol=1e-4, atol=1e-6,
                                   err_msg=f"eps_high {eps_high}, beta {beta}")


def test_grpo_loss__everything_masked_is_zero(sub):
    logp, old, ref, adv, _ = _batch(3)
    none = np.zeros(logp.shape, bool)
    for aggregation in ("sequence_mean", "token_mean", "constant"):
        got = sub.losses.grpo_loss(logp, old, ref, adv, none, 0.2, beta=0.1,
                                   aggregation=aggregation)
        assert float(got) == 0.0, aggregation
