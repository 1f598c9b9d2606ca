"""Pure losses of arrays. Models never enter here: algorithms call the model and hand the
arrays over, so each loss can be checked by hand and by `jax.test_util.check_grads`.

Notation: B batch, T tokens, V vocabulary.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from minirlhf.distributions import kl_estimate, masked_mean, token_logprobs


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
    # Samples come from pi_old, so pi_old plays the sampler and pi the reference.
    return masked_mean(kl_estimate(old_logp, logp, "k3"), _mask(logp, mask))


def clip_fraction(logp: jax.Array, old_logp: jax.Array, clip_eps: float,
                  mask: jax.Array | None = None) -> jax.Array:
    """The fraction of entries whose ratio left [1 - eps, 1 + eps] (a diagnostic)."""
    outside = jnp.abs(jnp.exp(logp - old_logp) - 1.0) > clip_eps
    return masked_mean(outside.astype(jnp.float32), _mask(logp, mask))


# --- preferences: Bradley-Terry (Christiano et al. 2017, eq. 1) ----------------------------


def bradley_terry_loss(r_a: jax.Array, r_b: jax.Array, prob_a: jax.Array | float = 1.0,
                       mask: jax.Array | None = None) -> jax.Array:
    """The preference loss: cross-entropy between the label and P(a > b) = sigma(r_a - r_b).

        L = -mean [ p log sigma(r_a - r_b) + (1 - p) log sigma(r_b - r_a) ]

    With p = 1 ("a was chosen") this is -log sigma(r_w - r_l): the decks' "2-class
    cross-entropy" (deck "Large Language Models and RL from Human Feedback", slides
    "Learning from Preferences" and "Learning from Preferences in practice"), the
    Bradley-Terry model of Christiano et al. 2017 (eq. 1) and
    InstructGPT. A soft p in (0, 1) is a noisy or smoothed label (label smoothing eps is
    p = 1 - eps). The same function serves every use:

    * pairs of completions: r_a, r_b are the reward model's scores, shape (B,);
    * rankings of K completions: `ranking_loss` expands them into K(K-1)/2 pairs;
    * trajectory snippets (T-REX): r_a, r_b are sums of per-step rewards
      (`trajectory_preference_loss`).

    Computed with log-sigmoid, so a gap of +-1000 gives a finite loss and gradient.

    Args:
        r_a, r_b: (...) scores of the two alternatives.
        prob_a: scalar or (...) probability that a is preferred (1 = a was chosen).
        mask: (...) bool, comparisons that count; None for all.
    Returns:
        scalar mean loss (nats).
    """
    chex.assert_equal_shape([r_a, r_b])
    gap = jnp.asarray(r_a, jnp.float32) - jnp.asarray(r_b, jnp.float32)
    p = jnp.broadcast_to(jnp.asarray(prob_a, jnp.float32), gap.shape)
    nll = -(p * jax.nn.log_sigmoid(gap) + (1.0 - p) * jax.nn.log_sigmoid(-gap))
    return masked_mean(nll, _mask(gap, mask))


def ranking_pairs(k: int) -> tuple[jax.Array, jax.Array]:
    """The K(K-1)/2 (better, worse) index pairs of a ranking listed best first.

    Returns:
        (better, worse): two (K(K-1)/2,) int32 arrays with better[i] < worse[i].
    """
    if not isinstance(k, int) or k < 2:
        raise ValueError(f"a ranking needs at least 2 items, got K={k!r}")
    better, worse = jnp.triu_indices(k, 1)
    return better.astype(jnp.int32), worse.astype(jnp.int32)


def ranking_loss(rewards: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Bradley-Terry over every pair of a ranking (InstructGPT, Ouyang et al. 2022, eq. 1):

        L = -1 / C(K, 2) * sum_{i < j} log sigma(r_i - r_j),  items listed best first,

    averaged over the batch. K = 2 is the pair loss.

    Args:
        rewards: (B, K) scores of K completions per prompt, best first.
        mask: (B,) bool, rankings that count; None for all.
    Returns:
        scalar loss.
    """
    chex.assert_rank(rewards, 2)
    better, worse = ranking_pairs(rewards.shape[1])
    pair_mask = None if mask is None else jnp.broadcast_to(mask[:, None],
                                                           (rewards.shape[0], better.size))
    return bradley_terry_loss(rewards[:, better], rewards[:, worse], 1.0, pair_mask)


def trajectory_preference_loss(step_rewards_a: jax.Array, step_rewards_b: jax.Array,
                               mask_a: jax.Array, mask_b: jax.Array,
                               prob_a: jax.Array | float = 1.0) -> jax.Array:
    """T-REX (Brown et al. 2019, eq. 1): a snippet's score is the sum of its per-step rewards,
    and the better snippet should score higher: bradley_terry_loss(sum_t r(a_t), sum_t r(b_t)).

    Args:
        step_rewards_a, step_rewards_b: (B, T) per-step rewards of the two snippets.
        mask_a, mask_b: (B, T) bool, the steps each snippet really has.
        prob_a: probability that snippet a is the better one (1 for a ranked pair).
    Returns:
        scalar loss.
    """
    chex.assert_equal_shape([step_rewards_a, mask_a])
    chex.assert_equal_shape([step_rewards_b, mask_b])
    ret_a = jnp.sum(jnp.where(mask_a, step_rewards_a, 0.0), axis=-1)
    ret_b = jnp.sum(jnp.where(mask_b, step_rewards_b, 0.0), axis=-1)
    return bradley_terry_loss(ret_a, ret_b, prob_a)
