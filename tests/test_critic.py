"""PPO-RLHF's critic: its own optimiser group (the value head moves at value_lr, not at the
policy's learning rate, and is clipped apart), and the critic initialised from the reward
model, whose value at a response's last state is the reward model's normalised score of the
response without its last token."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from minirlhf.checkpoint import Checkpointer
from minirlhf.configs import to_dict
from minirlhf.model import ModelConfig, init_model
from minirlhf.reward_model import make_reward_fn
from minirlhf.critic import critic_from_reward_model, value_function_labels
from minirlhf.rlhf import RLHFConfig, make_optimizer
from minirlhf.rollout import response_outputs
from minirlhf.tokenizer import CharTokenizer

TOK = CharTokenizer("abc .")
BASE = dict(vocab_size=TOK.vocab_size, max_len=24, d_model=16, n_heads=2, n_layers=1)


def test_value_function_has_its_own_learning_rate():
    """The bug this fixes: a zero-initialised value head sharing Adam at the policy's lr
    3e-5 can move at most lr per update, so after 960 updates |w| <= 0.03. With its own
    group, each Adam step moves it by about value_lr."""
    _, p = init_model(ModelConfig(**BASE, value_head=True), jax.random.key(0))
    params = {"policy": p}
    labels = value_function_labels(params)
    flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(labels)}
    assert all((v == "critic") == ("['value']" in k) for k, v in flat.items()), flat
    cfg = RLHFConfig(lr=1e-5, value_lr=1e-2)
    opt = make_optimizer(cfg)
    grads = jax.tree.map(lambda x: jnp.full_like(x, 0.3), params)
    updates, _ = opt.update(grads, opt.init(params), params)
    steps = {jax.tree_util.keystr(k): float(jnp.max(jnp.abs(u)))
             for k, u in jax.tree_util.tree_leaves_with_path(updates)}
    for name, step in steps.items():  # Adam's first step is lr * sign(g)
        assert step == pytest.approx(1e-2 if "['value']" in name else 1e-5, rel=1e-3), name
    # A separate critic: everything under "critic" is in the critic's group.
    _, c = init_model(ModelConfig(**BASE, value_head=True), jax.random.key(1))
    _, q = init_model(ModelConfig(**BASE), jax.random.key(2))
    labels = jax.tree.leaves(value_function_labels({"policy": q, "critic": c}))
    n_policy = len(jax.tree.leaves(q))
    assert labels.count("policy") == n_policy and labels.count("critic") == len(labels) - n_policy


def test_each_group_is_clipped_on_its_own():
    """A huge value gradient must not shrink the policy's: clipped apart, the policy's
    gradient (norm below 1) is untouched and Adam's first step is about
    g / (|g| + eps) * lr = 1e-4 / (1e-4 + 1e-5) = 0.91 lr; clipped jointly it would shrink
    to about 1e-8, below Adam's eps, and the step to about 0.001 lr."""
    _, p = init_model(ModelConfig(**BASE, value_head=True), jax.random.key(0))
    params = {"policy": p}
    opt = make_optimizer(RLHFConfig(lr=1.0, value_lr=1.0, max_grad_norm=1.0))
    grads = jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.full_like(x, 1e3 if path[1].key == "value" else 1e-4), params)
    updates, _ = opt.update(grads, opt.init(params), params)
    np.testing.assert_allclose(updates["policy"]["ln_f"]["scale"][...], -1e-4 / (1e-4 + 1e-5),
                               rtol=1e-3)


def test_critic_from_the_reward_model_predicts_its_score_at_the_last_token(tmp_path):
    rm_cfg = ModelConfig(**BASE, scalar_head=True)
    rm_graphdef, rm_params = init_model(rm_cfg, jax.random.key(3))
    pure = nnx.to_pure_dict(rm_params)
    pure["score"] = {"kernel": jax.random.normal(jax.random.key(4), pure["score"]["kernel"].shape),
                     "bias": jnp.asarray([0.7])}
    nnx.replace_by_pure_dict(rm_params, pure)
    norm = {"mean": 0.4, "std": 2.5}
    ckpt = Checkpointer(tmp_path / "reward" / "checkpoints")
    ckpt.save(1, rm_params, {"step": jnp.int32(1)}, {"stage": "reward", "model": to_dict(rm_cfg),
                                 "tokenizer": TOK.to_json(), "task": "reviews",
                                 "normalization": norm})
    ckpt.close()
    graphdef, params = critic_from_reward_model(tmp_path / "reward", rm_params, norm, seed=0)

    prompt, prompt_mask = TOK.encode_batch(["ab", "c a"], bos=True, padding="left")
    tokens, mask = TOK.encode_batch([" abc", "a."], eos=True)  # responses, right-padded
    values = response_outputs(graphdef, params, prompt, prompt_mask, tokens, mask).values
    # V at the state before the last token a_T is read from the hidden state of everything up
    # to a_{T-1}; the reward model reads the hidden state of everything up to a_T. So compare
    # V(s_T) with the score of the response without its last token.
    short = np.where(np.arange(tokens.shape[1]) < mask.sum(1, keepdims=True) - 1, tokens, 0)
    seq = np.concatenate([prompt, short], 1)
    seq_mask = np.concatenate([prompt_mask, short > 0], 1)
    score = make_reward_fn(rm_graphdef, rm_params, norm)(seq, seq_mask)
    last = mask.sum(1) - 1
    np.testing.assert_allclose(values[np.arange(2), last], score, rtol=1e-5, atol=1e-5)
