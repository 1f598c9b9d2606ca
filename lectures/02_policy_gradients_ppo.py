# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lecture 2 — Policy gradients and PPO
#
# Step 4 of the deck "Large Language Models and RL from Human Feedback", slide **"High-Level
# Recipe for ChatGPT"**, reads: "Perform policy gradient updates using RL with learned
# reward", and the slide after it names the algorithm: "Optimize a policy against the reward
# model using the PPO reinforcement learning algorithm." Before we point PPO at a language
# model (a later lecture), we take it apart where it is cheap to watch: balancing a pole on a
# cart, which PPO learns in seconds.
#
# | section | idea | minirlhf |
# | --- | --- | --- |
# | 1 | the RL problem, the policy gradient, REINFORCE and baselines | `minirlhf/distributions.py` |
# | 2 | advantages and GAE; termination vs. truncation | `minirlhf/advantages.py` |
# | 3 | why PPO clips: the clipped surrogate and its gradient | `minirlhf/losses.py` |
# | 4 | the implementation details that matter | `minirlhf/ppo.py` |
# | 5 | training PPO on CartPole, one seed, and its diagnostics | `minirlhf/ppo.py`, `envs/cartpole.py` |
# | 6 | watching the agent | `envs/cartpole.py` |
# | 7 | several seeds at once with `jax.vmap` | `minirlhf/ppo.py` |
# | 8 | time limits in practice: bootstrapping truncation | `envs/core.py` |
# | 9 | falling off the cliff without clipping | `minirlhf/ppo.py` |
# | 10 | continuous actions: a Gaussian policy on Pendulum | `minirlhf/gym_train.py` |
# | 11 | exercises | |
#
# Everything runs on a laptop CPU: the whole notebook takes about 2 minutes on 2 cores.
#
# **Setup.** Install the package once from the repository root (`pip install -e .`; in Colab,
# `!pip install` the repository first), then run the cells top to bottom.

# %%
import dataclasses
import inspect
import os
import tempfile
import time

# Training loops show tqdm progress bars; "0" turns them back on.
os.environ.setdefault("MINIRLHF_QUIET", "1")

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import minirlhf.ppo
from minirlhf.advantages import discounted_returns, gae
from minirlhf.distributions import token_logprobs
from minirlhf.envs import make_env
from minirlhf.envs.core import AutoReset
from minirlhf.gym_train import evaluate_agent, train_agents
from minirlhf.losses import approx_kl, clipped_surrogate_loss
from minirlhf.ppo import (PRESETS, greedy_action, init_agents, init_policy, make_train,
                          mean_episode_return, num_iterations, policy_apply)

# %matplotlib inline

LECTURE_START = time.perf_counter()
work = tempfile.mkdtemp(prefix="minirlhf_lecture02_")  # run folders go here, never the repo
print("jax", jax.__version__, "on", jax.devices())

# %% [markdown]
# ## 1. The RL problem and the policy gradient
#
# *Deck "Large Language Models and RL from Human Feedback", slide "How to model as an MDP?":*
# a state space, an initial state, an action space, transitions, and a "Reward: r:
# $S \times A \rightarrow$ Reals". For a language model the state is the prompt plus the
# tokens so far and an action is the next token; in this lecture the state is a cart-pole's
# position, velocity, angle and angular velocity, and an action pushes the cart left or right.
#
# A **policy** $\pi_\theta(a \mid s)$ is a distribution over actions with parameters $\theta$
# (a network's weights; for the language model of lecture 1, its softmax over the next token).
# Acting with it produces a trajectory $\tau = (s_0, a_0, r_0, s_1, a_1, r_1, \dots)$, and RL
# maximises the expected discounted return
#
# $$J(\theta) = \mathbb{E}_{\tau \sim \pi_\theta}\Big[\sum_t \gamma^t r_t\Big].$$
#
# **The policy-gradient theorem** (Williams 1992; Sutton et al. 2000). The environment is not
# differentiable, but the probability of sampling an action is, and
# $\nabla_\theta \pi = \pi \, \nabla_\theta \log \pi$ turns the gradient of an expectation
# into an expectation we can sample:
#
# $$\nabla_\theta J(\theta) = \mathbb{E}_{\tau \sim \pi_\theta}\Big[\sum_t
#   \nabla_\theta \log \pi_\theta(a_t \mid s_t)\,\big(G_t - b(s_t)\big)\Big],
#   \qquad G_t = \sum_{k \ge t} \gamma^{k-t} r_k .$$
#
# (The dynamics do not depend on $\theta$, so only the policy's log-probabilities appear; an
# action cannot affect rewards that came before it, so each one is weighted by the
# reward-to-go $G_t$ only. Strictly, the discounted objective also puts a factor $\gamma^t$
# in front of each term; practical implementations, minirlhf's included, drop it.) Sample
# trajectories, follow this estimate uphill, repeat: that is
# **REINFORCE**. In code one never writes the gradient: one writes the "pseudo-loss"
# $-\frac{1}{N}\sum \log \pi_\theta(a_t \mid s_t)\,(G_t - b)$ with the weights held constant,
# and lets `jax.grad` do the rest.
#
# **The baseline** $b(s_t)$ changes nothing in expectation, because
# $\mathbb{E}_{a \sim \pi}[\nabla \log \pi(a \mid s)] = \nabla \sum_a \pi(a \mid s) =
# \nabla 1 = 0$, but it can shrink the variance enormously. CartPole pays $+1$ for every step,
# so every $G_t$ is positive: without a baseline, every sampled action is pushed up, and only
# the *differences* in how much carry signal. The smallest example is a one-step problem (a
# bandit) with three actions worth 10, 11 and 12, where the exact gradient is
# `jax.grad` of $J(\theta) = \sum_a \pi_\theta(a) R(a)$ and we can compare:

# %%
R = jnp.array([10.0, 11.0, 12.0])  # reward of each of 3 actions: all positive, as in CartPole
theta = jnp.array([0.5, 0.0, -0.5])  # the policy's logits: it prefers the worst action
exact = jax.grad(lambda th: jax.nn.softmax(th) @ R)(theta)


def reinforce_estimate(key, baseline, n=16):
    """The REINFORCE gradient from n sampled actions: grad of mean(log pi(a) * (R(a) - b))."""
    actions = jax.random.categorical(key, theta, shape=(n,))
    weights = R[actions] - baseline  # constants: no gradient flows through them
    return jax.grad(lambda th: jnp.mean(token_logprobs(jnp.broadcast_to(th, (n, 3)), actions)
                                        * weights))(theta)


keys = jax.random.split(jax.random.key(0), 2000)
value = float(jax.nn.softmax(theta) @ R)  # V = E_pi[R], the best constant baseline (nearly)
estimates = {"no baseline (b = 0)": jax.vmap(lambda k: reinforce_estimate(k, 0.0))(keys),
             f"baseline b = V = {value:.2f}": jax.vmap(lambda k: reinforce_estimate(k, value))(keys)}

fig, axes = plt.subplots(1, 3, figsize=(13, 3.2), sharey=True)
for i, ax in enumerate(axes):
    for (name, est), color in zip(estimates.items(), ("tab:gray", "tab:blue")):
        ax.hist(np.asarray(est[:, i]), bins=60, alpha=0.6, color=color, label=name)
    ax.axvline(float(exact[i]), color="k", ls="--", label="exact gradient")
    ax.set_title(f"dJ / d(logit of the action worth {R[i]:.0f})")
axes[0].set_ylabel("count (2000 estimates of 16 samples)")
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()
print("exact gradient      ", np.round(np.asarray(exact), 3))
for name, est in estimates.items():
    print(f"{name:26} mean {np.round(np.asarray(est.mean(0)), 3)}   std {np.round(np.asarray(est.std(0)), 3)}")

# %% [markdown]
# Both estimators are unbiased (their means sit on the exact gradient), but without the
# baseline a single estimate of 16 samples often even points the wrong way. Subtracting $V$
# turns "this action was followed by reward 11" into "this action was 0.32 better than the
# policy's average": the **advantage**. The best baseline in RL is the state's value
# $V(s_t)$, which we learn with a second network, the **critic**; $G_t - V(s_t)$ estimates
# the advantage
# $A(s_t, a_t) = Q(s_t, a_t) - V(s_t)$. The same deck's slide "Group Relative Policy
# Optimization (GRPO)" uses the same idea without a critic ("Step 3: Compute relative
# advantage"): the mean reward of a group of answers to the same prompt is the baseline.

# %% [markdown]
# ## 2. Advantages and GAE
#
# $G_t - V(s_t)$ sums every future reward, so it is noisy; the one-step **TD error**
# $\delta_t = r_t + \gamma V(s'_t) - V(s_t)$ uses one reward and trusts the critic for the
# rest, so it is quiet but inherits the critic's errors. **Generalised advantage estimation**
# (Schulman et al. 2016) blends all the $n$-step estimates in between with weights
# $(1-\lambda)\lambda^{n-1}$, which comes out as a discounted sum of TD errors, computed
# backwards in time:
#
# $$\hat A_t = \delta_t + \gamma\lambda\, \hat A_{t+1}, \qquad
#   \lambda = 0: \hat A_t = \delta_t, \qquad \lambda = 1: \hat A_t = G_t - V(s_t).$$
#
# `minirlhf.advantages.gae` does exactly this in a reverse `jax.lax.scan`, on time-major
# $(T, E)$ arrays (T steps of E parallel environments), with one complication that matters:
# **an episode can end in two ways** (Pardo et al. 2018, "Time Limits in Reinforcement
# Learning"):
#
# * **terminated**: the task itself ended (the pole fell). Nothing follows, so the future is
#   worth 0: $\delta_t = r_t - V(s_t)$.
# * **truncated**: the *time limit* ran out (CartPole-v1 stops every episode after 500 steps).
#   The pole is still up; in the task we want solved it would keep earning reward. The future
#   is worth $V(s'_t)$, so it **is bootstrapped**: $\delta_t = r_t + \gamma V(s'_t) - V(s_t)$.
#
# Either way, the recursion must not run across the boundary into the next episode, so
# `gae(rewards, values, next_values, terminated, done, gamma, lam)` takes two flags:
# `terminated` zeroes the bootstrap, `done` (terminated or truncated) cuts the sum. Here is a
# hand example: one environment, 6 steps, two episodes; the first ends with the pole falling
# at $t = 2$, the second is cut by the time limit at $t = 5$ while balancing perfectly. With
# $\gamma = 0.9$ and $+1$ per step, a pole that stays up forever is worth
# $1/(1-\gamma) = 10$, and the critic knows it:

# %%
gamma, lam = 0.9, 0.8
rewards = jnp.ones(6)
values = jnp.array([2.5, 1.8, 1.0, 10.0, 10.0, 10.0])  # V(s_t)
next_values = jnp.array([1.8, 1.0, 4.0, 10.0, 10.0, 10.0])  # V(s'_t); 4.0: the fallen pole's state
terminated = jnp.array([False, False, True, False, False, False])
truncated = jnp.array([False, False, False, False, False, True])
done = terminated | truncated

col = lambda x: x[:, None]  # (T,) -> (T, E=1): gae is time-major over E environments
adv, ret = gae(*map(col, (rewards, values, next_values, terminated, done)), gamma, lam)
adv_wrong, _ = gae(*map(col, (rewards, values, next_values, done, done)), gamma, lam)

# The same recursion as a plain Python loop, backwards in time: the scan's reference.
# BEGIN SOLUTION
by_hand, following = [], 0.0
for t in reversed(range(6)):
    delta = float(rewards[t] + gamma * (1 - terminated[t]) * next_values[t] - values[t])
    following = delta + gamma * lam * (1 - float(done[t])) * following
    by_hand.insert(0, following)
# END SOLUTION
np.testing.assert_allclose(np.asarray(adv[:, 0]), by_hand, rtol=1e-6)

print("t                            ", "  ".join(f"{t:6d}" for t in range(6)))
print("terminated / truncated       ", "  ".join(f"{'term' if a else 'trunc' if b else '':>6}"
                                                 for a, b in zip(terminated, truncated)))
print("A_t (truncation bootstrapped)", "  ".join(f"{a:6.2f}" for a in adv[:, 0]))
print("A_t (truncation = terminated)", "  ".join(f"{a:6.2f}" for a in adv_wrong[:, 0]))
print("lambda-return A_t + V(s_t)   ", "  ".join(f"{a:6.2f}" for a in ret[:, 0]))

# %% [markdown]
# Read it column by column:
#
# * $t = 2$: the pole fell. The reward 1 was earned, nothing follows, and the critic's value
#   of the fallen state (4.0, whatever it is) is ignored: $\hat A_2 = 1 - 1.0 = 0$.
# * $t = 0, 1$ sum their own TD errors and those of later steps *of the same episode*; the
#   second episode's advantages never leak into them.
# * $t = 5$: the balancing episode ran out of time. Bootstrapped, $\hat A_5 = 1 + 0.9 \cdot 10
#   - 10 = 0$: the last push was exactly as good as expected. Treated as a termination, it gets
#   $\hat A_5 = 1 - 10 = -9$, and the steps before it inherit part of that: the agent is
#   punished for the clock, which it cannot see (the observation holds no time), and the
#   critic is taught that perfectly balanced states are sometimes worth 1 instead of 10.
#   Section 8 trains an agent that way.
#
# **$\lambda$ between the extremes.** $\lambda = 0$ gives the TD errors, $\lambda = 1$ the
# Monte-Carlo advantage; `discounted_returns` (REINFORCE's $G_t$) agrees with $\lambda = 1$ on
# the terminated first episode:

# %%
for lam_ in (0.0, 0.8, 1.0):
    a, _ = gae(*map(col, (rewards, values, next_values, terminated, done)), gamma, lam_)
    print(f"lambda = {lam_}: A_t =", np.round(np.asarray(a[:, 0]), 3))
G = discounted_returns(rewards[:3], done[:3], gamma)
print("G_t - V(s_t) on episode 1 =", np.round(np.asarray(G - values[:3]), 3))

# %% [markdown]
# **Bias versus variance.** Why not always $\lambda = 1$? An experiment where the truth is
# known: an episode of $T = 100$ steps that always ends by termination, rewards $1 + 2\varepsilon$
# with $\varepsilon \sim N(0, 1)$ noise, $\gamma = 0.98$, and a critic that has learned only
# 80 % of the true values. $V(s_t)$ enters $\hat A_t$ as a baseline, which (section 1) does
# not bias the gradient; what matters is how well $\hat A_t + V(s_t)$, the "$\lambda$-return"
# (`gae`'s second output), estimates the true return. We estimate it at $t = 0$ from 4,000
# episodes, for a range of $\lambda$, with one `jax.vmap` over $\lambda$:

# %%
T_chain, N_chain, gamma_chain = 100, 4000, 0.98
v_true = (1 - gamma_chain ** (T_chain - np.arange(T_chain))) / (1 - gamma_chain)  # (T,)
v_critic = jnp.broadcast_to(jnp.asarray(0.8 * v_true, jnp.float32)[:, None], (T_chain, N_chain))
noisy_rewards = 1.0 + 2.0 * jax.random.normal(jax.random.key(1), (T_chain, N_chain))
next_v = jnp.concatenate([v_critic[1:], jnp.zeros((1, N_chain))])  # (T, E)
ends = jnp.zeros((T_chain, N_chain), bool).at[-1].set(True)  # terminated on the last step

lams = jnp.array([0.0, 0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 1.0])
lambda_return_0 = jax.jit(jax.vmap(
    lambda l: gae(noisy_rewards, v_critic, next_v, ends, ends, gamma_chain, l)[1][0]))(lams)
bias = np.asarray(lambda_return_0.mean(axis=1)) - v_true[0]  # (len(lams),)
std = np.asarray(lambda_return_0.std(axis=1))

plt.figure(figsize=(7.5, 3.6))
x = np.arange(len(lams))
plt.plot(x, bias ** 2, "o-", label="bias²  (critic's error leaks in)")
plt.plot(x, std ** 2, "s-", label="variance  (reward noise adds up)")
plt.plot(x, bias ** 2 + std ** 2, "k^-", label="mean squared error")
plt.xticks(x, [f"{l:g}" for l in np.asarray(lams)])
plt.xlabel("λ")
plt.ylabel("error of the λ-return at t = 0")
plt.title(f"true value {v_true[0]:.1f}; critic says {0.8 * v_true[0]:.1f}")
plt.legend()
plt.show()
print("lambda:", np.asarray(lams))
print("bias:  ", np.round(bias, 2))
print("std:   ", np.round(std, 2))

# %% [markdown]
# Small $\lambda$ trusts the critic after a step or two, and inherits its 20 % error; large
# $\lambda$ looks further ahead and sums more noise. The effective horizon is
# $1/(1-\gamma\lambda)$ steps, which is why everything happens close to $\lambda = 1$ (at
# $\lambda = 0.95$ it is 14 steps). Where the error is smallest depends on how wrong the
# critic is and how noisy the rewards are; PPO's default, $\lambda = 0.95$, is a good
# compromise on most tasks. The critic improves during training, so the trade-off moves too.

# %% [markdown]
# ## 3. Why PPO clips
#
# *Deck "Large Language Models and RL from Human Feedback", slide "Proximal Policy Optimization
# (PPO)":* "One of the most popular deep RL algorithms. Used to train ChatGPT and other LLMs.
# Motivation: Many Policy Gradient algorithms have stability problems. This can be avoided if
# we avoid making too big of a policy update." *Deck "RL from Human Feedback and Large
# Language Models", slide "Reasons to use PPO":* "A too significant step in a policy update can
# result in falling 'off the cliff' (adopting a bad policy) and having a long time, or even no
# possibility, to recover."
#
# The policy gradient is only valid at the parameters $\theta_{old}$ that collected the data:
# after one step, the samples come from the wrong policy. Collecting fresh data after every
# step is wasteful, so PPO (Schulman et al. 2017) re-weights the old samples by the
# **probability ratio** and maximises the surrogate
#
# $$L(\theta) = \mathbb{E}_t\big[\rho_t(\theta)\,\hat A_t\big], \qquad
#   \rho_t(\theta) = \frac{\pi_\theta(a_t \mid s_t)}{\pi_{\theta_{old}}(a_t \mid s_t)},$$
#
# whose gradient at $\theta = \theta_{old}$ (where $\rho = 1$ and
# $\nabla \rho = \nabla \log \pi$) *is* the policy gradient of section 1. Check it on the
# bandit: the gradient of `clipped_surrogate_loss` at $\theta_{old}$ and the REINFORCE
# pseudo-loss's gradient are the same vector:

# %%
actions = jax.random.categorical(jax.random.key(2), theta, shape=(16,))
logits_of = lambda th: jnp.broadcast_to(th, (16, 3))
advantages = R[actions] - value
old_logp = token_logprobs(logits_of(theta), actions)  # recorded when acting: a constant
g_ppo = jax.grad(lambda th: clipped_surrogate_loss(token_logprobs(logits_of(th), actions),
                                                   old_logp, advantages, 0.2))(theta)
g_reinforce = jax.grad(lambda th: -jnp.mean(token_logprobs(logits_of(th), actions) * advantages))(theta)
print("PPO surrogate at theta_old:", np.round(np.asarray(g_ppo), 5))
print("REINFORCE pseudo-loss:     ", np.round(np.asarray(g_reinforce), 5))
np.testing.assert_allclose(np.asarray(g_ppo), np.asarray(g_reinforce), rtol=1e-5, atol=1e-7)

# %% [markdown]
# Away from $\theta_{old}$, though, $\rho_t \hat A_t$ is unbounded: for a good action
# ($\hat A > 0$) it pays to push $\pi(a_t \mid s_t)$ up forever, on the strength of a noisy
# advantage estimated under a policy we have already left. PPO's answer is a pessimistic
# bound, the **clipped surrogate** (Schulman et al. 2017, eq. 7):
#
# $$L^{CLIP}(\theta) = \mathbb{E}_t\Big[\min\big(\rho_t \hat A_t,\;
#   \mathrm{clip}(\rho_t, 1-\epsilon, 1+\epsilon)\, \hat A_t\big)\Big].$$
#
# `clipped_surrogate_loss` returns its negative (a loss to minimise). Plot it for a single
# sample as a function of $\rho$, for a good and a bad action, with its gradient
# $\partial L^{CLIP} / \partial \log \pi$ from `jax.grad`:

# %%
eps = 0.2
rhos = jnp.linspace(0.4, 1.6, 240)  # avoids landing exactly on the kinks at 1 ± ε


def surrogate(log_rho, A):
    """L^CLIP of one sample with ratio exp(log_rho) and advantage A (the objective, not the loss)."""
    return -clipped_surrogate_loss(log_rho[None], jnp.zeros(1), jnp.full(1, A), eps)


fig, axes = plt.subplots(2, 2, figsize=(11, 5.5), sharex=True)
for j, A in enumerate((1.0, -1.0)):
    objective = jax.vmap(lambda r: surrogate(jnp.log(r), A))(rhos)
    grad = jax.vmap(jax.grad(lambda lr: surrogate(lr, A)))(jnp.log(rhos))  # d L / d log pi
    flat = np.asarray(grad) == 0.0
    for ax in axes[:, j]:
        ax.fill_between(np.asarray(rhos), 0, 1, where=flat, color="tab:red", alpha=0.12,
                        transform=ax.get_xaxis_transform(), label="gradient is zero")
        ax.axvline(1.0, color="gray", lw=0.8)
    axes[0, j].plot(rhos, rhos * A, "--", color="gray", label="unclipped ρA")
    axes[0, j].plot(rhos, objective, lw=2.5, label="min(ρA, clip(ρ, 1-ε, 1+ε) A)")
    axes[0, j].set_title(f"A = {A:+.0f}: a {'good' if A > 0 else 'bad'} action")
    axes[1, j].plot(rhos, grad, lw=2.5, color="tab:green")
    axes[1, j].set_xlabel("ρ = π(a|s) / π_old(a|s)")
axes[0, 0].set_ylabel("objective L^CLIP")
axes[1, 0].set_ylabel("∂L^CLIP / ∂ log π(a|s)")
axes[0, 0].legend(fontsize=8)
fig.tight_layout()
plt.show()
for A in (1.0, -1.0):
    g = jax.vmap(jax.grad(lambda lr: surrogate(lr, A)))(jnp.log(rhos))
    zero = np.asarray(rhos)[np.asarray(g) == 0]
    print(f"A = {A:+.0f}: gradient zero for rho in [{zero.min():.3f}, {zero.max():.3f}]")

# %% [markdown]
# * **A good action** ($A > 0$): the objective rises with $\rho$ up to $1 + \epsilon$ and is
#   flat beyond. Once the action has become 20 % more likely than under $\pi_{old}$, this
#   sample stops pulling: nothing is gained by moving further from the data's policy.
# * **A bad action** ($A < 0$): symmetric, flat below $1 - \epsilon$.
# * The **min** keeps the other side unclipped: if an update made a good action *less* likely
#   ($\rho < 1 - \epsilon$, left panel) or a bad one *more* likely (right panel), the gradient
#   is still there to undo it. The bound is pessimistic: it never lets the policy profit from
#   a big step, and always lets it pay for a bad one.
#
# Two diagnostics come with it (both in `minirlhf/losses.py`): `clip_fraction`, the fraction
# of samples whose ratio has left $[1-\epsilon, 1+\epsilon]$, and `approx_kl`, an estimate of
# $\mathrm{KL}(\pi_{old} \,\|\, \pi_\theta)$ from the same samples with the "k3" estimator
# $(\rho - 1) - \log \rho \ge 0$ (Schulman 2020). On the bandit, against the exact KL
# between the old policy and a slightly moved one, from 16 and from 4,000 samples of $\pi_{old}$:

# %%
theta_new = theta + jnp.array([-0.15, 0.0, 0.15])  # a small step towards the best action
p_old, p_new = jax.nn.softmax(theta), jax.nn.softmax(theta_new)
exact_kl = float(jnp.sum(p_old * (jnp.log(p_old) - jnp.log(p_new))))
for n in (16, 4000):
    a = jax.random.categorical(jax.random.key(3), theta, shape=(n,))  # samples of pi_old
    k3 = approx_kl(jnp.log(p_new)[a], jnp.log(p_old)[a])
    print(f"approx_kl from {n:4d} samples: {float(k3):.5f}   exact KL(pi_old || pi_new): {exact_kl:.5f}")

# %% [markdown]
# ## 4. The implementation details that matter
#
# The PPO paper's algorithm fits in ten lines; a PPO that works fits in a few hundred,
# because of details the paper mentions in passing or not at all. Huang et al. 2022, "The 37
# Implementation Details of Proximal Policy Optimization", reproduces OpenAI's baselines
# line by line; Engstrom et al. 2020 ("Implementation Matters in Deep Policy Gradients") and
# Andrychowicz et al. 2021 ("What Matters in On-Policy RL") measure which ones matter.
# `minirlhf/ppo.py` follows CleanRL's `ppo.py` (Huang et al.'s reference), and these are the
# lines where each detail lives (read them in context next to this notebook):

# %%
PPO_SOURCE = inspect.getsource(minirlhf.ppo).splitlines()


def show_lines(title, *needles):
    """Print the lines of minirlhf/ppo.py that contain any of `needles`, with line numbers."""
    print(title)
    for number, line in enumerate(PPO_SOURCE, start=1):
        if any(n in line for n in needles):
            print(f"   ppo.py:{number:<4d} {line.strip()}")


show_lines("1. advantage normalisation, per minibatch:", "whiten(mb.advantage)")
show_lines("2. orthogonal init; hidden layers gain sqrt(2), policy head 0.01, value head 1:",
           "orthogonal(scale)", "math.sqrt(2), rngs)", "mlp(action_dim", "mlp(1,")
show_lines("3. value clipping (the clipped value loss of PPO2):", "clipped_value_loss(out.value")
show_lines("4. learning-rate annealing to 0:", "linear_schedule")
show_lines("5. global gradient-norm clipping, and Adam's eps:", "clip_by_global_norm(cfg", "eps=1e-5")
show_lines("6. several epochs of shuffled minibatches per rollout:", "permutation(epoch_key",
           "jax.lax.scan(epoch,", "jax.lax.scan(minibatch_step")
show_lines("7. bootstrapping from the final observation on truncation:", 'info["final_obs"]')
show_lines("8. the total loss: clipped surrogate + value loss - entropy bonus:",
           "loss = pg + cfg.vf_coef")

# %% [markdown]
# What each one is for:
#
# 1. **Advantage normalisation** (`whiten`: mean 0, standard deviation 1 in every minibatch)
#    makes the step size independent of the reward's scale: CartPole's advantages and a
#    reward model's are on completely different scales, the learning rate need not be.
#    GRPO does the same per prompt (slide "Group Relative Policy Optimization (GRPO)":
#    "Normalize the rewards within the group to get the advantage").
# 2. **Orthogonal initialisation** with a policy head scaled by 0.01 makes the first policy
#    almost exactly uniform (maximal exploration, no accidental early preference), and keeps
#    activations at a sane scale through the tanh layers. Checked below.
# 3. **Value clipping** keeps each sample's new value near the value recorded at collection
#    time, as the surrogate does for the policy: once $V(s_t)$ has moved more than $\epsilon$
#    towards its target, the sample stops pulling. Note that $\epsilon = 0.2$ is in units of
#    return here, and CartPole's values grow to 100. Engstrom et al. and Andrychowicz et al.
#    found that value clipping does not help (and can hurt), which is why it is an option
#    (`clip_vloss`) rather than a truth.
# 4. **Learning-rate annealing** (linearly to 0 over the run) makes late updates small, so a
#    policy that has learned the task stops drifting away from it.
# 5. **Gradient clipping** (global norm 0.5) bounds a single step when a minibatch is
#    unlucky.
# 6. **Epochs over minibatches** are the point of the surrogate: each rollout of
#    $E \times T = 4 \times 128 = 512$ transitions is shuffled into 4 minibatches of 128 and
#    visited 4 times, 16 gradient steps per rollout instead of 1. Both loops are `lax.scan`s
#    in `make_update`, which knows nothing about where the batch came from: the
#    language-model PPO of a later lecture reuses it with its own per-token loss.
# 7. **Truncation is bootstrapped** (section 2): the auto-reset wrapper keeps the final
#    observation of a truncated episode, and its value is the bootstrap target.
# 8. **One loss, three terms**: policy, critic (weighted 0.5) and an entropy bonus (0.01)
#    that keeps the policy from becoming deterministic too early.
#
# The configuration these numbers come from is `PRESETS["cartpole"]`, CleanRL's defaults:

# %%
cfg = PRESETS["cartpole"]
n_iter = num_iterations(cfg)
batch = cfg.num_envs * cfg.num_steps
print(cfg)
print(f"\n{cfg.total_steps:,} steps = {n_iter} iterations of {batch} transitions; each iteration: "
      f"{cfg.update_epochs} epochs x {cfg.num_minibatches} minibatches of {batch // cfg.num_minibatches}"
      f" = {cfg.update_epochs * cfg.num_minibatches} gradient steps; "
      f"{n_iter * cfg.update_epochs * cfg.num_minibatches:,} in all")

env = AutoReset(make_env(cfg.env))  # the JAX CartPole-v1, reset automatically when an episode ends
graphdef, params0 = init_policy(4, 2, True, cfg, jax.random.key(0))
random_obs = jax.random.uniform(jax.random.key(4), (1000, 4), minval=-0.2, maxval=0.2)
out0 = policy_apply(graphdef, params0, random_obs)
probs0 = jax.nn.softmax(out0.logits)
print(f"\ninitial policy on 1000 random states: P(push right) in [{float(probs0[:, 1].min()):.4f}, "
      f"{float(probs0[:, 1].max()):.4f}]; V(s) in [{float(out0.value.min()):.2f}, "
      f"{float(out0.value.max()):.2f}]")

# %% [markdown]
# ## 5. Training PPO on CartPole
#
# `make_train(cfg, env)` returns `(graphdef, init, run, train)`. `train(key)` is the *whole*
# run of one agent as one pure function: reset 4 environments, then 976 times: act 128 steps
# in all 4 (a `lax.scan` over time of a `vmap` over environments), compute GAE, do the 16
# minibatch steps. It has no Python loop and no host round trip, so `jax.jit(train)` compiles
# it into one XLA program (the environment is JAX too: `envs/cartpole.py`). The result is
# the final `RunnerState` and a dict of per-iteration metrics.

# %%
graphdef, init, run, train = make_train(cfg, env)
start = time.perf_counter()
runner, metrics = jax.jit(train)(jax.random.key(0))
metrics = jax.device_get(metrics)  # numpy arrays, one entry per iteration
print(f"PPO on {cfg.env}: {cfg.total_steps:,} environment steps in "
      f"{time.perf_counter() - start:.1f} s (compilation included)")
print("metrics:", sorted(metrics))


# %%
def smoothed_return(metrics, window=20):
    """Mean return of the episodes that ended in the last `window` iterations, (..., n).

    An iteration may see no episode end (mean_episode_return is NaN there) or a few short
    ones, so we pool episodes over a window rather than average the per-iteration means."""
    pool = lambda x: np.apply_along_axis(lambda r: np.convolve(r, np.ones(window))[:len(r)],
                                         -1, np.asarray(x, float))
    returns, episodes = pool(metrics["episode_return_sum"]), pool(metrics["episodes"])
    return np.where(episodes > 0, returns / np.maximum(episodes, 1), np.nan)


steps = metrics["env_steps"]
per_iteration = np.asarray(mean_episode_return(metrics))
diagnostics = [("episode return", None), ("approx_kl", "KL(π_old ‖ π), mean over the update"),
               ("clip_fraction", "fraction of ratios outside [0.8, 1.2]"),
               ("entropy", "H(π), nats (uniform over 2 actions: log 2)"),
               ("explained_variance", "1 - Var(R - V) / Var(R)"),
               ("value_loss", "critic's loss")]
fig, axes = plt.subplots(2, 3, figsize=(14, 6.5), sharex=True)
for ax, (name, what) in zip(axes.flat, diagnostics):
    if name == "episode return":
        ax.plot(steps, per_iteration, ".", ms=2, alpha=0.3, label="mean_episode_return")
        ax.plot(steps, smoothed_return(metrics), lw=2, label="over 20 iterations")
        ax.axhline(500, color="gray", ls="--", lw=0.8)
        ax.legend(fontsize=8)
        ax.set_title("episode return (500 = time limit)")
    else:
        ax.plot(steps, metrics[name], lw=1)
        ax.set_title(f"{name}: {what}", fontsize=10)
    ax.grid(alpha=0.3)
ax_kl, ax_entropy, ax_ev, ax_vloss = axes[0, 1], axes[1, 0], axes[1, 1], axes[1, 2]
ax_kl.set_yscale("log")
ax_entropy.axhline(np.log(2), color="gray", ls="--", lw=0.8)
ax_ev.set_ylim(-1, 1.05)  # it dips far below -1 at the end; see the text below
ax_vloss.set_yscale("symlog", linthresh=1e-2)
ax_vloss.set_ylim(bottom=0)
for ax in axes[1]:
    ax.set_xlabel("environment steps")
fig.tight_layout()
plt.show()
for name, _ in diagnostics[1:]:
    m = metrics[name]
    print(f"{name:19} first 50 iterations {np.nanmean(m[:50]):9.5f}   last 50 {np.nanmean(m[-50:]):9.5f}")

# %% [markdown]
# How to read a PPO run:
#
# * **Return** climbs, with setbacks, to the time limit of 500 by about the middle of the run
#   and stays there (the annealed learning rate helps it stay).
# * **approx_kl** stays far below 0.01: with this learning rate each update moves the policy
#   very little, and **clip_fraction** is almost always 0. On CartPole with these settings,
#   clipping is a safety net that rarely fires; section 9 makes the updates large enough to
#   need it. If you see approx_kl above ~0.05 or clip_fraction above ~0.3 in your own run,
#   the steps are too big.
# * **Entropy** starts at $\log 2$, the uniform policy of section 4, and falls slowly as the
#   policy becomes more sure (the entropy bonus keeps it from collapsing).
# * **explained_variance** says how much of the variance of the critic's targets it
#   predicts. It is the critic's health check while learning, but it becomes meaningless at
#   the end: once every episode lasts 500 steps, every target is $\approx 1/(1-\gamma) = 100$,
#   the variance of the targets is almost 0 and the ratio is noise. The **value loss**
#   falling to ~0 tells the real story.

# %% [markdown]
# ## 6. Watching the agent
#
# The JAX CartPole draws itself: `env.render(state, params)` returns an RGB frame (numpy,
# outside `jit`). We roll out one episode with the untrained policy and one with the trained
# policy acting greedily (the most likely action), record the states in a `lax.scan`, and
# draw a filmstrip of each. Along the way we record the critic's $V(s_t)$.

# %%
cartpole = make_env(cfg.env)  # the bare task: its episodes end, no auto-reset
env_params = cartpole.default_params()


@jax.jit
def greedy_episode(params, key):
    """One greedy episode of up to 500 steps: states, V(s_t), and whether it is still going."""
    def step(carry, _):
        obs, state, alive = carry
        out = policy_apply(graphdef, params, obs)
        next_obs, next_state, _, terminated, truncated, _ = cartpole.step(
            key, state, greedy_action(out), env_params)
        return (next_obs, next_state, alive & ~(terminated | truncated)), (state, out.value, alive)

    obs, state = cartpole.reset(key, env_params)
    _, (states, values, alive) = jax.lax.scan(step, (obs, state, jnp.array(True)), None,
                                              length=500)
    return states, values, alive


def filmstrip(states, alive, title, n=8):
    length = int(np.asarray(alive).sum())
    picks = np.linspace(0, length - 1, min(n, length)).round().astype(int)
    fig, axes = plt.subplots(1, len(picks), figsize=(2.0 * len(picks), 1.9))
    for ax, t in zip(np.atleast_1d(axes), picks):
        frame = cartpole.render(jax.tree.map(lambda x: x[t], states), env_params)
        ax.imshow(frame[150:330])  # the band of the 400 x 600 frame where cart and pole are
        ax.set_title(f"t = {t}", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{title}: {length} steps", fontsize=11)
    fig.tight_layout()
    plt.show()
    return length


trained = runner.train.params
states0, _, alive0 = greedy_episode(params0, jax.random.key(5))
states1, values1, alive1 = greedy_episode(trained, jax.random.key(5))
filmstrip(states0, alive0, "untrained policy (orthogonal init), greedy")
length = filmstrip(states1, alive1, "PPO after 500k steps, greedy")

# %% [markdown]
# The trained agent balances until the time limit. What does its critic think of the states
# along the way?

# %%
plt.figure(figsize=(8, 3))
plt.plot(np.asarray(values1)[:length], label="V(s_t) of the trained critic")
plt.axhline(1 / (1 - cfg.gamma), color="k", ls="--", label="1 / (1 - γ) = 100: reward 1 forever")
plt.xlabel("t (step of the episode)")
plt.ylabel("V(s_t)")
plt.ylim(0, 110)
plt.legend()
plt.show()
print(f"V(s_t) along the episode: min {float(values1[:length].min()):.2f}, "
      f"max {float(values1[:length].max()):.2f}")

# %% [markdown]
# About 100 everywhere, the value of earning 1 per step forever, discounted by $\gamma = 0.99$,
# even at $t = 499$, one step before the time limit. That is right: the time limit is not part
# of the task we want solved (nor of the observation), and bootstrapping at truncation taught
# the critic the value of the *unlimited* task. Section 8 shows what the critic learns
# otherwise.

# %% [markdown]
# ## 7. Several seeds at once
#
# One RL run is one sample of a noisy process: report several seeds, always. Because `run` is
# a pure function of a `RunnerState`, `jax.vmap` turns it into a function of a *batch* of
# runner states, one per seed, and the 4 agents train in one program. One catch, explained in
# `init_agents`' docstring: do **not** `vmap` the initialisation (a batched QR in the
# orthogonal init can deadlock XLA's CPU thread pool); `init_agents(init, keys)` initialises
# one seed at a time and stacks them.

# %%
seeds = [0, 1, 2, 3]
start = time.perf_counter()
agents = init_agents(init, [jax.random.key(s) for s in seeds])  # every leaf gets a leading (4,)
run_all = jax.jit(jax.vmap(lambda r: run(r, n_iter)))
agents, seed_metrics = run_all(agents)
seed_metrics = jax.device_get(seed_metrics)  # each (4, n_iter)
print(f"{len(seeds)} agents x {cfg.total_steps:,} steps in {time.perf_counter() - start:.1f} s")


# %%
def plot_seeds(metrics, title, ax=None, color=None, label=""):
    ax = ax or plt.figure(figsize=(8, 3.8)).gca()
    curves = smoothed_return(metrics)  # (seeds, n)
    x = metrics["env_steps"][0]
    for i, curve in enumerate(curves):  # one thin line per seed, labelled when alone
        ax.plot(x, curve, lw=0.8, alpha=0.7, color=color, label=None if label else f"seed {i}")
    ax.plot(x, np.nanmean(curves, 0), lw=2.5, color=color or "k", label=f"{label}mean over seeds")
    ax.set_xlabel("environment steps (per agent)")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


plot_seeds(seed_metrics, f"PPO on CartPole-v1, {len(seeds)} seeds in one jax.vmap")
plt.show()
final = np.nanmean(smoothed_return(seed_metrics)[:, -50:], axis=1)
print("return over the last 50 iterations, per seed:", np.round(final, 1))

# %% [markdown]
# The seeds learn at visibly different speeds: the spread between seeds is as large
# as many differences between algorithms reported in papers, which is why one curve proves
# little. Seed 0 here starts exactly like the agent of section 5, but the vmapped program
# adds up its numbers in a different order; RL amplifies the rounding differences (a different
# action, a different episode), and after a few dozen iterations it is a different run. That
# is chaos, not a bug: `tests/test_ppo.py` checks that a vmapped run equals separate runs over
# a few iterations.

# %% [markdown]
# ## 8. Time limits in practice
#
# Section 2 predicted that treating truncation as termination punishes the agent for the
# clock. A ten-line wrapper does exactly that (it reports every truncation as a termination,
# so `gae` never bootstraps it); everything else, seeds included, is the same as in section 7:

# %%
class TruncationIsTermination:
    """Wrap a JaxEnv: time-limit ends are reported as terminations (the mistake, on purpose)."""

    def __init__(self, env):
        self.env = env

    def __getattr__(self, name):  # spaces, reset, default_params, ... from the wrapped task
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    def step(self, key, state, action, params):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        return obs, state, reward, terminated | truncated, jnp.zeros_like(truncated), info


_, init_wrong, run_wrong, _ = make_train(cfg, AutoReset(TruncationIsTermination(make_env(cfg.env))))
start = time.perf_counter()
agents_wrong, wrong_metrics = jax.jit(jax.vmap(lambda r: run_wrong(r, n_iter)))(
    init_agents(init_wrong, [jax.random.key(s) for s in seeds]))
wrong_metrics = jax.device_get(wrong_metrics)
print(f"{len(seeds)} agents in {time.perf_counter() - start:.1f} s")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 4))
plot_seeds(seed_metrics, "truncation bootstrapped (section 7)", ax=ax1, color="tab:blue",
           label="bootstrapped: ")
plot_seeds(wrong_metrics, "truncation treated as termination", ax=ax2, color="tab:red",
           label="truncation = termination: ")
ax2.set_ylim(ax1.get_ylim())
plt.show()

t = np.arange(500)
plt.figure(figsize=(8, 3.6))
for i in range(len(seeds)):
    for agents_, color in ((agents, "tab:blue"), (agents_wrong, "tab:red")):
        params_i = jax.tree.map(lambda x: x[i], agents_.train.params)
        _, v, alive = greedy_episode(params_i, jax.random.key(5))
        v = np.where(np.asarray(alive), np.asarray(v), np.nan)
        plt.plot(t, v, color=color, lw=1, alpha=0.8)
gamma_ = cfg.gamma
plt.plot(t, 1 / (1 - gamma_) * (1 - gamma_ ** (500 - t)), "k:", label="true value if the clock were part of the state")
plt.plot([], [], color="tab:blue", label="critics, truncation bootstrapped")
plt.plot([], [], color="tab:red", label="critics, truncation treated as termination")
plt.axhline(1 / (1 - gamma_), color="k", ls="--", lw=0.8)
plt.xlabel("t (step of a greedy episode)")
plt.ylabel("V(s_t)")
plt.ylim(0, 110)
plt.legend(fontsize=8, loc="lower left")
plt.show()
blind = np.mean(1 / (1 - gamma_) * (1 - gamma_ ** (500 - t)))
print(f"average over t of the clock-aware value: {blind:.1f}")
print("final return per seed, bootstrapped:            ", np.round(final, 1))
print("final return per seed, truncation = termination:",
      np.round(np.nanmean(smoothed_return(wrong_metrics)[:, -50:], axis=1), 1))

# %% [markdown]
# The observation has no clock, so the misled critic cannot follow the dotted curve (the value
# *would* fall towards 1 as the limit nears, if the agent could see the time). It settles on a
# flat compromise well below 100 (compare the average of the dotted curve over an episode,
# printed above), and is wrong almost everywhere: too pessimistic early in an episode, too
# optimistic late. The policy still learns, because the task is easy and the critic's error is
# about the same for both actions, but compare the right end of the learning curves: the
# bootstrapped agents sit at exactly 500, the misled ones keep wobbling just below it, because
# every advantage they receive carries that error. On harder tasks (locomotion with a time
# limit, a language model cut off at its maximum response length) the same mistake can be the
# difference between learning and not.

# %% [markdown]
# ## 9. Falling off the cliff
#
# Section 5 showed clipping almost never firing at CartPole's default learning rate. To see
# what it is for, make the updates aggressive: a 10 times larger learning rate and 10 epochs
# per rollout. One agent clips at $\epsilon = 0.2$, the other has $\epsilon = 10^9$ (never
# clips: plain importance-weighted policy gradient with many reuse steps; `clip_eps` also sets
# the value clip of section 4, so that goes too, and exercise 7 separates the two). 200k
# steps each:

# %%
aggressive = dataclasses.replace(cfg, lr=2.5e-3, update_epochs=10, total_steps=200_000)
cliff = {}
for name, clip_eps in (("clip ε = 0.2", 0.2), ("no clipping (ε = 1e9)", 1e9)):
    cfg_ = dataclasses.replace(aggressive, clip_eps=clip_eps)
    start = time.perf_counter()
    _, m = jax.jit(make_train(cfg_, env)[3])(jax.random.key(0))
    cliff[name] = jax.device_get(m)
    print(f"{name}: {time.perf_counter() - start:.1f} s")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 3.8))
for (name, m), color in zip(cliff.items(), ("tab:blue", "tab:red")):
    ax1.plot(m["env_steps"], smoothed_return(m, 10), color=color, label=name)
    ax2.plot(m["env_steps"], m["approx_kl"], color=color, lw=0.8, label=name)
ax1.set_ylabel("episode return")
ax2.set_ylabel("approx_kl per iteration")
ax2.set_yscale("log")
for ax in (ax1, ax2):
    ax.set_xlabel("environment steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.suptitle(f"lr = {aggressive.lr}, {aggressive.update_epochs} epochs per rollout")
fig.tight_layout()
plt.show()
for name, m in cliff.items():
    r = smoothed_return(m, 10)
    print(f"{name:22} median approx_kl {np.median(m['approx_kl']):.4f}, "
          f"mean clip_fraction {np.mean(m['clip_fraction']):.3f}, "
          f"worst return after first reaching 500: "
          f"{np.nanmin(r[np.argmax(r >= 500):]) if (r >= 500).any() else float('nan'):.0f}")

# %% [markdown]
# With clipping, the KL between successive policies stays around $10^{-3}$ to $10^{-2}$ however
# hard the optimiser pushes, because each sample stops contributing once its ratio leaves
# $[0.8, 1.2]$. Without it, the same optimiser moves the policy a hundred times further or more
# per rollout (compare the median KLs): a policy that already balances can take one step that
# forgets how, the "cliff" of the slide, and must then relearn from its own, now worse, data.
# At this learning rate the clipped agent stumbles too, but it stays near the policy that
# collected the data and recovers quickly. How deep and how often a given seed falls varies
# from run to run (try other keys); the KL gap does not.
#
# The deck's InstructGPT objective (deck "Reinforcement Learning for and with Foundation
# Models", slide "Case Study: ChatGPT": "PPO algorithm", "Added constraint to stay close to SFT
# policy") adds a *second* leash on top: a KL penalty to the SFT model, which keeps the policy
# near where it *started*, not only near where it was one update ago. That is the subject of
# the RLHF lectures.

# %% [markdown]
# ## 10. Continuous actions: a Gaussian policy on Pendulum
#
# Nothing above assumed discrete actions. For a continuous action (Pendulum: a torque in
# $[-2, 2]$ to swing a pendulum up and hold it there), the policy outputs the mean $\mu_\theta(s)$
# of a Gaussian, with a learned, state-independent $\log\sigma$, and
# $\log \pi_\theta(a \mid s) = -\tfrac12 \big((a-\mu)/\sigma\big)^2 - \log\sigma -
# \tfrac12\log 2\pi$ (`gaussian_logprob` in `minirlhf/distributions.py`). The ratio, the
# clipped surrogate and GAE are unchanged. Pendulum also needs observation and reward
# normalisation (`norm_obs`, `norm_reward` in `PRESETS["pendulum"]`).
#
# This time we use the layer above, `minirlhf.gym_train` (what the command line calls):
# `train_agents(cfg, run_dir)` runs the same vmapped trainer in chunks and writes a run folder
# (config, `metrics.jsonl`, `learning_curve.png`, a checkpoint), and `evaluate_agent` loads the
# checkpoint, plays episodes through the gymnasium interface, and can save a filmstrip.

# %%
pendulum_cfg = dataclasses.replace(PRESETS["pendulum"], num_seeds=1)
pendulum_dir = os.path.join(work, "pendulum")
start = time.perf_counter()
summary = train_agents(pendulum_cfg, pendulum_dir)
print(f"{pendulum_cfg.total_steps:,} steps in {time.perf_counter() - start:.0f} s; run folder "
      f"{pendulum_dir}: {sorted(os.listdir(pendulum_dir))}")
print(summary)
evaluation = evaluate_agent(pendulum_dir, episodes=5, filmstrip=os.path.join(pendulum_dir, "filmstrip.png"))
print("greedy evaluation returns:", np.round(evaluation["returns"], 1),
      "(a random policy scores about -1200; about -150 is upright most of the time)")

# %%
def show_png(path, width):
    """Display a PNG from a run folder at `width` inches."""
    image = plt.imread(path)
    plt.figure(figsize=(width, width * image.shape[0] / image.shape[1]))
    plt.imshow(image)
    plt.axis("off")
    plt.show()


show_png(os.path.join(pendulum_dir, "learning_curve.png"), 6.5)
show_png(os.path.join(pendulum_dir, "filmstrip.png"), 14)

# %%
print(f"whole lecture: {time.perf_counter() - LECTURE_START:.0f} s; run folders under {work}")

# %% [markdown]
# ## 11. Exercises
#
# 1. **Baselines.** In section 1, use the baseline $b = 11.5$ (slightly wrong) and $b = 0.5
#    \cdot V$. Are the estimates still unbiased? Which constant $b$ minimises the variance of
#    the first component? (Hint: it is not exactly $V$; derive it from
#    $\mathrm{Var} = \mathbb{E}[(\nabla \log \pi)^2 (R-b)^2] - (\nabla J)^2$.)
# 2. **The $\lambda$ sweep.** Repeat the bias-variance experiment of section 2 with a
#    perfect critic (`v_critic` = the true values) and with a critic that is off by $+10$
#    everywhere. Where is the error smallest now? Then train CartPole with
#    `dataclasses.replace(cfg, gae_lambda=lam)` for $\lambda \in \{0, 0.8, 0.95, 1\}$, 4 seeds
#    each with `init_agents` and `jax.vmap`, and plot the mean learning curves. Does the
#    ranking match your prediction?
# 3. **Turn clipping off at the default settings.** Train `dataclasses.replace(cfg,
#    clip_eps=1e9)` with 4 seeds. Compare approx_kl with section 5. Why does it barely matter
#    here, and what does section 9 say about when it does?
# 4. **Find the cliff's edge.** With clipping off, sweep the learning rate
#    ($2.5 \cdot 10^{-4}$ to $10^{-2}$) and the number of epochs (1, 4, 10, 30), and plot the
#    median approx_kl against the final return. Is there a KL above which runs fail? Then turn
#    clipping back on: does PPO still fail at the largest values, and why can clipping not
#    save a run whose *learning rate* alone moves the policy too far in the first minibatch?
# 5. **Time limits.** Give the agent of section 8 a clock: wrap the task so that the
#    observation also holds $t / 500$ (it lives in `state.t`; the observation space must grow
#    to 5 dimensions). Does the critic learn the dotted curve now? Is the policy better than the
#    bootstrapped agent without a clock, and why not?
# 6. **Advantage normalisation and the entropy bonus.** Switch off `norm_adv`, then set
#    `ent_coef=0`, then multiply CartPole's reward by 100 (wrap `step` as in section 8). Which
#    change hurts which run, and which of the implementation details of section 4 protects
#    against the reward scale?
# 7. **Value clipping.** Train with `clip_vloss=False`, 4 seeds, and compare the value loss
#    and the returns with section 7. Then explain, from `clipped_value_loss`, why a sample
#    stops pulling $V(s)$ once it has moved $\epsilon = 0.2$ towards its target within a
#    rollout, and what that means when the targets are around 100.
# 8. **Acrobot.** Train `PRESETS["acrobot"]` with `train_agents` (4 seeds) and evaluate it
#    with a filmstrip. Its reward is $-1$ per step until the goal: which sections' arguments
#    change sign, and what does a *termination* mean there?
# 9. **Towards language models.** In the deck's token MDP (slide "How to model as an MDP?")
#    the episode ends when the model emits EOS, or when it reaches the maximum response
#    length. Which one is a termination and which a truncation? What are $T$, $E$, and the
#    reward at each step, if the reward model scores the whole response once?
