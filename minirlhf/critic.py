"""PPO-RLHF's critic: where the value function V(s_t) lives and where it starts (layer 2).

Two designs (`RLHFConfig.critic`):

* "reward_model" (InstructGPT, Ouyang et al. 2022: "we initialize the value function from
  the RM"): a separate transformer, a copy of the reward model whose score head, read at
  the last token, becomes a value head read at every token. From the first iteration it
  has an idea of what the reward model will say about a response; its own optimiser group
  (`value_function_labels`) lets it follow the returns.
* "shared" (lm-human-preferences, TRL's value-head models): a zero-initialised value head
  on the policy's own transformer: one forward gives logits and values, but the head starts
  knowing nothing, on features trained for the next token.

benchmarks/bench_critic.py measures both on the default pipeline.

    params = {"policy": ..., "critic": ...}       # RLHFState.train.params (no "critic" if shared)
    values = critic_values(graphdef, critic_graphdef, params, prompt, prompt_mask, tokens, mask)

Notation: B responses, P prompt length, N response tokens.
"""

from __future__ import annotations

from pathlib import Path

import jax
from flax import nnx

from minirlhf.checkpoint import Checkpointer, load_with_heads
from minirlhf.model import ModelConfig, init_model
from minirlhf.rollout import response_outputs


def critic_values(graphdef: nnx.GraphDef, critic_graphdef: nnx.GraphDef | None, params: dict,
                  prompt: jax.Array, prompt_mask: jax.Array, tokens: jax.Array,
                  mask: jax.Array, policy_out=None) -> jax.Array:
    """V(s_t) at every response token: the policy's value head, or the separate critic's.

    Args:
        graphdef: the policy's graph. critic_graphdef: the separate critic's, or None for
            the policy's own value head.
        params: {"policy": ..., "critic": ...} (`RLHFState.train.params`).
        prompt, prompt_mask: (B, P). tokens, mask: (B, N) the responses.
        policy_out: the policy's `response_outputs` on the same data, if already computed
            (its values are then read, not recomputed).
    Returns:
        (B, N) values, 0 off the mask.
    """
    if critic_graphdef is None:
        out = policy_out if policy_out is not None else response_outputs(
            graphdef, params["policy"], prompt, prompt_mask, tokens, mask)
        return out.values
    return response_outputs(critic_graphdef, params["critic"], prompt, prompt_mask, tokens,
                            mask).values


def value_function_labels(params: dict) -> dict:
    """"critic" on the value function's own parameters (the policy's value head, or the whole
    separate critic), "policy" on the rest: the two groups of `make_optimizer`."""
    def label(path, _):
        keys = [getattr(k, "key", None) for k in path]
        return "critic" if keys[0] == "critic" or keys[1] == "value" else "policy"

    return jax.tree_util.tree_map_with_path(label, params)


def critic_model_config(rm_model: dict) -> dict:
    """The critic's ModelConfig fields: the reward model's, with a value head instead of the
    score head."""
    return {**rm_model, "value_head": True, "scalar_head": False}


def critic_from_reward_model(reward_dir: str | Path, rm_params: nnx.State,
                             normalization: dict, seed: int):
    """A critic initialised from the reward model (InstructGPT): its transformer, with a
    per-token value head that starts as the reward model's score head, normalised.

    The score head reads w . h_T + b at the last token and the reward is normalised,
    (w . h_T + b - mean) / std; the value head starts as (w / std) . h_t + (b - mean) / std
    at every token t. V(s_t) is read at the token before a_t, so the value of a response's
    last state is the reward model's normalised score of the response without its last
    token (usually EOS), and on an earlier prefix it is the reward model's guess from what
    is there.

    Returns:
        (graphdef, params) of the critic (a Transformer with a value head).
    """
    graphdef, params, _, _ = load_with_heads(reward_dir, seed, value_head=True)
    head = nnx.to_pure_dict(rm_params)["score"]
    mean, std = float(normalization["mean"]), float(normalization["std"])
    pure = nnx.to_pure_dict(params)
    pure["value"] = {"kernel": head["kernel"] / std, "bias": (head["bias"] - mean) / std}
    nnx.replace_by_pure_dict(params, pure)
    return graphdef, params


def load_critic(run_dir: str | Path):
    """The separate critic a finished (or checkpointed) PPO run trained: (graphdef, params).

    Raises:
        ValueError: if the run used the shared value head (critic="shared"); its values
            come from the policy itself (`load_model`).
    """
    ckpt = Checkpointer(Path(run_dir) / "checkpoints")
    try:
        meta = ckpt.read_meta()
        cfg = meta["config"]
        if cfg.get("critic", "shared") != "reward_model":
            raise ValueError(f"the PPO run in {run_dir} has no separate critic (critic="
                             f"{cfg.get('critic', 'shared')!r}): its policy has the value head")
        graphdef, like = init_model(ModelConfig(**meta["critic_model"]), jax.random.key(0))
        return graphdef, ckpt.restore_item("critic", like)
    finally:
        ckpt.close()
