"""Pure losses of arrays. Models never enter here: algorithms call the model and hand the
arrays over, so each loss can be checked by hand and by `jax.test_util.check_grads`.

Notation: B batch, T tokens, V vocabulary.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from minirlhf.distributions import masked_mean, token_logprobs


def next_token_nll(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """Per-position negative log-likelihood of the next token.

    Position t predicts token t+1: nll_t = -log P(w_{t+1} | w_1..w_t). The last position has
    no next token, so the output is one shorter than the input.

    Args:
        logits: (B, T, V) the model's logits for the sequence `tokens`.
        tokens: (B, T) int ids.
    Returns:
        (B, T-1) float32 negative log-likelihoods.
    """
    chex.assert_rank(logits, 3)
    chex.assert_equal_shape_prefix([logits, tokens], 2)
    return -token_logprobs(logits[:, :-1], tokens[:, 1:])


def next_token_loss(logits: jax.Array, tokens: jax.Array, loss_mask: jax.Array) -> jax.Array:
    """The language-modelling loss L_LM, averaged over the tokens selected by `loss_mask`.

        L_LM = 1/|M| sum_{t in M} -log P(w_t | w_1, ..., w_{t-1})

    (deck "Large Language Models and RL from Human Feedback", slide "Learning a language
    model by reading the internet!"; the slide averages over all T tokens, here M is the set
    of targets the mask selects). Pretraining selects every real token after BOS; SFT --
    behavioural cloning from demonstrations, "same loss function as pretraining" (slide
    "Give specific demonstrations of what we want") -- selects the response tokens only, so
    the model is never trained to produce the prompt.

    Args:
        logits: (B, T, V).
        tokens: (B, T) int ids.
        loss_mask: (B, T) bool, True where token t is a target (predicted from t-1). Its
            first column is ignored: nothing predicts the first token.
    Returns:
        scalar mean negative log-likelihood over the selected targets.
    """
    chex.assert_equal_shape([tokens, loss_mask])
    return masked_mean(next_token_nll(logits, tokens), loss_mask[:, 1:])


# --- PPO (Schulman et al. 2017) -----------------------------------------------------------
#
# The same functions serve the gym agents (one entry per transition) and the language model
# (one entry per response token, with a response mask). `mask=None` means every entry counts.


def _mask(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    return jnp.ones(x.shape, bool) if mask is None else mask


def clipped_surrogate_loss(logp: jax.Array, old_logp: jax.Array, advantages: jax.Array,
                           clip_eps: float, mask: jax.Array | None = None) -> jax.Array:
    """PPO's clipped surrogate objective, negated to be minimised (Schulman et al. 2017, eq. 7).

        rho_t = pi(a_t|s_t) / pi_old(a_t|s_t) = exp(logp - old_logp)
        L     = -mean_t min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t)

    The min makes it a pessimistic bound: once the ratio has moved past 1 + eps in the
    direction the advantage favours (above for A > 0, below 1 - eps for A < 0), the clipped
    term is the smaller one, it does not depend on the parameters, and the gradient is
    zero -- the policy gains nothing by moving further from the one that collected the data.
    In the unfavourable direction the unclipped term stays, so a bad move is always undone.

    Args:
        logp: (...) log pi(a_t|s_t) under the current parameters (differentiated).
        old_logp: (...) log pi_old(a_t|s_t) recorded at collection time (a constant).
        advantages: (...) A_t (a constant), usually normalised.
        clip_eps: epsilon, e.g. 0.2.
        mask: (...) bool, entries that count (response tokens); None for all.
    Returns:
        scalar loss.
    """
    chex.assert_equal_shape([logp, old_logp, advantages])
    ratio = jnp.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    return -masked_mean(jnp.minimum(unclipped, clipped), _mask(logp, mask))


def value_loss(values: jax.Array, returns: jax.Array,
               mask: jax.Array | None = None) -> jax.Array:
    """0.5 * mean (V(s_t) - R_t)^2: the critic's regression onto the returns."""
    chex.assert_equal_shape([values, returns])
    return 0.5 * masked_mean((values - returns) ** 2, _mask(values, mask))


def clipped_value_loss(values: jax.Array, old_values: jax.Array, returns: jax.Array,
                       clip_eps: float, mask: jax.Array | None = None) -> jax.Array:
    """The value loss of OpenAI baselines' PPO2 (and lm-human-preferences):

        V_clip = V_old + clip(V - V_old, -eps, eps)
        L_V    = 0.5 * mean max((V - R)^2, (V_clip - R)^2)

    It keeps the critic near the one that collected the data, as the surrogate does for the
    policy. Engstrom et al. 2020 and Andrychowicz et al. 2021 found it does not help and can
    hurt on MuJoCo, so it is an option next to `value_loss`, not a default truth.
    """
    chex.assert_equal_shape([values, old_values, returns])
    v_clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    worst = jnp.maximum((values - returns) ** 2, (v_clipped - returns) ** 2)
    return 0.5 * masked_mean(worst, _mask(values, mask))


def approx_kl(logp: jax.Array, old_logp: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """KL(pi_old || pi) estimated from samples of pi_old with the k3 estimator,
    mean((rho - 1) - log rho), rho = pi / pi_old: unbiased and never negative (Schulman 2020,
    "Approximating KL divergence"). A diagnostic: PPO's updates should keep it small."""
    log_ratio = logp - old_logp
    return masked_mean(jnp.expm1(log_ratio) - log_ratio, _mask(logp, mask))


def clip_fraction(logp: jax.Array, old_logp: jax.Array, clip_eps: float,
                  mask: jax.Array | None = None) -> jax.Array:
    """The fraction of entries whose ratio left [1 - eps, 1 + eps] (a diagnostic)."""
    outside = jnp.abs(jnp.exp(logp - old_logp) - 1.0) > clip_eps
    return masked_mean(outside.astype(jnp.float32), _mask(logp, mask))
