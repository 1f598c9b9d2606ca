"""D-REX: T-REX without rankings, by ranking noise (Brown, Goo and Niekum 2019, CoRL).

Deck "Large Language Models and RL from Human Feedback", slide "D-REX": T-REX needs
ranked demonstrations; D-REX makes its own rankings. Clone a policy from a few unranked
demonstrations (bc.py), then roll it out with more and more noise injected: with noise
epsilon the agent takes a random action with probability epsilon. Performance falls with
the noise (a claim the paper checks and `noise_returns` lets you check), so the rollouts
come ranked for free, the noisier the worse -- and the demonstrations themselves above them
all. From these automatic rankings, T-REX's reward learning and PPO are unchanged.

Noise: epsilon-greedy for discrete actions (the paper's choice, Atari and MuJoCo alike);
for continuous actions, Gaussian noise of standard deviation epsilon times half the action
range added to the cloned policy's action (then clipped to the bounds).

    demos = best_demos(load_demos("demos.npz"), 5)                   # a few, unranked
    graphdef, params, stats, _ = train_bc(cfg.bc, demos, env)
    ranked, info = noise_ranked_demos(cfg, env, bc_policy_fn, key)   # rank = -epsilon

Notation: K noise levels, R rollouts per level, T steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from minirlhf.bc import BCConfig
from minirlhf.configs import check_positive_ints
from minirlhf.demos import BridgeTask, Demonstrations, rollout_episodes, task_episodes
from minirlhf.ppo import action_bounds
from minirlhf.trex import TREXConfig


@dataclass(frozen=True)
class DREXConfig(TREXConfig):
    """D-REX: behavioural cloning, noise-injected rollouts ranked by noise, T-REX on them."""

    num_demos: int = 5
    """The few demonstrations given (the best ones of the demonstrations file, by rank;
    D-REX uses no ranking among them)."""
    noise_levels: int = 20
    """K: noise levels epsilon = max_noise * k / K for k = 1..K."""
    max_noise: float = 1.0
    """The largest epsilon (1: a uniformly random policy for discrete actions)."""
    rollouts_per_level: int = 5
    """R: episodes rolled out at each noise level."""
    include_demos: bool = True
    """Rank the given demonstrations above every noisy rollout (as the paper does)."""
    bc: BCConfig = field(default_factory=BCConfig)
    """Behavioural cloning of the given demonstrations."""
    bc_greedy: bool = True
    """The cloned policy takes its most likely action (the noise is then the only
    randomness); false: it samples."""

    def __post_init__(self):
        super().__post_init__()
        check_positive_ints(self, "num_demos", "noise_levels", "rollouts_per_level")
        if not 0 < self.max_noise <= 1:
            raise ValueError(f"DREXConfig.max_noise must be in (0, 1], got {self.max_noise!r}")

    def noise_schedule(self) -> np.ndarray:
        """(K,) the noise levels, increasing."""
        return self.max_noise * np.arange(1, self.noise_levels + 1) / self.noise_levels


def best_demos(demos: Demonstrations, n: int) -> Demonstrations:
    """The n highest-ranked demonstrations (all of them if there are fewer)."""
    order = np.argsort(-np.asarray(demos.rank), kind="stable")[:n]
    return demos.subset(np.sort(order))


def noisy_policy(act, env, epsilon: jax.Array):
    """(obs, key) -> action: `act`'s action with noise epsilon injected (see the module
    docstring). `act` is (obs, key) -> action, e.g. bc.bc_policy; epsilon a () array."""
    bounds = action_bounds(env)

    def noisy(obs, key):
        act_key, coin_key, noise_key = jax.random.split(key, 3)
        action = act(obs, act_key)
        if bounds is None:  # epsilon-greedy
            random_action = jax.random.randint(noise_key, (), 0, env.action_space.n)
            take_random = jax.random.uniform(coin_key) < epsilon
            return jnp.where(take_random, random_action, action).astype(action.dtype)
        low, high = bounds
        noise = epsilon * (high - low) / 2 * jax.random.normal(noise_key, action.shape)
        return jnp.clip(action + noise, low, high)

    return noisy


def noise_rollouts(env, act, levels: np.ndarray, per_level: int, key: jax.Array):
    """R episodes at each of the K noise levels: on a JaxEnv in one jit (vmapped over the
    levels), on a demos.BridgeTask one level after another in host environments.

    Returns:
        demos.Episodes with leaves of leading shape (K, R).
    """
    keys = jax.random.split(key, len(levels))
    if isinstance(env, BridgeTask):  # host environments: one level after another
        parts = [task_episodes(env, noisy_policy(act, env, jnp.float32(eps)), k, per_level)
                 for eps, k in zip(levels, keys)]
        return jax.tree.map(lambda *xs: np.stack(xs), *parts)

    @jax.jit
    def run(levels, keys):
        return jax.vmap(lambda eps, k: rollout_episodes(
            env, noisy_policy(act, env, eps), k, per_level))(levels, keys)

    return run(jnp.asarray(levels, jnp.float32), keys)


def noise_ranked_demos(cfg: DREXConfig, env, act, key: jax.Array,
                       demos: Demonstrations | None = None) -> tuple[Demonstrations, dict]:
    """D-REX's automatically ranked demonstrations: rollouts of `act` at every noise level,
    ranked by -epsilon, plus (with cfg.include_demos) `demos` ranked above them all.

    Returns:
        (ranked, info): `source` holds each demonstration's epsilon (0 for the given ones);
        info["noise"], info["mean_return"]: (K,) the levels and their mean true returns.
    """
    levels = cfg.noise_schedule()
    eps = jax.device_get(noise_rollouts(env, act, levels, cfg.rollouts_per_level, key))
    flat = lambda x: np.asarray(x).reshape((-1,) + np.asarray(x).shape[2:])
    noise = np.repeat(levels, cfg.rollouts_per_level)
    ranked = Demonstrations(obs=flat(eps.obs), lengths=flat(eps.lengths).astype(np.int32),
                            rank=-noise, actions=flat(eps.actions), returns=flat(eps.returns),
                            source=noise.astype(np.float32), rewards=flat(eps.rewards),
                            env=env.name, terminated=flat(eps.terminated).astype(bool))
    if cfg.include_demos and demos is not None:
        ranked = concat_demos(ranked, demos, rank=1.0)
    info = {"noise": levels.tolist(),
            "mean_return": np.asarray(eps.returns).mean(axis=1).tolist()}
    return ranked, info


def check_noise_ranking(info: dict, min_trend: float = -0.5) -> None:
    """Raise ValueError unless the true return falls with the noise (D-REX's premise):
    the correlation of each level's mean return with its epsilon must be at most
    `min_trend`. Otherwise the noise rankings rank nothing, and a reward learned from
    them would be noise that PPO then optimises.

    Args:
        info: noise_ranked_demos' info ("noise" and "mean_return", (K,) each).
    """
    noise, returns = np.asarray(info["noise"]), np.asarray(info["mean_return"])
    spread = np.ptp(returns) if len(returns) else 0.0
    trend = float(np.corrcoef(noise, returns)[0, 1]) if spread > 0 and len(noise) > 1 \
        else float("nan")
    if not trend <= min_trend:
        raise ValueError(
            f"D-REX: the cloned policy's return does not fall with the noise (returns "
            f"{returns[0]:.1f} at epsilon {noise[0]:.2f} to {returns[-1]:.1f} at "
            f"{noise[-1]:.2f}; correlation with epsilon "
            f"{'undefined, every level scores the same' if np.isnan(trend) else f'{trend:+.2f}'}"
            f", expected at most {min_trend}), so the noise rankings rank nothing. Clone a better policy "
            "(more or better demonstrations, DREXConfig.bc) or rank the demonstrations "
            "and use T-REX.")


def concat_demos(ranked: Demonstrations, extra: Demonstrations, rank: float) -> Demonstrations:
    """`ranked` and `extra` together, every one of `extra` given `rank`, padded to one T."""
    T = max(ranked.obs.shape[1], extra.obs.shape[1])
    pad = lambda x: None if x is None else np.pad(
        np.asarray(x), [(0, 0), (0, T - np.asarray(x).shape[1])]
        + [(0, 0)] * (np.asarray(x).ndim - 2))
    cat = lambda a, b: None if a is None or b is None else np.concatenate([a, b])
    n = extra.n
    return Demonstrations(
        obs=cat(pad(ranked.obs), pad(extra.obs)), lengths=cat(ranked.lengths, extra.lengths),
        rank=cat(ranked.rank, np.full(n, rank)),
        actions=cat(pad(ranked.actions), pad(extra.actions)),
        returns=cat(ranked.returns, extra.returns),
        source=cat(ranked.source, np.zeros(n, np.float32)),
        rewards=cat(pad(ranked.rewards), pad(extra.rewards)), env=ranked.env,
        terminated=cat(ranked.ended(), extra.ended()))
