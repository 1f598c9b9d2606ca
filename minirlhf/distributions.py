"""Pure functions on categorical distributions over tokens, and masked reductions.

Everything takes logits and explicit masks; nothing here knows about models.
Notation: B batch, T tokens, V vocabulary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def token_logprobs(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """log pi(a_t | s_t): the log-probability of each chosen token.

    Args:
        logits: (..., V) unnormalised log-probabilities.
        tokens: (...) int ids of the chosen tokens.
    Returns:
        (...) log softmax(logits)[tokens], computed stably with log-sum-exp.
    """
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # (..., V)
    return jnp.take_along_axis(logp, tokens[..., None].astype(jnp.int32), axis=-1)[..., 0]


def entropy(logits: jax.Array) -> jax.Array:
    """H(pi) = -sum_a pi(a) log pi(a) over the last axis. (..., V) -> (...)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def masked_sum(x: jax.Array, mask: jax.Array) -> jax.Array:
    """sum of x where mask is True (a scalar)."""
    return jnp.sum(jnp.where(mask, x, 0.0))


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of x over the entries where mask is True; 0 if there are none."""
    count = jnp.sum(mask)
    return masked_sum(x, mask) / jnp.maximum(count, 1)
