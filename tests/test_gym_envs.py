"""The JAX classic-control tasks against gymnasium, the reference they port.

The main check replays gymnasium: random-policy episodes in gymnasium record, before each
step, its internal state and its TimeLimit's step count, then the action and what gymnasium
returned; one vmapped JAX step over all those (state, action) pairs must give the same
observations, rewards and flags. Half of the episodes start from a wider range of states
than gymnasium's reset and half start close to the time limit, so that every branch is
visited (walls, velocity clips, goals, time limits, a goal reached on the limit's step).
"""

import functools
import math
import warnings

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from minirlhf.envs import GYM_TASKS, AutoReset, make_env
from minirlhf.envs.gym_adapter import GYM_IDS

IDS = list(GYM_TASKS)
PI = math.pi

# Start states beyond gymnasium's reset distribution (the physical state, gymnasium's order).
WIDE_STATES = {
    "CartPole-v1": ([-2.4, -2.0, -0.21, -2.0], [2.4, 2.0, 0.21, 2.0]),
    "Acrobot-v1": ([-PI, -PI, -4 * PI, -9 * PI], [PI, PI, 4 * PI, 9 * PI]),
    "MountainCar-v0": ([-1.2, -0.07], [0.6, 0.07]),
    "Pendulum-v1": ([-PI, -8.0], [PI, 8.0]),
}
# Gymnasium's reset distribution: each state variable uniform in [low, high).
RESET_RANGES = {
    "CartPole-v1": ([-0.05] * 4, [0.05] * 4),
    "Acrobot-v1": ([-0.1] * 4, [0.1] * 4),
    "MountainCar-v0": ([-0.6, 0.0], [-0.4, 0.0]),
    "Pendulum-v1": ([-PI, -1.0], [PI, 1.0]),
}
# Tolerance of float32 against gymnasium's float64 after one step. Measured errors are
# ~2e-7 (CartPole, MountainCar), ~2e-6 (Pendulum, whose unwrapped angle grows) and for
# Acrobot ~1e-6 typically but up to ~3e-4 from states near its speed limits, where RK4 with
# dt = 0.2 amplifies float32 rounding (test_step_is_gymnasiums_arithmetic_in_float64 shows
# that the maths is gymnasium's).
TOL = {"CartPole-v1": 1e-5, "Acrobot-v1": 1e-3, "MountainCar-v0": 1e-5, "Pendulum-v1": 1e-5}


def state_fields(env):
    """The names of the physical state variables, in gymnasium's order (all but `t`)."""
    _, state = env.reset(jax.random.key(0), env.default_params())
    return [f for f in type(state).__dataclass_fields__ if f != "t"]


def make_state(env, physical, t, dtype=jnp.float32):
    """A batch of JAX states from gymnasium states `physical` (N, S) and step counts t (N,)."""
    _, state = env.reset(jax.random.key(0), env.default_params())
    cols = {f: jnp.asarray(physical[:, i], dtype) for i, f in enumerate(state_fields(env))}
    return type(state)(**cols, t=jnp.asarray(t, jnp.int32))


@functools.cache
def gymnasium_transitions(env_id, n=3000, seed=0):
    """`n` transitions of random play in gymnasium, with its state before each step."""
    env = gymnasium.make(env_id)
    limit = env.spec.max_episode_steps
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    rec = {k: [] for k in ("state", "t", "action", "obs", "reward", "terminated", "truncated",
                           "next_state")}

    def new_episode(seed=None):
        env.reset(seed=seed)
        if rng.random() < 0.5:
            env.unwrapped.state = rng.uniform(*WIDE_STATES[env_id])
        if rng.random() < 0.5:
            env._elapsed_steps = limit - int(rng.integers(1, 40))  # TimeLimit's counter

    new_episode(seed)
    while len(rec["t"]) < n:
        rec["state"].append(np.array(env.unwrapped.state, np.float64))
        rec["t"].append(env._elapsed_steps)
        action = env.action_space.sample()
        if env_id == "Pendulum-v1" and rng.random() < 0.3:  # beyond ±2: gymnasium clips it
            action = rng.uniform(-4, 4, (1,)).astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        for k, v in zip(("action", "obs", "reward", "terminated", "truncated", "next_state"),
                        (action, obs, reward, terminated, truncated, env.unwrapped.state)):
            rec[k].append(np.array(v))
        # Abandoning episodes early (at rate 1/30) gives more starts, so more variety.
        if terminated or truncated or rng.random() < 1 / 30:
            new_episode()
    return {k: np.stack(v) for k, v in rec.items()}


def replay(env_id, dtype):
    """Our step on each recorded gymnasium (state, action), all at once; and the record."""
    ref = gymnasium_transitions(env_id)
    env = make_env(env_id)
    # Float actions stay float32 in both modes, like gymnasium's (whose Pendulum then
    # computes the torque terms in float32, as we do).
    actions = ref["action"].astype(np.int32 if env.discrete else np.float32)
    keys = jax.random.split(jax.random.key(0), len(actions))
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    out = step(keys, make_state(env, ref["state"], ref["t"], dtype), actions, env.default_params())
    return env, ref, out


def check_replay(env_id, dtype, tol, out_tol):
    """Compare the hidden state to `tol`, observations and rewards (float32 by the interface,
    as gymnasium's observations) to `out_tol`."""
    env, ref, (obs, state, reward, terminated, truncated, _) = replay(env_id, dtype)
    np.testing.assert_allclose(obs, ref["obs"], atol=out_tol, rtol=out_tol)
    np.testing.assert_allclose(reward, ref["reward"], atol=out_tol, rtol=out_tol)
    np.testing.assert_array_equal(terminated, ref["terminated"])
    # Our truncation excludes termination; gymnasium's TimeLimit sets both on the limit-th
    # step when the task also terminated there (see test_time_limit_step_that_terminates).
    np.testing.assert_array_equal(truncated, ref["truncated"] & ~ref["terminated"])
    np.testing.assert_array_equal(state.t, ref["t"] + 1)
    # The hidden state too (Acrobot's angles compared on the circle: ±π are the same angle).
    for i, f in enumerate(state_fields(env)):
        assert getattr(state, f).dtype == dtype
        diff = np.asarray(getattr(state, f), np.float64) - ref["next_state"][:, i]
        if env_id == "Acrobot-v1" and f.startswith("theta"):
            diff = np.angle(np.exp(1j * diff))
        np.testing.assert_array_less(np.abs(diff), tol * (1 + np.abs(ref["next_state"][:, i])),
                                     err_msg=f)
    return ref


@pytest.mark.parametrize("env_id", IDS)
def test_step_matches_gymnasium(env_id):
    """In float32, what the tasks run in, one step agrees with gymnasium's float64 step."""
    ref = check_replay(env_id, jnp.float32, TOL[env_id], TOL[env_id])
    # The replay is only a test if it reached the rare branches.
    n_term, n_trunc = ref["terminated"].sum(), ref["truncated"].sum()
    assert n_trunc >= 20, n_trunc
    if env_id != "Pendulum-v1":  # Pendulum never terminates
        assert n_term >= 5, n_term
    if env_id == "CartPole-v1":  # a fall on the time limit's step
        assert np.sum(ref["terminated"] & ref["truncated"]) >= 1
    if env_id == "MountainCar-v0":  # the inelastic left wall
        assert np.sum((ref["next_state"][:, 0] == -1.2) & (ref["state"][:, 1] < 0)) >= 5
    if env_id == "Pendulum-v1":  # the speed clip and the torque clip
        assert np.sum(np.abs(ref["next_state"][:, 1]) == 8.0) >= 5
        assert np.sum(np.abs(ref["action"]) > 2) >= 100


def test_acrobot_wrap_is_gymnasiums():
    """The loop-free `wrap` equals gymnasium's while loops, also several periods out."""
    from gymnasium.envs.classic_control.acrobot import wrap as gym_wrap

    from minirlhf.envs.acrobot import wrap

    x = np.concatenate([np.random.default_rng(0).uniform(-30, 30, 500),
                        [-PI, PI, 3 * PI, -3 * PI, 0.0]])
    np.testing.assert_allclose(np.asarray(wrap(jnp.asarray(x), -PI, PI)),
                               [gym_wrap(v, -PI, PI) for v in x], atol=1e-5)


@pytest.mark.parametrize("env_id", IDS)
def test_step_is_gymnasiums_arithmetic_in_float64(env_id):
    """Run in float64, the port reproduces gymnasium to rounding: the float32 differences
    above are float32's, not a different formula. (Acrobot needs this: from states near its
    speed limits, float32 RK4 drifts by up to ~3e-4 from float64.)"""
    with jax.enable_x64(True):
        ref = check_replay(env_id, jnp.float64, 1e-9, 1e-6)  # outputs: float32 rounding
    assert len(ref["reward"]) >= 3000  # the comparison covered thousands of transitions


def test_time_limit_step_that_terminates():
    """Gymnasium's TimeLimit reports terminated *and* truncated when the pole falls on the
    500th step; we report only terminated, so that its value is not bootstrapped."""
    ref = gymnasium.make("CartPole-v1")
    ref.reset(seed=0)
    ref.unwrapped.state = np.array([2.39, 1.0, 0.0, 0.0])  # leaves the track this step
    ref._elapsed_steps = 499
    _, _, g_term, g_trunc, _ = ref.step(1)
    assert g_term and g_trunc

    env = make_env("CartPole-v1")
    state = make_state(env, np.array([[2.39, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]), [499, 499])
    keys = jax.random.split(jax.random.key(0), 2)
    _, _, _, term, trunc, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
        keys, state, jnp.array([1, 1]), env.default_params())
    np.testing.assert_array_equal(term, [True, False])
    np.testing.assert_array_equal(trunc, [False, True])  # the upright pole is cut by the limit


@pytest.mark.parametrize("env_id", IDS)
def test_reset_distribution(env_id):
    env = make_env(env_id)
    params = env.default_params()
    keys = jax.random.split(jax.random.key(1), 4000)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    assert obs.shape == (4000, *env.observation_space.shape) and obs.dtype == jnp.float32
    assert all(o in env.observation_space for o in np.asarray(obs[:100]))
    np.testing.assert_array_equal(state.t, 0)

    low, high = map(np.array, RESET_RANGES[env_id])
    x = np.stack([np.asarray(getattr(state, f)) for f in state_fields(env)], 1)  # (N, S)
    assert np.all(x >= low) and np.all(x <= high)
    # Uniform on [low, high): mean (low + high) / 2, std (high - low) / sqrt(12); and the
    # samples reach both ends (not, say, a narrower or a normal distribution).
    spread = high - low
    np.testing.assert_allclose(x.mean(0), (low + high) / 2, atol=0.02 * spread.max())
    np.testing.assert_allclose(x.std(0), spread / np.sqrt(12), rtol=0.05, atol=1e-7)
    np.testing.assert_array_less(x.min(0), low + 0.01 * spread + 1e-9)
    np.testing.assert_array_less(high - 0.01 * spread - 1e-9, x.max(0))
    # The table above is gymnasium's distribution: its resets fall in the same ranges.
    ref = gymnasium.make(env_id)
    g = []
    for seed in range(200):
        ref.reset(seed=seed)
        g.append(np.array(ref.unwrapped.state, np.float64))
    g = np.stack(g)
    assert np.all(g >= low) and np.all(g <= high)
    np.testing.assert_array_less(high - 0.1 * spread - 1e-9, g.max(0))

    # A key determines the episode.
    o1, _ = env.reset(jax.random.key(7), params)
    o2, _ = env.reset(jax.random.key(7), params)
    o3, _ = env.reset(jax.random.key(8), params)
    np.testing.assert_array_equal(o1, o2)
    assert not np.array_equal(o1, o3)


def test_autoreset_against_a_manual_loop():
    """AutoReset equals stepping and resetting by hand, keeps the final observation, counts
    the episode's return and length, and keeps termination and truncation apart."""
    base = make_env("CartPole-v1")
    params = base.default_params().replace(max_steps=15)  # short: both endings occur
    env = AutoReset(base)
    T = 300
    keys = jax.random.split(jax.random.key(3), T)
    actions = jax.random.bernoulli(jax.random.key(4), 0.5, (T,)).astype(jnp.int32)
    obs0, st0 = env.reset(jax.random.key(5), params)

    def body(st, x):
        obs, st, reward, term, trunc, info = env.step(x[0], st, x[1], params)
        return st, (obs, reward, term, trunc, info)

    out = jax.jit(lambda st: jax.lax.scan(body, st, (keys, actions)))(st0)[1]
    obs, reward, term, trunc, info = jax.tree.map(np.asarray, out)

    # By hand, with AutoReset's key convention: split each step's key into (step, reset).
    step, reset = jax.jit(base.step), jax.jit(base.reset)
    split_keys = jax.vmap(jax.random.split)(keys)  # (T, 2)
    o, s = reset(jax.random.key(5), params)
    np.testing.assert_array_equal(o, obs0)
    ep_return, ep_len, n_term, n_trunc = 0.0, 0, 0, 0
    for i in range(T):
        o, s, r, te, tr, _ = step(split_keys[i, 0], s, actions[i], params)
        ep_return, ep_len = ep_return + float(r), ep_len + 1
        assert term[i] == te and trunc[i] == tr
        assert not (te and tr)
        np.testing.assert_allclose(info["final_obs"][i], o, atol=1e-6)
        if te or tr:
            n_term, n_trunc = n_term + bool(te), n_trunc + bool(tr)
            assert info["episode_length"][i] == ep_len
            assert info["episode_return"][i] == ep_return  # CartPole: +1 per step
            if tr:
                assert ep_len == 15
            o, s = reset(split_keys[i, 1], params)
            ep_return, ep_len = 0.0, 0
            np.testing.assert_array_less(np.abs(obs[i]), 0.05)  # a fresh episode's obs
            assert not np.allclose(obs[i], info["final_obs"][i])
        else:
            assert info["episode_length"][i] == 0 and info["episode_return"][i] == 0
        np.testing.assert_allclose(obs[i], o, atol=1e-6)
    assert n_term >= 3 and n_trunc >= 3, (n_term, n_trunc)


def random_inputs(env, n, seed):
    """n states spread over WIDE_STATES, mid-episode, and n random actions."""
    rng = np.random.default_rng(seed)
    physical = rng.uniform(*WIDE_STATES[env.name], size=(n, len(WIDE_STATES[env.name][0])))
    state = make_state(env, physical, rng.integers(0, 600, n))
    if env.discrete:
        actions = jnp.asarray(rng.integers(0, env.action_space.n, n), jnp.int32)
    else:
        actions = jnp.asarray(rng.uniform(-3, 3, (n, 1)), jnp.float32)  # some get clipped
    return state, actions, jax.random.split(jax.random.key(seed), n)


@pytest.mark.parametrize("env_id", IDS)
def test_jit_equals_eager_and_vmap_equals_loop(env_id):
    env = make_env(env_id)
    params = env.default_params()
    state, actions, keys = random_inputs(env, 4, seed=0)
    batched = jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, state, actions, params)
    jitted = jax.jit(env.step)
    for i in range(4):
        one = jax.tree.map(lambda x: x[i], state)
        eager = env.step(keys[i], one, actions[i], params)
        for a, b, c in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted(keys[i], one,
                                                                          actions[i], params)),
                           jax.tree.leaves(jax.tree.map(lambda x: x[i], batched))):
            # XLA fuses and reorders float32 arithmetic under jit (~1e-6 after Acrobot's RK4).
            np.testing.assert_allclose(a, b, rtol=TOL[env_id], atol=TOL[env_id])
            np.testing.assert_allclose(a, c, rtol=TOL[env_id], atol=TOL[env_id])


def test_params_are_a_vmappable_sweep():
    """A vmap over pole lengths equals stepping each length on its own, and the lengths
    matter (a longer pole falls more slowly)."""
    env = make_env("CartPole-v1")
    lengths = jnp.array([0.25, 0.5, 1.0])
    params = jax.vmap(lambda l: env.default_params().replace(length=l))(lengths)
    _, state = env.reset(jax.random.key(0), env.default_params())
    state = state.replace(theta=jnp.float32(0.1))
    step = jax.vmap(env.step, in_axes=(None, None, None, 0))
    obs = step(jax.random.key(0), state, jnp.int32(0), params)[0]
    for i, l in enumerate(lengths):
        p = env.default_params().replace(length=float(l))
        np.testing.assert_allclose(obs[i], env.step(jax.random.key(0), state, 0, p)[0],
                                   rtol=1e-6)
    assert obs[0, 3] > obs[1, 3] > obs[2, 3] > 0  # angular velocity after one step


ALLOWED_WARNINGS = (  # raised by check_env for gymnasium's own spaces, which we copy exactly
    "observation space minimum value is -infinity", "observation space maximum value is infinity",
    "we recommend using a symmetric and normalized space")


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_registration_check_env_and_render(env_id):
    assert "minirlhf/" + env_id in GYM_IDS
    env = gymnasium.make("minirlhf/" + env_id, render_mode="rgb_array")
    ref = gymnasium.make(env_id)
    assert env.observation_space == ref.observation_space
    assert env.action_space == ref.action_space
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    unexpected = [str(w.message) for w in caught
                  if not any(a in str(w.message) for a in ALLOWED_WARNINGS)]
    assert not unexpected, unexpected

    obs, info = env.reset(seed=0)
    assert obs in env.observation_space and info == {}
    obs, reward, term, trunc, _ = env.step(env.action_space.sample())
    assert obs in env.observation_space and isinstance(reward, float)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) >= 3  # background and a scene
    env.close()


def centre_of(frame, color):
    """Mean (row, column) of the pixels of exactly `color`; row 0 is the top."""
    rows, cols = np.nonzero(np.all(frame == color, axis=-1))
    assert len(rows) > 50, color  # the part is drawn at all
    return rows.mean(), cols.mean()


def test_render_follows_the_state():
    """Frames move with the state: pole and car to the right, pendulum and links up."""
    def frame(env_id, **fields):
        env = make_env(env_id)
        _, state = env.reset(jax.random.key(0), env.default_params())
        return env.render(state.replace(**fields), env.default_params())

    pole, wheel, rod, link = (202, 152, 101), (128, 128, 128), (204, 77, 77), (0, 204, 204)
    assert (centre_of(frame("CartPole-v1", x=1.5), pole)[1]
            > centre_of(frame("CartPole-v1", x=-1.5), pole)[1] + 300)
    assert (centre_of(frame("MountainCar-v0", position=0.3), wheel)[1]
            > centre_of(frame("MountainCar-v0", position=-1.0), wheel)[1] + 300)
    # Pendulum (500 x 500, pivot at the centre): θ = 0 points up, θ = π down.
    assert centre_of(frame("Pendulum-v1", theta=0.0), rod)[0] < 200
    assert centre_of(frame("Pendulum-v1", theta=PI), rod)[0] > 300
    # Acrobot: hanging (θ1 = 0) below the pivot, inverted (θ1 = π) above it.
    assert centre_of(frame("Acrobot-v1", theta1=0.0, theta2=0.0), link)[0] > 300
    assert centre_of(frame("Acrobot-v1", theta1=PI, theta2=0.0), link)[0] < 200


def test_adapter_time_limit_and_determinism():
    env = gymnasium.make("minirlhf/Pendulum-v1")
    first, _ = env.reset(seed=3)
    for i in range(200):
        _, _, term, trunc, _ = env.step(np.array([0.5], np.float32))
        assert not term and trunc == (i == 199)
    again, _ = env.reset(seed=3)
    np.testing.assert_array_equal(first, again)
    other, _ = env.reset(seed=4)
    assert not np.array_equal(first, other)
    # Copies of one id share the compiled step, not the action space's random generator.
    twin = gymnasium.make("minirlhf/Pendulum-v1")
    assert twin.unwrapped._step is env.unwrapped._step
    assert twin.action_space is not env.action_space


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"unknown gym task 'Nope-v0'.*CartPole-v1"):
        make_env("Nope-v0")
    assert make_env("minirlhf/Acrobot-v1").name == make_env("Acrobot-v1").name == "Acrobot-v1"

    cart, pend = make_env("CartPole-v1"), make_env("Pendulum-v1")
    key = jax.random.key(0)
    _, cs = cart.reset(key, cart.default_params())
    _, ps = pend.reset(key, pend.default_params())
    with pytest.raises(ValueError, match=r"CartPole-v1 takes a discrete action.*shape \(\)"):
        cart.step(key, cs, jnp.float32(1.0), cart.default_params())
    with pytest.raises(ValueError, match=r"integer scalar.*got shape \(1,\)"):
        jax.jit(cart.step)(key, cs, jnp.array([1]), cart.default_params())
    with pytest.raises(ValueError, match=r"Pendulum-v1 takes a continuous action.*\(1,\).*\(2,\)"):
        pend.step(key, ps, jnp.zeros(2), pend.default_params())
    with pytest.raises(ValueError, match=r"float array.*dtype int32"):
        pend.step(key, ps, jnp.array([1]), pend.default_params())
    with pytest.raises(ValueError, match=r"got shape \(2,\)"):  # (4, 2) vmapped: (2,) each
        jax.vmap(pend.step, in_axes=(None, None, 0, None))(
            key, ps, jnp.zeros((4, 2)), pend.default_params())

    adapter = gymnasium.make("minirlhf/CartPole-v1").unwrapped
    with pytest.raises(gymnasium.error.ResetNeeded):
        adapter.step(0)
    adapter.reset(seed=0)
    with pytest.raises(ValueError, match=r"integer action in \[0, 2\), got 2"):
        adapter.step(2)
    with pytest.raises(ValueError, match="integer action"):
        adapter.step(1.0)
    with pytest.raises(ValueError, match="takes no reset options"):
        adapter.reset(options={"low": -0.1})
    pend_adapter = gymnasium.make("minirlhf/Pendulum-v1").unwrapped
    pend_adapter.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(1,\), got"):
        pend_adapter.step(np.zeros(2))
