"""Assignment 4 (hidden tests). References: the plain-numpy functions below."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minirlhf.rlhf import AdaptiveKLController
from minirlhf.rollout import kl_shaped_rewards, token_gae


def np_kl_rewards(logp, ref, score, mask, beta, kind):
    log_r = ref - logp
    kl = {"k1": -log_r, "k2": 0.5 * log_r ** 2, "k3": np.expm1(log_r) - log_r}[kind]
    kl = np.where(mask, kl, 0.0)
    rewards = -beta * kl
    for b in range(len(mask)):
        last = np.nonzero(mask[b])[0].max()
        rewards[b, last] += score[b]
    return rewards, kl


def np_token_gae(rewards, values, mask, gamma, lam):
    B, N = rewards.shape
    adv = np.zeros((B, N))
    for b in range(B):
        n = int(mask[b].sum())  # a response mask: the first n tokens are real
        following = 0.0
        for t in reversed(range(n)):
            nxt = values[b, t + 1] if t + 1 < n else 0.0
            following = rewards[b, t] + gamma * nxt - values[b, t] + gamma * lam * following
            adv[b, t] = following
    return adv, np.where(mask, adv + values, 0.0)


def _responses(seed, B=4, N=6):
    rng = np.random.default_rng(seed)
    lengths = np.array([N, 1, 3, 5])[:B]
    mask = np.arange(N)[None, :] < lengths[:, None]
    return rng, mask


@pytest.mark.parametrize("kind", ["k1", "k3"])
def test_kl_rewards__random_against_numpy(kind):
    rng, mask = _responses(0)
    logp, ref = rng.normal(size=(2,) + mask.shape) - 2
    score = rng.normal(size=mask.shape[0])
    rewards, kl = kl_shaped_rewards(jnp.asarray(logp), jnp.asarray(ref), jnp.asarray(score),
                                    jnp.asarray(mask), 0.2, kind)
    want_r, want_kl = np_kl_rewards(logp, ref, score, mask, 0.2, kind)
    np.testing.assert_allclose(kl, want_kl, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rewards, want_r, rtol=1e-5, atol=1e-6)


def test_kl_rewards__traced_beta_under_jit():
    rng, mask = _responses(1)
    logp, ref = rng.normal(size=(2,) + mask.shape) - 2
    score = rng.normal(size=mask.shape[0])
    f = jax.jit(lambda beta: kl_shaped_rewards(jnp.asarray(logp), jnp.asarray(ref),
                                               jnp.asarray(score), jnp.asarray(mask), beta)[0])
    np.testing.assert_allclose(f(jnp.asarray(0.05)),
                               np_kl_rewards(logp, ref, score, mask, 0.05, "k1")[0],
                               rtol=1e-5, atol=1e-6)


def test_kl_controller__clips_both_ways_and_small_errors_pass():
    ctl = AdaptiveKLController(target=4.0, horizon=1000, clip=0.2)
    beta = jnp.asarray(0.5)
    np.testing.assert_allclose(ctl.update(beta, jnp.asarray(0.0), 100), 0.5 * (1 - 0.2 * 0.1),
                               rtol=1e-6)
    np.testing.assert_allclose(ctl.update(beta, jnp.asarray(100.0), 100),
                               0.5 * (1 + 0.2 * 0.1), rtol=1e-6)
    np.testing.assert_allclose(ctl.update(beta, jnp.asarray(4.4), 100),
                               0.5 * (1 + 0.1 * 0.1), rtol=1e-6)
    np.testing.assert_allclose(ctl.update(beta, jnp.asarray(4.0), 100), 0.5, rtol=1e-6)


def test_kl_controller__other_clip_and_jit():
    ctl = AdaptiveKLController(target=2.0, horizon=50, clip=0.5)
    got = jax.jit(lambda b, k: ctl.update(b, k, 10))(jnp.asarray(1.0), jnp.asarray(10.0))
    np.testing.assert_allclose(got, 1.0 + 0.5 * 10 / 50, rtol=1e-6)


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5)])
def test_token_gae__random_against_numpy(gamma, lam):
    rng, mask = _responses(2)
    rewards = np.where(mask, rng.normal(size=mask.shape), 0.0)
    values = rng.normal(size=mask.shape)  # junk on the padding, which must not leak in
    adv, ret = token_gae(jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(mask), gamma,
                         lam)
    want_adv, want_ret = np_token_gae(rewards, np.where(mask, values, 0.0), mask, gamma, lam)
    np.testing.assert_allclose(adv, want_adv, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ret, want_ret, rtol=1e-4, atol=1e-5)
