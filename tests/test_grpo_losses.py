"""GRPO's pure pieces: group advantages, the three aggregations, the loss and its gradient
against the policy gradient it estimates, clip-higher, k3 in the loss, pass@k."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from minirlhf.advantages import flat_groups, group_advantages
from minirlhf.evaluation import pass_at_k
from minirlhf.losses import aggregate, clipped_surrogate, clipped_surrogate_loss, grpo_loss


# --- group advantages -------------------------------------------------------------------------

def test_group_advantages_by_hand():
    r = jnp.asarray([[1.0, 0.0, 0.0, 1.0],   # half right: mean 0.5, sample std 1/sqrt(3)
                     [1.0, 1.0, 1.0, 1.0],   # all right: no signal
                     [0.0, 1.0, 2.0, 3.0]])  # mean 1.5, sample std sqrt(5/3)
    s3, s53 = 1 / math.sqrt(3), math.sqrt(5 / 3)
    np.testing.assert_allclose(group_advantages(r, "grpo"), [
        [0.5 / s3, -0.5 / s3, -0.5 / s3, 0.5 / s3], [0, 0, 0, 0],
        [-1.5 / s53, -0.5 / s53, 0.5 / s53, 1.5 / s53]], rtol=1e-6)
    np.testing.assert_allclose(group_advantages(r, "dr_grpo"), [
        [0.5, -0.5, -0.5, 0.5], [0, 0, 0, 0], [-1.5, -0.5, 0.5, 1.5]], rtol=1e-6)
    # RLOO: r_i minus the mean of the other three.
    np.testing.assert_allclose(group_advantages(r, "rloo"), [
        [1 - 1 / 3, 0 - 2 / 3, 0 - 2 / 3, 1 - 1 / 3], [0, 0, 0, 0],
        [0 - 2, 1 - 5 / 3, 2 - 4 / 3, 3 - 1]], rtol=1e-6)
    np.testing.assert_array_equal(flat_groups(r, 1e-3), [False, True, False])


def test_rounding_differences_never_become_large_advantages():
    # Rewards equal but for float rounding (a reward model scoring near-identical texts):
    # a plain (r - mean) / (std + 1e-8) would turn 1e-7 into advantages of +-1.
    r = jnp.asarray([[0.3, 0.3 + 1e-7, 0.3, 0.3 - 1e-7]])
    for kind in ("grpo", "dr_grpo", "rloo"):
        np.testing.assert_array_equal(group_advantages(r, kind), 0.0)
    assert bool(flat_groups(r, 1e-3)[0])
    # A difference above the floor is a signal: normalised to unit size as usual.
    big = group_advantages(jnp.asarray([[0.0, 0.01]]), "grpo")
    np.testing.assert_allclose(jnp.abs(big), 1 / math.sqrt(2), rtol=1e-5)


def test_group_advantages_refuse_bad_input():
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(jnp.ones((4, 1)))
    with pytest.raises(ValueError, match="unknown group advantage 'ppo'"):
        group_advantages(jnp.ones((4, 2)), "ppo")


# --- aggregation ----------------------------------------------------------------------------

# Two responses: one of 1 token with l = 4, one of 3 tokens with l = 1, 1, 1 (N = 4).
PER_TOKEN = jnp.asarray([[4.0, 9.0, 9.0, 9.0], [1.0, 1.0, 1.0, 9.0]])
MASK = jnp.asarray([[True, False, False, False], [True, True, True, False]])


@pytest.mark.parametrize("how,expected", [
    ("sequence_mean", (4 / 1 + 3 / 3) / 2),  # 2.5: each response weighs the same
    ("token_mean", (4 + 3) / 4),             # 1.75: each token weighs the same
    ("constant", (4 + 3) / (2 * 4)),         # 0.875: the sum over B x N
])
def test_aggregations_by_hand(how, expected):
    assert float(aggregate(PER_TOKEN, MASK, how)) == pytest.approx(expected)


def test_aggregation_weights_of_long_and_short_responses():
    """The bias the lecture shows: under sequence_mean a token of the short response weighs
    3x a token of the long one; token_mean and constant weigh them alike."""
    def weights(how):
        return jax.grad(lambda x: aggregate(x, MASK, how))(PER_TOKEN)
    w = weights("sequence_mean")
    assert float(w[0, 0]) == pytest.approx(3 * float(w[1, 0]))
    for how in ("token_mean", "constant"):
        w = weights(how)
        assert float(w[0, 0]) == pytest.approx(float(w[1, 0]))
    np.testing.assert_array_equal(weights("token_mean")[~MASK], 0.0)  # padding never counts
    # A response masked out whole (dynamic sampling) is not counted among the B.
    masked = MASK.at[0].set(False)
    assert float(aggregate(PER_TOKEN, masked, "sequence_mean")) == pytest.approx(1.0)
    assert float(aggregate(PER_TOKEN, masked, "constant")) == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(PER_TOKEN, MASK, "mean")


# --- the loss ----------------------------------------------------------------------------

def test_clip_higher_lets_unlikely_tokens_grow_further():
    # A > 0 and the ratio at 1.25: past PPO's 1 + 0.2 (clipped, no gradient) but inside
    # DAPO's 1 + 0.28 (still pushed up).
    logp, old, adv = jnp.log(jnp.asarray([1.25])), jnp.zeros(1), jnp.ones(1)
    grad = lambda high: float(jax.grad(
        lambda lp: -clipped_surrogate(lp, old, adv, 0.2, high)[0])(logp)[0])
    assert grad(0.2) == 0.0
    assert grad(0.28) == pytest.approx(-1.25)
    # The low side is unchanged: A < 0 and the ratio below 1 - 0.2 is clipped either way.
    low = jnp.log(jnp.asarray([0.75]))
    assert float(jax.grad(lambda lp: -clipped_surrogate(lp, old, -adv, 0.2, 0.28)[0])(low)[0]) \
        == 0.0
    # With one epsilon it is PPO's loss.
    a = jnp.asarray([0.5, -1.0, 2.0])
    lp, olp = jnp.asarray([-1.0, -0.5, -2.0]), jnp.asarray([-1.2, -0.4, -1.9])
    assert float(-jnp.mean(clipped_surrogate(lp, olp, a, 0.2))) == \
        pytest.approx(float(clipped_surrogate_loss(lp, olp, a, 0.2)))


def random_case(seed, B=3, N=5):
    rng = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(rng.normal(size=s) * 0.3 - 1.0, jnp.float32)
    mask = jnp.asarray(np.arange(N)[None, :] < rng.integers(1, N + 1, size=(B, 1)))
    return f(B, N), f(B, N), f(B, N), jnp.asarray(rng.normal(size=B), jnp.float32), mask


def test_grpo_loss_by_hand_and_kl_never_negative():
    logp, old, ref, adv, mask = random_case(0)
    # By hand, at beta = 0.1 and sequence_mean: -(1/B) sum_i mean_t (s_it - 0.1 k3_it).
    ratio = np.exp(np.asarray(logp - old))
    s = np.minimum(ratio * np.asarray(adv)[:, None],
                   np.clip(ratio, 0.8, 1.3) * np.asarray(adv)[:, None])
    log_r = np.asarray(ref - logp)
    k3 = np.exp(log_r) - 1 - log_r
    m = np.asarray(mask)
    expected = -np.mean([(s[i] - 0.1 * k3[i])[m[i]].mean() for i in range(3)])
    got = grpo_loss(logp, old, ref, adv, mask, 0.2, 0.3, beta=0.1)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert (k3 >= 0).all()
    # The KL term only ever adds to the loss: with zero advantages the loss is beta * KL >= 0.
    zero = jnp.zeros_like(adv)
    assert float(grpo_loss(logp, old, ref, zero, mask, 0.2, beta=0.1)) > 0
    assert float(grpo_loss(logp, old, logp, zero, mask, 0.2, beta=0.1)) == pytest.approx(0.0)


@pytest.mark.parametrize("aggregation", ["sequence_mean", "token_mean", "constant"])
def test_grpo_loss_gradient_check(aggregation):
    logp, old, ref, adv, mask = random_case(1)
    f = lambda lp: grpo_loss(lp, old, ref, adv, mask, 0.2, 0.28, 0.05, aggregation)
    # Away from the clip's kinks (all ratios within the clip range here).
    check_grads(f, (old + 0.05,), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)
    assert float(jnp.max(jnp.abs(jax.grad(f)(logp)[~mask]))) == 0.0  # padding gets nothing


def test_grpo_gradient_is_the_policy_gradient_it_estimates():
    """On a bandit (responses of one token, a softmax policy over V = 3 answers), average
    the GRPO loss's gradient over every possible group of G = 2 samples, weighted by its
    probability, and compare with the exact policy gradient grad_theta E_pi[r].

    RLOO's leave-one-out baseline does not depend on the sample it scores: the estimate is
    unbiased. The plain group mean (Dr. GRPO's advantage) contains the sample itself and
    shrinks the gradient by exactly (G - 1) / G."""
    theta = jnp.asarray([0.2, -0.3, 0.5])
    r = jnp.asarray([1.0, 0.0, 2.0])
    V, G = 3, 2

    def expected_reward(t):
        return jnp.sum(jax.nn.softmax(t) * r)

    exact = jax.grad(expected_reward)(theta)

    def group_gradient(kind):
        total = jnp.zeros(V)
        for group in itertools.product(range(V), repeat=G):
            a = jnp.asarray(group)
            prob = jnp.prod(jax.nn.softmax(theta)[a])
            adv = group_advantages(r[a][None], kind, std_floor=0.0)[0]

            def loss(t):
                logp = jax.nn.log_softmax(t)[a][:, None]  # (G, 1): one token each
                return grpo_loss(logp, jax.lax.stop_gradient(logp), logp, adv,
                                 jnp.ones((G, 1), bool), 0.2)
            total = total + prob * -jax.grad(loss)(theta)
        return total

    np.testing.assert_allclose(group_gradient("rloo"), exact, atol=1e-6)
    np.testing.assert_allclose(group_gradient("dr_grpo"), exact * (G - 1) / G, atol=1e-6)


def test_loss_with_several_tokens_gives_each_token_the_response_advantage():
    # At ratio 1 and beta 0, d loss / d logp_it = -A_i * (weight of token t).
    logp = jnp.zeros((2, 3))
    mask = jnp.asarray([[True, True, False], [True, True, True]])
    adv = jnp.asarray([2.0, -1.0])
    g = jax.grad(lambda lp: grpo_loss(lp, logp, logp, adv, mask, 0.2))(logp)
    np.testing.assert_allclose(g, [[-2 / 2 / 2, -2 / 2 / 2, 0], [1 / 3 / 2] * 3], rtol=1e-6)


# --- pass@k -----------------------------------------------------------------------------

def test_pass_at_k_by_hand_and_by_enumeration():
    assert float(pass_at_k(8, 0, 1)) == 0.0
    assert float(pass_at_k(8, 2, 1)) == pytest.approx(2 / 8)
    assert float(pass_at_k(8, 1, 8)) == 1.0
    assert float(pass_at_k(4, 1, 2)) == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)
    # Against drawing k of n without replacement, every way.
    n, k = 6, 3
    for c in range(n + 1):
        samples = [True] * c + [False] * (n - c)
        draws = list(itertools.combinations(samples, k))
        assert float(pass_at_k(n, c, k)) == pytest.approx(np.mean([any(d) for d in draws]))
    np.testing.assert_allclose(pass_at_k(8, np.array([0, 8, 4]), 2),
                               [0, 1, 1 - math.comb(4, 2) / math.comb(8, 2)])
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(4, 1, 5)
