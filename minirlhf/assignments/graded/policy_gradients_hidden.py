"""Assignment 2 (hidden tests). References: the plain-numpy loops below."""

import numpy as np
import pytest


def np_gae(rewards, values, next_values, terminated, done, gamma, lam):
    T, E = rewards.shape
    adv = np.zeros((T, E))
    for e in range(E):
        following = 0.0
        for t in reversed(range(T)):
            boot = 0.0 if terminated[t, e] else next_values[t, e]
            delta = rewards[t, e] + gamma * boot - values[t, e]
            following = delta + gamma * lam * (0.0 if done[t, e] else following)
            adv[t, e] = following
    return adv


def np_surrogate(logp, old_logp, adv, lo, hi):
    ratio = np.exp(logp - old_logp)
    return np.minimum(ratio * adv, np.clip(ratio, 1 - lo, 1 + hi) * adv)


def np_surrogate_grad(logp, old_logp, adv, lo, hi):
    """d s / d logp, entry by entry: rho A where the unclipped term is the min (or the two
    are equal), 0 where the clipped, constant term is."""
    ratio = np.exp(logp - old_logp)
    clipped = np.clip(ratio, 1 - lo, 1 + hi)
    active = (clipped * adv < ratio * adv)
    return np.where(active, 0.0, ratio * adv)


def _episodes(seed, T=40, E=3):
    rng = np.random.default_rng(seed)
    terminated = rng.random((T, E)) < 0.1
    truncated = (rng.random((T, E)) < 0.1) & ~terminated
    return (rng.normal(size=(T, E)), rng.normal(size=(T, E)), rng.normal(size=(T, E)),
            terminated, terminated | truncated)


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (0.5, 0.0), (1.0, 0.7)])
def test_gae__random_episodes_against_numpy(sub, gamma, lam):
    data = _episodes(int(gamma * 100 + lam * 10))
    adv, ret = sub.advantages.gae(*[np.asarray(x) for x in data], gamma, lam)
    expected = np_gae(*data, gamma, lam)
    assert adv.shape == ret.shape == (40, 3) and adv.dtype == np.float32
    sub.assert_close(adv, expected, rtol=1e-4, atol=1e-4)
    sub.assert_close(ret, expected + data[1], rtol=1e-4, atol=1e-4)


def test_gae__batch_axes_after_time(sub):
    """(T, ...) inputs: two batch axes, and one step."""
    rng = np.random.default_rng(7)
    shape = (6, 2, 3)
    r, v, nv = rng.normal(size=(3,) + shape)
    term = rng.random(shape) < 0.2
    done = term | (rng.random(shape) < 0.2)
    adv, ret = sub.advantages.gae(r, v, nv, term, done, 0.9, 0.8)
    want = np_gae(r.reshape(6, 6), v.reshape(6, 6), nv.reshape(6, 6), term.reshape(6, 6),
                  done.reshape(6, 6), 0.9, 0.8).reshape(shape)
    sub.assert_close(adv, want, rtol=1e-4, atol=1e-4)
    sub.assert_close(ret, want + v, rtol=1e-4, atol=1e-4)
    one = sub.advantages.gae(r[:1], v[:1], nv[:1], term[:1], done[:1], 0.9, 0.8)[0]
    sub.assert_close(one, np_gae(r[:1].reshape(1, 6), v[:1].reshape(1, 6),
                                           nv[:1].reshape(1, 6), term[:1].reshape(1, 6),
                                           done[:1].reshape(1, 6), 0.9, 0.8).reshape(
                                               (1, 2, 3)), rtol=1e-4, atol=1e-4)


def _jit_gae(*args):
    import jax

    from minirlhf.advantages import gae

    return jax.jit(gae, static_argnums=(5, 6))(*args)


def test_gae__episode_end_cuts_the_sum_and_jit_works(sub):
    rewards = np.asarray([[1.0], [100.0]], np.float32)
    next_values = np.asarray([[2.0], [0.0]], np.float32)
    terminated = np.asarray([[False], [True]])
    done = np.asarray([[True], [True]])
    adv, ret = sub.run(_jit_gae, rewards, np.asarray([[0.5], [0.25]], np.float32),
                       next_values, terminated, done, 0.9, 0.8)
    sub.assert_close(adv[:, 0], [1.0 + 0.9 * 2.0 - 0.5, 100.0 - 0.25], rtol=1e-6)
    sub.assert_close(ret[:, 0], [1.0 + 0.9 * 2.0, 100.0], rtol=1e-6)


@pytest.mark.parametrize("lo,hi", [(0.2, None), (0.1, 0.3), (0.3, 0.05)])
def test_clipped_surrogate__random_against_numpy(sub, lo, hi):
    rng = np.random.default_rng(2)
    logp, old = rng.normal(size=(2, 5, 7)) * 0.3
    adv = rng.normal(size=(5, 7))
    s = sub.losses.clipped_surrogate(logp, old, adv, lo, hi)
    sub.assert_close(s, np_surrogate(logp, old, adv, lo, lo if hi is None else hi),
                               rtol=1e-5, atol=1e-6)


def test_clipped_surrogate__per_sequence_advantage_broadcasts(sub):
    rng = np.random.default_rng(3)
    logp, old = rng.normal(size=(2, 4, 6)) * 0.3
    adv = rng.normal(size=(4, 1))
    s = sub.losses.clipped_surrogate(logp, old, adv, 0.2, 0.28)
    sub.assert_close(s, np_surrogate(logp, old, adv, 0.2, 0.28), rtol=1e-5,
                               atol=1e-6)


def _surrogate_grad(logp, old, adv, lo, hi):
    import jax

    from minirlhf.losses import clipped_surrogate

    return jax.grad(lambda lp: clipped_surrogate(lp, old, adv, lo, hi).sum())(logp)


def test_clipped_surrogate__gradient_on_both_sides_of_both_clips(sub):
    # Ratios on each side of 1 - lo, between, and past 1 + hi, with A of each sign: the
    # gradient is rho A where the unclipped term is the min, 0 where the clip holds it.
    ratios = np.asarray([0.5, 0.85, 0.95, 1.07, 1.2, 1.5] * 2, np.float32)  # off every bound
    adv = np.asarray([1.0] * 6 + [-2.0] * 6, np.float32)
    old = np.zeros(12, np.float32)
    for lo, hi in [(0.1, 0.1), (0.1, 0.3), (0.2, 0.05)]:
        got = sub.run(_surrogate_grad, np.log(ratios), old, adv, lo, hi)
        want = np_surrogate_grad(np.log(ratios.astype(np.float64)), 0.0, adv, lo, hi)
        sub.assert_close(got, want, rtol=1e-5, atol=1e-7,
                                   err_msg=f"eps_low {lo}, eps_high {hi}")


@pytest.mark.timeout(240)
def test_ppo_cartpole__reaches_a_return_of_100(sub):
    assert sub.run(_ppo_cartpole_return) >= 100


def _ppo_cartpole_return():
    import jax
    import numpy as np

    from minirlhf.envs import make_env
    from minirlhf.envs.core import AutoReset
    from minirlhf.ppo import PPOConfig, make_train

    cfg = PPOConfig(total_steps=50_000)  # the reference reaches about 200 (random: ~22)
    _, _, _, train = make_train(cfg, AutoReset(make_env(cfg.env)))
    _, metrics = jax.jit(train)(jax.random.key(0))
    episodes = np.asarray(metrics["episodes"])[-10:]
    return float(np.asarray(metrics["episode_return_sum"])[-10:].sum() / max(episodes.sum(), 1))
