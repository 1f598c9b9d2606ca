"""PPO's pure pieces: clipped surrogate, value losses, diagnostics, Gaussian helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from minirlhf.distributions import (gaussian_entropy, gaussian_logprob, gaussian_sample,
                                    whiten)
from minirlhf.losses import (approx_kl, clip_fraction, clipped_surrogate_loss,
                             clipped_value_loss, value_loss)

EPS = 0.2


def surrogate_at(ratio, adv):
    """Loss and d loss / d logp for one entry with the given ratio and advantage."""
    old = jnp.asarray([0.0])
    f = lambda logp: clipped_surrogate_loss(logp, old, jnp.asarray([adv]), EPS)
    logp = jnp.asarray([np.log(ratio)], jnp.float32)
    return float(f(logp)), float(jax.grad(f)(logp)[0])


# The four sign/clip cases (Schulman et al. 2017, figure 1), worked by hand:
#   L = -min(rho A, clip(rho, 0.8, 1.2) A);  dL/dlogp = -rho A when the unclipped term is
#   the minimum, 0 when the clipped (constant) term is.
@pytest.mark.parametrize("ratio,adv,loss,grad", [
    (1.1, 2.0, -2.2, -2.2),   # A > 0, inside the clip range: gradient pushes the ratio up
    (1.5, 2.0, -2.4, 0.0),    # A > 0, ratio above 1 + eps: clipped, no gradient
    (0.9, -2.0, 1.8, 1.8),    # A < 0, inside: gradient pushes the ratio down
    (0.5, -2.0, 1.6, 0.0),    # A < 0, ratio below 1 - eps: clipped, no gradient
    (0.5, 2.0, -1.0, -1.0),   # A > 0 but the ratio fell: unclipped term is the min, undo it
    (1.5, -2.0, 3.0, 3.0),    # A < 0 but the ratio rose: unclipped term is the min, undo it
])
def test_clipped_surrogate_by_hand(ratio, adv, loss, grad):
    got_loss, got_grad = surrogate_at(ratio, adv)
    assert got_loss == pytest.approx(loss, rel=1e-5)
    assert got_grad == pytest.approx(grad, rel=1e-5, abs=1e-7)


def test_clipped_surrogate_mask_and_gradient_check():
    key = jax.random.key(0)
    logp = jax.random.normal(key, (4, 6)) * 0.1
    old = jax.random.normal(jax.random.key(1), (4, 6)) * 0.1
    adv = jax.random.normal(jax.random.key(2), (4, 6))
    mask = jnp.arange(6)[None, :] < jnp.asarray([[6], [3], [1], [4]])
    full = clipped_surrogate_loss(logp, old, adv, EPS, mask)
    # Masked entries change nothing.
    noisy = jnp.where(mask, logp, 50.0)
    assert float(clipped_surrogate_loss(noisy, old, adv, EPS, mask)) == pytest.approx(float(full))
    check_grads(lambda x: clipped_surrogate_loss(x, old, adv, 0.5, mask), (logp,), order=1,
                modes=["rev"], atol=1e-2, rtol=1e-2)


def test_value_losses_by_hand():
    v, old, ret = jnp.asarray([2.0, 0.0]), jnp.asarray([1.0, 0.0]), jnp.asarray([3.0, 1.0])
    # plain: 0.5 * mean((2-3)^2, (0-1)^2) = 0.5
    assert float(value_loss(v, ret)) == pytest.approx(0.5)
    # clipped at 0.2: v_clip = (1.2, 0); errors^2 = max(1, 3.24) = 3.24 and max(1, 1) = 1
    assert float(clipped_value_loss(v, old, ret, 0.2)) == pytest.approx(0.5 * (3.24 + 1) / 2)
    # Only the first entry counts under the mask.
    assert float(value_loss(v, ret, jnp.asarray([True, False]))) == pytest.approx(0.5)


def test_diagnostics_by_hand():
    logp = jnp.log(jnp.asarray([1.0, 1.5, 0.5]))
    old = jnp.zeros(3)
    # k3 = (rho - 1) - log rho: 0, 0.5 - log 1.5, -0.5 - log 0.5
    expected = np.mean([0.0, 0.5 - np.log(1.5), -0.5 - np.log(0.5)])
    assert float(approx_kl(logp, old)) == pytest.approx(expected, rel=1e-5)
    assert float(clip_fraction(logp, old, EPS)) == pytest.approx(2 / 3)


def test_gaussian_helpers_match_closed_forms():
    mean, log_std = jnp.asarray([[0.5, -1.0]]), jnp.asarray([0.1, -0.3])
    x = jnp.asarray([[1.0, 0.0]])
    sigma = np.exp(np.asarray(log_std))
    expected = np.sum(-0.5 * ((np.asarray(x) - np.asarray(mean)) / sigma) ** 2
                      - np.log(sigma) - 0.5 * np.log(2 * np.pi))
    assert float(gaussian_logprob(x, mean, log_std)[0]) == pytest.approx(expected, rel=1e-5)
    assert float(gaussian_entropy(mean, log_std)[0]) == pytest.approx(
        np.sum(np.log(sigma) + 0.5 * np.log(2 * np.pi * np.e)), rel=1e-5)
    draws = gaussian_sample(jax.random.key(0), jnp.broadcast_to(mean, (20000, 2)), log_std)
    np.testing.assert_allclose(draws.mean(0), mean[0], atol=0.03)
    np.testing.assert_allclose(draws.std(0), sigma, rtol=0.03)
    # Monte-Carlo entropy equals the closed form.
    mc = -float(jnp.mean(gaussian_logprob(draws, mean, log_std)))
    assert mc == pytest.approx(float(gaussian_entropy(mean, log_std)[0]), abs=0.03)


def test_whiten():
    x = jnp.asarray([1.0, 2.0, 3.0, 100.0])
    mask = jnp.asarray([True, True, True, False])
    w = whiten(x, mask)
    np.testing.assert_allclose(w[:3], [-1.0, 0.0, 1.0], rtol=1e-5)  # unbiased std of 1,2,3 is 1
    assert float(w[3]) == 100.0  # outside the mask: untouched
    np.testing.assert_allclose(whiten(x, mask, shift_mean=False)[:3], [1.0, 2.0, 3.0], rtol=1e-5)
