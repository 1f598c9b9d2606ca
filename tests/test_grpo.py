"""GRPO end to end: the jitted iteration equals the eager one, flat groups, truncation and
the KL are counted as documented, resume equals an uninterrupted run, bad input is refused
before any work, and GRPO on the arithmetic task raises held-out pass@1 (a CI-sized run; the
default run's +20 points is marked slow)."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from minirlhf.checkpoint import load_model
from minirlhf.configs import to_dict
from minirlhf.envs import make_task
from minirlhf.grpo import (GroupBatch, GRPOConfig, counted_responses, make_grpo_update,
                           make_iteration, make_optimizer, rule_reward, train_grpo)
from minirlhf.model import ModelConfig
from minirlhf.optim import TrainState
from minirlhf.pretrain import PretrainConfig, pretrain
from minirlhf.r1_zero import R1ZeroConfig, run_r1_zero

TASK = make_task("arithmetic")


class PromptsOnly:
    """A task that brings prompts and nothing else: the reward is the user's function."""

    max_prompt_chars = TASK.max_prompt_chars

    def prompts(self, n, seed):
        return TASK.prompts(n, seed)


def thinks(prompts, responses):
    """A toy rule: 1 for a response that opens with <think>, 0 otherwise."""
    return np.array([float(r.startswith("<think>")) for r in responses], np.float32)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A barely trained arithmetic model (seconds): enough for the mechanics."""
    out = tmp_path_factory.mktemp("grpo") / "base"
    cfg = PretrainConfig(task="arithmetic", steps=40, batch_size=16, n_train=400, n_val=32,
                         eval_every=40, checkpoint_every=40,
                         model=ModelConfig(vocab_size=34, max_len=80, d_model=32, n_heads=2,
                                           n_layers=1, positions="rope"))
    pretrain(cfg, out)
    return out


def tiny_cfg(init, **kw):
    return GRPOConfig(init=str(init), iterations=4, prompts_per_iteration=4, group_size=4,
                      max_new_tokens=24, num_minibatches=2, update_epochs=2, beta=0.1,
                      checkpoint_every=2, eval_every=2, lr=1e-3, **kw)


def run_iteration(cfg, init, reward_fn, jit=True, prompts=None, opt=None):
    graphdef, params, tok, _ = load_model(init)
    opt = make_optimizer(cfg) if opt is None else opt
    it = make_iteration(cfg, graphdef, graphdef, rule_reward(reward_fn, tok), opt)
    it = jax.jit(it) if jit else it
    prompts = prompts or TASK.prompts(cfg.prompts_per_iteration, seed=0)
    p, m = tok.encode_batch(prompts, bos=True, padding="left", length=1 + TASK.max_prompt_chars)
    state = TrainState(params, opt.init(params), jnp.int32(0))
    return params, it(state, params, None, p, m, jax.random.key(1))


def random_group_batch(rng, B=8, P=5, N=6):
    lengths = rng.integers(1, N + 1, size=B)
    mask = np.arange(N)[None, :] < lengths[:, None]
    return GroupBatch(
        prompt=jnp.asarray(rng.integers(3, 30, (B, P)), jnp.int32),
        prompt_mask=jnp.ones((B, P), bool),
        tokens=jnp.asarray(np.where(mask, rng.integers(3, 30, (B, N)), 0), jnp.int32),
        mask=jnp.asarray(mask),
        logprobs=jnp.asarray(np.where(mask, -rng.random((B, N)) - 1.0, 0.0), jnp.float32),
        ref_logprobs=jnp.asarray(np.where(mask, -rng.random((B, N)) - 1.0, 0.0), jnp.float32),
        advantages=jnp.asarray(rng.normal(size=B), jnp.float32),
        loss_mask=jnp.asarray(mask))


def test_jitted_iteration_equals_eager(tiny_base):
    # Plain SGD: Adam's first steps are about lr * sign(gradient), which turns a float
    # difference in a near-zero gradient into a difference of lr.
    cfg, sgd = tiny_cfg(tiny_base), optax.sgd(0.1)
    _, (s1, m1, t1, k1, r1) = run_iteration(cfg, tiny_base, thinks, jit=True, opt=sgd)
    _, (s0, m0, t0, k0, r0) = run_iteration(cfg, tiny_base, thinks, jit=False, opt=sgd)
    np.testing.assert_array_equal(t1, t0)
    np.testing.assert_array_equal(r1, r0)
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s0.params)):
        np.testing.assert_allclose(a, b, atol=2e-5)
    for key in ("loss", "reward", "kl", "entropy", "flat_groups"):
        assert float(m1[key]) == pytest.approx(float(m0[key]), rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("aggregation", ["sequence_mean", "token_mean", "constant"])
def test_update_in_microbatches_equals_the_whole_minibatch(tiny_base, aggregation):
    """Each minibatch's gradient summed over microbatches of 2 responses (and the metrics
    added up) is the gradient of the whole minibatch at once, whatever the aggregation, with
    responses of different lengths and some masked out (a flat group, a truncated one)."""
    graphdef, params, _, _ = load_model(tiny_base)
    P, N = 5, 6
    batch = random_group_batch(np.random.default_rng(0), 8, P, N)
    batch = batch.replace(loss_mask=batch.loss_mask.at[jnp.asarray([2, 3])].set(False))
    results = []
    for micro_tokens, unroll in ((0, 1), (2 * (P + N), 1), (2 * (P + N), 2)):
        cfg = dataclasses.replace(tiny_cfg(tiny_base), aggregation=aggregation, num_minibatches=2,
                                  update_epochs=1, microbatch_tokens=micro_tokens,
                                  max_new_tokens=N)
        sgd = optax.sgd(0.5)
        update = jax.jit(make_grpo_update(cfg, graphdef, sgd, unroll))
        state = TrainState(params, sgd.init(params), jnp.int32(0))
        results.append(update(state, batch, jax.random.key(0)))
    (whole, m_whole), *splits = results
    for state, metrics in splits:
        for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(state.params)):
            np.testing.assert_allclose(a, b, atol=1e-6)
        for k in ("loss", "entropy", "approx_kl", "clip_low", "clip_high"):
            assert float(metrics[k]) == pytest.approx(float(m_whole[k]), rel=1e-5, abs=1e-7), k
    moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                zip(jax.tree.leaves(whole.params), jax.tree.leaves(params)))
    assert moved > 1e-4


def test_responses_out_of_the_loss_change_nothing(tiny_base):
    """Dynamic sampling's masked-out responses (k3 term included, beta > 0) weigh exactly
    as if they were not in the batch; and a minibatch with nothing left in its loss takes no
    step at all (Adam would otherwise move the parameters along its momentum)."""
    graphdef, params, _, _ = load_model(tiny_base)
    batch = random_group_batch(np.random.default_rng(1))
    keep = np.array([True, True, False, True, False, True, True, True])
    masked = batch.replace(loss_mask=batch.loss_mask & jnp.asarray(keep)[:, None])
    removed = jax.tree.map(lambda x: x[keep], batch)
    cfg = dataclasses.replace(tiny_cfg(tiny_base), num_minibatches=1, update_epochs=1,
                              max_new_tokens=6, beta=0.2)
    sgd = optax.sgd(0.5)
    update = jax.jit(make_grpo_update(cfg, graphdef, sgd))
    start = TrainState(params, sgd.init(params), jnp.int32(0))
    a, _ = update(start, masked, jax.random.key(0))
    b, _ = update(start, removed, jax.random.key(0))
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(x, y, atol=1e-6)

    adam = make_optimizer(cfg)
    update = jax.jit(make_grpo_update(cfg, graphdef, adam))
    state, _ = update(TrainState(params, adam.init(params), jnp.int32(0)), batch,
                      jax.random.key(0))  # a real step: Adam now has momentum
    empty = batch.replace(loss_mask=jnp.zeros_like(batch.loss_mask))
    after, metrics = update(state, empty, jax.random.key(1))
    for x, y in zip(jax.tree.leaves(after), jax.tree.leaves(state)):
        np.testing.assert_array_equal(x, y)
    assert float(metrics["loss"]) == 0.0


def test_rewards_reach_the_right_rows_and_kl_is_never_negative(tiny_base):
    """The host-side reward sees each response with its own prompt (row b * G + g is
    response g to prompt b), and the logged KL is k3's, never below 0."""
    seen = []

    def record(prompts, responses):
        seen.append(list(prompts))
        return np.arange(len(prompts), dtype=np.float32)

    cfg = tiny_cfg(tiny_base)
    params, (state, metrics, tokens, mask, rewards) = run_iteration(cfg, tiny_base, record)
    prompts = TASK.prompts(4, seed=0)
    assert seen[-1] == [p for p in prompts for _ in range(4)]
    np.testing.assert_array_equal(rewards, np.arange(16))
    assert float(metrics["kl"]) >= 0 and float(metrics["kl_per_token"]) >= 0
    # Rewards 0..15 in groups of 4: no group is flat.
    assert float(metrics["flat_groups"]) == 0.0
    moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                zip(jax.tree.leaves(state.params), jax.tree.leaves(params)))
    assert moved > 0


def test_flat_groups_are_counted_and_dynamic_sampling_drops_them(tiny_base):
    # Prompts 0 and 1 score a constant, prompts 2 and 3 the response's length.
    prompts = TASK.prompts(4, seed=0)

    def half_flat(ps, rs):
        return np.array([0.5 if p in prompts[:2] else len(r) for p, r in zip(ps, rs)],
                        np.float32)

    _, (_, metrics, _, _, _) = run_iteration(tiny_cfg(tiny_base), tiny_base, half_flat,
                                             prompts=prompts)
    assert float(metrics["flat_groups"]) == pytest.approx(0.5)
    flat = jnp.asarray([True, False])
    truncated = jnp.asarray([False, True, False, False])
    cfg = dataclasses.replace(tiny_cfg(tiny_base), group_size=2, prompts_per_iteration=2)
    np.testing.assert_array_equal(counted_responses(truncated, flat, cfg),
                                  [True, False, True, True])
    both = dataclasses.replace(cfg, dynamic_sampling=True)
    np.testing.assert_array_equal(counted_responses(truncated, flat, both),
                                  [False, False, True, True])
    keep = dataclasses.replace(cfg, truncation="penalty")
    np.testing.assert_array_equal(counted_responses(truncated, flat, keep), [True] * 4)


def test_truncated_responses_are_counted_masked_or_penalised(tiny_base):
    # Two new tokens: no response can finish, every one is truncated.
    cfg = dataclasses.replace(tiny_cfg(tiny_base), max_new_tokens=2)
    ones = lambda ps, rs: np.ones(len(rs), np.float32) + np.arange(len(rs)) % 2
    params, (state, metrics, _, _, rewards) = run_iteration(cfg, tiny_base, ones)
    assert float(metrics["truncated"]) == 1.0
    # Masked: nothing enters the loss, so nothing moves.
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)
    penal = dataclasses.replace(cfg, truncation="penalty", truncation_penalty=0.25)
    _, (_, metrics, _, _, rewards) = run_iteration(penal, tiny_base, ones)
    np.testing.assert_allclose(rewards, 0.75 + np.arange(16) % 2)
    assert float(metrics["truncated"]) == 1.0


def test_resumed_run_equals_uninterrupted(tiny_base, tmp_path):
    cfg = tiny_cfg(tiny_base)
    task = PromptsOnly()
    _, straight, s1 = train_grpo(cfg, tmp_path / "straight", task=task, reward_fn=thinks)
    _, _, s0 = train_grpo(cfg, tmp_path / "resumed", task=task, reward_fn=thinks, stop_after=2)
    assert s0 == {}
    _, resumed, s2 = train_grpo(cfg, tmp_path / "resumed", task=task, reward_fn=thinks)
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert s1 == s2
    text = lambda d: (d / "metrics.jsonl").read_text()
    assert text(tmp_path / "straight") == text(tmp_path / "resumed")
    records = [json.loads(line) for line in text(tmp_path / "straight").splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for key in ("reward", "flat_groups", "truncated", "length", "kl", "entropy", "loss"):
        assert all(np.isfinite(r[key]) for r in records), key
    assert (tmp_path / "straight" / "grpo.png").stat().st_size > 0
    _, loaded, _, meta = load_model(tmp_path / "straight")
    assert meta["stage"] == "grpo" and meta["iteration"] == 4
    with pytest.raises(ValueError, match="beta"):  # another config in the same folder
        train_grpo(dataclasses.replace(cfg, beta=0.5), tmp_path / "resumed", task=task,
                   reward_fn=thinks)


def test_a_run_of_flat_groups_is_warned_about(tiny_base, tmp_path):
    lines = []
    cfg = dataclasses.replace(tiny_cfg(tiny_base), iterations=10, checkpoint_every=10,
                              eval_every=10, update_epochs=1)
    constant = lambda ps, rs: np.ones(len(rs), np.float32)  # every group flat
    train_grpo(cfg, tmp_path / "run", task=PromptsOnly(), reward_fn=constant, echo=lines.append)
    warnings = [line for line in lines if "scored all alike" in line]
    assert len(warnings) == 1 and "iterations 1-10: 100%" in warnings[0], lines
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert all(r["flat_groups"] == 1.0 for r in records)
    lines.clear()
    half = lambda ps, rs: np.array([len(r) % 2 if p == ps[0] else 1 for p, r in zip(ps, rs)],
                                   np.float32)  # at most 1 group in 4 has a signal
    train_grpo(cfg, tmp_path / "run2", task=PromptsOnly(), reward_fn=half, echo=lines.append)
    assert any("scored all alike" in line for line in lines)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        GRPOConfig(group_size=1)
    with pytest.raises(ValueError, match="do not split into num_minibatches=3"):
        GRPOConfig(prompts_per_iteration=4, group_size=4, num_minibatches=3)
    with pytest.raises(ValueError, match="aggregation"):
        GRPOConfig(aggregation="mean")
    with pytest.raises(ValueError, match="beta"):
        GRPOConfig(beta=-1.0)
    with pytest.raises(ValueError, match="advantage"):
        GRPOConfig(advantage="ppo")


@pytest.mark.parametrize("fn,message", [
    (lambda ps, rs: np.ones(len(rs) + 1), r"shape \(5,\) for 4 responses"),
    (lambda ps, rs: np.full(len(rs), np.nan), "not finite"),
    (lambda ps, rs: ["good"] * len(rs), "not numbers"),
])
def test_a_bad_reward_function_is_refused_before_any_work(tiny_base, tmp_path, fn, message):
    with pytest.raises(ValueError, match=message):
        train_grpo(tiny_cfg(tiny_base), tmp_path / "run", task=PromptsOnly(), reward_fn=fn)
    assert not (tmp_path / "run").exists()


def test_a_reward_that_fails_mid_run_stops_it_with_its_message(tiny_base, tmp_path):
    def fails_on_long(prompts, responses):  # fine on the empty probe, NaN on real output
        return np.array([np.nan if len(r) > 3 else 0.0 for r in responses], np.float32)

    with pytest.raises(ValueError, match="failed in iteration 1.*not finite"):
        train_grpo(tiny_cfg(tiny_base), tmp_path / "run", task=PromptsOnly(),
                   reward_fn=fails_on_long)
    assert not (tmp_path / "run" / "checkpoints").exists() or \
        not any((tmp_path / "run" / "checkpoints").iterdir())


def test_a_base_model_that_never_solves_a_problem_is_refused(tiny_base, tmp_path):
    # The barely trained model solves nothing: GRPO would see only all-wrong groups.
    with pytest.raises(ValueError, match=r"pass@4 = 0.*would learn nothing"):
        train_grpo(tiny_cfg(tiny_base), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_job_refuses_bad_input_before_any_work(tiny_base, tmp_path):
    with pytest.raises(ValueError, match="has no verifier"):
        run_r1_zero(R1ZeroConfig(task="reviews"), tmp_path / "a")
    with pytest.raises(ValueError, match="unknown task 'algebra'"):
        run_r1_zero(R1ZeroConfig(task="algebra"), tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="R1ZeroConfig.init"):
        run_r1_zero(R1ZeroConfig(init=str(tmp_path / "nope")), tmp_path / "c")
    with pytest.raises(ValueError, match="max_new_tokens=200"):
        run_r1_zero(R1ZeroConfig(init=str(tiny_base), max_new_tokens=200), tmp_path / "d")
    assert not any((tmp_path / name).exists() for name in "abcd")
    # A GRPO run of another config in the folder: refused before this config is written.
    cfg = R1ZeroConfig(init=str(tiny_base), max_new_tokens=24, harder_max_new_tokens=24)
    (tmp_path / "e" / "grpo").mkdir(parents=True)
    (tmp_path / "e" / "grpo" / "config.json").write_text(
        json.dumps(to_dict(dataclasses.replace(cfg.grpo(str(tiny_base)), beta=0.5))))
    with pytest.raises(ValueError, match="beta"):
        run_r1_zero(cfg, tmp_path / "e")
    assert not (tmp_path / "e" / "r1_zero_config.json").exists()


# --- learning ---------------------------------------------------------------------------

# A CI-sized R1-Zero run (about two minutes on 2 cores): the default pretraining, 40 GRPO
# iterations, 64 held-out problems.
CI_RUN = {"iterations": 40, "eval_every": 40, "checkpoint_every": 40, "n_eval": 64}


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("r1") / "run"
    lines = []
    cfg = dataclasses.replace(R1ZeroConfig(), **CI_RUN)
    return cfg, out, run_r1_zero(cfg, out, echo=lines.append), "\n".join(lines)


def test_grpo_raises_held_out_pass_at_1(ci_run):
    """Measured on 2026-12-04 (2 minutes alone on 2 cores): held-out pass@1 0.410 -> 0.668,
    format 0.684 -> 0.957, pass@8 0.953 -> 0.984."""
    cfg, out, result, printed = ci_run
    base, grpo = result["held_out"]["base"], result["held_out"]["grpo"]
    print({part: {name: {k: v for k, v in r.items() if k not in ("samples", "correct")}
                  for name, r in result[part].items()} for part in ("held_out", "harder")},
          result["seconds"])
    assert grpo["pass@1"] > base["pass@1"] + 0.15, (base, grpo)
    assert grpo["format"] > base["format"] + 0.15, (base, grpo)
    assert base["pass@8"] > base["pass@1"]  # the room RL works in
    for word in ("pass@1", "pass@8", "base model", "GRPO", "harder"):
        assert word in printed
    for name in ("grpo/grpo.png", "grpo/metrics.jsonl", "grpo/summary.json", "summary.json",
                 "samples.txt", "base/loss.png"):
        assert (out / name).stat().st_size > 0, name


@pytest.mark.slow
def test_default_run_raises_pass_at_1_by_20_points(tmp_path):
    """The default `minirlhf grpo` run (2 min 31 s on 2 cores, 2026-12-04): held-out
    pass@1 0.389 -> 0.736, format 0.691 -> 0.987."""
    result = run_r1_zero(R1ZeroConfig(), tmp_path / "run", echo=lambda *_: None)
    base, grpo = result["held_out"]["base"], result["held_out"]["grpo"]
    assert grpo["pass@1"] >= base["pass@1"] + 0.20, (base, grpo)
    assert sum(result["seconds"].values()) < 300
