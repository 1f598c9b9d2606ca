"""The jobs behind `minirlhf demos`, `minirlhf trex` and `minirlhf drex` (layer 3).

    run_demos(DEMO_PRESETS["CartPole-v1"], "runs/demos")   # demos.npz from a PPO learner
    run_trex(trex_preset("CartPole-v1"), "runs/trex")      # reward from rankings, then PPO
    run_drex(drex_preset("CartPole-v1"), "runs/drex")      # rankings from noise, then same

A T-REX or D-REX run folder holds `config.json`, `demos.npz` (what the reward learned
from), `metrics.jsonl` (reward learning, every seed), `reward/` (the learned rewards, an
orbax checkpoint), `rl/` (the PPO run on them: metrics, checkpoints, `learning_curve.png`
in *true* return with the best demonstration drawn across), `controls/` (one PPO run per
control, see demo_controls), `learned_vs_true.png` (learned against true return of every
demonstration and of sampled snippets) and `summary.json`, whose table the job prints:
best demonstration, behavioural cloning, the method and every control, all scored by one
protocol (mean +- std over seeds), the verdict, the learned offset's sign and the
learned/true correlations (whole episodes, equal-length snippets, reversed rankings).
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
                            load_demos, make_demos, save_demos)
from minirlhf.drex import DREXConfig, best_demos, check_noise_ranking, noise_ranked_demos
from minirlhf.logging import MetricsWriter, atomic_write_text, save_figure, say
from minirlhf.ppo import PPOConfig, action_bounds
from minirlhf.demo_controls import (beats, eval_key, evaluate_policy, ppo_on_reward,
                                    run_controls, verdict)
from minirlhf.learned_reward import (correlation, learned_returns, ranking_accuracy,
                                     rl_reward, rl_step_rewards, seed_model,
                                     snippet_correlation)
from minirlhf.trex import (TREXConfig, offset_identified, sample_snippets, snippet_windows,
                           split_demos, train_reward)

# Per task, the PPO settings that learn it on the learned reward (no per-task reward sign:
# the offset is learned, see trex.py).
_RL_STEPS = {"CartPole-v1": 200_000, "Pendulum-v1": 400_000}
# MountainCar's demonstrations all last 200 steps and differ in how they swing: longer
# snippets see more of a swing (learned/true correlation 0.86 with 50 steps, 0.90 with 100).
_CHANGES = {"MountainCar-v0": {"snippet_max": 100}}


def trex_preset(env: str, cls=TREXConfig, **changes):
    """A T-REX (or, with cls=DREXConfig, D-REX) config tuned for `env`."""
    rl = _learner(env)
    if env in _RL_STEPS:
        rl = dataclasses.replace(rl, total_steps=_RL_STEPS[env])
    return cls(env=env, rl=rl, **{**_CHANGES.get(env, {}), **changes})


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


def _behavioural_cloning(cfg: TREXConfig, demos: Demonstrations, env, seeds: list[int]):
    """(per-seed returns of a policy cloned from `demos`, the cloned policies)."""
    if demos.actions is None:
        return [], []
    bc_cfg = cfg.bc if isinstance(cfg, DREXConfig) else BCConfig()
    returns, policies = [], []
    for s in seeds:
        graphdef, params, stats, _ = train_bc(dataclasses.replace(bc_cfg, seed=s), demos, env)
        greedy = cfg.bc_greedy if isinstance(cfg, DREXConfig) else True
        policies.append(bc_policy(graphdef, params, stats, action_bounds(env), greedy=greedy))
        scored = bc_policy(graphdef, params, stats, action_bounds(env), greedy=True)
        returns.append(evaluate_policy(env, scored, cfg.eval_episodes, eval_key(cfg)))
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
    check_noise_ranking(noise)
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
    """Reward learning on `ranked`, PPO on the learned rewards, the controls
    (demo_controls), plots and the summary. `shown` are the demonstrations the policy is
    compared with (the best of them)."""
    method = extra["method"]
    if cfg.use_actions and ranked.actions is None:
        raise ValueError("TREXConfig.use_actions=True needs demonstrations with actions")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", json.dumps(to_dict(cfg), indent=2))
    save_demos(out / "demos.npz", ranked)
    train_idx, held_idx = split_demos(ranked, cfg.held_out, cfg.seed)
    train = ranked.subset(train_idx)
    learned_offset = cfg.reward_transform == "learned" and offset_identified(train)
    echo(f"{method}: learning {cfg.num_seeds} x {cfg.ensemble} reward networks from "
         f"{len(train_idx)} ranked demonstrations ({len(held_idx)} held out)")
    start = time.time()
    spec, models, history = train_reward(cfg, train, env, seeds)
    jax.block_until_ready(models)
    timing["reward_learning_s"] = time.time() - start
    writer = MetricsWriter(out / "metrics.jsonl")
    every = max(1, cfg.steps // 100)
    for i, seed in enumerate(seeds):
        for step in range(every - 1, cfg.steps, every):
            writer.write(step + 1, seed=seed, loss=float(history["loss"][i, step]),
                         accuracy=float(history["accuracy"][i, step]))
    truth, truth_name = _true_scale(ranked)
    per_seed = [_reward_checks(cfg, spec, seed_model(models, i), ranked, truth, held_idx,
                               history["accuracy"][i]) for i in range(len(seeds))]
    ckpt = Checkpointer(out / "reward", max_to_keep=1)
    try:
        ckpt.save(cfg.steps, models, None, {"config": to_dict(cfg), "seeds": seeds,
                                          "use_actions": cfg.use_actions})
    finally:
        ckpt.close()
    _plot_learned_vs_true(spec, seed_model(models, 0), ranked, out / "learned_vs_true.png",
                          cfg, truth, truth_name)
    held = [p["held_out_accuracy"] for p in per_seed if p["held_out_accuracy"] is not None]
    echo(f"reward learned in {timing['reward_learning_s']:.0f} s: correlation with the "
         f"{truth_name} {np.mean([p['correlation'] for p in per_seed]):.3f}, "
         + (f"held-out ranking accuracy {np.mean(held):.1%}" if held else
            "no demonstrations held out"))

    best = float(np.max(shown.returns)) if shown.returns is not None else float("nan")
    lines = {"best demonstration": best}
    if bc_returns:
        lines["behavioural cloning"] = float(np.mean(bc_returns))
    lines = {k: v for k, v in lines.items() if np.isfinite(v)}
    start = time.time()
    policy = ppo_on_reward(cfg, env, spec, models, out / "rl", lines)
    timing["rl_s"] = time.time() - start
    controls, reversed_corr = {}, []
    if cfg.controls:
        start = time.time()
        controls, reversed_corr = run_controls(cfg, env, spec, train, truth, ranked, out,
                                               seeds, lines, echo)
        timing["controls_s"] = time.time() - start
    mean_of = lambda key: float(np.nanmean([p[key] for p in per_seed]))
    summary = {
        "env": cfg.env, **extra, "seeds": seeds, "demonstrations": ranked.n,
        "evaluation": f"greedy, {cfg.eval_episodes} episodes per seed, true return",
        "best_demonstration": best,
        "mean_demonstration": float(np.mean(shown.returns)) if shown.returns is not None
        else float("nan"),
        "behavioural_cloning": bc_returns, "policy": policy,
        "policy_mean": float(np.mean(policy)), "policy_std": float(np.std(policy)),
        "controls": controls,
        "reward_transform": cfg.reward_transform, "offset_learned": learned_offset,
        "reward_per_step": mean_of("reward_per_step"),
        "correlated_with": truth_name, "true_rewards": ranked.rewards is not None,
        "correlation": mean_of("correlation"),
        "correlation_snippets": mean_of("correlation_snippets")
        if any(np.isfinite(p["correlation_snippets"]) for p in per_seed) else float("nan"),
        "correlation_reversed": float(np.mean(reversed_corr)) if reversed_corr
        else float("nan"),
        "per_seed": per_seed, "timing": timing}
    summary["verdict"] = verdict(summary)
    summary["beats_best_demonstration"] = summary["verdict"].startswith("beats")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    for line in summary_table(summary):
        echo(line)
    return summary


def _reward_checks(cfg: TREXConfig, spec, model, ranked: Demonstrations, truth: np.ndarray,
                   held_idx: np.ndarray, accuracy: np.ndarray) -> dict:
    """One seed's learned reward, checked against the truth (see summary_table)."""
    learned = rl_step_rewards(spec, model, ranked)  # (D, T)
    mask = np.arange(ranked.obs.shape[1])[None, :] < ranked.lengths[:, None]
    snippets = float("nan")
    if ranked.rewards is not None:
        snippets = snippet_correlation(learned, ranked.rewards, ranked.lengths,
                                       jax.random.key(cfg.seed), cfg.snippet_max)
    held = ranking_accuracy(learned_returns(spec, model, ranked)[held_idx],
                            ranked.rank[held_idx]) if len(held_idx) else float("nan")
    return {"correlation": correlation(learned.sum(1), truth),
            "correlation_offset_free": correlation(learned_returns(spec, model, ranked),
                                                   truth),
            "correlation_snippets": snippets,
            "reward_per_step": float(learned[mask].mean()),
            "held_out_accuracy": held if np.isfinite(held) else None,
            "final_snippet_accuracy": float(np.mean(accuracy[-50:]))}


def summary_table(summary: dict) -> list[str]:
    """The job's result as printed lines: every row scored by one protocol, the controls,
    the verdict and what the learned reward is."""
    fmt = lambda xs: (f"{np.mean(xs):8.1f} +- {np.std(xs):6.1f}" if len(xs) else "     n/a")
    num = lambda x, spec: format(x, spec) if np.isfinite(x) else "n/a"
    method = summary["method"]
    rows = [f"{method} on {summary['env']}: true return, mean +- std over "
            f"{len(summary['seeds'])} seeds ({summary['evaluation']})",
            f"  best demonstration         {num(summary['best_demonstration'], '8.1f'):>8}",
            f"  behavioural cloning        {fmt(summary['behavioural_cloning'])}",
            f"  {method:<26} {fmt(summary['policy'])}"]
    if summary["controls"]:
        rows.append("  controls, the same PPO on:")
        for name, rets in summary["controls"].items():
            rows.append(f"    {name:<24} {fmt(rets)}"
                        + ("" if beats(summary["policy"], rets) else f"   matches {method}"
                           if not beats(rets, summary["policy"]) else f"   beats {method}"))
    rows.append(f"  verdict: {method} {summary['verdict']}")
    offset = ("learned from the episode ends" if summary["offset_learned"] else
              "not identified (no ranked pair has a terminated demonstration): centred"
              if summary["reward_transform"] == "learned" else
              f"fixed by the user's prior {summary['reward_transform']!r}")
    sign = ("centred, so its sign says nothing" if not summary["offset_learned"]
            and summary["reward_transform"] == "learned" else
            "living is good" if summary["reward_per_step"] > 0 else "every step costs")
    rows.append(f"  learned reward: offset {offset}; mean {summary['reward_per_step']:+.3f} "
                f"per step over the demonstrations ({sign})")
    snip = summary["correlation_snippets"]
    rows.append(f"  learned vs {summary['correlated_with']}: correlation "
                f"{num(summary['correlation'], '.3f')} over whole demonstrations, "
                + (f"{snip:.3f} over equal-length snippets" if np.isfinite(snip) else
                   "n/a over equal-length snippets (the true reward is the same every step: "
                   "length is all there is to learn)" if summary["true_rewards"] else
                   "n/a over equal-length snippets (the demonstrations carry no true rewards)"))
    if np.isfinite(summary["correlation_reversed"]):
        rows.append(f"  the reversed rankings' reward: correlation "
                    f"{summary['correlation_reversed']:.3f} (should be negative)")
    return rows


def _plot_learned_vs_true(spec, model, demos: Demonstrations, path: Path, cfg: TREXConfig,
                          truth: np.ndarray, truth_name: str) -> None:
    """Learned vs true return of every demonstration (left) and of 500 snippets (right)."""
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    learned = rl_step_rewards(spec, model, demos).sum(1)
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
