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


def clipped_surrogate(logp: jax.Array, old_logp: jax.Array, advantages: jax.Array,
                      clip_eps: float, clip_eps_high: float | None = None) -> jax.Array:
    """PPO's clipped surrogate objective per entry (to be maximised; Schulman et al. 2017, eq. 7).

        rho_t = pi(a_t|s_t) / pi_old(a_t|s_t) = exp(logp - old_logp)
        s_t   = min(rho_t A_t, clip(rho_t, 1 - eps_low, 1 + eps_high) A_t)

    The min makes it a pessimistic bound: once the ratio has moved past 1 + eps in the
    direction the advantage favours (above for A > 0, below 1 - eps for A < 0), the clipped
    term is the smaller one, it does not depend on the parameters, and the gradient is
    zero -- the policy gains nothing by moving further from the one that collected the data.
    In the unfavourable direction the unclipped term stays, so a bad move is always undone.

    A larger eps_high than eps_low is DAPO's "clip-higher" (Yu et al. 2025): a token the
    old policy thought unlikely can gain more probability before the clip stops it, which
    keeps exploration (entropy) alive; PPO uses one epsilon for both.

    Args:
        logp: (...) log pi(a_t|s_t) under the current parameters (differentiated).
        old_logp: (...) log pi_old(a_t|s_t) recorded at collection time (a constant).
        advantages: (...) A_t (a constant), broadcastable to logp (e.g. (B, 1) per sequence).
        clip_eps: eps_low (and eps_high unless given), e.g. 0.2.
        clip_eps_high: eps_high; None means clip_eps.
    Returns:
        (...) s_t.
    """
    chex.assert_equal_shape([logp, old_logp])
    # BEGIN SOLUTION
    high = clip_eps if clip_eps_high is None else clip_eps_high
    ratio = jnp.exp(logp - old_logp)
    return jnp.minimum(ratio * advantages, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + high) * advantages)
    # END SOLUTION


def clipped_surrogate_loss(logp: jax.Array, old_logp: jax.Array, advantages: jax.Array,
                           clip_eps: float, mask: jax.Array | None = None) -> jax.Array:
    """PPO's loss: the clipped surrogate (`clipped_surrogate`) averaged over the entries
    that count, negated to be minimised:

        L = -mean_t min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t)

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
    return -masked_mean(clipped_surrogate(logp, old_logp, advantages, clip_eps),
                        _mask(logp, mask))


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


# --- GRPO (Shao et al. 2024, DeepSeekMath; DeepSeek-R1) -------------------------------------
#
# One scalar advantage per response (its group-normalised reward, advantages.py), the same
# clipped surrogate as PPO at every response token, and the KL to the reference *in the
# loss* rather than in the reward. What differs between GRPO and its successors is mostly
# how the per-token terms are averaged (`aggregate`).

AGGREGATIONS = ("sequence_mean", "token_mean", "constant")


def count_responses(mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(responses, tokens): how many responses have a token in `mask` (B, N), and how many
    tokens it holds; the denominators of `aggregate`."""
    return jnp.sum(jnp.any(mask, axis=1)), jnp.sum(mask)


def aggregate(per_token: jax.Array, mask: jax.Array, how: str,
              max_tokens: int | None = None, counts: tuple | None = None) -> jax.Array:
    """Average per-token terms l_{i,t} over a batch of responses, three ways.

        sequence_mean  (GRPO, Shao et al. 2024, eq. 3):  1/B sum_i 1/|o_i| sum_t l_{i,t}
        token_mean     (DAPO, Yu et al. 2025, eq. 8):    1/sum_i |o_i|  sum_i sum_t l_{i,t}
        constant       (Dr. GRPO, Liu et al. 2025):      1/B sum_i 1/N   sum_t l_{i,t}

    With sequence_mean every response weighs the same whatever its length, so each token of
    a long response weighs less: a long wrong answer is penalised less per token than a short
    one, and a short right answer rewarded more -- a bias towards short right and long wrong
    responses that Dr. GRPO measured as responses growing longer where they are wrong.
    token_mean weighs every token the same within the batch, but a token of a batch of short
    responses more than one of a batch of long ones; constant divides by the budget
    N = max_tokens, the same for every response, so no length gets a different weight per
    token.

    B counts only the responses that have a token in `mask`: a response masked out whole
    (a flat group's under dynamic sampling, a truncated one) is not one of them, so when
    masking leaves fewer responses, each remaining one weighs more.

    Args:
        per_token: (B, N) the per-token terms.
        mask: (B, N) bool, the tokens that count.
        how: one of AGGREGATIONS.
        max_tokens: N for "constant" (default: per_token.shape[1]).
        counts: (responses, tokens) that count in the whole batch these rows belong to
            (`count_responses`), when the batch is split into microbatches whose results are
            added (`optim.accumulate_gradients`); default: those of `mask`.
    Returns:
        scalar.
    """
    chex.assert_equal_shape([per_token, mask])
    x = jnp.where(mask, per_token, 0.0)
    lengths = jnp.sum(mask, axis=1)  # (B,) |o_i|
    responses, tokens = count_responses(mask) if counts is None else counts
    responses, tokens = jnp.maximum(responses, 1), jnp.maximum(tokens, 1)
    if how == "sequence_mean":
        return jnp.sum(jnp.sum(x, axis=1) / jnp.maximum(lengths, 1)) / responses
    if how == "token_mean":
        return jnp.sum(x) / tokens
    if how == "constant":
        n = per_token.shape[1] if max_tokens is None else max_tokens
        return jnp.sum(x) / (responses * n)
    raise ValueError(f"unknown aggregation {how!r}; expected one of {AGGREGATIONS}")


def grpo_loss(logp: jax.Array, old_logp: jax.Array, ref_logp: jax.Array,
              advantages: jax.Array, mask: jax.Array, clip_eps: float,
              clip_eps_high: float | None = None, beta: float = 0.0,
              aggregation: str = "sequence_mean", max_tokens: int | None = None,
              counts: tuple | None = None) -> jax.Array:
    """The GRPO objective, negated to be minimised (Shao et al. 2024, eq. 3; DeepSeek-R1):

        l_{i,t} = min(rho_{i,t} A_i, clip(rho_{i,t}, 1 - eps_low, 1 + eps_high) A_i)
                  - beta * k3_{i,t}
        k3_{i,t} = pi_ref/pi_theta - log(pi_ref/pi_theta) - 1      (>= 0)
        L = -aggregate(l)

    rho_{i,t} = pi_theta(o_{i,t}|q, o_{i,<t}) / pi_old(...), with pi_old the policy that
    sampled the group (mu in the paper's notation for its several updates per batch).
    A_i is the response's group-relative advantage, the same at all its tokens: GRPO has no
    critic to tell the tokens apart. The KL to the reference is a term of the loss,
    estimated per token with k3 (Schulman 2020): unbiased and never negative -- unlike PPO-
    RLHF, which subtracts beta * KL from the reward (rollout.py). beta = 0 drops it (DAPO,
    Dr. GRPO).

    Args:
        logp: (B, N) log pi_theta of the response tokens (differentiated).
        old_logp: (B, N) log pi_old, recorded when sampling (a constant).
        ref_logp: (B, N) log pi_ref under the frozen reference (a constant).
        advantages: (B,) A_i per response.
        mask: (B, N) bool, the tokens that count.
        clip_eps, clip_eps_high: eps_low and eps_high (None: eps_high = eps_low).
        beta: the KL coefficient, >= 0.
        aggregation: "sequence_mean", "token_mean" or "constant" (`aggregate`).
        max_tokens: N for the "constant" aggregation (default: N of the arrays).
        counts: the whole batch's (responses, tokens), for a microbatch (`aggregate`).
    Returns:
        scalar loss.
    """
    chex.assert_equal_shape([logp, old_logp, ref_logp, mask])
    chex.assert_shape(advantages, (logp.shape[0],))
    # BEGIN SOLUTION
    per_token = clipped_surrogate(logp, old_logp, advantages[:, None], clip_eps, clip_eps_high)
    if beta:
        per_token = per_token - beta * kl_estimate(logp, ref_logp, "k3")
    return -aggregate(per_token, mask, aggregation, max_tokens, counts)
    # END SOLUTION


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
    # BEGIN SOLUTION
    gap = jnp.asarray(r_a, jnp.float32) - jnp.asarray(r_b, jnp.float32)
    p = jnp.broadcast_to(jnp.asarray(prob_a, jnp.float32), gap.shape)
    nll = -(p * jax.nn.log_sigmoid(gap) + (1.0 - p) * jax.nn.log_sigmoid(-gap))
    return masked_mean(nll, _mask(gap, mask))
    # END SOLUTION


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
    # BEGIN SOLUTION
    better, worse = ranking_pairs(rewards.shape[1])
    pair_mask = None if mask is None else jnp.broadcast_to(mask[:, None],
                                                           (rewards.shape[0], better.size))
    return bradley_terry_loss(rewards[:, better], rewards[:, worse], 1.0, pair_mask)
    # END SOLUTION


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
    # BEGIN SOLUTION
    ret_a = jnp.sum(jnp.where(mask_a, step_rewards_a, 0.0), axis=-1)
    ret_b = jnp.sum(jnp.where(mask_b, step_rewards_b, 0.0), axis=-1)
    return bradley_terry_loss(ret_a, ret_b, prob_a)
    # END SOLUTION


# --- direct preference optimisation (Rafailov et al. 2023) ---------------------------------


def dpo_implicit_rewards(logp: jax.Array, ref_logp: jax.Array, beta: float) -> jax.Array:
    """DPO's implicit reward of a response: r(x, y) = beta log pi(y|x) / pi_ref(y|x).

    The KL-regularised optimum pi* = pi_ref exp(r / beta) / Z(x) (lecture 4) turned around:
    the policy *is* a reward model, up to beta log Z(x), which cancels in a comparison of
    two responses to the same prompt (Rafailov et al. 2023, eq. 5).

    Args:
        logp, ref_logp: (...) sequence log-probabilities log pi(y|x), log pi_ref(y|x)
            (sums over the response's tokens; the prompt's never enter).
        beta: the KL coefficient, > 0.
    Returns:
        (...) implicit rewards.
    """
    return beta * (jnp.asarray(logp, jnp.float32) - jnp.asarray(ref_logp, jnp.float32))


DPO_LOSSES = ("sigmoid", "ipo")


def dpo_loss(logp_chosen: jax.Array, logp_rejected: jax.Array, ref_chosen: jax.Array,
             ref_rejected: jax.Array, beta: float, loss_type: str = "sigmoid",
             label_smoothing: float = 0.0, mask: jax.Array | None = None) -> jax.Array:
    """The DPO loss: the Bradley-Terry loss on the implicit rewards (Rafailov et al. 2023,
    eq. 7), with no reward model and no sampling:

        sigmoid: L = bradley_terry_loss(r_c, r_r, prob_a = 1 - label_smoothing)
                   = -mean[(1 - eps) log sigma(r_c - r_r) + eps log sigma(r_r - r_c)]
        ipo:     L = mean[(h - 1 / (2 beta))^2]     (Azar et al. 2023, eq. 17)

    with r = `dpo_implicit_rewards` and h = (r_c - r_r) / beta, the log-ratio margin.
    label_smoothing eps > 0 is conservative DPO (labels flipped with probability eps).
    IPO regresses the margin to a finite target instead of pushing it to infinity, so it
    does not over-fit a preference set the policy can separate perfectly; it ignores eps.

    Args:
        logp_chosen, logp_rejected: (B,) log pi(y|x) of the chosen and rejected responses.
        ref_chosen, ref_rejected: (B,) log pi_ref(y|x) of the same, fixed during training.
        beta: the KL coefficient, > 0 (a Python number).
        loss_type: "sigmoid" (DPO) or "ipo".
        label_smoothing: eps in [0, 0.5).
        mask: (B,) bool, pairs that count; None for all.
    Returns:
        scalar mean loss.
    """
    chex.assert_equal_shape([logp_chosen, logp_rejected, ref_chosen, ref_rejected])
    if not beta > 0:
        raise ValueError(f"dpo_loss needs beta > 0, got {beta!r}")
    if loss_type not in DPO_LOSSES:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}; expected one of {DPO_LOSSES}")
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing!r}")
    r_c = dpo_implicit_rewards(logp_chosen, ref_chosen, beta)
    r_r = dpo_implicit_rewards(logp_rejected, ref_rejected, beta)
    if loss_type == "sigmoid":
        return bradley_terry_loss(r_c, r_r, 1.0 - label_smoothing, mask)
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    margin = (f32(logp_chosen) - f32(ref_chosen)) - (f32(logp_rejected) - f32(ref_rejected))
    return masked_mean((margin - 1.0 / (2.0 * beta)) ** 2, _mask(margin, mask))
