import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from minirlhf.distributions import entropy, masked_mean, token_logprobs
from minirlhf.losses import next_token_loss, next_token_nll


def test_cross_entropy_by_hand():
    # One sequence [0, 1, 2] over V = 3; position 0 predicts token 1, position 1 predicts 2.
    logits = jnp.array([[[0.0, np.log(3.0), 0.0],  # P(1) = 3/5
                         [1.0, 1.0, 1.0],  # P(2) = 1/3
                         [9.0, 9.0, 9.0]]])  # the last position predicts nothing
    tokens = jnp.array([[0, 1, 2]])
    np.testing.assert_allclose(next_token_nll(logits, tokens), [[-np.log(0.6), np.log(3)]],
                               rtol=1e-6)
    loss = next_token_loss(logits, tokens, jnp.ones((1, 3), bool))
    np.testing.assert_allclose(loss, (-np.log(0.6) + np.log(3)) / 2, rtol=1e-6)
    only_last = next_token_loss(logits, tokens, jnp.array([[True, False, True]]))
    np.testing.assert_allclose(only_last, np.log(3), rtol=1e-6)


def test_loss_gradient_matches_finite_differences():
    logits = jax.random.normal(jax.random.key(0), (2, 5, 7), jnp.float64
                               if jax.config.jax_enable_x64 else jnp.float32)
    tokens = jax.random.randint(jax.random.key(1), (2, 5), 0, 7)
    mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    check_grads(lambda x: next_token_loss(x, tokens, mask), (logits,), order=2,
                modes=["rev"], atol=1e-2, rtol=1e-2)


def test_sft_mask_excludes_prompt_tokens():
    """Targets outside the loss mask get exactly zero gradient; changing them changes nothing."""
    V = 5
    logits = jax.random.normal(jax.random.key(2), (1, 6, V))
    tokens = jnp.array([[1, 3, 4, 3, 4, 2]])  # BOS, prompt (3, 4), response (3, 4, EOS)
    loss_mask = jnp.array([[0, 0, 0, 1, 1, 1]], bool)
    grad = jax.grad(next_token_loss)(logits, tokens, loss_mask)
    # Logits at positions 0, 1 predict prompt tokens 1, 2: no gradient.
    np.testing.assert_array_equal(grad[0, :2], 0.0)
    assert np.all(np.abs(grad[0, 2:5]).sum(-1) > 0)
    other = logits.at[0, :2].set(100.0)
    np.testing.assert_allclose(next_token_loss(other, tokens, loss_mask),
                               next_token_loss(logits, tokens, loss_mask), rtol=1e-6)


def test_distribution_helpers_by_hand():
    logits = jnp.log(jnp.array([[0.5, 0.25, 0.25]]))
    np.testing.assert_allclose(token_logprobs(logits, jnp.array([1])), [np.log(0.25)], rtol=1e-6)
    np.testing.assert_allclose(entropy(logits), [1.5 * np.log(2)], rtol=1e-6)
    x = jnp.array([1.0, 2.0, 30.0])
    assert float(masked_mean(x, jnp.array([True, True, False]))) == 1.5
    assert float(masked_mean(x, jnp.zeros(3, bool))) == 0.0
