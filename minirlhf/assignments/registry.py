"""The assignments: their parts, points and hints, and the solutions `validate` grades --
hand-written wrong ones, differently-written correct ones, and the generated mutants that
are equivalent to the reference (with the reason). See the package's docstring."""

from minirlhf.assignments import Assignment, CorrectSolution, Part, WrongSolution

ASSIGNMENTS: dict[str, Assignment] = {a.name: a for a in (
    Assignment(
        "transformer", "1. The transformer and sampling",
        "01_language_models",
        parts=(
            Part("causal_mask", 3, "causal attention with the padding mask",
                 "model.py", "causal_attention_mask",
                 "return the (B, T, T) mask [b, t, s] = (s <= t) and mask[b, s]"),
            Part("kv_cache", 4, "one KV-cached forward step over cache slots",
                 "model.py", "forward_cached",
                 "write the new tokens' validity into cache.valid at `index`, build the "
                 "(B, T, S) mask (slot <= the query's slot, and valid), call the model with "
                 "the cache; set `out`"),
            Part("top_p", 3, "nucleus (top-p) filtering of the logits",
                 "generate.py", "filter_logits",
                 "keep the smallest set of most likely tokens whose mass reaches top_p (the "
                 "token that crosses the threshold stays); set the rest of x to -inf"),
        ),
        wrong=(
            WrongSolution("causal_mask", "ignores the padding mask",
                          "return causal[None] & mask[:, None, :]",
                          "return jnp.broadcast_to(causal[None], (mask.shape[0], T, T))"),
            WrongSolution("causal_mask", "attends to the future (upper triangle)",
                          "jnp.tril(", "jnp.triu("),
            WrongSolution("kv_cache", "no causal order among the new tokens of a prefill",
                          "(slot[None, :] <= query_slot[:, None])[None] & valid[:, None, :]",
                          "jnp.broadcast_to(valid[:, None, :], (B, T, S))"),
            WrongSolution("top_p", "drops the token that crosses the threshold",
                          "mass_before = jnp.cumsum(probs, axis=-1) - probs",
                          "mass_before = jnp.cumsum(probs, axis=-1)"),
            WrongSolution("top_p", "nucleus from the probabilities before top-k",
                          "probs = jax.nn.softmax(sorted_x, axis=-1)",
                          "probs = jax.nn.softmax(jnp.sort(logits.astype(jnp.float32) / "
                          "max(cfg.temperature, 1e-6), axis=-1)[..., ::-1], axis=-1)"),
        ),
        correct=(
            CorrectSolution("top_p", "descending order by sorting the negated logits",
                            "sorted_x = jnp.sort(x, axis=-1)[..., ::-1]  # (B, V) descending",
                            "sorted_x = -jnp.sort(-x, axis=-1)"),
            CorrectSolution("causal_mask", "the mask from comparing position indices",
                            "causal = jnp.tril(jnp.ones((T, T), bool))",
                            "causal = jnp.arange(T)[None, :] <= jnp.arange(T)[:, None]"),
        ),
        equivalent=(
            ("causal_mask: UOD 1:15: `-1` -> `(1)`",
             "the mask is (B, T): mask.shape[1] is mask.shape[-1]"),
            ("kv_cache: CRP 3:57: `0` -> `1`",
             "dynamic_update_slice clamps the start so that the (B, T) update fits the "
             "(B, S) cache: any batch start is 0"),
            ("kv_cache: CRP 3:57: `0` -> `-1`", "the same clamp"),
            ("top_p: KWD 2:8: `jax.nn.softmax(sorted_x, axis=-1)` -> `jax.nn.softmax(sorted_x)`",
             "axis=-1 is softmax's default"),
            ("top_p: KWD 1:11: `jnp.sort(x, axis=-1)` -> `jnp.sort(x)`",
             "axis=-1 is jnp.sort's default"),
            ("top_p: UOD 1:28: `-1` -> `(1)`", "logits are (B, V): axis 1 is axis -1"),
            ("top_p: UOD 2:38: `-1` -> `(1)`", "logits are (B, V): axis 1 is axis -1"),
            ("top_p: UOD 3:37: `-1` -> `(1)`", "logits are (B, V): axis 1 is axis -1"),
            ("top_p: UOD 5:58: `-1` -> `(1)`", "logits are (B, V): axis 1 is axis -1"),
        )),
    Assignment(
        "policy_gradients", "2. Policy gradients and PPO",
        "02_policy_gradients_ppo",
        parts=(
            Part("gae", 4, "generalised advantage estimation with termination vs truncation",
                 "advantages.py", "gae",
                 "compute delta_t (bootstrap V(s'_t) unless terminated), then the reverse "
                 "recursion A_t = delta_t + gamma lam (1 - done_t) A_{t+1} with jax.lax.scan"),
            Part("clipped_surrogate", 3, "PPO's clipped surrogate objective",
                 "losses.py", "clipped_surrogate",
                 "rho = exp(logp - old_logp); min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)"),
            Part("ppo_cartpole", 3, "your GAE and surrogate train PPO on CartPole (return >= 100)"),
        ),
        wrong=(
            WrongSolution("gae", "bootstraps through termination",
                          "gamma * not_term * f32(next_values)", "gamma * f32(next_values)"),
            WrongSolution("gae", "treats truncation as termination",
                          "gamma * not_term * f32(next_values)",
                          "gamma * not_done * f32(next_values)"),
            WrongSolution("gae", "does not cut the sum at episode ends",
                          "gamma * lam * nd * carry.advantage", "gamma * lam * carry.advantage"),
            WrongSolution("clipped_surrogate", "max instead of min (optimistic bound)",
                          "return jnp.minimum(", "return jnp.maximum("),
            WrongSolution("clipped_surrogate", "ratio the wrong way up",
                          "jnp.exp(logp - old_logp)", "jnp.exp(old_logp - logp)"),
            WrongSolution("clipped_surrogate", "eps_high ignored (one epsilon for both)",
                          "1.0 + high)", "1.0 + clip_eps)"),
            WrongSolution("clipped_surrogate", "no gradient where the clip is not active",
                          "return jnp.minimum(ratio * advantages, ",
                          "return jnp.minimum(jax.lax.stop_gradient(ratio) * advantages, "),
            WrongSolution("clipped_surrogate", "clips rho A instead of rho",
                          "jnp.clip(ratio, 1.0 - clip_eps, 1.0 + high) * advantages",
                          "jnp.clip(ratio * advantages, 1.0 - clip_eps, 1.0 + high)"),
        ),
        correct=(
            CorrectSolution("gae", "a Python loop over time instead of jax.lax.scan",
                            """    def step(carry: GAECarry, xs):
        delta, nd = xs
        advantage = delta + gamma * lam * nd * carry.advantage
        return GAECarry(advantage), advantage

    init = GAECarry(jnp.zeros(rewards.shape[1:], jnp.float32))
    _, advantages = jax.lax.scan(step, init, (deltas, not_done), reverse=True)
""", """    following, out = jnp.zeros(rewards.shape[1:], jnp.float32), []
    for t in reversed(range(rewards.shape[0])):  # unrolled when traced
        following = deltas[t] + gamma * lam * not_done[t] * following
        out.append(following)
    advantages = jnp.stack(out[::-1])
"""),
            CorrectSolution("clipped_surrogate", "the min written with jnp.where",
                            "return jnp.minimum(ratio * advantages, jnp.clip(ratio, 1.0 - "
                            "clip_eps, 1.0 + high) * advantages)",
                            "a, b = ratio * advantages, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + "
                            "high) * advantages\n    return jnp.where(a <= b, a, b)"),
        ),
        equivalent=(
            ("clipped_surrogate: ARG 3:7: `jnp.minimum(ratio * advantages, jnp.clip(ratio, "
             "1.0 - cli...` -> `jnp.minimum(jnp.clip(ratio, 1.0 - clip_eps, 1.0 + high) *...`",
             "the minimum is symmetric in its arguments"),
            ("clipped_surrogate: ARG 3:39: `jnp.clip(ratio, 1.0 - clip_eps, 1.0 + high)` -> "
             "`jnp.clip(1.0 - clip_eps, ratio, 1.0 + high)`",
             "clip(x, a, b) = min(max(x, a), b), and max is symmetric: the same values and "
             "gradients"),
        )),
    Assignment(
        "preferences", "3. Learning from preferences",
        "03_learning_from_preferences",
        parts=(
            Part("bradley_terry", 3, "the Bradley-Terry loss with soft labels and a mask",
                 "losses.py", "bradley_terry_loss",
                 "-mean[p log sigma(r_a - r_b) + (1 - p) log sigma(r_b - r_a)] over the mask, "
                 "with jax.nn.log_sigmoid"),
            Part("ranking", 3, "the ranking loss over all K(K-1)/2 pairs",
                 "losses.py", "ranking_loss",
                 "expand each ranking (best first) into its pairs with ranking_pairs and apply "
                 "bradley_terry_loss; a masked ranking masks all of its pairs"),
            Part("last_token_score", 4, "the reward model's score at the last real token",
                 "model.py", "forward",
                 "apply model.score to the hidden state of each row's last real token "
                 "(left or right padding) and set out.scalar, shape (B,)"),
        ),
        wrong=(
            WrongSolution("bradley_terry", "sign flipped",
                          "jnp.asarray(r_a, jnp.float32) - jnp.asarray(r_b, jnp.float32)",
                          "jnp.asarray(r_b, jnp.float32) - jnp.asarray(r_a, jnp.float32)"),
            WrongSolution("bradley_terry", "ignores the mask",
                          "return masked_mean(nll, _mask(gap, mask))", "return jnp.mean(nll)"),
            WrongSolution("ranking", "adjacent pairs only",
                          "better, worse = ranking_pairs(rewards.shape[1])",
                          "better = jnp.arange(rewards.shape[1] - 1); worse = better + 1"),
            WrongSolution("last_token_score", "scores the last position, padding or not",
                          "h_last = out.hidden[jnp.arange(tokens.shape[0]), last]",
                          "h_last = out.hidden[:, -1]"),
            WrongSolution("last_token_score", "last real token counted from the left padding",
                          "last = last_real_index(mask)",
                          "last = jnp.sum(mask, axis=1) - 1"),
            WrongSolution("bradley_terry", "divides by the mask's count (nan when none counts)",
                          "return masked_mean(nll, _mask(gap, mask))",
                          "return jnp.sum(jnp.where(_mask(gap, mask), nll, 0.0)) / "
                          "jnp.sum(_mask(gap, mask))"),
            WrongSolution("bradley_terry", "mean over all comparisons, masked ones as 0",
                          "return masked_mean(nll, _mask(gap, mask))",
                          "return jnp.mean(jnp.where(_mask(gap, mask), nll, 0.0))"),
            WrongSolution("bradley_terry", "soft label on the wrong side",
                          "nll = -(p * jax.nn.log_sigmoid(gap) + (1.0 - p) * "
                          "jax.nn.log_sigmoid(-gap))",
                          "nll = -((1.0 - p) * jax.nn.log_sigmoid(gap) + p * "
                          "jax.nn.log_sigmoid(-gap))"),
        ),
        correct=(
            CorrectSolution("ranking", "pairs by a Python double loop",
                            "better, worse = ranking_pairs(rewards.shape[1])",
                            "K = rewards.shape[1]\n    pairs = [(i, j) for i in range(K) for j "
                            "in range(i + 1, K)]\n    better = jnp.asarray([i for i, _ in "
                            "pairs])\n    worse = jnp.asarray([j for _, j in pairs])"),
            CorrectSolution("bradley_terry", "softplus instead of log-sigmoid",
                            "nll = -(p * jax.nn.log_sigmoid(gap) + (1.0 - p) * "
                            "jax.nn.log_sigmoid(-gap))",
                            "nll = p * jax.nn.softplus(-gap) + (1.0 - p) * "
                            "jax.nn.softplus(gap)"),
        ),
        equivalent=(
            ("last_token_score: CRP 3:48: `0` -> `1`",
             "the score head has one output and JAX clamps an index past the end: [:, 1] "
             "reads column 0"),
            ("last_token_score: CRP 3:48: `0` -> `-1`",
             "the score head has one output: column -1 is column 0"),
        )),
    Assignment(
        "rlhf", "4. RLHF with PPO on a language model",
        "04_rlhf_ppo",
        parts=(
            Part("kl_rewards", 4, "KL-shaped token rewards",
                 "rollout.py", "kl_shaped_rewards",
                 "r_t = -beta kl_t on response tokens (0 off the mask), plus the score at "
                 "each row's last real token; return (rewards, kl)"),
            Part("kl_controller", 2, "the adaptive KL controller (Ziegler et al. 2019)",
                 "rlhf.py", "AdaptiveKLController.update",
                 "e = clip(KL / target - 1, -clip, clip); beta * (1 + e * n_steps / horizon)"),
            Part("token_gae", 4, "per-token GAE over each response",
                 "rollout.py", "token_gae",
                 "next value = value of the next token (0 after the last real one), the "
                 "episode ends at the last real token, padding is cut off; call `gae` "
                 "(time first) and zero the result off the mask"),
        ),
        wrong=(
            WrongSolution("kl_rewards", "KL penalty outside the response (prompt/padding)",
                          "kl = jnp.where(mask, kl_estimate(logprobs, ref_logprobs, "
                          "kl_estimator), 0.0)",
                          "kl = kl_estimate(logprobs, ref_logprobs, kl_estimator)"),
            WrongSolution("kl_rewards", "score on the last column, not the last real token",
                          "last = last_real_index(mask)  # (B,)",
                          "last = jnp.full(mask.shape[:1], mask.shape[1] - 1)"),
            WrongSolution("kl_controller", "error sign flipped",
                          "kl / self.target - 1.0", "1.0 - kl / self.target"),
            WrongSolution("kl_controller", "error not clipped",
                          "jnp.clip(kl / self.target - 1.0, -self.clip, self.clip)",
                          "(kl / self.target - 1.0)"),
            WrongSolution("token_gae", "next value not shifted",
                          "jnp.concatenate([values[:, 1:], jnp.zeros_like(values[:, :1])], 1)",
                          "values"),
            WrongSolution("kl_rewards", "the KL estimator argument ignored (always k1)",
                          "kl_estimate(logprobs, ref_logprobs, kl_estimator)",
                          "kl_estimate(logprobs, ref_logprobs)"),
        ),
        correct=(
            CorrectSolution("kl_controller", "the clip written with min and max",
                            "error = jnp.clip(kl / self.target - 1.0, -self.clip, self.clip)",
                            "error = jnp.minimum(jnp.maximum(kl / self.target - 1.0, "
                            "-self.clip), self.clip)"),
            CorrectSolution("kl_rewards", "the score added by a one-hot of the last index",
                            "at_end = jnp.arange(mask.shape[1])[None, :] == last[:, None]  "
                            "# (B, N)",
                            "at_end = jax.nn.one_hot(last, mask.shape[1], dtype=bool)"),
        ),
        equivalent=(
            ("kl_controller: ARG 1:8: `jnp.clip(kl / self.target - 1.0, -self.clip, "
             "self.clip)` -> `jnp.clip(-self.clip, kl / self.target - 1.0, self.clip)`",
             "clip(x, a, b) = min(max(x, a), b), and max is symmetric"),
            ("token_gae: MSK 1:9: `jnp.where(mask, values, 0.0)` -> `values`",
             "the episode ends at the last real token (no bootstrap, the sum cut there) and "
             "the result is masked: a value on the padding never reaches a real token"),
            ("token_gae: CRP 1:33: `0.0` -> `1.0`", "the same: padding values never count"),
            ("token_gae: IDX 2:71: `:1` -> `-1:`",
             "zeros_like of another (B, 1) slice is the same zeros"),
        )),
    Assignment(
        "grpo", "5. GRPO",
        "05_grpo_r1_zero",
        parts=(
            Part("group_advantages", 4, "group-relative advantages (GRPO, Dr. GRPO, RLOO)",
                 "advantages.py", "group_advantages",
                 "centre each group's rewards; grpo divides by the sample std (floored), "
                 "rloo scales by G / (G - 1); flat groups get exactly 0"),
            Part("grpo_loss", 4, "the GRPO loss: clipped surrogate minus beta k3",
                 "losses.py", "grpo_loss",
                 "per token: clipped_surrogate with the response's advantage, minus beta * "
                 "kl_estimate(..., 'k3') if beta; return -aggregate(...)"),
        ),
        wrong=(
            WrongSolution("group_advantages", "population std (ddof 0)",
                          "std = jnp.std(r, axis=1, keepdims=True, ddof=1)",
                          "std = jnp.std(r, axis=1, keepdims=True)"),
            WrongSolution("grpo_loss", "KL term added instead of subtracted",
                          "per_token - beta * kl_estimate", "per_token + beta * kl_estimate"),
            WrongSolution("grpo_loss", "the aggregation options not passed on (defaults)",
                          "aggregate(per_token, mask, aggregation, max_tokens, counts)",
                          "aggregate(per_token, mask, \"sequence_mean\")"),
            WrongSolution("grpo_loss", "the whole batch's counts not passed on",
                          "aggregate(per_token, mask, aggregation, max_tokens, counts)",
                          "aggregate(per_token, mask, aggregation, max_tokens)"),
            WrongSolution("grpo_loss", "the separate upper clip dropped",
                          "clip_eps, clip_eps_high)", "clip_eps)"),
            WrongSolution("group_advantages", "flat only when exactly equal (float noise "
                          "becomes +-1)",
                          "return jnp.where(flat_groups(r, std_floor)[:, None], 0.0, adv)",
                          "return jnp.where((jnp.max(r, 1) == jnp.min(r, 1))[:, None], 0.0, "
                          "adv)"),
        ),
        correct=(
            CorrectSolution("group_advantages", "RLOO from the leave-one-out mean itself",
                            "adv = centred * G / (G - 1)",
                            "adv = r - (jnp.sum(r, axis=1, keepdims=True) - r) / (G - 1)"),
        ),
        equivalent=(
            ("group_advantages: ARG 5:20: `jnp.maximum(std, std_floor)` -> "
             "`jnp.maximum(std_floor, std)`", "the maximum is symmetric"),
        )),
    Assignment(
        "trex", "6. T-REX: rewards from ranked demonstrations",
        "06_learning_rewards_from_demonstrations",
        parts=(
            Part("snippet_loss", 4, "T-REX's snippet loss",
                 "losses.py", "trajectory_preference_loss",
                 "sum each snippet's per-step rewards over its mask, then bradley_terry_loss"),
        ),
        wrong=(
            WrongSolution("snippet_loss", "ignores the snippet masks",
                          "jnp.sum(jnp.where(mask_a, step_rewards_a, 0.0), axis=-1)",
                          "jnp.sum(step_rewards_a, axis=-1)"),
            WrongSolution("snippet_loss", "the label prob_a not passed on",
                          "bradley_terry_loss(ret_a, ret_b, prob_a)",
                          "bradley_terry_loss(ret_a, ret_b)"),
            WrongSolution("snippet_loss", "mean per step instead of the sum",
                          "jnp.sum(jnp.where(mask_b, step_rewards_b, 0.0), axis=-1)",
                          "jnp.sum(jnp.where(mask_b, step_rewards_b, 0.0), axis=-1) / "
                          "jnp.maximum(jnp.sum(mask_b, axis=-1), 1)"),
        ),
        correct=(
            CorrectSolution("snippet_loss", "the masked sum as a product with the mask",
                            "ret_a = jnp.sum(jnp.where(mask_a, step_rewards_a, 0.0), axis=-1)",
                            "ret_a = jnp.einsum('bt,bt->b', step_rewards_a, "
                            "mask_a.astype(step_rewards_a.dtype))"),
        ),
        equivalent=(
            ("snippet_loss: UOD 1:61: `-1` -> `(1)`", "rewards are (B, T): axis 1 is axis -1"),
            ("snippet_loss: UOD 2:61: `-1` -> `(1)`", "rewards are (B, T): axis 1 is axis -1"),
        )),
)}


def get_assignment(name: str) -> Assignment:
    """The registered assignment `name`; a ValueError listing the known ones otherwise."""
    if name not in ASSIGNMENTS:
        raise ValueError(f"unknown assignment {name!r}; known assignments: "
                         f"{', '.join(ASSIGNMENTS)}")
    return ASSIGNMENTS[name]
