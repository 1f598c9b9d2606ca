"""Training and evaluating PPO agents on gym tasks: run folders, curves, checkpoints, videos.

    train_agents(cfg, "runs/cartpole")      # metrics.jsonl, learning_curve.png, checkpoints/
    evaluate_agent("runs/cartpole", episodes=10, video="cartpole.gif")

A JAX-native task trains all `num_seeds` agents at once: `jax.jit(jax.vmap(run))` over
their keys, called in chunks of iterations so a progress bar can move and metrics reach
the disk while it runs (the chunks are the same compiled function). Any other gymnasium id
trains through the host-side bridge, one agent after another.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from minirlhf.checkpoint import Checkpointer
from minirlhf.configs import from_dict, to_dict
from minirlhf.logging import (MetricsWriter, atomic_write_text, progress, read_metrics,
                              save_figure)
from minirlhf.normalize import init_stats, normalize
from minirlhf.ppo import (PPOConfig, greedy_action, init_agents, init_policy, make_train,
                          num_iterations,
                          policy_apply, sample_action)


def resolve_backend(cfg: PPOConfig) -> str:
    """'jax' or 'gymnasium': where cfg.env runs (see PPOConfig.backend)."""
    from minirlhf.envs import GYM_TASKS

    name = cfg.env.removeprefix("minirlhf/")
    if cfg.backend == "jax":
        if name not in GYM_TASKS:
            raise ValueError(f"PPOConfig.env={cfg.env!r} has no JAX-native port (backend="
                             f"'jax'); ports: {sorted(GYM_TASKS)}")
        return "jax"
    if cfg.backend == "gymnasium" or name not in GYM_TASKS:
        return "gymnasium"
    return "jax"


def _chunk_size(n_iter: int, target_chunks: int = 25) -> int:
    """A divisor of n_iter near n_iter / target_chunks, so every chunk has the same length
    (one compilation) and the bar still moves."""
    want = max(1, n_iter // target_chunks)
    return max(d for d in range(1, want + 1) if n_iter % d == 0)


def _record(metrics: dict, index) -> dict:
    out = {k: float(np.asarray(v)[index]) for k, v in metrics.items()}
    episodes = out["episodes"]
    out["episode_return"] = out["episode_return_sum"] / episodes if episodes else None
    out["episode_length"] = out["episode_length_sum"] / episodes if episodes else None
    return out


def train_agents(cfg: PPOConfig, out: str | Path, wrap=None, wrap_args=None,
                 lines: dict[str, float] | None = None) -> dict:
    """Train cfg.num_seeds PPO agents on cfg.env; write a run folder; return a summary.

    The run folder gets `config.json`, `metrics.jsonl` (one line per iteration and seed),
    `learning_curve.png`, `checkpoints/` (all agents' policies and observation statistics)
    and `summary.json`. An existing run folder is overwritten.

    Args:
        wrap: (env, arg) -> env, a wrapper around the task, e.g. a learned reward, and
            wrap_args a pytree whose leaves have a leading axis of cfg.num_seeds: agent i
            trains on wrap(env, wrap_args[i]). On a JAX task env is the AutoReset task
            (learned_reward.LearnedReward; AutoReset inside it keeps logging the task's own return)
            and all agents run in one vmap; through the bridge env is the HostVecEnv
            (gym_bridge.LearnedRewardHost; it counts the true returns).
        lines: horizontal reference lines on the learning curve, {label: return}.
    """
    out = Path(out)
    backend = resolve_backend(cfg)
    wrapped = wrap is not None
    spaces = _spaces(cfg, backend)  # a bad env id fails here, before anything is written
    n_iter = num_iterations(cfg)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", json.dumps(to_dict(cfg), indent=2))
    writer = MetricsWriter(out / "metrics.jsonl")
    bar = progress(n_iter * cfg.num_seeds, f"ppo {cfg.env} ({backend})")
    seeds = [cfg.seed + i for i in range(cfg.num_seeds)]

    def log(iteration: int, seed: int, record: dict):
        writer.write(iteration + 1, seed=seed, **record)

    if backend == "jax":
        from minirlhf.envs import make_env
        from minirlhf.envs.core import AutoReset

        env = AutoReset(make_env(cfg.env))
        chunk = _chunk_size(n_iter)
        if wrap is None:
            wrap, wrap_args = (lambda env, _: env), jnp.zeros(cfg.num_seeds)
        first = jax.tree.map(lambda x: x[0], wrap_args)
        graphdef, init, _, _ = make_train(cfg, wrap(env, first))
        # All seeds at once: vmap the training (each agent with its own wrap argument, so
        # make_train runs inside the trace), but initialise one seed at a time (see
        # ppo.init_agents for the deadlock a vmapped initialisation can hit).
        run_chunk = jax.jit(jax.vmap(lambda r, a: make_train(cfg, wrap(env, a))[2](r, chunk)))
        runner = init_agents(init, [jax.random.key(s) for s in seeds])
        for start in range(0, n_iter, chunk):
            runner, metrics = run_chunk(runner, wrap_args)
            metrics = jax.device_get(metrics)  # (seeds, chunk) each
            for i in range(chunk):
                for s, seed in enumerate(seeds):
                    log(start + i, seed, _record(metrics, (s, i)))
            bar.update(chunk * len(seeds))
            bar.set_postfix(ret=_last_return(metrics))
        params, stats = runner.train.params, runner.obs_stats
        opt_state = runner.train.opt_state
    else:
        from minirlhf.gym_bridge import train_gymnasium

        obs_dim = int(spaces.observation_space.shape[0])
        all_params, all_stats, all_opt = [], [], []
        for i, seed in enumerate(seeds):
            host_wrap = None
            if wrapped:
                arg = jax.tree.map(lambda x, i=i: x[i], wrap_args)
                host_wrap = lambda env, arg=arg: wrap(env, arg)

            def on_iteration(it, record, seed=seed):
                episodes = record["episodes"]
                record = dict(record, episode_return=record["episode_return_sum"] / episodes
                              if episodes else None,
                              episode_length=record["episode_length_sum"] / episodes
                              if episodes else None)
                log(it, seed, record)
                bar.update(1)
            graphdef, state, stats, _ = train_gymnasium(cfg, seed, on_iteration, host_wrap)
            all_params.append(state.params)
            all_opt.append(state.opt_state)
            all_stats.append(init_stats((obs_dim,)) if stats is None else stats)
        stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
        params, stats, opt_state = stack(all_params), stack(all_stats), stack(all_opt)
    bar.close()

    records = read_metrics(out / "metrics.jsonl")
    title = f"PPO on {cfg.env}" if not wrapped else f"PPO on a wrapped {cfg.env}: true return"
    plot_learning_curve(records, out / "learning_curve.png", title=title, lines=lines)
    final = final_returns(records, seeds)
    meta = {"config": to_dict(cfg), "backend": backend, "seeds": seeds,
            "final_return": final}
    ckpt = Checkpointer(out / "checkpoints", max_to_keep=1)
    try:
        ckpt.save(n_iter, {"policy": params, "obs_stats": stats}, opt_state, meta)
    finally:
        ckpt.close()
    summary = {"env": cfg.env, "backend": backend, "env_steps": n_iter * cfg.num_envs
               * cfg.num_steps, "final_return": final,
               "final_return_mean": float(np.mean(list(final.values())))}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def _last_return(metrics) -> str:
    eps = np.asarray(metrics["episodes"])[:, -1]
    ret = np.asarray(metrics["episode_return_sum"])[:, -1]
    good = eps > 0
    return f"{np.mean(ret[good] / eps[good]):.1f}" if good.any() else "-"


def final_returns(records: list[dict], seeds: list[int], window: int = 20) -> dict:
    """{seed: mean return of its last `window` finished episodes' iterations}.

    Each record holds the mean return of the episodes that ended in that iteration; the
    last `window` records that saw an episode are averaged (weighted by episode count).
    """
    out = {}
    for seed in seeds:
        rows = [r for r in records if r["seed"] == seed and r["episodes"]][-window:]
        eps = sum(r["episodes"] for r in rows)
        out[str(seed)] = sum(r["episode_return_sum"] for r in rows) / eps if eps else float("nan")
    return out


def plot_learning_curve(records: list[dict], path: str | Path, title: str = "",
                        lines: dict[str, float] | None = None) -> None:
    """Mean episodic return vs environment steps: one thin line per seed, and the mean over
    seeds with a band from the lowest to the highest seed. Each point averages the episodes
    that ended in the last 2 % of the run's iterations. `lines`: {label: return} drawn
    across (e.g. the best demonstration)."""
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    seeds = sorted({r["seed"] for r in records})
    curves = []
    for seed in seeds:
        rows = [r for r in records if r["seed"] == seed]
        steps = np.array([r["env_steps"] for r in rows], float)
        # Mean return of the episodes that ended in a trailing window of iterations (an
        # iteration may see no episode end, or a few very short ones).
        window = max(1, len(rows) // 50)
        ret_sum = np.convolve([r["episode_return_sum"] for r in rows], np.ones(window))
        episodes = np.convolve([r["episodes"] for r in rows], np.ones(window))
        ret = np.where(episodes > 0, ret_sum / np.maximum(episodes, 1), np.nan)[:len(rows)]
        curves.append(ret)
        ax.plot(steps, ret, lw=0.8, alpha=0.6, label=f"seed {seed}")
    if len(seeds) > 1:
        stack = np.vstack(curves)
        with warnings.catch_warnings():  # columns where no seed has finished an episode: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high, mean = np.nanmin(stack, 0), np.nanmax(stack, 0), np.nanmean(stack, 0)
        ax.fill_between(steps, low, high, alpha=0.2, color="k", lw=0,
                        label="min-max over seeds")
        ax.plot(steps, mean, color="k", lw=2, label="mean over seeds")
    for (label, value), style in zip((lines or {}).items(), ("--", ":", "-.")):
        ax.axhline(value, ls=style, color="tab:red", lw=1.2, label=f"{label} ({value:.0f})")
    ax.set_xlabel("environment steps (per agent)")
    ax.set_ylabel("mean episodic return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


# --- loading and evaluation ----------------------------------------------------------------


def load_agent(run_dir: str | Path, agent: int | None = None):
    """(cfg, graphdef, params, obs_stats or None, meta) of one agent of a run folder.

    `agent` indexes the run's seeds; None picks the one with the best final return.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "checkpoints").is_dir():
        raise FileNotFoundError(f"{run_dir} has no checkpoints/ folder: is it a PPO run folder?")
    ckpt = Checkpointer(run_dir / "checkpoints")
    try:
        meta = ckpt.read_meta()
        cfg = from_dict(PPOConfig, meta["config"])
        env = _spaces(cfg, meta["backend"])
        obs_dim = int(env.observation_space.shape[0])
        discrete = env.discrete
        action_dim = int(env.action_space.n) if discrete else int(env.action_space.shape[0])
        n = len(meta["seeds"])
        graphdef, like = init_policy(obs_dim, action_dim, discrete, cfg, jax.random.key(0))
        batch = lambda tree: jax.tree.map(lambda x: jnp.zeros((n, *x.shape), x.dtype), tree)
        restored, meta = ckpt.restore_params({"policy": batch(like),
                                              "obs_stats": batch(init_stats((obs_dim,)))})
    finally:
        ckpt.close()
    if agent is None:
        finals = [meta["final_return"][str(s)] for s in meta["seeds"]]
        agent = int(np.nanargmax(finals))
    if not 0 <= agent < n:
        raise ValueError(f"agent index {agent} out of range: the run has {n} agents")
    pick = lambda tree: jax.tree.map(lambda x: x[agent], tree)
    stats = pick(restored["obs_stats"]) if cfg.norm_obs else None
    return cfg, graphdef, pick(restored["policy"]), stats, meta


def _spaces(cfg: PPOConfig, backend: str):
    """An object with observation_space, action_space and discrete for the run's env."""
    if backend == "jax":
        from minirlhf.envs import make_env
        return make_env(cfg.env)
    from minirlhf.gym_bridge import make_gymnasium
    env = make_gymnasium(cfg.env)
    env.close()
    env.discrete = isinstance(env.action_space, gymnasium.spaces.Discrete)
    return env


def evaluate_agent(run_dir: str | Path, episodes: int = 10, seed: int = 1000,
                   agent: int | None = None, deterministic: bool = True,
                   video: str | Path | None = None, filmstrip: str | Path | None = None,
                   max_frames: int = 500) -> dict:
    """Run a trained agent for `episodes` episodes through gymnasium; report its returns.

    The JAX-native tasks run through their gymnasium registration (minirlhf/CartPole-v1,
    ...), so evaluation, rendering and video are one code path for every task.

    Args:
        run_dir: a folder written by `train_agents`.
        episodes: number of episodes. seed: seed of the first episode's reset.
        agent: which of the run's agents (default: best final return).
        deterministic: act greedily (argmax / Gaussian mean) instead of sampling.
        video: write the first episode as an animated GIF here.
        filmstrip: write 8 evenly spaced frames of the first episode as a PNG here.
    Returns:
        {"mean_return", "std_return", "returns", "lengths", "agent_seed"}.
    """
    from minirlhf.gym_bridge import make_gymnasium

    if not isinstance(episodes, int) or episodes <= 0:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    cfg, graphdef, params, stats, meta = load_agent(run_dir, agent)
    env_id = cfg.env if meta["backend"] == "gymnasium" else \
        "minirlhf/" + cfg.env.removeprefix("minirlhf/")
    want_frames = video is not None or filmstrip is not None
    env = make_gymnasium(env_id, render_mode="rgb_array" if want_frames else None)
    discrete = isinstance(env.action_space, gymnasium.spaces.Discrete)

    @jax.jit
    def act(obs, key):
        if stats is not None:
            obs = normalize(stats, obs)
        out = policy_apply(graphdef, params, obs)
        return greedy_action(out) if deterministic else sample_action(key, out)

    key = jax.random.key(seed)
    returns, lengths, frames = [], [], []
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            total, length, done = 0.0, 0, False
            while not done:
                if ep == 0 and want_frames and len(frames) < max_frames:
                    frames.append(env.render())
                key, sub = jax.random.split(key)
                action = np.asarray(act(jnp.asarray(obs, jnp.float32), sub))
                if discrete:
                    action = int(action)
                else:
                    action = np.clip(action, env.action_space.low, env.action_space.high)
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                length += 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(length)
    finally:
        env.close()
    if video is not None:
        write_gif(frames, video)
    if filmstrip is not None:
        write_filmstrip(frames, filmstrip, title=f"{cfg.env}: first evaluation episode")
    agent_seed = meta["seeds"][agent] if agent is not None else \
        meta["seeds"][int(np.nanargmax([meta["final_return"][str(s)] for s in meta["seeds"]]))]
    return {"mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
            "returns": returns, "lengths": lengths, "agent_seed": agent_seed}


def write_gif(frames: list[np.ndarray], path: str | Path, fps: int = 30) -> None:
    """Frames (H, W, 3) uint8 as an animated GIF (Pillow, which matplotlib already needs)."""
    from PIL import Image

    if not frames:
        raise ValueError("no frames to write")
    images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.gif")
    images[0].save(tmp, save_all=True, append_images=images[1:], duration=int(1000 / fps),
                   loop=0)
    os.replace(tmp, path)


def write_filmstrip(frames: list[np.ndarray], path: str | Path, n: int = 8,
                    title: str = "") -> None:
    """n evenly spaced frames side by side in one PNG, each labelled with its step."""
    if not frames:
        raise ValueError("no frames to write")
    picks = np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int)
    fig = Figure(figsize=(2.2 * len(picks), 2.2))
    axes = np.atleast_1d(fig.subplots(1, len(picks)))
    for ax, i in zip(axes, picks):
        ax.imshow(frames[i])
        ax.set_title(f"t = {i}", fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
