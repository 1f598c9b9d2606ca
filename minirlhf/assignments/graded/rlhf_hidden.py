"""Assignment 4 (hidden tests). References: the plain-numpy loops below."""

import numpy as np
import pytest


def np_kl(logp, ref, kind):
    log_r = ref - logp
    return {"k1": -log_r, "k2": 0.5 * log_r ** 2, "k3": np.expm1(log_r) - log_r}[kind]


def np_kl_rewards(logp, ref, score, mask, beta, kind):
    kl = np.where(mask, np_kl(logp, ref, kind), 0.0)
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


def np_controller(target, horizon, clip, beta, kl, n_steps):
    error = min(max(kl / target - 1.0, -clip), clip)
    return beta * (1.0 + error * n_steps / horizon)


def _responses(seed, B=5, N=6):
    rng = np.random.default_rng(seed)
    lengths = np.array([N, 1, 3, 5, 2])[:B]
    mask = np.arange(N)[None, :] < lengths[:, None]
    return rng, mask


@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_kl_rewards__random_against_numpy(sub, kind):
    rng, mask = _responses(0)
    logp, ref = rng.normal(size=(2,) + mask.shape) - 2
    score = rng.normal(size=mask.shape[0])
    for beta in (0.2, 0.03):
        rewards, kl = sub.rollout.kl_shaped_rewards(logp, ref, score, mask, beta, kind)
        want_r, want_kl = np_kl_rewards(logp, ref, score, mask, beta, kind)
        sub.assert_close(kl, want_kl, rtol=1e-5, atol=1e-6)
        sub.assert_close(rewards, want_r, rtol=1e-5, atol=1e-6)


def _kl_rewards_jit(logp, ref, score, mask, beta):
    import jax

    from minirlhf.rollout import kl_shaped_rewards

    return jax.jit(lambda b: kl_shaped_rewards(logp, ref, score, mask, b)[0])(beta)


def test_kl_rewards__traced_beta_under_jit_and_a_score_on_a_one_token_response(sub):
    rng, mask = _responses(1)
    logp, ref = rng.normal(size=(2,) + mask.shape) - 2
    score = rng.normal(size=mask.shape[0])
    got = sub.run(_kl_rewards_jit, logp, ref, score, mask, np.float32(0.05))
    sub.assert_close(got, np_kl_rewards(logp, ref, score, mask, 0.05, "k1")[0],
                               rtol=1e-5, atol=1e-6)
    sub.assert_close(got[1, 0], -0.05 * (logp[1, 0] - ref[1, 0]) + score[1],
                               rtol=1e-5)
    assert np.all(got[~mask] == 0.0)


@pytest.mark.parametrize("target,horizon,clip", [(4.0, 1000, 0.2), (2.0, 50, 0.5),
                                                 (6.0, 10_000, 0.1)])
def test_kl_controller__against_the_formula(sub, target, horizon, clip):
    for beta in (0.5, 0.05):
        for kl in (0.0, 0.9 * target, target, 1.05 * target, 1.3 * target, 100.0):
            for n_steps in (1, 64, 100):
                got = sub.run(_controller_update, target, horizon, clip, beta, kl, n_steps)
                sub.assert_close(got, np_controller(target, horizon, clip, beta,
                                                              kl, n_steps), rtol=1e-5,
                                           err_msg=f"beta {beta}, KL {kl}, n {n_steps}")


def _controller_update(target, horizon, clip, beta, kl, n_steps):
    import jax
    import jax.numpy as jnp

    from minirlhf.rlhf import AdaptiveKLController

    ctl = AdaptiveKLController(target=target, horizon=horizon, clip=clip)
    return jax.jit(lambda b, k: ctl.update(b, k, n_steps))(jnp.asarray(beta, jnp.float32),
                                                          jnp.asarray(kl, jnp.float32))


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5), (1.0, 1.0), (0.8, 0.0)])
def test_token_gae__random_against_numpy(sub, gamma, lam):
    rng, mask = _responses(2)
    rewards = rng.normal(size=mask.shape) + 3.0  # junk on the padding, which must not leak in
    values = rng.normal(size=mask.shape) - 2.0  # junk on the padding too
    adv, ret = sub.rollout.token_gae(rewards, values, mask, gamma, lam)
    want_adv, want_ret = np_token_gae(np.where(mask, rewards, 0.0),
                                      np.where(mask, values, 0.0), mask, gamma, lam)
    sub.assert_close(adv, want_adv, rtol=1e-4, atol=1e-5)
    sub.assert_close(ret, want_ret, rtol=1e-4, atol=1e-5)
    assert np.all(adv[~mask] == 0.0) and np.all(ret[~mask] == 0.0)


def _token_gae_jit(rewards, values, mask, gamma, lam):
    import jax

    from minirlhf.rollout import token_gae

    return jax.jit(token_gae, static_argnums=(3, 4))(rewards, values, mask, gamma, lam)


def test_token_gae__jit_and_full_length_responses(sub):
    rng = np.random.default_rng(3)
    mask = np.ones((3, 4), bool)
    rewards, values = rng.normal(size=(2, 3, 4))
    adv, ret = sub.run(_token_gae_jit, rewards, values, mask, 1.0, 0.9)
    want_adv, want_ret = np_token_gae(rewards, values, mask, 1.0, 0.9)
    sub.assert_close(adv, want_adv, rtol=1e-4, atol=1e-5)
    sub.assert_close(ret, want_ret, rtol=1e-4, atol=1e-5)
