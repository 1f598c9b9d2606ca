"""PPO: the generic update, jit = eager, vmap over seeds = separate runs, learning on
CartPole and Pendulum (JAX ports) and on gymnasium's own CartPole through the bridge."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from minirlhf.envs import make_env
from minirlhf.envs.core import AutoReset
from minirlhf.ppo import (PRESETS, PPOConfig, init_agents, make_train, make_update,
                          mean_episode_return)
from minirlhf.optim import TrainState

TINY = PPOConfig(num_envs=2, num_steps=8, num_minibatches=2, update_epochs=1,
                 total_steps=2 * 8 * 2)


def test_update_visits_every_sample_once_per_epoch():
    # The loss reports which samples its minibatch holds (a one-hot histogram); over one
    # update every sample must appear exactly once per epoch, in equal minibatches.
    n, epochs, minibatches = 24, 3, 4

    def loss_fn(params, mb):
        hist = jnp.zeros(n).at[mb["id"]].add(1.0)
        return jnp.sum(params["w"] * mb["x"]), {"hist": hist, "size": jnp.sum(hist)}

    update = make_update(loss_fn, optax.sgd(0.1), epochs, minibatches)
    params = {"w": jnp.ones(())}
    state = TrainState(params, optax.sgd(0.1).init(params), jnp.zeros((), jnp.int32))
    batch = {"x": jnp.arange(n, dtype=jnp.float32), "id": jnp.arange(n)}
    new_state, metrics = jax.jit(update)(state, batch, jax.random.key(0))
    steps = epochs * minibatches
    assert int(new_state.step) == steps
    np.testing.assert_allclose(metrics["hist"] * steps, np.full(n, epochs))
    assert float(metrics["size"]) == n / minibatches
    # w moved by lr * (sum of x over every minibatch step) = 0.1 * epochs * sum(x).
    assert float(new_state.params["w"]) == pytest.approx(1 - 0.1 * epochs * n * (n - 1) / 2)
    with pytest.raises(ValueError, match="does not split"):
        update(state, {"x": jnp.ones(10), "id": jnp.arange(10)}, jax.random.key(0))


def test_jit_equals_eager_and_same_seed_same_result():
    env = AutoReset(make_env("CartPole-v1"))
    _, _, _, train = make_train(TINY, env)
    key = jax.random.key(3)
    jitted, m_jit = jax.jit(train)(key)
    eager, m_eager = train(key)  # op by op (each scan compiled on its own)
    for a, b in zip(jax.tree.leaves(jitted.train.params), jax.tree.leaves(eager.train.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m_jit["episode_return_sum"], m_eager["episode_return_sum"])
    again, _ = jax.jit(train)(key)
    for a, b in zip(jax.tree.leaves(jitted.train.params), jax.tree.leaves(again.train.params)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("env_name", ["CartPole-v1", "Pendulum-v1"])
def test_vmap_over_seeds_equals_separate_runs(env_name):
    cfg = PPOConfig(env=env_name, num_envs=2, num_steps=16, num_minibatches=2,
                    update_epochs=2, total_steps=2 * 16 * 3, norm_obs=env_name != "CartPole-v1",
                    norm_reward=env_name != "CartPole-v1")
    env = AutoReset(make_env(env_name))
    _, init, run, _ = make_train(cfg, env)
    keys = [jax.random.key(s) for s in (0, 1, 2)]
    run3 = jax.jit(jax.vmap(lambda r: run(r, 3)))
    stacked = init_agents(init, keys)
    for _ in range(3):  # repeated calls: the pattern that once deadlocked (see init_agents)
        together, metrics = run3(stacked)
    single = jax.jit(lambda r: run(r, 3))
    for i, key in enumerate(keys):
        alone, m_alone = single(jax.jit(init)(key))
        for a, b in zip(jax.tree.leaves(alone.train.params),
                        jax.tree.leaves(together.train.params)):
            np.testing.assert_allclose(a, b[i], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(m_alone["episode_return_sum"],
                                   metrics["episode_return_sum"][i], rtol=1e-5)
    # Different seeds really are different agents.
    leaf = jax.tree.leaves(together.train.params)[0]
    assert not np.allclose(leaf[0], leaf[1])


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="does not divide into num_minibatches=3"):
        PPOConfig(num_envs=4, num_steps=128, num_minibatches=3)
    with pytest.raises(ValueError, match="num_envs must be a positive integer"):
        PPOConfig(num_envs=0)
    with pytest.raises(ValueError, match="less than one rollout"):
        PPOConfig(total_steps=100)
    with pytest.raises(ValueError, match="unknown gym task 'CartPole-v9'"):
        make_env("CartPole-v9")


def test_unknown_gymnasium_id_is_a_clear_error():
    from minirlhf.gym_bridge import HostVecEnv

    with pytest.raises(ValueError, match="unknown gymnasium environment id 'NoSuchEnv-v0'"):
        HostVecEnv("NoSuchEnv-v0", 2, 0)


def _final_mean_return(metrics, last=10):
    ep = np.asarray(metrics["episodes"])[-last:]
    return float(np.asarray(metrics["episode_return_sum"])[-last:].sum() / max(ep.sum(), 1))


@pytest.mark.timeout(300)
def test_cartpole_is_solved():
    # CleanRL's defaults, 500k steps: the agent balances for the full 500 steps.
    cfg = PRESETS["cartpole"]
    _, _, _, train = make_train(cfg, AutoReset(make_env(cfg.env)))
    _, metrics = jax.jit(train)(jax.random.key(0))
    first = float(np.nanmean(np.asarray(mean_episode_return(metrics))[:3]))
    final = _final_mean_return(metrics)
    assert first < 60, first  # a random policy falls within a few dozen steps
    assert final >= 475, f"CartPole mean return over the last iterations {final:.1f} < 475"


@pytest.mark.timeout(300)
def test_pendulum_improves():
    # A random pendulum policy scores about -1200 per episode; the 'pendulum' preset
    # (200k steps, ~10 s) reaches about -200. Threshold: better than -500.
    cfg = PRESETS["pendulum"]
    _, _, _, train = make_train(cfg, AutoReset(make_env(cfg.env)))
    _, metrics = jax.jit(train)(jax.random.key(0))
    first = float(np.nanmean(np.asarray(mean_episode_return(metrics))[:3]))
    final = _final_mean_return(metrics)
    assert first < -900, first
    assert final > -500, f"Pendulum mean return {final:.1f}, expected > -500 (from {first:.0f})"


@pytest.mark.timeout(300)
def test_gymnasium_bridge_learns_gymnasiums_own_cartpole():
    from minirlhf.gym_bridge import train_gymnasium

    cfg = PPOConfig(env="CartPole-v1", backend="gymnasium", total_steps=60_000)
    _, _, _, history = train_gymnasium(cfg, seed=0)
    first = history[0]["episode_return_sum"] / history[0]["episodes"]
    last = history[-10:]
    final = sum(h["episode_return_sum"] for h in last) / max(sum(h["episodes"] for h in last), 1)
    assert first < 40, first
    assert final > 150, f"bridge CartPole return after 60k steps {final:.1f}, expected > 150"


def test_run_folder_checkpoint_and_evaluation(tmp_path):
    from minirlhf.gym_train import evaluate_agent, load_agent, train_agents

    cfg = PPOConfig(num_seeds=2, total_steps=4 * 128 * 4)
    summary = train_agents(cfg, tmp_path / "run")
    assert set(summary["final_return"]) == {"0", "1"}
    for name in ("metrics.jsonl", "learning_curve.png", "config.json", "summary.json"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 4 and {json.loads(x)["seed"] for x in lines} == {0, 1}
    # The checkpoint holds exactly the parameters a fresh identical run produces.
    _, init, run, _ = make_train(cfg, AutoReset(make_env(cfg.env)))
    ref, _ = jax.jit(lambda r: run(r, 4))(jax.jit(init)(jax.random.key(1)))
    _, _, params, stats, _ = load_agent(tmp_path / "run", agent=1)
    for a, b in zip(jax.tree.leaves(ref.train.params), jax.tree.leaves(params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert stats is None  # this run does not normalise observations
    res = evaluate_agent(tmp_path / "run", episodes=2, agent=0,
                         filmstrip=tmp_path / "strip.png", video=tmp_path / "ep.gif",
                         max_frames=20)
    assert len(res["returns"]) == 2 and res["mean_return"] == pytest.approx(
        np.mean(res["returns"]))
    assert (tmp_path / "strip.png").stat().st_size > 0 and (tmp_path / "ep.gif").stat().st_size > 0
    with pytest.raises(ValueError, match="agent index 5 out of range"):
        load_agent(tmp_path / "run", agent=5)
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        load_agent(tmp_path)
