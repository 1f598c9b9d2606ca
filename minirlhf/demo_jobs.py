"""The jobs behind `minirlhf demos`, `minirlhf trex` and `minirlhf drex` (layer 3).

    run_demos(DEMO_PRESETS["CartPole-v1"], "runs/demos")   # demos.npz from a PPO learner
    run_trex(trex_preset("CartPole-v1"), "runs/trex")      # reward from rankings, then PPO
    run_drex(drex_preset("CartPole-v1"), "runs/drex")      # rankings from noise, then same

A T-REX or D-REX run folder holds `config.json`, `demos.npz` (what the reward learned
from), `metrics.jsonl` (reward learning, every seed), `reward/` (the learned rewards, an
orbax checkpoint), `rl/` (the PPO run on them: metrics, checkpoints, `learning_curve.png`
in *true* return with the best demonstration drawn across), `learned_vs_true.png`
(learned against true return of every demonstration and of sampled snippets) and
`summary.json`, whose table the job prints: best demonstration, behavioural cloning, the
learned reward's policy (mean +- std over seeds), and the learned/true correlation.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from minirlhf.bc import BCConfig, bc_policy, train_bc
from minirlhf.checkpoint import Checkpointer
from minirlhf.configs import to_dict
from minirlhf.demos import (DEMO_PRESETS, BridgeTask, Demonstrations, DemosConfig, _learner,
                            load_demos, make_demos, save_demos, task_episodes)
from minirlhf.drex import DREXConfig, best_demos, noise_ranked_demos
from minirlhf.gym_train import train_agents
from minirlhf.logging import MetricsWriter, atomic_write_text, save_figure, say
from minirlhf.ppo import PPOConfig, action_bounds
from minirlhf.trex import (TREXConfig, correlation, learned_returns, learned_reward_env,
                           learned_reward_host, ranking_accuracy, rl_reward, sample_snippets, seed_model,
                           snippet_windows, split_demos, train_reward)

# Per task: the transform that gives the learned reward the right sign for the task's
# episode ends (see trex.py), and the PPO settings that learn the task.
_TRANSFORM = {"CartPole-v1": "sigmoid", "Acrobot-v1": "negative_sigmoid",
              "MountainCar-v0": "negative_sigmoid", "Pendulum-v1": "standardize",
              "Hopper-v5": "sigmoid", "HalfCheetah-v5": "standardize"}
_RL_STEPS = {"CartPole-v1": 200_000, "Pendulum-v1": 400_000}
# MountainCar's demonstrations all last 200 steps and differ in how they swing: longer
# snippets see more of a swing (learned/true correlation 0.86 with 50 steps, 0.90 with 100).
_CHANGES = {"MountainCar-v0": {"snippet_max": 100}}


def trex_preset(env: str, cls=TREXConfig, **changes):
    """A T-REX (or, with cls=DREXConfig, D-REX) config tuned for `env`."""
    rl = _learner(env)
    if env in _RL_STEPS:
        rl = dataclasses.replace(rl, total_steps=_RL_STEPS[env])
    return cls(env=env, reward_transform=_TRANSFORM.get(env, "standardize"), rl=rl,
               **{**_CHANGES.get(env, {}), **changes})


def drex_preset(env: str, **changes) -> DREXConfig:
    """A D-REX config tuned for `env`."""
    return trex_preset(env, DREXConfig, **changes)


def _check_env(env_id: str, ppo: PPOConfig | None = None):
    """The task: a JaxEnv for the JAX ports (unless `ppo`, the run's PPO settings, asks for
    backend='gymnasium'), else a demos.BridgeTask (a gymnasium id run through the bridge,
    e.g. Hopper-v5 with the mujoco extra). A bad id fails here, before any work."""
    from minirlhf.envs import GYM_TASKS, make_env
    from minirlhf.gym_train import resolve_backend

    ppo = ppo or PPOConfig(env=env_id)
    if env_id in GYM_TASKS and resolve_backend(dataclasses.replace(ppo, env=env_id)) == "jax":
        return make_env(env_id)
    try:
        return BridgeTask(env_id)
    except ValueError as err:
        raise ValueError(f"env {env_id!r}: {err}; T-REX and D-REX run on the JAX tasks "
                         f"{sorted(GYM_TASKS)} or any gymnasium id") from None


def run_demos(cfg: DemosConfig, out: str | Path, echo=say) -> tuple[Demonstrations, dict]:
    """Train a PPO learner, save its capped snapshots' episodes as out/demos.npz."""
    _check_env(cfg.env, cfg.learner_config())
    out = Path(out)
    start = time.time()
    demos, info = make_demos(cfg, lambda s, r: echo(f"  snapshot {s:>3}: mean return {r:.1f}"))
    save_demos(out / "demos.npz", demos)
    _plot_demo_returns(info, out / "demos.png", cfg.env)
    echo(f"{demos.n} demonstrations of {cfg.env} under the cap {info['cap']:.1f} (returns "
         f"{demos.returns.min():.1f} to {demos.returns.max():.1f}; the learner ended at "
         f"{info['learner_final_return']:.1f}) in {time.time() - start:.0f} s: "
         f"{out / 'demos.npz'}")
    return demos, info


def _plot_demo_returns(info: dict, path: Path, env: str) -> None:
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    returns = np.asarray(info["all_returns"])
    ax.plot(np.arange(len(returns)), returns, ".", label="episode of a snapshot")
    ax.axhline(info["cap"], color="tab:red", ls="--", label=f"cap ({info['cap']:.0f})")
    ax.set_xlabel("episode (snapshots in training order)")
    ax.set_ylabel("true return")
    ax.set_title(f"demonstrations from a PPO learner on {env}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _demonstrations(cfg: TREXConfig, env, out: Path, echo) -> Demonstrations:
    """The run's demonstrations: cfg.demos if given (validated before any work), else made
    with the task's preset."""
    obs_dim = int(env.observation_space.shape[0])
    if cfg.demos:
        return load_demos(cfg.demos, env=cfg.env, obs_dim=obs_dim,
                          min_ranks=1 if isinstance(cfg, DREXConfig) else 2)
    if cfg.env not in DEMO_PRESETS:
        raise ValueError(f"no demonstration preset for {cfg.env!r}; make some with "
                         f"`minirlhf demos --env {cfg.env}` and pass --demos FILE")
    echo(f"making demonstrations of {cfg.env} (a PPO learner's snapshots)")
    demos, _ = make_demos(dataclasses.replace(DEMO_PRESETS[cfg.env], seed=cfg.seed))
    return demos


def _true_scale(demos: Demonstrations) -> tuple[np.ndarray, str]:
    """What the learned returns are correlated with: the true returns, or the ranks where
    the true returns are missing or all equal."""
    if demos.returns is not None and np.std(demos.returns) > 0:
        return np.asarray(demos.returns), "true return"
    return np.asarray(demos.rank), "rank"


def _evaluate_policy(env, act, key, episodes: int = 20) -> float:
    return float(np.mean(task_episodes(env, act, key, episodes).returns))


def _behavioural_cloning(cfg: TREXConfig, demos: Demonstrations, env, seeds: list[int]):
    """(per-seed returns of a policy cloned from `demos`, the cloned policies)."""
    if demos.actions is None:
        return [], []
    bc_cfg = cfg.bc if isinstance(cfg, DREXConfig) else BCConfig()
    returns, policies = [], []
    for s in seeds:
        graphdef, params, stats, _ = train_bc(dataclasses.replace(bc_cfg, seed=s), demos, env)
        greedy = cfg.bc_greedy if isinstance(cfg, DREXConfig) else True
        act = bc_policy(graphdef, params, stats, action_bounds(env), greedy=greedy)
        policies.append(act)
        returns.append(_evaluate_policy(env, act, jax.random.key(10_000 + s)))
    return returns, policies


def run_trex(cfg: TREXConfig, out: str | Path, echo=say) -> dict:
    """T-REX end to end: demonstrations -> reward learning -> PPO on it; the summary."""
    env = _check_env(cfg.env, cfg.rl_config())
    out = Path(out)
    demos = _demonstrations(cfg, env, out, echo)
    seeds = list(range(cfg.seed, cfg.seed + cfg.num_seeds))
    timing = {}
    start = time.time()
    bc_returns, _ = _behavioural_cloning(cfg, demos, env, seeds)
    timing["behavioural_cloning_s"] = time.time() - start
    return _learn_and_rl(cfg, env, demos, demos, out, seeds, bc_returns, timing, echo,
                         {"method": "T-REX"})


def run_drex(cfg: DREXConfig, out: str | Path, echo=say) -> dict:
    """D-REX end to end: a few demonstrations -> behavioural cloning -> noise-ranked
    rollouts -> reward learning -> PPO on it; the summary (with BC as the baseline)."""
    env = _check_env(cfg.env, cfg.rl_config())
    out = Path(out)
    given = best_demos(_demonstrations(cfg, env, out, echo), cfg.num_demos)
    if given.actions is None:
        raise ValueError(f"D-REX clones the demonstrations' policy: {cfg.demos or 'the demos'}"
                         " has no actions")
    seeds = list(range(cfg.seed, cfg.seed + cfg.num_seeds))
    timing = {}
    start = time.time()
    bc_returns, policies = _behavioural_cloning(cfg, given, env, seeds)
    timing["behavioural_cloning_s"] = time.time() - start
    echo(f"behavioural cloning on {given.n} demonstrations: return "
         f"{np.mean(bc_returns):.1f} +- {np.std(bc_returns):.1f}")
    # The noise rankings come from the first seed's cloned policy; every seed learns its own
    # reward from them (and runs its own PPO).
    start = time.time()
    ranked, noise = noise_ranked_demos(cfg, env, policies[0], jax.random.key(cfg.seed), given)
    timing["noise_rollouts_s"] = time.time() - start
    for eps, ret in zip(noise["noise"], noise["mean_return"]):
        echo(f"  noise {eps:.2f}: mean return {ret:.1f}")
    _plot_noise(noise, bc_returns[0], out / "noise_vs_return.png", cfg.env)
    return _learn_and_rl(cfg, env, ranked, given, out, seeds, bc_returns, timing, echo,
                         {"method": "D-REX", "noise": noise})


def _plot_noise(noise: dict, bc_return: float, path: Path, env: str) -> None:
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    ax.plot([0.0] + noise["noise"], [bc_return] + noise["mean_return"], "o-")
    ax.set_xlabel("noise epsilon")
    ax.set_ylabel("mean true return")
    ax.set_title(f"D-REX: the cloned policy under noise ({env})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)


def _learn_and_rl(cfg: TREXConfig, env, ranked: Demonstrations, shown: Demonstrations,
                  out: Path, seeds: list[int], bc_returns: list[float], timing: dict, echo,
                  extra: dict) -> dict:
    """Reward learning on `ranked`, PPO on the learned rewards, plots and the summary.
    `shown` are the demonstrations the policy is compared with (the best of them)."""
    method = extra["method"]
    if cfg.use_actions and ranked.actions is None:
        raise ValueError("TREXConfig.use_actions=True needs demonstrations with actions")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", json.dumps(to_dict(cfg), indent=2))
    save_demos(out / "demos.npz", ranked)
    train_idx, held_idx = split_demos(ranked, cfg.held_out, cfg.seed)
    echo(f"{method}: learning {cfg.num_seeds} x {cfg.ensemble} reward networks from "
         f"{len(train_idx)} ranked demonstrations ({len(held_idx)} held out)")
    start = time.time()
    spec, models, history = train_reward(cfg, ranked.subset(train_idx), env, seeds)
    jax.block_until_ready(models)
    timing["reward_learning_s"] = time.time() - start
    writer = MetricsWriter(out / "metrics.jsonl")
    every = max(1, cfg.steps // 100)
    for i, seed in enumerate(seeds):
        for step in range(every - 1, cfg.steps, every):
            writer.write(step + 1, seed=seed, loss=float(history["loss"][i, step]),
                         accuracy=float(history["accuracy"][i, step]))
    truth, truth_name = _true_scale(ranked)
    per_seed = []
    for i in range(len(seeds)):
        model = seed_model(models, i)
        rl_sum = _rl_returns(spec, model, ranked)
        per_seed.append({
            "correlation": correlation(rl_sum, truth),
            "correlation_offset_free": correlation(learned_returns(spec, model, ranked), truth),
            "held_out_accuracy": ranking_accuracy(learned_returns(spec, model, ranked)[held_idx],
                                                  ranked.rank[held_idx]),
            "final_snippet_accuracy": float(np.mean(history["accuracy"][i, -50:]))})
    ckpt = Checkpointer(out / "reward", max_to_keep=1)
    try:
        ckpt.save(cfg.steps, models, None, {"config": to_dict(cfg), "seeds": seeds,
                                          "use_actions": cfg.use_actions})
    finally:
        ckpt.close()
    _plot_learned_vs_true(spec, seed_model(models, 0), ranked, out / "learned_vs_true.png",
                          cfg, truth, truth_name)
    echo(f"reward learned in {timing['reward_learning_s']:.0f} s: correlation with the "
         f"{truth_name} {np.mean([p['correlation'] for p in per_seed]):.3f}, held-out "
         f"ranking accuracy {np.nanmean([p['held_out_accuracy'] for p in per_seed]):.1%}")

    best = float(np.max(shown.returns)) if shown.returns is not None else float("nan")
    lines = {"best demonstration": best}
    if bc_returns:
        lines["behavioural cloning"] = float(np.mean(bc_returns))
    start = time.time()
    if isinstance(env, BridgeTask):
        wrap = lambda e, m: learned_reward_host(spec, m)(e)
    else:
        wrap = lambda e, m: learned_reward_env(e, spec, m)
    rl = train_agents(cfg.rl_config(), out / "rl", wrap=wrap, wrap_args=models,
                      lines={k: v for k, v in lines.items() if np.isfinite(v)})
    timing["rl_s"] = time.time() - start
    policy = [rl["final_return"][str(s)] for s in seeds]
    summary = {
        "env": cfg.env, **extra, "seeds": seeds, "demonstrations": ranked.n,
        "best_demonstration": best,
        "mean_demonstration": float(np.mean(shown.returns)) if shown.returns is not None
        else float("nan"),
        "behavioural_cloning": bc_returns, "policy": policy,
        "policy_mean": float(np.mean(policy)), "policy_std": float(np.std(policy)),
        "beats_best_demonstration": bool(np.mean(policy) > best),
        "correlated_with": truth_name,
        "correlation": float(np.mean([p["correlation"] for p in per_seed])),
        "per_seed": per_seed, "timing": timing}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    for line in summary_table(summary):
        echo(line)
    return summary


def _rl_returns(spec, model, demos: Demonstrations) -> np.ndarray:
    """(D,) each demonstration's return under the reward PPO receives."""
    actions = jnp.asarray(demos.actions) if spec.action_dim else None
    r = rl_reward(spec, model, jnp.asarray(demos.obs), actions)
    mask = np.arange(demos.obs.shape[1])[None, :] < demos.lengths[:, None]
    return np.asarray(jnp.sum(jnp.where(mask, r, 0.0), axis=1))


def summary_table(summary: dict) -> list[str]:
    """The job's result as printed lines."""
    fmt = lambda xs: (f"{np.mean(xs):8.1f} +- {np.std(xs):6.1f}" if len(xs) else "     n/a")
    rows = [f"{summary['method']} on {summary['env']} ({len(summary['seeds'])} seeds), true "
            "return:",
            f"  best demonstration   {summary['best_demonstration']:8.1f}",
            f"  behavioural cloning  {fmt(summary['behavioural_cloning'])}",
            f"  {summary['method']:<20} {fmt(summary['policy'])}"
            f"   ({'beats' if summary['beats_best_demonstration'] else 'does not beat'} the "
            "best demonstration)",
            f"  learned vs {summary['correlated_with']} over the demonstrations: correlation "
            f"{summary['correlation']:.3f}"]
    return rows


def _plot_learned_vs_true(spec, model, demos: Demonstrations, path: Path, cfg: TREXConfig,
                          truth: np.ndarray, truth_name: str) -> None:
    """Learned vs true return of every demonstration (left) and of 500 snippets (right)."""
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    learned = _rl_returns(spec, model, demos)
    left.scatter(truth, learned, s=12)
    left.set_xlabel(truth_name)
    left.set_ylabel("learned return (the reward PPO receives)")
    left.set_title(f"demonstrations (correlation {correlation(learned, truth):.3f})")
    if demos.rewards is not None:
        from minirlhf.trex import ranked_pairs

        snippets = sample_snippets(jax.random.key(cfg.seed), jnp.asarray(ranked_pairs(
            demos.rank)), jnp.asarray(demos.lengths), 250, cfg.snippet_min, cfg.snippet_max)
        T = demos.obs.shape[1]
        steps_w, steps_b, mask = snippet_windows(snippets, cfg.snippet_max, T)
        actions = jnp.asarray(demos.actions) if spec.action_dim else None
        r = rl_reward(spec, model, jnp.asarray(demos.obs), actions)  # (D, T)
        rewards = jnp.asarray(demos.rewards)
        xs, ys = [], []
        for demo, steps in ((snippets.worse, steps_w), (snippets.better, steps_b)):
            xs.append(jnp.sum(jnp.where(mask, rewards[demo[:, None], steps], 0.0), -1))
            ys.append(jnp.sum(jnp.where(mask, r[demo[:, None], steps], 0.0), -1))
        xs, ys = np.concatenate(xs), np.concatenate(ys)
        right.scatter(xs, ys, s=6, alpha=0.5)
        right.set_xlabel("true return of the snippet")
        right.set_ylabel("learned return of the snippet")
        right.set_title(f"500 snippets (correlation {correlation(xs, ys):.3f})")
    fig.suptitle(f"learned reward on {cfg.env}")
    fig.tight_layout()
    save_figure(fig, path)
