"""Pure functions on categorical distributions over tokens, and masked reductions.

Everything takes logits and explicit masks; nothing here knows about models.
Notation: B batch, T tokens, V vocabulary.
"""

from __future__ import annotations

import math

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


def categorical_sample(key: jax.Array, logits: jax.Array) -> jax.Array:
    """Sample a ~ softmax(logits) per row. (..., V) -> (...) int32."""
    return jax.random.categorical(key, logits.astype(jnp.float32), axis=-1).astype(jnp.int32)


# --- diagonal Gaussian (continuous actions) ---------------------------------------------
#
# pi(a | s) = N(a; mu(s), diag(sigma^2)) with a state-independent log sigma, as in the PPO
# paper's continuous-control experiments (Schulman et al. 2017, section 6.1).

# A Python float, not a jnp op: importing minirlhf must not start JAX's backends (a program
# may still choose its devices after the import, e.g. `jax_num_cpu_devices`).
_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_sample(key: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """a = mu + sigma * eps, eps ~ N(0, I). mean (..., A), log_std broadcastable -> (..., A)."""
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)


def gaussian_logprob(action: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log N(a; mu, diag(sigma^2)) summed over the A action dimensions. (..., A) -> (...)."""
    z = (action - mean) * jnp.exp(-log_std)
    log_std = jnp.broadcast_to(log_std, mean.shape)
    return jnp.sum(-0.5 * z ** 2 - log_std - 0.5 * _LOG_2PI, axis=-1)


def gaussian_entropy(mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """H = sum_i (log sigma_i + 0.5 log(2 pi e)). mean (..., A) gives the batch shape -> (...)."""
    log_std = jnp.broadcast_to(log_std, mean.shape)
    return jnp.sum(log_std + 0.5 * (_LOG_2PI + 1.0), axis=-1)


def whiten(x: jax.Array, mask: jax.Array | None = None, shift_mean: bool = True,
           eps: float = 1e-8) -> jax.Array:
    """(x - mean) / std over the entries where mask is True (all if mask is None).

    PPO's advantage normalisation (the "advantage normalisation" detail of Engstrom et al.
    2020 / Huang et al. 2022); with shift_mean=False only the scale changes, as for rewards
    in lm-human-preferences. Entries outside the mask are returned unchanged.
    """
    if mask is None:
        mask = jnp.ones(x.shape, bool)
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    # Bessel's correction, as torch.std (CleanRL) computes it.
    n = jnp.sum(mask)
    var = var * n / jnp.maximum(n - 1, 1)
    out = (x - mean) * jax.lax.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return jnp.where(mask, out, x)


# --- KL divergence from samples (Schulman 2020, "Approximating KL divergence") -------------
#
# RLHF penalises KL(pi || pi_0) between the policy and the frozen reference, but the exact
# KL needs a sum over all V tokens at every step, and over all *sequences* for the whole
# response. With a token a ~ pi and the log-ratio log r = log pi_0(a) - log pi(a) we have
# three per-sample estimators of KL(pi || pi_0):
#
#   k1 = -log r                 unbiased, high variance, negative on some samples
#   k2 = (log r)^2 / 2          biased (low bias when pi ~ pi_0), low variance, >= 0
#   k3 = (r - 1) - log r        unbiased (E[r] = 1 under pi), low variance, >= 0
#
# k1 summed over a response is the log-ratio of the whole sequence, which is what the
# KL-shaped reward of Ziegler et al. 2019 / InstructGPT subtracts per token.

KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_estimate(logp: jax.Array, ref_logp: jax.Array, kind: str = "k1") -> jax.Array:
    """Per-sample estimate of KL(pi || pi_0) from tokens sampled from pi.

    Args:
        logp: (...) log pi(a) of sampled tokens under the sampling policy pi.
        ref_logp: (...) log pi_0(a) of the same tokens under the reference.
        kind: "k1", "k2" or "k3" (see above).
    Returns:
        (...) the estimator's value per sample; average it (over the samples of pi) for
        the estimate.
    """
    log_r = ref_logp - logp
    if kind == "k1":
        return -log_r
    if kind == "k2":
        return 0.5 * log_r ** 2
    if kind == "k3":
        return jnp.expm1(log_r) - log_r
    raise ValueError(f"unknown KL estimator {kind!r}; expected one of {KL_ESTIMATORS}")


def categorical_kl(logits_p: jax.Array, logits_q: jax.Array) -> jax.Array:
    """Exact KL(p || q) = sum_a p(a) (log p(a) - log q(a)) over the last axis. (..., V) -> (...)."""
    logp = jax.nn.log_softmax(logits_p.astype(jnp.float32), axis=-1)
    logq = jax.nn.log_softmax(logits_q.astype(jnp.float32), axis=-1)
    return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)
