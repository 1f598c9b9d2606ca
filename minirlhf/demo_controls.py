"""The controls and the one evaluation protocol of T-REX and D-REX (layer 3).

A learned reward earns a result only against what the same PPO gets without it (DESIGN.md,
"Claims and their controls"). On a task whose episode can end early, a reward's *sign*
alone can win: any positive per-step reward teaches CartPole's agent to stay up, any
negative one teaches Acrobot's to swing up and end the episode (the survival bias of
learned rewards, Kostrikov et al. 2019). So every T-REX and D-REX run also trains, with the
same PPO settings and seeds:

* **constant +1 and constant -1** per step: what the sign alone gets;
* **an untrained reward network** (the same ensemble, initialised and calibrated but never
  trained): what any reward of that shape gets;
* **the reversed rankings**: the reward learned from the same demonstrations ranked the
  other way round, which should teach the opposite.

Every row of the table is scored by one protocol: each seed's final policy acts greedily
(its most likely action, or its mean) for `eval_episodes` episodes of the true task, the
same episode keys for every row; a row is the mean +- std over seeds of those scores.
`beats(a, b)` says a method beats a row only when the gap exceeds the two rows' spreads
added (std over seeds).

    rows = run_controls(cfg, env, spec, ranked, train_idx, seeds, out)   # {name: returns}
    score = evaluate_run(out / "rl", env, cfg.eval_episodes, key)        # (seeds,) returns
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from minirlhf.demos import (BridgeTask, Demonstrations, agent_policy, rollout_episodes,
                            task_episodes)
from minirlhf.gym_train import load_agent, train_agents
from minirlhf.learned_reward import (LearnedReward, calibrate, correlation,
                                     learned_reward_env, learned_reward_host, rl_step_rewards)
from minirlhf.ppo import action_bounds
from minirlhf.trex import TREXConfig, init_ensemble, train_reward

CONTROLS = ("constant +1", "constant -1", "untrained reward net", "reversed rankings")
"""The controls' names, in the order every report lists them."""


def eval_key(cfg: TREXConfig) -> jax.Array:
    """The evaluation episodes' key: one for every row, so rows meet the same starts."""
    return jax.random.key(cfg.seed + 10_000)


def evaluate_run(run_dir: str | Path, env, episodes: int, key: jax.Array) -> list[float]:
    """Each of a PPO run folder's agents, scored by the protocol: the mean true return of
    `episodes` greedy episodes (the same keys for every agent)."""
    first = load_agent(run_dir, 0)
    cfg, graphdef, meta = first[0], first[1], first[4]
    agents = [first] + [load_agent(run_dir, i) for i in range(1, len(meta["seeds"]))]
    bounds = action_bounds(env)
    if isinstance(env, BridgeTask):
        return [float(np.mean(task_episodes(env, agent_policy(
            graphdef, a[2], a[3], cfg, bounds, greedy=True), key, episodes).returns))
            for a in agents]
    stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
    params, stats = stack([a[2] for a in agents]), stack([a[3] for a in agents])

    @jax.jit
    def score(params, stats):
        act = agent_policy(graphdef, params, stats, cfg, bounds, greedy=True)
        return jnp.mean(rollout_episodes(env, act, key, episodes).returns)

    return [float(x) for x in jax.vmap(score)(params, stats)]


def evaluate_policy(env, act, episodes: int, key: jax.Array) -> float:
    """One policy (obs, key) -> action, scored by the protocol (it should act greedily)."""
    return float(np.mean(task_episodes(env, act, key, episodes).returns))


def beats(a, b) -> bool:
    """Whether returns `a` (per seed) beat `b` (per seed, or one number such as the best
    demonstration) by more than their spreads over seeds added."""
    a, b = np.atleast_1d(np.asarray(a, float)), np.atleast_1d(np.asarray(b, float))
    if not len(a) or not len(b):
        return False
    return bool(np.mean(a) - np.mean(b) > np.std(a) + np.std(b))


def ppo_on_reward(cfg: TREXConfig, env, spec, models, out: Path, lines: dict) -> list[float]:
    """PPO (cfg.rl, every seed) on learned rewards `models` (one per seed), then the
    protocol's score of each final policy."""
    if isinstance(env, BridgeTask):
        wrap = lambda e, m: learned_reward_host(spec, m)(e)
    else:
        wrap = lambda e, m: learned_reward_env(e, spec, m)
    train_agents(cfg.rl_config(), out, wrap=wrap, wrap_args=models, lines=lines)
    return evaluate_run(out, env, cfg.eval_episodes, eval_key(cfg))


def ppo_on_constant(cfg: TREXConfig, env, value: float, out: Path, lines: dict) -> list[float]:
    """PPO (cfg.rl, every seed) on the constant reward `value` per step; scored."""
    if isinstance(env, BridgeTask):
        from minirlhf.gym_bridge import LearnedRewardHost

        wrap = lambda e, c: LearnedRewardHost(e, lambda obs, a: jnp.zeros(obs.shape[0]) + c)
    else:
        wrap = lambda e, c: LearnedReward(e, lambda obs, a: c)
    train_agents(cfg.rl_config(), out, wrap=wrap, wrap_args=jnp.full(cfg.num_seeds, value),
                 lines=lines)
    return evaluate_run(out, env, cfg.eval_episodes, eval_key(cfg))


def reversed_rankings(demos: Demonstrations) -> Demonstrations:
    """The same demonstrations ranked the other way round."""
    return dataclasses.replace(demos, rank=-np.asarray(demos.rank))


def untrained_models(cfg: TREXConfig, spec, demos: Demonstrations, env, seeds: list[int]):
    """One untrained reward ensemble per seed, standardised over `demos` and centred (it
    knows nothing, not even a sign), stacked over seeds like train_reward's models."""
    from minirlhf.bc import demo_stats

    in_dim = int(env.observation_space.shape[0]) + spec.action_dim
    stats = demo_stats(demos)
    models = [calibrate(spec, init_ensemble(cfg, spec, jax.random.key(10_000 + s), in_dim),
                        stats, demos, learned_offset=False) for s in seeds]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *models)


def run_controls(cfg: TREXConfig, env, spec, train: Demonstrations, truth: np.ndarray,
                 ranked: Demonstrations, out: Path, seeds: list[int], lines: dict,
                 echo) -> tuple[dict, list[float]]:
    """Every control (CONTROLS), each PPO run in out/controls/<name>/.

    Args:
        train: the demonstrations the method's reward learned from (the reversed control
            learns from them ranked the other way). ranked, truth: every ranked
            demonstration and what its learned return is correlated with.
    Returns:
        ({control: per-seed returns}, the reversed reward's correlation with `truth`, per
        seed: it should come out negative).
    """
    folder = out / "controls"
    rows = {}
    for name, value in (("constant +1", 1.0), ("constant -1", -1.0)):
        echo(f"control: PPO on a {name} reward per step")
        rows[name] = ppo_on_constant(cfg, env, value, folder / name.replace(" ", "_"), lines)
    echo("control: PPO on an untrained reward network")
    rows["untrained reward net"] = ppo_on_reward(
        cfg, env, spec, untrained_models(cfg, spec, train, env, seeds),
        folder / "untrained_reward_net", lines)
    echo("control: the reward learned from the reversed rankings, and PPO on it")
    _, models, _ = train_reward(cfg, reversed_rankings(train), env, seeds)
    reversed_corr = [correlation(rl_step_rewards(spec, jax.tree.map(lambda x: x[i], models),
                                                 ranked).sum(1), truth)
                     for i in range(len(seeds))]
    rows["reversed rankings"] = ppo_on_reward(cfg, env, spec, models,
                                              folder / "reversed_rankings", lines)
    return rows, reversed_corr


def verdict(summary: dict) -> str:
    """The summary's verdict line: 'beats ...' only when the method beats the best
    demonstration and every control by more than the spread over seeds."""
    policy = summary["policy"]
    misses = [] if beats(policy, summary["best_demonstration"]) else ["the best demonstration"]
    misses += [name for name, rets in summary.get("controls", {}).items()
               if not beats(policy, rets)]
    if misses:
        return f"does not beat {', '.join(misses)} by more than the spread over seeds"
    if not summary.get("controls"):
        return ("beats the best demonstration by more than the spread over seeds; no "
                "controls were run, so this is not evidence that the learned reward helped")
    return "beats the best demonstration and every control by more than the spread over seeds"
