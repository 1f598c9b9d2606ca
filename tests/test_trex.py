"""T-REX, D-REX and behavioural cloning: demonstrations on disk, snippet sampling, the loss
against lecture 3's Bradley-Terry loss, the learned-reward wrapper, noise rankings, and the
jobs end to end on small budgets."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minirlhf.bc import BCConfig, bc_loss, bc_policy, demo_stats, train_bc
from minirlhf.demos import (Demonstrations, DemosConfig, load_demos, make_demos,
                            rollout_episodes, save_demos, validate_demos)
from minirlhf.drex import DREXConfig, noise_rollouts, noise_ranked_demos, noisy_policy
from minirlhf.envs import make_env
from minirlhf.envs.core import AutoReset
from minirlhf.gym_train import load_agent, train_agents
from minirlhf.losses import bradley_terry_loss
from minirlhf.ppo import PPOConfig, action_bounds
from minirlhf.learned_reward import (LearnedReward, correlation, ranking_accuracy,
                                     raw_rewards, seed_model)
from minirlhf.trex import (TREXConfig, ranked_pairs, reward_spec, sample_snippets,
                           split_demos, train_reward, trex_loss)


def balancing(obs, key):
    """A hand-written CartPole controller (push towards where the pole falls): ~500."""
    return (obs[2] + 0.5 * obs[3] > 0).astype(jnp.int32)


def toy_demos(n=12, T=30, O=3, seed=0) -> Demonstrations:
    """Demonstrations whose true per-step reward is obs[..., 0], ranked by true return."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, T, O)).astype(np.float32)
    obs[..., 0] += np.linspace(-1, 1, n)[:, None]  # demonstrations of graded quality
    lengths = rng.integers(T // 2, T + 1, size=n).astype(np.int32)
    mask = np.arange(T)[None] < lengths[:, None]
    rewards = np.where(mask, obs[..., 0], 0.0).astype(np.float32)
    returns = rewards.sum(1)
    return Demonstrations(obs=obs, lengths=lengths, rank=returns.astype(np.float64),
                          actions=rng.integers(0, 2, size=(n, T)).astype(np.int32),
                          returns=returns, rewards=rewards, env="toy")


# --- demonstrations on disk ------------------------------------------------------------------


def test_demos_round_trip_and_atomic(tmp_path):
    demos = toy_demos()
    save_demos(tmp_path / "d.npz", demos)
    assert [p.name for p in tmp_path.iterdir()] == ["d.npz"]  # no temporary file left
    back = load_demos(tmp_path / "d.npz")
    for name in ("obs", "lengths", "rank", "actions", "returns", "rewards"):
        np.testing.assert_array_equal(getattr(back, name), getattr(demos, name))
    assert back.env == "toy"


@pytest.mark.parametrize("change, message", [
    (dict(obs=np.zeros((12, 30), np.float32)), r"obs must have shape \(D, T, O\)"),
    (dict(lengths=np.full(12, 31, np.int32)), "demonstration 0 has length 31, expected 1 to 30"),
    (dict(lengths=np.full(12, 3.0)), "lengths must be"),
    (dict(rank=np.zeros(12)), "1 distinct rank"),
    (dict(rank=np.zeros(5)), r"rank must be \(12,\)"),
    (dict(actions=np.zeros((12, 29), np.int32)), r"actions must have shape \(12, 30\)"),
    (dict(returns=np.zeros(3)), r"returns must have shape \(12,\)"),
])
def test_bad_demonstrations_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        validate_demos(dataclasses.replace(toy_demos(), **change))


def test_load_demos_errors(tmp_path):
    save_demos(tmp_path / "d.npz", toy_demos())
    with pytest.raises(ValueError, match="observations have 3 features, but the task's "
                                         "observation has 4"):
        load_demos(tmp_path / "d.npz", obs_dim=4)
    with pytest.raises(ValueError, match="demonstrations of 'toy', not of 'CartPole-v1'"):
        load_demos(tmp_path / "d.npz", env="CartPole-v1")
    np.savez(tmp_path / "missing.npz", obs=np.zeros((2, 3, 4)), rank=np.zeros(2))
    with pytest.raises(ValueError, match="missing the array 'lengths'"):
        load_demos(tmp_path / "missing.npz")
    np.savez(tmp_path / "objects.npz", obs=np.array([{"a": 1}], dtype=object),
             lengths=np.ones(1), rank=np.zeros(1))
    with pytest.raises(ValueError, match="not a NumPy .npz file of arrays"):
        load_demos(tmp_path / "objects.npz")  # object arrays need pickle: refused
    with pytest.raises(FileNotFoundError, match="no demonstrations file"):
        load_demos(tmp_path / "absent.npz")


def test_make_demos_are_capped_ranked_and_from_snapshots():
    cfg = DemosConfig(env="CartPole-v1", learner_steps=8192, snapshots=4, episodes=2)
    demos, info = make_demos(cfg)
    assert info["cap"] == pytest.approx(22 + (500 - 22) / 3)
    assert np.all(demos.returns <= info["cap"] + 1e-6)
    assert demos.n == info["kept"] == sum(r <= info["cap"] + 1e-6 for r in info["all_returns"])
    np.testing.assert_array_equal(demos.rank, demos.returns)  # rank_by="return"
    np.testing.assert_allclose(demos.returns, demos.lengths)  # CartPole: +1 per step
    np.testing.assert_allclose(demos.rewards.sum(1), demos.returns)
    assert set(demos.source) <= {0.0, 4.0, 8.0, 12.0, 16.0}  # the learner's iterations
    with pytest.raises(ValueError, match="no known return range; give max_return"):
        DemosConfig(env="LunarLander-v3")
    # Every JAX task has a preset, so `minirlhf trex --env ID` runs without --demos.
    from minirlhf.demos import DEMO_PRESETS
    from minirlhf.envs import GYM_TASKS

    assert set(GYM_TASKS) <= set(DEMO_PRESETS)
    assert DEMO_PRESETS["Acrobot-v1"].learner_config().env == "Acrobot-v1"


# --- snippets and the loss --------------------------------------------------------------------


def test_snippets_respect_ranks_lengths_and_progress():
    rank = np.array([0.0, 1.0, 2.0, 2.0, 5.0])
    lengths = jnp.array([8, 40, 25, 60, 12], jnp.int32)
    pairs = jnp.asarray(ranked_pairs(rank))
    assert {tuple(p) for p in np.asarray(pairs)} == {
        (i, j) for i in range(5) for j in range(5) if rank[i] < rank[j]}  # ties: no pair
    s = jax.device_get(sample_snippets(jax.random.key(0), pairs, lengths, 4000, 5, 20))
    lengths = np.asarray(lengths)
    assert np.all(rank[s.worse] < rank[s.better])
    shortest = np.minimum(lengths[s.worse], lengths[s.better])
    assert np.all(s.length == np.minimum(s.length, shortest)) and np.all(s.length <= 20)
    assert np.all((s.length >= 5) | (s.length == shortest))
    assert np.all(s.start_worse >= 0) and np.all(s.start_worse + s.length <= lengths[s.worse])
    assert np.all(s.start_better >= s.start_worse)  # the better one starts no earlier
    assert np.all(s.start_better + s.length <= lengths[s.better])
    assert np.mean(s.start_better > s.start_worse) > 0.3  # and often later
    assert set(np.unique(s.length)) == set(range(5, 21))  # every length drawn


def test_trex_loss_is_bradley_terry_on_snippet_sums():
    demos = toy_demos()
    env = make_env("CartPole-v1")
    cfg = TREXConfig(env="CartPole-v1", hidden=8)
    spec = dataclasses.replace(reward_spec(cfg, env), graphdef=None)
    from flax import nnx

    from minirlhf.learned_reward import RewardNet

    graphdef, params = nnx.split(RewardNet(3, 8, 2, nnx.Rngs(1)))
    spec = dataclasses.replace(spec, graphdef=graphdef)
    stats = demo_stats(demos)
    pairs = jnp.asarray(ranked_pairs(demos.rank))
    snippets = sample_snippets(jax.random.key(2), pairs, jnp.asarray(demos.lengths), 16, 3, 9)
    lengths = jnp.asarray(demos.lengths)
    loss, acc = jax.jit(lambda p: trex_loss(spec, p, stats, jnp.asarray(demos.obs), None,
                                            lengths, snippets, 9))(params)
    # By hand: each snippet's return, one pair at a time, then lecture 3's BT loss.
    s = jax.device_get(snippets)
    ret = lambda d, t, n: float(jnp.sum(raw_rewards(spec, params, stats,
                                                    jnp.asarray(demos.obs[d, t:t + n]), None)))
    better = np.array([ret(s.better[i], s.start_better[i], s.length[i]) for i in range(16)])
    worse = np.array([ret(s.worse[i], s.start_worse[i], s.length[i]) for i in range(16)])
    expected = bradley_terry_loss(jnp.asarray(better), jnp.asarray(worse))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert float(acc) == pytest.approx(np.mean(better > worse))
    eager, _ = trex_loss(spec, params, stats, jnp.asarray(demos.obs), None, lengths, snippets, 9)
    np.testing.assert_allclose(eager, loss, rtol=1e-5)  # jit = eager


def test_reward_learning_recovers_the_ranking_and_seeds_vmap():
    demos = toy_demos(n=16)
    env = make_env("Pendulum-v1")  # 3 observation features, like the toy demonstrations
    cfg = TREXConfig(env="Pendulum-v1", steps=300, ensemble=2, snippet_min=5, snippet_max=15,
                     hidden=16, num_seeds=2)
    spec, models, hist = train_reward(cfg, demos, env)
    assert hist["loss"].shape == (2, 300) and hist["loss"][:, -30:].mean() < hist["loss"][:, :30].mean()
    from minirlhf.learned_reward import learned_returns

    for i in range(2):
        learned = learned_returns(spec, seed_model(models, i), demos)
        assert correlation(learned, demos.returns) > 0.9
        assert ranking_accuracy(learned, demos.rank) > 0.85
    # vmap over seeds = separate runs: seed 1 trained alone gives seed 1's reward.
    _, alone, _ = train_reward(cfg, demos, env, seeds=[1])
    for a, b in zip(jax.tree.leaves(seed_model(models, 1)), jax.tree.leaves(seed_model(alone, 0))):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_split_demos_holds_out_and_ranking_accuracy_by_hand():
    demos = toy_demos(n=20)
    train, held = split_demos(demos, 0.25, seed=0)
    assert len(held) == 5 and sorted(np.concatenate([train, held])) == list(range(20))
    assert split_demos(demos, 0.0, 0)[1].size == 0
    # Scores 1, 3, 2 against ranks 0, 1, 2: pairs (0,1) right, (0,2) right, (1,2) wrong.
    assert ranking_accuracy(np.array([1.0, 3.0, 2.0]), np.array([0.0, 1.0, 2.0])) == pytest.approx(2 / 3)
    assert np.isnan(correlation(np.ones(4), np.arange(4.0)))


# --- the learned-reward wrapper ----------------------------------------------------------------


def test_learned_reward_wrapper_is_pure_vmappable_and_leaves_dynamics_alone():
    raw = make_env("CartPole-v1")
    env = AutoReset(raw)
    reward = lambda obs, action: obs[0] * 10.0 + action
    wrapped = LearnedReward(env, reward)
    params = wrapped.default_params()
    keys = jax.random.split(jax.random.key(0), 4)
    obs_w, st_w = jax.vmap(wrapped.reset, in_axes=(0, None))(keys, params)
    obs, st = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    np.testing.assert_array_equal(obs_w, obs)
    step_w = jax.jit(jax.vmap(wrapped.step, in_axes=(0, 0, 0, None)))
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    for t in range(60):  # long enough for episodes to end and reset
        k = jax.random.split(jax.random.key(t), 4)
        action = jnp.array([t % 2, 1, 0, (t // 3) % 2], jnp.int32)
        acted_on = obs_w
        obs_w, st_w, r_w, term_w, trunc_w, info_w = step_w(k, st_w, action, params)
        obs, st, r, term, trunc, info = step(k, st, action, params)
        np.testing.assert_array_equal(obs_w, obs)
        np.testing.assert_array_equal(term_w, term)
        np.testing.assert_array_equal(trunc_w, trunc)
        np.testing.assert_array_equal(info_w["true_reward"], r)
        np.testing.assert_array_equal(info_w["episode_return"], info["episode_return"])
        np.testing.assert_allclose(r_w, acted_on[:, 0] * 10.0 + action, rtol=1e-5, atol=1e-7)
    eager = wrapped.step(jax.random.key(9), jax.tree.map(lambda x: x[0], st_w),
                         jnp.int32(1), params)
    jitted = jax.jit(wrapped.step)(jax.random.key(9), jax.tree.map(lambda x: x[0], st_w),
                                    jnp.int32(1), params)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("backend", ["jax", "gymnasium"])
def test_ppo_on_a_reward_equal_to_the_true_one_is_ppo(tmp_path, backend):
    # CartPole's true reward is 1 every step: PPO through a learned-reward wrapper returning
    # 1 must be PPO itself, step for step, and still log the true returns -- on the JAX task
    # (learned_reward.LearnedReward) and through the gymnasium bridge (gym_bridge.LearnedRewardHost).
    from minirlhf.gym_bridge import LearnedRewardHost

    cfg = PPOConfig(num_envs=2, num_steps=16, num_minibatches=2, update_epochs=1,
                    total_steps=2 * 16 * 3, num_seeds=2, backend=backend)
    if backend == "jax":
        wrap = lambda env, c: LearnedReward(env, lambda o, a: c)
    else:
        wrap = lambda env, c: LearnedRewardHost(env, lambda o, a: jnp.full(o.shape[:1], c))
    plain = train_agents(cfg, tmp_path / "plain")
    wrapped = train_agents(cfg, tmp_path / "wrapped", wrap=wrap, wrap_args=jnp.ones(2))
    assert plain["backend"] == wrapped["backend"] == backend
    assert plain["final_return"] == wrapped["final_return"]
    rows = lambda p: [json.loads(x) for x in open(p / "metrics.jsonl")]
    for a, b in zip(rows(tmp_path / "plain"), rows(tmp_path / "wrapped")):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["episode_return_sum"] == b["episode_return_sum"]


# --- the gymnasium bridge (MuJoCo tasks' path, tried on CartPole's gymnasium twin) -----------


def test_bridge_learned_reward_replaces_only_the_reward():
    from minirlhf.gym_bridge import HostVecEnv, LearnedRewardHost

    plain, wrapped = HostVecEnv("CartPole-v1", 3, seed=5), HostVecEnv("CartPole-v1", 3, seed=5)
    wrapped = LearnedRewardHost(wrapped, lambda obs, action: obs[:, 0] * 10.0 + action)
    obs, obs_w = plain.reset(), wrapped.reset()
    np.testing.assert_array_equal(obs, obs_w)
    for t in range(60):  # episodes end and reset on the way
        action = np.array([t % 2, 1, (t // 3) % 2])
        acted_on = obs_w
        out, out_w = plain.step(action), wrapped.step(action)
        for name in ("obs", "terminated", "truncated", "final_obs", "episode_return",
                     "episode_length"):
            np.testing.assert_array_equal(getattr(out, name), getattr(out_w, name))
        np.testing.assert_allclose(out_w.reward, acted_on[:, 0] * 10.0 + action, rtol=1e-5,
                                   atol=1e-6)
        obs, obs_w = out.obs, out_w.obs
    assert (out.episode_return >= 0).all()
    plain.close(), wrapped.close()


def test_bridge_episodes_match_the_jax_task_under_a_fixed_controller():
    from minirlhf.demos import BridgeTask, task_episodes

    task = BridgeTask("CartPole-v1")
    assert task.max_steps == 500 and task.discrete
    eps = task_episodes(task, balancing, jax.random.key(0), 3)
    jax_eps = task_episodes(make_env("CartPole-v1"), balancing, jax.random.key(0), 3)
    assert eps.obs.shape == jax_eps.obs.shape == (3, 500, 4)
    np.testing.assert_allclose(eps.returns, eps.rewards.sum(1))
    np.testing.assert_array_equal(eps.returns, eps.lengths)  # CartPole: 1 per step
    assert eps.lengths.min() > 300 and jax_eps.lengths.min() > 300  # the controller balances
    mask = np.arange(500)[None] >= eps.lengths[:, None]
    assert not eps.obs[mask].any() and not eps.rewards[mask].any()  # padded with zeros


@pytest.mark.timeout(300)
def test_trex_job_through_the_bridge(tmp_path):
    from minirlhf.demo_jobs import drex_preset, run_drex, run_trex, trex_preset

    learner = PPOConfig(backend="gymnasium", num_envs=4, num_steps=128)
    demos, info = make_demos(DemosConfig(env="CartPole-v1", learner=learner,
                                         learner_steps=8 * 512, snapshots=4, episodes=2,
                                         max_return=200.0))
    assert demos.n == info["kept"] and demos.returns.max() <= 200.0
    np.testing.assert_allclose(demos.returns, demos.rewards.sum(1))
    assert set(demos.source) <= {0, 2, 4, 6, 8}  # 8 iterations, a snapshot every 2
    save_demos(tmp_path / "demos.npz", demos)
    cfg = trex_preset("CartPole-v1", demos=str(tmp_path / "demos.npz"), num_seeds=2,
                      steps=100, ensemble=1, eval_episodes=2, held_out=0.0)
    cfg = dataclasses.replace(cfg, rl=dataclasses.replace(
        cfg.rl, backend="gymnasium", num_envs=2, num_steps=64, num_minibatches=2,
        total_steps=2 * 64 * 4))
    lines = []
    summary = run_trex(cfg, tmp_path / "trex", echo=lines.append)
    assert json.loads((tmp_path / "trex" / "rl" / "summary.json").read_text())["backend"] \
        == "gymnasium"
    # Nothing held out: said in words, never a "nan%".
    assert summary["per_seed"][0]["held_out_accuracy"] is None
    assert any("no demonstrations held out" in line for line in lines)
    assert not any("nan" in line.lower() for line in lines)
    assert len(summary["policy"]) == 2 and all(np.isfinite(summary["policy"]))
    assert len(summary["behavioural_cloning"]) == 2
    # The controls ran through the bridge too, each scored like the policy.
    assert {k: len(v) for k, v in summary["controls"].items()} == {
        "constant +1": 2, "constant -1": 2, "untrained reward net": 2, "reversed rankings": 2}
    assert json.loads((tmp_path / "trex" / "controls" / "constant_-1" / "summary.json")
                      .read_text())["backend"] == "gymnasium"
    dcfg = drex_preset("CartPole-v1", demos=str(tmp_path / "demos.npz"), num_seeds=1,
                       steps=100, ensemble=1, noise_levels=3, rollouts_per_level=2,
                       controls=False, eval_episodes=2)
    dcfg = dataclasses.replace(dcfg, rl=dataclasses.replace(cfg.rl, total_steps=2 * 64 * 2),
                               bc=BCConfig(steps=100))
    dsum = run_drex(dcfg, tmp_path / "drex", echo=lambda line: None)
    assert dsum["demonstrations"] == 3 * 2 + 5 and len(dsum["noise"]["mean_return"]) == 3


# --- behavioural cloning and D-REX --------------------------------------------------------------


def test_bc_loss_by_hand_and_cloning_a_controller():
    env = make_env("CartPole-v1")
    eps = jax.device_get(rollout_episodes(env, balancing, jax.random.key(0), 4))
    demos = Demonstrations(obs=np.asarray(eps.obs), lengths=np.asarray(eps.lengths),
                           rank=np.arange(4.0), actions=np.asarray(eps.actions),
                           returns=np.asarray(eps.returns))
    graphdef, params, stats, losses = train_bc(BCConfig(steps=400), demos, env)
    assert losses[-20:].mean() < 0.3 < losses[0]
    from minirlhf.ppo import policy_apply
    from minirlhf.normalize import normalize

    obs, actions = jnp.asarray(demos.obs[0, :5]), jnp.asarray(demos.actions[0, :5])
    logits = policy_apply(graphdef, params, normalize(stats, obs)).logits
    by_hand = -np.mean([jax.nn.log_softmax(logits[i])[actions[i]] for i in range(5)])
    np.testing.assert_allclose(bc_loss(graphdef, params, stats, obs, actions), by_hand, rtol=1e-5)
    act = bc_policy(graphdef, params, stats, action_bounds(env), greedy=True)
    cloned = rollout_episodes(env, act, jax.random.key(1), 4)
    assert float(jnp.mean(cloned.returns)) > 300  # the controller makes ~500


def test_noise_injection_rates_and_returns_fall_with_noise():
    env = make_env("CartPole-v1")
    always_one = lambda obs, key: jnp.int32(1)
    obs = jnp.zeros(4, jnp.float32)
    keys = jax.random.split(jax.random.key(0), 4000)
    for eps, ones in ((0.0, 1.0), (0.5, 0.75), (1.0, 0.5)):  # random half the time is 1
        acts = jax.vmap(lambda k: noisy_policy(always_one, env, jnp.float32(eps))(obs, k))(keys)
        assert float(jnp.mean(acts)) == pytest.approx(ones, abs=0.03)
    levels = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    rollouts = noise_rollouts(env, balancing, levels, 8, jax.random.key(1))
    means = np.asarray(rollouts.returns).mean(1)
    assert means[0] > 450 and np.all(np.diff(means) < 0), means  # falls with the noise
    # Continuous actions: Gaussian noise of std epsilon * half the range, clipped.
    pend = make_env("Pendulum-v1")
    zero = lambda obs, key: jnp.zeros(1, jnp.float32)
    acts = jax.vmap(lambda k: noisy_policy(zero, pend, jnp.float32(0.1))(jnp.zeros(3), k))(keys)
    assert float(jnp.std(acts)) == pytest.approx(0.1 * 2.0, rel=0.1)  # Pendulum: [-2, 2]


def test_noise_ranked_demos_rank_by_noise_with_the_demos_on_top():
    env = make_env("CartPole-v1")
    cfg = DREXConfig(noise_levels=4, rollouts_per_level=3)
    given = Demonstrations(obs=np.zeros((2, 10, 4), np.float32), lengths=np.array([10, 10]),
                           rank=np.zeros(2), actions=np.zeros((2, 10), np.int32),
                           returns=np.array([10.0, 10.0]))
    ranked, info = noise_ranked_demos(cfg, env, balancing, jax.random.key(0), given)
    assert ranked.n == 4 * 3 + 2 and ranked.obs.shape[1] == 500
    np.testing.assert_allclose(info["noise"], [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(ranked.rank[:12], -np.repeat(info["noise"], 3))
    assert np.all(ranked.rank[12:] == 1.0) and np.all(ranked.source[12:] == 0.0)
    with pytest.raises(ValueError, match="max_noise must be in"):
        DREXConfig(max_noise=1.5)


def test_config_errors():
    with pytest.raises(ValueError, match="snippet_min=60 is above snippet_max=50"):
        TREXConfig(snippet_min=60)
    with pytest.raises(ValueError, match="held_out must be in"):
        TREXConfig(held_out=1.0)
    with pytest.raises(ValueError, match="TREXConfig.ensemble must be a positive integer"):
        TREXConfig(ensemble=0)


# --- the jobs --------------------------------------------------------------------------------


@pytest.mark.timeout(400)
def test_trex_and_drex_jobs_end_to_end(tmp_path):
    from minirlhf.demo_jobs import drex_preset, run_drex, run_trex, trex_preset

    demos, _ = make_demos(DemosConfig(env="CartPole-v1", learner_steps=32_768, snapshots=8))
    save_demos(tmp_path / "demos.npz", demos)
    small = dict(demos=str(tmp_path / "demos.npz"), num_seeds=2, steps=200, ensemble=1)
    cfg = trex_preset("CartPole-v1", **small)
    cfg = dataclasses.replace(cfg, rl=dataclasses.replace(cfg.rl, total_steps=40_960))
    lines = []
    summary = run_trex(cfg, tmp_path / "trex", echo=lines.append)
    for name in ("config.json", "demos.npz", "metrics.jsonl", "learned_vs_true.png",
                 "summary.json", "rl/learning_curve.png", "rl/metrics.jsonl"):
        assert (tmp_path / "trex" / name).is_file(), name
    assert (tmp_path / "trex" / "reward").is_dir()
    assert len(summary["policy"]) == 2 and len(summary["behavioural_cloning"]) == 2
    assert summary["best_demonstration"] == pytest.approx(float(demos.returns.max()))
    assert summary["correlation"] > 0.8  # a positive reward per step, summed: longer is better
    # The offset was learned from the episode ends (CartPole's demonstrations all fall):
    # longer ranks higher, so living is good; the reversed rankings' reward says the opposite.
    assert summary["offset_learned"] and summary["reward_per_step"] > 0
    assert summary["correlation_reversed"] < -0.5
    assert np.isnan(summary["correlation_snippets"])  # +1 a step: nothing but length
    # Every control ran, with the policy's PPO settings and seeds, scored by one protocol.
    from minirlhf.demo_controls import CONTROLS

    assert tuple(summary["controls"]) == CONTROLS
    assert all(len(v) == 2 for v in summary["controls"].values())
    assert np.mean(summary["controls"]["constant -1"]) < 30  # the pole dropped at once
    for name in ("constant_+1", "constant_-1", "untrained_reward_net", "reversed_rankings"):
        assert (tmp_path / "trex" / "controls" / name / "checkpoints").is_dir(), name
    printed = "\n".join(lines)
    assert "controls, the same PPO on:" in printed and "constant -1" in printed
    assert f"verdict: T-REX {summary['verdict']}" in printed
    assert "over equal-length snippets" in printed and "(should be negative)" in printed
    assert "nan" not in printed.lower()
    dcfg = drex_preset("CartPole-v1", **small, noise_levels=5, rollouts_per_level=2,
                       controls=False)
    dcfg = dataclasses.replace(dcfg, rl=cfg.rl, bc=BCConfig(steps=300))
    dsum = run_drex(dcfg, tmp_path / "drex", echo=lines.append)
    assert dsum["method"] == "D-REX" and dsum["demonstrations"] == 5 * 2 + 5
    assert (tmp_path / "drex" / "noise_vs_return.png").is_file()


def test_cli_refuses_bad_input_before_any_work(tmp_path, capsys):
    from minirlhf.cli import main

    assert main(["trex", "--env", "Foo-v0", "--out", str(tmp_path / "a")]) == 2
    assert "unknown gymnasium environment id 'Foo-v0'" in capsys.readouterr().err
    save_demos(tmp_path / "d.npz", toy_demos())  # 3 features, CartPole has 4
    assert main(["drex", "--demos", str(tmp_path / "d.npz"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "not of 'CartPole-v1'" in err or "observation has 4" in err
    one = dataclasses.replace(toy_demos(), rank=np.zeros(12), env="CartPole-v1",
                              obs=np.zeros((12, 30, 4), np.float32))
    save_demos(tmp_path / "one.npz", one)
    assert main(["trex", "--demos", str(tmp_path / "one.npz"), "--out", str(tmp_path / "c")]) == 2
    assert "at least 2 are needed" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in "abc")


# --- the offset, the controls, the refusals (issue: wins that come from the rankings) --------


def length_ranked_demos(longer_is_better: bool, terminated: bool, n=16, T=40, seed=0):
    """Demonstrations whose states say nothing (noise) and whose only difference is when
    they end: ranked by length, or by shortness."""
    rng = np.random.default_rng(seed)
    lengths = np.linspace(8, T, n).astype(np.int32)
    obs = rng.normal(size=(n, T, 3)).astype(np.float32)
    obs[np.arange(T)[None] >= lengths[:, None]] = 0.0
    rank = lengths.astype(np.float64) if longer_is_better else -lengths.astype(np.float64)
    return Demonstrations(obs=obs, lengths=lengths, rank=rank, env="toy",
                          terminated=np.full(n, terminated))


@pytest.mark.parametrize("longer_is_better", [True, False])
def test_the_offset_is_learned_from_how_episodes_end(longer_is_better):
    from minirlhf.learned_reward import rl_step_rewards
    from minirlhf.trex import offset_identified

    env = make_env("Pendulum-v1")  # 3 observation features, like the toy demonstrations
    cfg = TREXConfig(env="Pendulum-v1", steps=300, ensemble=2, snippet_min=5, snippet_max=15,
                     hidden=16, num_seeds=1)
    demos = length_ranked_demos(longer_is_better, terminated=True)
    assert offset_identified(demos)
    spec, models, _ = train_reward(cfg, demos, env)
    mask = np.arange(40)[None] < demos.lengths[:, None]
    per_step = rl_step_rewards(spec, seed_model(models, 0), demos)[mask].mean()
    # Living is good where longer ranks higher, every step costs where shorter does.
    assert (per_step > 0.5) if longer_is_better else (per_step < -0.5), per_step
    # The same demonstrations cut by a time limit (not terminated): nothing says whether
    # ending is good, so no offset is learned and the reward is centred.
    cut = length_ranked_demos(longer_is_better, terminated=False)
    assert not offset_identified(cut)
    spec, models, _ = train_reward(cfg, cut, env)
    centred = rl_step_rewards(spec, seed_model(models, 0), cut)[mask].mean()
    assert abs(centred) < 0.05, centred


def test_snippets_run_into_the_absorbing_state_only_past_a_terminal_end():
    lengths = jnp.array([10, 30], jnp.int32)
    pairs = jnp.asarray(ranked_pairs(np.array([0.0, 1.0])))
    ended = jnp.array([True, False])
    s = jax.device_get(sample_snippets(jax.random.key(0), pairs, lengths, 2000, 5, 12, ended))
    # Demonstration 0 ended at 10 steps: within the pair it counts as 30 long, its
    # snippets may start anywhere the other's can; demonstration 1 never runs past its end.
    assert s.length.min() >= 5 and s.length.max() == 12
    assert np.all(s.start_better + s.length <= 30) and np.all(s.start_worse + s.length <= 30)
    assert np.mean(s.start_worse + s.length > 10) > 0.5  # mostly absorbing steps
    cut = jax.device_get(sample_snippets(jax.random.key(0), pairs, lengths, 2000, 5, 12))
    assert np.all(cut.start_worse + cut.length <= 10)  # without `ended`: T-REX's snippets


def test_trex_loss_charges_r_abs_after_a_terminal_end():
    from flax import nnx

    from minirlhf.learned_reward import RewardNet, absorbing_reward
    from minirlhf.trex import Snippets

    demos = length_ranked_demos(True, terminated=True, n=2, T=12)
    env = make_env("Pendulum-v1")
    spec = reward_spec(TREXConfig(env="Pendulum-v1", hidden=8), env)
    graphdef, params = nnx.split(RewardNet(3, 8, 2, nnx.Rngs(3)))
    params["absorbing"].set_value(jnp.float32(0.7))
    spec = dataclasses.replace(spec, graphdef=graphdef)
    assert float(absorbing_reward(spec, params)) == pytest.approx(0.7)
    stats = demo_stats(demos)
    # One pair: demonstration 0 (8 steps) from step 5, demonstration 1 from step 6, 6 long.
    snip = Snippets(worse=jnp.array([0]), better=jnp.array([1]), start_worse=jnp.array([5]),
                    start_better=jnp.array([6]), length=jnp.array([6]))
    loss, _ = trex_loss(spec, params, stats, jnp.asarray(demos.obs), None,
                        jnp.asarray(demos.lengths), snip, 6)
    r = lambda d, a, b: float(jnp.sum(raw_rewards(spec, params, stats,
                                                  jnp.asarray(demos.obs[d, a:b]), None)))
    worse = r(0, 5, 8) + 3 * 0.7  # steps 5-7 real, 8-10 absorbing
    better = r(1, 6, 12)
    np.testing.assert_allclose(loss, float(bradley_terry_loss(jnp.array([better]),
                                                              jnp.array([worse]))), rtol=1e-5)


def test_reversed_rankings_give_a_reward_that_correlates_negatively():
    from minirlhf.demo_controls import reversed_rankings
    from minirlhf.learned_reward import learned_returns

    demos = toy_demos(n=16)
    env = make_env("Pendulum-v1")
    cfg = TREXConfig(env="Pendulum-v1", steps=300, ensemble=2, snippet_min=5, snippet_max=15,
                     hidden=16, num_seeds=1)
    spec, models, _ = train_reward(cfg, reversed_rankings(demos), env)
    assert correlation(learned_returns(spec, seed_model(models, 0), demos), demos.returns) < -0.9


def test_beats_and_the_verdict_by_hand():
    from minirlhf.demo_controls import beats, verdict

    assert beats([10.0, 12.0], [5.0, 5.0])          # gap 6 > spreads 1 + 0
    assert not beats([10.0, 12.0], [8.0, 10.0])     # gap 2 = spreads 1 + 1: not more
    assert beats([10.0, 12.0], 8.9) and not beats([10.0, 12.0], 10.0)
    summary = {"policy": [100.0, 102.0], "best_demonstration": 50.0,
               "controls": {"constant +1": [100.0, 101.0], "reversed rankings": [20.0, 30.0]}}
    line = verdict(summary)
    assert line.startswith("does not beat constant +1 by more") and "reversed" not in line
    summary["controls"]["constant +1"] = [60.0, 61.0]
    assert verdict(summary).startswith("beats the best demonstration and every control")
    assert "not evidence" in verdict(dict(summary, controls={}))


def test_snippet_correlation_sees_through_length():
    from minirlhf.learned_reward import snippet_correlation

    rng = np.random.default_rng(0)
    lengths = np.array([30, 40, 50, 60])
    mask = np.arange(60)[None] < lengths[:, None]
    constant = np.where(mask, 1.0, 0.0)  # CartPole: +1 a step
    learned = np.where(mask, rng.normal(size=(4, 60)) - 1.0, 0.0)
    key = jax.random.key(0)
    assert np.isnan(snippet_correlation(learned, constant, lengths, key, 20))
    true = np.where(mask, rng.normal(size=(4, 60)), 0.0)
    assert snippet_correlation(true * 2 + 1, true, lengths, key, 20) == pytest.approx(1.0)
    assert abs(snippet_correlation(learned, true, lengths, key, 20)) < 0.2


def test_drex_refuses_noise_that_ranks_nothing():
    from minirlhf.drex import check_noise_ranking

    check_noise_ranking({"noise": [0.25, 0.5, 1.0], "mean_return": [400.0, 200.0, 20.0]})
    with pytest.raises(ValueError, match=r"does not fall with the noise .*-500.0 at epsilon "
                                         r"0.25 to -500.0 at 1.00; correlation with epsilon undefined"):
        check_noise_ranking({"noise": [0.25, 0.5, 1.0], "mean_return": [-500.0] * 3})
    with pytest.raises(ValueError, match=r"correlation with epsilon \+"):
        check_noise_ranking({"noise": [0.25, 0.5, 1.0], "mean_return": [10.0, 50.0, 90.0]})


def test_demonstrations_record_how_episodes_end(tmp_path):
    env = make_env("CartPole-v1")
    eps = jax.device_get(rollout_episodes(env, balancing, jax.random.key(0), 2))
    assert not eps.terminated.any() and (eps.lengths == 500).all()  # the time limit
    falls = lambda obs, key: jnp.int32(1)  # always push right: the pole falls
    eps = jax.device_get(rollout_episodes(env, falls, jax.random.key(0), 2))
    assert eps.terminated.all() and (eps.lengths < 50).all()
    demos = dataclasses.replace(toy_demos(), terminated=np.arange(12) % 2 == 0)
    save_demos(tmp_path / "d.npz", demos)
    np.testing.assert_array_equal(load_demos(tmp_path / "d.npz").terminated, demos.terminated)
    inferred = toy_demos()  # no `terminated`: shorter than T means it ended
    np.testing.assert_array_equal(inferred.ended(), inferred.lengths < 30)


def test_evaluate_run_scores_every_agent_like_a_loop(tmp_path):
    # The protocol's vmapped scoring of a run's agents equals scoring each one alone.
    from minirlhf.demo_controls import evaluate_run, evaluate_policy
    from minirlhf.demos import agent_policy

    cfg = PPOConfig(num_envs=2, num_steps=16, num_minibatches=2, update_epochs=1,
                    total_steps=2 * 16 * 3, num_seeds=3)
    train_agents(cfg, tmp_path / "run")
    env, key = make_env("CartPole-v1"), jax.random.key(7)
    scores = evaluate_run(tmp_path / "run", env, 4, key)
    for i in range(3):
        ppo_cfg, graphdef, params, stats, _ = load_agent(tmp_path / "run", agent=i)
        act = agent_policy(graphdef, params, stats, ppo_cfg, action_bounds(env), greedy=True)
        assert scores[i] == pytest.approx(evaluate_policy(env, act, 4, key), rel=1e-6)


def test_the_summary_names_a_fixed_prior_and_never_prints_nan():
    from minirlhf.demo_jobs import summary_table

    summary = {"method": "T-REX", "env": "CartPole-v1", "seeds": [0, 1],
               "evaluation": "greedy, 20 episodes per seed, true return",
               "best_demonstration": 178.0, "behavioural_cloning": [150.0, 160.0],
               "policy": [400.0, 420.0], "controls": {"constant +1": [480.0, 490.0]},
               "verdict": "does not beat constant +1 by more than the spread over seeds",
               "reward_transform": "sigmoid", "offset_learned": False,
               "reward_per_step": 0.6, "correlated_with": "true return", "true_rewards": True,
               "correlation": 0.99, "correlation_snippets": float("nan"),
               "correlation_reversed": float("nan")}
    text = "\n".join(summary_table(summary))
    assert "offset fixed by the user's prior 'sigmoid'" in text
    assert "constant +1" in text and "beats T-REX" in text  # 485 +- 5 against 410 +- 10
    assert "nan" not in text.lower() and "reversed rankings' reward" not in text
