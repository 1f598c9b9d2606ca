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
# # Lecture 4 — RLHF with PPO: optimising a language model against a reward model
#
# The deck "Large Language Models and RL from Human Feedback", slide **"High-Level Recipe for
# ChatGPT"**:
#
# 1. Unsupervised pre-training
# 2. Supervised finetuning (behavioral cloning) from human demonstrations
# 3. Collect preference rankings over outputs to train a reward function
# 4. Perform policy gradient updates using RL with learned reward
#
# Lecture 1 built steps 1 and 2, lecture 3 step 3, and lecture 2 the policy-gradient
# machinery (PPO on CartPole). This lecture puts them together: **step 4**, InstructGPT's
# "Step 3: Optimize a policy against the reward model using the PPO reinforcement learning
# algorithm". Deck "Reinforcement Learning for and with Foundation Models", slide **"Case Study:
# ChatGPT"**: "PPO algorithm", "Added constraint to stay close to SFT policy",
#
# $$\text{objective}(\phi) = E_{(x,y) \sim D_{\pi_{\phi}^{\text{RL}}}} \big[r_{\theta}(x, y)
#   - \beta \log(\pi_{\phi}^{\text{RL}}(y | x) / \pi^{\text{SFT}}(y | x))\big].$$
#
# That slide names the reward model $r_\theta$ and the policy $\pi_\phi$; the slides "How to
# model as an MDP?" and "Reward shaping" of the other deck name the policy $\pi_\theta$ and the
# SFT model $\pi_0$. We follow the second, and write $r_\phi(x, y)$ for the reward model's score
# (as `minirlhf/rollout.py` does), so the objective reads
# $E_{x \sim D,\, y \sim \pi_\theta}\big[r_\phi(x, y)\big] - \beta\, \mathrm{KL}(\pi_\theta \,\|\, \pi_0)$.
#
# | section | idea | minirlhf |
# | --- | --- | --- |
# | 1 | the whole recipe in two minutes: SFT vs. best-of-n vs. PPO | `minirlhf/pipeline.py` |
# | 2 | the language model as a token MDP: one rollout, token by token | `minirlhf/rollout.py` |
# | 3 | KL shaping: the per-token penalty, three KL estimators, and why the penalty is there | `minirlhf/rollout.py`, `minirlhf/distributions.py` |
# | 4 | PPO on a language model: what is reused from lecture 2, the critic, diagnostics | `minirlhf/rlhf.py`, `minirlhf/ppo.py`, `minirlhf/losses.py` |
# | 5 | adaptive KL control | `minirlhf/rlhf.py` |
# | 6 | best-of-n: a reward model without RL | `minirlhf/rlhf.py` |
# | 7 | reward hacking, shown: the same run without the KL penalty | `minirlhf/rlhf.py` |
# | 8 | exercises | |
#
# Everything runs on a laptop CPU, in about 3 minutes on 2 cores; most of it is the pipeline
# of section 1 and the second PPO run of section 7.
#
# **Setup.** Install the package once from the repository root (`pip install -e .`; in Colab,
# `!pip install` the repository first), then run the cells top to bottom.

# %%
import dataclasses
import inspect
import os
import shutil
import tempfile
import time
from pathlib import Path

# Training loops show tqdm progress bars; "0" turns them back on.
os.environ.setdefault("MINIRLHF_QUIET", "1")

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

from minirlhf.checkpoint import load_model
from minirlhf.distributions import categorical_kl, kl_estimate
from minirlhf.envs import make_task
from minirlhf.logging import read_metrics
from minirlhf.pipeline import PRESETS, preset, run_pipeline, stage_configs
from minirlhf.reward_model import load_reward_model
from minirlhf.critic import load_critic
from minirlhf.rlhf import (AdaptiveKLController, Evaluator, Frozen, along_path, best_of_n_curve,
                           best_of_n_kl, best_of_n_sizes, kl_controller, lm_ppo_loss, load_models,
                           train_rlhf)
from minirlhf.rollout import kl_shaped_rewards, response_outputs, rollout, token_gae
from minirlhf.tokenizer import EOS_ID

# %matplotlib inline

LECTURE_START = time.perf_counter()
work = Path(tempfile.mkdtemp(prefix="minirlhf_lecture04_"))  # run folders go here, never the repo
task = make_task("reviews")
print("jax", jax.__version__, "on", jax.devices())

# %% [markdown]
# ## 1. The whole recipe, end to end
#
# *Deck "Large Language Models and RL from Human Feedback", slide "High-Level Recipe for
# ChatGPT".* `run_pipeline` runs the four steps one after the other, each stage in its own run
# folder (checkpoints, `metrics.jsonl`, plots), on the review task of lectures 1 and 3:
#
# 1. **pretrain** a character-level transformer on free-form reviews;
# 2. **SFT** on demonstrations, which end with a rating in a fixed format (" rating: 4/5");
# 3. **preferences**: the simulated labelers of lecture 3 compare pairs of *SFT samples*, and a
#    **reward model** (SFT's backbone plus a scalar head) learns from the comparisons with the
#    Bradley-Terry loss;
# 4. **PPO** from the SFT model against the reward model, with a KL penalty to the SFT model.
#
# The `"small"` preset shrinks every stage (a 2-layer, 64-wide model, short budgets) while
# keeping budgets at which every stage still learns something. These are its overrides of the
# defaults:

# %%
for name, value in PRESETS["small"].items():
    print(f"   {name:<32} {value}")

# %% [markdown]
# The next cell is the long one (about two minutes on 2 cores). The pipeline's last two
# stages, GRPO on the same reward model and DPO on the same pairs, are the subjects of
# lectures 5 and 7, so we leave them out here (`grpo_stage=False`,
# `dpo_stage=False`). When it finishes it prints its
# summary: the pretraining and SFT losses, the reward model's accuracy, and a table that
# compares three ways of answering the same held-out prompts (`rlhf.n_eval` of them):
#
# * **SFT**: sample the SFT model once per prompt (the starting point);
# * **best-of-n**: sample the SFT model $n$ times and keep the response the reward model
#   scores highest (section 6; no training at all);
# * **PPO**: sample the policy that PPO trained (sections 2-5).
#
# Its columns: the **gold reward**, the hidden "true" quality of a response (sentiment times
# fluency, minus a penalty for disfluency, plus a bonus for the format, minus a penalty for a
# rating that contradicts the words; `envs/reviews.py`, `ReviewTask.gold_reward`), which the
# labelers judge by and which only a simulation can measure; the **reward model's score**,
# normalised to mean 0 and standard deviation 1 over SFT samples (lecture 3); the **KL to
# SFT** in nats per response (section 3); the share of responses in the demonstrations'
# **format**; the share whose **rating agrees** with their words; and the **length** in tokens
# (characters).

# %%
out = work / "small"
start = time.perf_counter()
summary = run_pipeline(dataclasses.replace(preset("small"), grpo_stage=False, dpo_stage=False),
                       out)
print(f"\npipeline: {time.perf_counter() - start:.0f} s")

# %% [markdown]
# The PPO stage writes two plots into its run folder, `ppo/rlhf.png`: the reward model's score
# and the gold reward of each iteration's batch of training responses (and the gold reward on
# the held-out prompts every `eval_every` iterations), with the KL to SFT and $\beta$ on the
# right; and `ppo/gold_vs_score.png`: every held-out response as a point (reward-model score,
# gold reward), for the three policies.

# %%
display(Image(filename=str(out / "ppo" / "rlhf.png")))
display(Image(filename=str(out / "ppo" / "gold_vs_score.png")))

# %% [markdown]
# Read the table with two questions in mind, which the rest of the lecture takes apart:
#
# * **Did the reward model's score go up, and did the gold reward follow it?** PPO maximises
#   the score, not the gold reward, which it never sees; the two are only as aligned as the
#   reward model is right (lecture 3). The reward model of this run is far from perfect (its
#   held-out gold accuracy is printed above), and the training curves are noisy: each point
#   is the mean over one batch of responses.
# * **What did it cost, in KL?** Best-of-n and PPO both move away from the SFT model; the KL
#   column says how far. Section 6 compares them at equal KL.
#
# The configuration of the PPO stage (the `RLHFConfig` that `stage_configs` pointed at the SFT
# and reward-model run folders) is what the next sections take apart:

# %%
rlhf_cfg = stage_configs(preset("small"), out).rlhf
for name in ("iterations", "batch_size", "beta", "kl_control", "lr", "critic", "value_lr",
             "gamma", "gae_lambda", "clip_eps", "vf_coef", "update_epochs", "num_minibatches",
             "n_eval", "best_of_n"):
    print(f"   {name:<16} {getattr(rlhf_cfg, name)}")
print(f"   rollout          {rlhf_cfg.rollout}")
print(f"   init             {rlhf_cfg.init}\n   reward           {rlhf_cfg.reward}")

# %% [markdown]
# ## 2. The language model as a token MDP
#
# *Deck "Large Language Models and RL from Human Feedback", slide "How to model as an MDP?":*
#
# * "X: set of possible tokens": here the tokenizer's 42 characters plus PAD, BOS and EOS;
# * "State space: all possible sequences of tokens ($X^*$)";
# * "Initial state: task specific prompt $s_0 = (x_0, \dots, x_m)$": BOS and a review opening
#   such as "the pizza was";
# * "Action space: all possible tokens X": the next character;
# * "Transitions: Deterministic. Just append action token to state to get next state":
#   $s_{t+1} = (x_0, \cdots, x_m, a_0, \cdots, a_t)$ (the slide's formula lists one action
#   too many, $a_{t+1}$: the next state is $s_t$ with $a_t$ appended);
# * "Reward: $r: S \times A \rightarrow$ Reals".
#
# The policy $\pi_\theta(a_t \mid s_t)$ is the softmax of the transformer's logits at the last
# position of $s_t$: a language model *is* a policy, and sampling a response is running an
# episode. The episode ends when the policy emits EOS, or after $N$ = `max_new_tokens` actions
# (the response is then flagged `truncated`). The only reward from outside is the reward
# model's score $r_\phi(x, y)$ of the finished response $y = (a_0, \dots, a_T)$; section 3
# spreads the KL penalty over the tokens.
#
# In code (`minirlhf/rollout.py`), `rollout(...)`:
#
# 1. samples one response per prompt with `generate` (KV cache, jitted `lax.scan`s), at
#    temperature 1 and with no top-k/top-p: PPO's ratio $\pi_\theta / \pi_{\theta_{old}}$ is only
#    right if the data come from $\pi_{\theta_{old}}$ itself;
# 2. runs one full forward of the policy over prompt + response (`response_outputs`), and
#    reads off $\log\pi_\theta(a_t \mid s_t)$ at the position *before* each token; the same for
#    the frozen reference $\pi_0$ (the SFT model); the critic, a separate transformer (section
#    4), reads its value $V(s_t)$ at the same positions;
# 3. scores BOS + prompt + response with the reward model;
# 4. turns all of it into per-token rewards (`kl_shaped_rewards`, section 3).
#
# We load the models from the pipeline's run folders: the policy PPO trained, the reference
# $\pi_0$, the reward model and the critic. `load_models` is what `train_rlhf` calls: it
# returns the *initial* policy (the SFT model), the reference, the reward model and the
# initial critic; `load_model` reads the trained policy of `ppo/` and `load_critic` the
# trained critic.

# %%
(policy_graphdef, sft_params, tokenizer, sft_meta), (ref_graphdef, ref_params), \
    (rm_graphdef, rm_params, rm_meta), (critic_graphdef, critic_init) = load_models(rlhf_cfg)
_, ppo_params, _, ppo_meta = load_model(out / "ppo")
_, critic_params = load_critic(out / "ppo")
_, _, _, _, reward_fn = load_reward_model(out / "reward")  # normalised scores, jittable
# Host (NumPy) copies, like the parameters train_rlhf returns: then one compilation of
# `respond` below serves every policy of this lecture (jit also keys on where arrays live).
sft_params, ppo_params = jax.device_get((sft_params, ppo_params))
print("critic:", ppo_meta["config"]["critic"], "| iterations trained:", ppo_meta["iteration"],
      "| final beta:", ppo_meta["beta"])

P = 1 + task.max_prompt_chars  # BOS + the longest prompt
prompts = task.prompts(8, seed=2024)
prompt, prompt_mask = tokenizer.encode_batch(prompts, bos=True, padding="left", length=P)
beta = rlhf_cfg.beta


@jax.jit
def respond(params, key):
    """One episode per prompt of the token MDP, scored and KL-shaped (an LMRollout)."""
    return rollout(policy_graphdef, params, ref_graphdef, ref_params, reward_fn, prompt,
                   prompt_mask, key, rlhf_cfg.rollout, beta)


@jax.jit
def values_of(critic, tokens, mask):
    """The critic's V(s_t) at every response token, (B, N)."""
    return response_outputs(critic_graphdef, critic, prompt, prompt_mask, tokens, mask).values


ro = jax.device_get(respond(ppo_params, jax.random.key(4)))
ro = ro.replace(values=np.asarray(values_of(critic_params, ro.tokens, ro.mask)))
for field in dataclasses.fields(ro):
    print(f"   {field.name:<13} {getattr(ro, field.name).shape}")

# %% [markdown]
# Every field is one row per prompt: $B = 8$ prompts, $P$ prompt tokens (left-padded, so
# every response starts at the same column), $N$ response tokens. Here is one episode, token by
# token: the action $a_t$, its log-probability under the policy and under the reference, the
# per-token KL estimate $\mathrm{kl}_t = \log\pi_\theta(a_t|s_t) - \log\pi_0(a_t|s_t)$, the
# critic's $V(s_t)$, and the shaped reward $r_t$ (section 3).

# %%
i = 0
n = int(ro.mask[i].sum())
print(f"s_0 = BOS + {prompts[i]!r}   (left-padded to P = {P} tokens)")
print(f"response: {tokenizer.decode(ro.tokens[i])!r}")
print(f"\n{'t':>3} {'a_t':>6} {'log pi_theta':>13} {'log pi_0':>9} {'kl_t':>7} {'V(s_t)':>7} {'r_t':>7}")
for t in range(n):
    tok_id = int(ro.tokens[i, t])
    a = "EOS" if tok_id == EOS_ID else repr(tokenizer.decode([tok_id]))
    print(f"{t:>3} {a:>6} {ro.logprobs[i, t]:>13.3f} {ro.ref_logprobs[i, t]:>9.3f} "
          f"{ro.kl[i, t]:>7.3f} {ro.values[i, t]:>7.3f} {ro.rewards[i, t]:>7.3f}")
shaped = ro.rewards[i].sum()
expected = ro.score[i] - rlhf_cfg.rollout.missing_eos_penalty * ro.truncated[i] - beta * ro.kl[i].sum()
print(f"\nreward-model score r_phi(x, y) = {ro.score[i]:+.3f}, truncated: {bool(ro.truncated[i])}, "
      f"gold reward {task.gold_reward(tokenizer.decode(ro.tokens[i])):+.3f}")
print(f"sum_t kl_t = log pi_theta(y|x) - log pi_0(y|x) = {ro.kl[i].sum():+.3f} nats")
print(f"sum_t r_t = {shaped:+.3f} = score - penalty * truncated - beta * sum_t kl_t = {expected:+.3f}")
assert abs(shaped - expected) < 1e-4

# %% [markdown]
# Things to notice:
#
# * **The reward arrives once**, at the last token (EOS, if the response finished); every other
#   token only carries the small KL term. This is the credit-assignment problem of the token
#   MDP: which of the few dozen characters earned the score? The critic's job (section 4)
#   is to predict, from each prefix, the score still to come.
# * **$\mathrm{kl}_t$ has both signs.** It is a *sample* of a KL, not a KL: where the policy chose
#   a token that it now likes less than the SFT model did, the log-ratio is negative and the
#   penalty becomes a small bonus. Only its expectation over $a_t \sim \pi_\theta$ is the
#   (non-negative) KL of section 3.
# * **The sums tell the whole story**: by the chain rule of probability,
#   $\sum_t \log\pi_\theta(a_t|s_t) = \log\pi_\theta(y|x)$, so the shaped rewards add up to
#   exactly the integrand of the InstructGPT objective,
#   $r_\phi(x, y) - \beta \log(\pi_\theta(y|x) / \pi_0(y|x))$ (less the truncation penalty).

# %% [markdown]
# ## 3. KL shaping: the per-token penalty, and why it is there
#
# *Deck "Large Language Models and RL from Human Feedback", slide "Reward shaping":* "We don't
# want the learned policy to deviate too much based on RL. Add a divergence term (KL
# divergence) to reward", which "Penalizes policy from taking actions that are super unlikely
# given imitation policy":
#
# $$\hat r(s, a) = r(s, a) - \beta\, \mathrm{KL}(\pi_\theta(a|s) \,\|\, \pi_0(a|s))
#   = r(s, a) - \beta\big(\log\pi_\theta(a_t|s_t) - \log\pi_0(a_t|s_t)\big).$$
#
# In the token MDP, $r(s, a)$ is zero except at the last token $T$, where it is the reward
# model's score. So, in `kl_shaped_rewards` (`minirlhf/rollout.py`):
#
# $$r_t = -\beta\,\mathrm{kl}_t \quad\text{for every response token } t, \qquad
#   r_T \mathrel{+}= r_\phi(x, y) \;(- \text{ a penalty of 1 if the response was truncated}).$$
#
# (The code's $r_t$ is the reward for taking $a_t$ in $s_t$, what Sutton and Barto call $R_{t+1}$.)
# A hand example: two responses, the first of 3 tokens (its mask ends there, the rest is
# padding), the second of 5; scores $1.0$ and $-0.5$; $\beta = 0.2$ (`RLHFConfig`'s default).

# %%
logp = jnp.array([[-0.5, -1.0, -0.2, 0.0, 0.0], [-2.0, -0.1, -0.3, -1.5, -0.4]])
ref_logp = jnp.array([[-0.7, -0.9, -1.2, 0.0, 0.0], [-1.0, -0.1, -0.6, -3.5, -0.4]])
mask = jnp.array([[True, True, True, False, False], [True] * 5])
score = jnp.array([1.0, -0.5])
rewards, kl = kl_shaped_rewards(logp, ref_logp, score, mask, beta=0.2)
print("kl_t (k1 = log pi_theta - log pi_0):\n", np.round(kl, 3))
print("r_t:\n", np.round(rewards, 3))
print("sum_t r_t:", np.round(rewards.sum(1), 3), " = score - 0.2 * sum_t kl_t:",
      np.round(score - 0.2 * kl.sum(1), 3))

# %% [markdown]
# The score lands on the last token *inside the mask* (`last_real_index(mask)`), so padding
# after EOS never moves it; padding gets no reward and no KL.
#
# **Which KL?** The per-token term is an estimate from one sampled token. The exact KL at a
# state is a sum over the whole vocabulary, $\mathrm{KL}(\pi_\theta \| \pi_0)(s) = \sum_a
# \pi_\theta(a|s) \log\frac{\pi_\theta(a|s)}{\pi_0(a|s)}$ (the slide's $D_{KL}(P\|Q) = \sum_x
# P(x)\log\frac{P(x)}{Q(x)}$; `categorical_kl`), and over *sequences* it is a sum over all
# $|X|^N$ responses, which nobody can compute. From a sample $a \sim \pi_\theta$ with
# $\log\rho = \log\pi_0(a) - \log\pi_\theta(a)$, Schulman's note "Approximating KL divergence"
# (2020) gives three estimators (`kl_estimate` in `minirlhf/distributions.py`):
#
# | | formula | unbiased? | sign |
# | --- | --- | --- | --- |
# | k1 | $-\log\rho$ | yes | either |
# | k2 | $\tfrac12(\log\rho)^2$ | no (small bias when $\pi_\theta \approx \pi_0$) | $\ge 0$ |
# | k3 | $(\rho - 1) - \log\rho$ | yes ($E_{\pi_\theta}[\rho] = 1$) | $\ge 0$ |
#
# We compare them on two made-up distributions over a 45-token vocabulary, one close to the
# reference and one far from it, with 4,000 samples each.

# %%
V, n_samples = 45, 4000
rng = np.random.default_rng(0)
ref_logits = 1.5 * rng.standard_normal(V)
noise = rng.standard_normal(V)
cases = {"close (pi_theta near pi_0)": ref_logits + 0.3 * noise,
         "far (pi_theta far from pi_0)": ref_logits + 2.0 * noise}
print(f"{'':30}{'exact KL':>9}   " + "".join(f"{k + ' mean':>10}{k + ' std':>8}{'<0':>6}   "
                                            for k in ("k1", "k2", "k3")))
for name, pol_logits in cases.items():
    logp_all = np.asarray(jax.nn.log_softmax(pol_logits), np.float64)
    ref_logp_all = np.asarray(jax.nn.log_softmax(ref_logits), np.float64)
    probs = np.exp(logp_all)
    a = rng.choice(V, size=n_samples, p=probs / probs.sum())  # a ~ pi_theta
    row = f"{name:30}{float(categorical_kl(pol_logits, ref_logits)):>9.4f}   "
    for k in ("k1", "k2", "k3"):
        est = np.asarray(kl_estimate(logp_all[a], ref_logp_all[a], k))
        row += f"{est.mean():>10.4f}{est.std():>8.3f}{(est < 0).mean():>6.0%}   "
    print(row)

# %% [markdown]
# k1 and k3 are both unbiased, but k1's single samples are noisy and often negative; k3 has a
# much smaller spread near $\pi_0$, which is where RLHF lives. (Far from it, k3 can be the
# noisier one: its $\rho = \pi_0/\pi_\theta$ blows up on the rare tokens that $\pi_0$ likes far
# more than $\pi_\theta$ does; compare the standard deviations of the second row.) k2 is biased,
# and the bias grows with the distance. Why does minirlhf's shaped reward use **k1** by default
# (`RolloutConfig.kl_estimator`), then? Because its *sum over a response* is exactly the log-ratio
# of the sequence, $\log\pi_\theta(y|x) - \log\pi_0(y|x)$: with k1, the return of an episode is
# exactly the InstructGPT objective's integrand, whose expectation is
# $E[r_\phi] - \beta\,\mathrm{KL}(\pi_\theta(\cdot|x) \| \pi_0(\cdot|x))$ over *whole responses*.
# This is Ziegler et al.'s and InstructGPT's choice. (GRPO and DeepSeek put a k3 term in the
# *loss* instead of the reward; `kl_estimator="k3"` tries k3 in the reward.)
#
# **Why the penalty at all?** *Slide "Controlling Divergence":* "Why do we need to minimize
# divergence? Aren't we trying to be better than the sub-optimal SFT?" Two reasons:
#
# * "Reward Model Input Distribution: The preferences were given over responses from the SFT,
#   so the data we feed through the reward model should stay in that distribution for
#   accurate reward representations." Lecture 3, section 7 showed our reward model scoring
#   text it had never seen (a repeated word) above the best demonstrations.
# * "Over-Optimization / Reward Hacking: Because reward maximization is incentivized, the model
#   may try to exaggerate responses" (slide "Overoptimized policy": a summary that piles up
#   "???" and exaggerations).
#
# The KL-regularised objective has a closed-form optimum, which shows what $\beta$ does. For
# one prompt, maximising $E_{y\sim\pi}[r(y)] - \beta\,\mathrm{KL}(\pi\|\pi_0)$ over *all*
# distributions gives
#
# $$\pi^*_\beta(y) = \frac{1}{Z}\, \pi_0(y) \exp\big(r(y)/\beta\big):$$
#
# the SFT distribution, re-weighted towards high reward, and the more so the smaller $\beta$.
# At $\beta \to \infty$ it is $\pi_0$; at $\beta \to 0$ it puts all its mass on the reward model's
# favourite response, **however unlikely that response was under SFT**. A toy with five
# responses to "the pizza was", a made-up reward model that ranks the four fluent ones
# correctly but likes a rare piece of babble best, and the task's real gold reward:

# %%
toy = [(" good. i liked the sauce. rating: 4/5", 0.40, 1.0),
       (" okay. the crust was fine. rating: 3/5", 0.30, 0.2),
       (" bad. i hated the cheese. rating: 1/5", 0.25, -1.0),
       (" great great great great.", 0.04, 1.2),
       (" grooove goood.", 0.01, 2.0)]  # (response, pi_0, reward model)
pi0 = np.array([p for _, p, _ in toy])
r_toy = np.array([r for _, _, r in toy])
gold_toy = np.array([task.gold_reward(y) for y, _, _ in toy])
for (y, p, r), g in zip(toy, gold_toy):
    print(f"   {y!r:42} pi_0 {p:.2f}   reward model {r:+.1f}   gold {g:+.2f}")


def kl_optimal(beta_):
    """pi*_beta = pi_0 exp(r / beta) / Z, and its KL to pi_0."""
    w = np.log(pi0) + r_toy / beta_
    pi = np.exp(w - w.max())
    pi /= pi.sum()
    return pi, float(np.sum(pi * np.log(pi / pi0)))


betas = np.logspace(1.5, -2, 200)
curve = [kl_optimal(b) for b in betas]
kls = np.array([k for _, k in curve])
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
ax1.plot(kls, [pi @ r_toy for pi, _ in curve], label="E[reward-model score]")
ax1.plot(kls, [pi @ gold_toy for pi, _ in curve], label="E[gold reward]")
for b in (1.0, 0.3, 0.1):
    pi, k = kl_optimal(b)
    ax1.plot(k, pi @ gold_toy, "o", color="C1")
    ax1.annotate(f"β = {b}", (k, pi @ gold_toy), xytext=(4, -12), textcoords="offset points", fontsize=8)
ax1.set_xlim(-0.1, kls.max() * 1.1)
ax1.set_xlabel("KL(π*_β || π_0), nats")
ax1.set_title("the optimum of  E[r] - β KL,  as β goes from 30 to 0.01")
ax1.legend(fontsize=8)
ax2.stackplot(betas, np.array([pi for pi, _ in curve]).T, labels=[repr(y[:22]) for y, _, _ in toy])
ax2.set_xscale("log")
ax2.invert_xaxis()
ax2.set_xlabel("β (decreasing →)")
ax2.set_ylabel("π*_β(y)")
ax2.set_title("where the optimal policy puts its mass")
ax2.legend(fontsize=7, loc="lower left")
fig.tight_layout()
plt.show()

# %% [markdown]
# As $\beta$ falls, the optimal policy first moves mass from the negative and neutral reviews to
# the good one (score and gold both rise), then on to the babble that the reward model
# over-rates (score still rises, gold falls). **The reward model's score always goes up with
# the KL; the gold reward goes up, then down.** The KL penalty keeps the policy in the region
# where the reward model was trained and can be trusted; section 7 shows the same curve with
# a real policy and a real reward model.

# %% [markdown]
# ## 4. PPO on a language model
#
# *Deck "Large Language Models and RL from Human Feedback", slide "Proximal Policy Optimization
# (PPO)":* "Used to train ChatGPT and other LLMs"; "Many Policy Gradient algorithms have
# stability problems. This can be avoided if we avoid making too big of a policy update." (Deck
# "RL from Human Feedback and Large Language Models", slide "Reasons to use PPO": "A too
# significant step in a policy update can result in falling 'off the cliff'", lecture 2's
# section 9.)
#
# **Nothing in the algorithm is new.** One PPO iteration, `make_iteration` in
# `minirlhf/rlhf.py`, is lecture 2's iteration with a different source of experience:
#
# 1. `rollout`: $B$ = `batch_size` prompts, one response each, KL-shaped rewards (sections 2, 3);
# 2. `token_gae`: GAE over each response, through the very same `advantages.gae` as CartPole,
#    with $\gamma = 1$ (a response's score counts fully at every one of its tokens),
#    $\lambda = 0.95$ (below, why) and the episode *terminated* at its last token, truncated or
#    not: once the reward model has scored the response, nothing follows, so there is nothing
#    to bootstrap (unlike a gym time limit, lecture 2, section 8);
# 3. advantages whitened over the batch's response tokens;
# 4. `ppo.make_update`, unchanged: `update_epochs` passes over shuffled minibatches, each a
#    gradient step on `lm_ppo_loss`, which is lecture 2's `clipped_surrogate_loss` and
#    `clipped_value_loss` (from `minirlhf/losses.py`) with the response mask: **every response
#    token is one step** of the MDP;
# 5. `controller.update`: the KL coefficient for the next iteration (section 5).
#
# The whole loss:

# %%
print(inspect.getsource(lm_ppo_loss))

# %% [markdown]
# **The critic is a second transformer, initialised from the reward model**
# (`RLHFConfig.critic = "reward_model"`; InstructGPT: "we initialize the value function from
# the RM"). A value function answers "what will this response score?" from a prefix; the
# reward model answers the same question from a whole response, so it is where a critic
# should start. `critic_from_reward_model` (`minirlhf/critic.py`) copies the reward model's
# transformer and turns its score head, read at the last token, into a value head read at
# *every* token, with the reward model's normalisation folded in: at the last state of a
# response (everything but its final token) $V$ is the reward model's normalised score of
# that text; on an earlier prefix it is the reward model's guess from what is there, from
# inputs it was never trained on, which the critic's own optimiser (learning rate
# `value_lr`) corrects within a few iterations. The other design, `critic="shared"` (OpenAI's
# lm-human-preferences, TRL's value-head models), puts a zero-initialised value head on the
# policy's own transformer: one forward pass gives both logits and values, a third less time
# per iteration here, but on features trained to predict the next character it learned almost
# nothing (explained variance near 0 for all of the default run's 60 iterations; exercise 9).
#
# **Credit assignment, and $\lambda$.** GAE (lecture 2, section 2) sums TD errors,
# $A_t = \sum_{l \ge 0} (\gamma\lambda)^l \delta_{t+l}$ with
# $\delta_t = r_t + \gamma V(s_{t+1}) - V(s_t)$. With $\gamma = 1$ the return from token $t$ is
# the reward still to come, $G_t = \sum_{t' \ge t} r_{t'} = r_\phi(x, y) -
# \beta\sum_{t' \ge t}\mathrm{kl}_{t'}$, and:
#
# * at $\lambda = 1$ the sum telescopes to $A_t = G_t - V(s_t)$, the Monte-Carlo return minus
#   the value baseline: **every token gets the whole final score**, whatever the critic says
#   (a baseline shifts the advantage, it does not bias the gradient), and with it all the
#   noise of the other tokens' choices;
# * at $\lambda < 1$ the advantage leans on the critic instead of the distant reward. With a
#   critic that knows something, $\delta_t \approx V(s_{t+1}) - V(s_t)$ is the change in its
#   forecast that token $a_t$ caused: the word "awful" gets the blame for the drop it causes,
#   at once, not through 40 more tokens of noise (lecture 2's bias-variance trade). With a
#   critic that knows nothing, $V \approx 0$, it is $A_t \approx \sum_l \lambda^l r_{t+l}$, and
#   the score, which arrives at the last token $T$, reaches token $t$ with weight
#   $\lambda^{T-t}$: $0.95^{40} \approx 0.13$ at the start of a 40-character response. The
#   first characters after "the pizza was", the ones that decide the sentiment, get the least
#   credit.
#
# So $\lambda < 1$ is only as good as the critic, and InstructGPT's $\lambda = 0.95$ is the
# default here because the critic starts from the reward model. On section 2's episode, the
# advantages at $\lambda = 1$ and at $\lambda = 0.95$ with the trained critic (left), and with
# the zero value head a shared critic starts from (right):

# %%
LAM = 0.95
zero_values = np.zeros_like(ro.values)  # a fresh shared value head
adv = {(lam, head): np.asarray(jax.device_get(token_gae(ro.rewards, v, ro.mask, rlhf_cfg.gamma,
                                                        lam)[0]))[i, :n]
       for lam in (1.0, LAM) for head, v in (("trained", ro.values), ("zero", zero_values))}
reward_to_go = np.cumsum(ro.rewards[i, :n][::-1])[::-1]  # G_t
assert np.allclose(adv[1.0, "trained"], reward_to_go - ro.values[i, :n], atol=1e-4)  # G_t - V
assert np.allclose(adv[1.0, "zero"], reward_to_go, atol=1e-4)  # no baseline: G_t itself

ts = np.arange(n)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 3.8), sharey=True)
ax1.plot(ts, ro.rewards[i, :n], "o-", ms=3, color="C0", label="r_t (shaped reward)")
ax1.plot(ts, reward_to_go, color="C1", label="return G_t (γ = 1)")
ax1.plot(ts, ro.values[i, :n], color="C2", label="V(s_t), the trained critic")
ax1.plot(ts, adv[1.0, "trained"], "--", color="C3", label="advantage, λ = 1  (= G_t - V(s_t))")
ax1.plot(ts, adv[LAM, "trained"], ":", color="C4", label=f"advantage, λ = {LAM}")
ax1.set_title(f"critic after {ppo_meta['iteration']} PPO iterations", fontsize=9)
ax2.plot(ts, ro.rewards[i, :n], "o-", ms=3, color="C0", label="r_t (shaped reward)")
ax2.plot(ts, adv[1.0, "zero"], "--", color="C3", label="advantage, λ = 1  (= G_t)")
ax2.plot(ts, adv[LAM, "zero"], ":", color="C4", label=f"advantage, λ = {LAM}")
ax2.plot(ts, LAM ** (n - 1 - ts) * ro.score[i], color="gray", lw=0.8,
         label=f"{LAM}^(T-t) × score")
ax2.set_title("zero value head (a shared critic's first iteration)", fontsize=9)
for ax in (ax1, ax2):
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xlabel("response token t")
    ax.legend(fontsize=7)
fig.suptitle(f"one episode of the token MDP: {prompts[i]!r} → {tokenizer.decode(ro.tokens[i])!r}",
             fontsize=9)
fig.tight_layout()
plt.show()
print(f"with a zero value head the score reaches the first token (T - t = {n - 1}) with weight "
      f"{LAM}^{n - 1} = {LAM ** (n - 1):.2f} at λ = {LAM}, and 1 at λ = 1")

# %% [markdown]
# On the right, what $\lambda = 0.95$ would do with a critic that knows nothing: the
# advantage fades geometrically towards the start of the response. (Whitening over the
# batch, step 3, applies one shift and one scale to all of the batch's advantages, so it
# cannot give the early tokens back the credit they lost.) On the left, the trained critic:
# its $V(s_t)$ moves where the response's words move the reward model's verdict, and the
# $\lambda = 0.95$ advantage puts the credit there. How much of the return's variance the
# critic explains is the next cell's `explained_variance`.

# %% [markdown]
# **Diagnostics.** `train_rlhf` logs one line per iteration to `ppo/metrics.jsonl`: the
# reward model's mean score and the gold reward of the iteration's responses, the KL to SFT
# (nats per response), the policy's entropy per token, PPO's own diagnostics from lecture 2
# (`clip_fraction`, `approx_kl` between the policy before and after the update,
# `explained_variance` of the critic), and the share of `truncated` responses and their
# mean `length`. These are the curves to watch in any RLHF run:

# %%
history = read_metrics(out / "ppo" / "metrics.jsonl")
rows = [r for r in history if "score" in r]
steps = [r["step"] for r in rows]
panels = [("score", "gold"), ("kl",), ("entropy",), ("clip_fraction", "approx_kl"),
          ("explained_variance",), ("length",), ("truncated",), ("shaped_return",)]
fig, axes = plt.subplots(2, 4, figsize=(15, 6))
for ax, keys in zip(axes.flat, panels):
    for key in keys:
        ax.plot(steps, [r[key] for r in rows], label=key)
    ax.set_title(" / ".join(keys), fontsize=9)
    ax.set_xlabel("PPO iteration")
    ax.grid(alpha=0.3)
    if len(keys) > 1:
        ax.legend(fontsize=8)
fig.tight_layout()
plt.show()


def mean_of(key, sl):
    return np.mean([r[key] for r in rows[sl]])


print(f"{'':22}{'first 5 iterations':>20}{'last 5 iterations':>20}")
for key in ("score", "gold", "kl", "entropy", "clip_fraction", "approx_kl", "explained_variance",
            "length", "truncated"):
    print(f"{key:22}{mean_of(key, slice(0, 5)):>20.3f}{mean_of(key, slice(-5, None)):>20.3f}")

# %% [markdown]
# What healthy looks like, and what to read here:
#
# * **score** rises (that is the optimisation working); **gold**, which PPO never sees,
#   should rise with it. Compare the two columns above: every point is a mean over one batch
#   of responses, so differences of a few hundredths are noise.
# * **kl** grows from 0 as the policy leaves the SFT model; with a fixed $\beta$ it should
#   level off where the penalty's marginal cost balances the reward model's gain (a run as
#   short as ours may still be climbing at its end).
# * **entropy** should not collapse: a policy whose entropy falls to 0 has stopped exploring
#   and is usually repeating one high-scoring response.
# * **clip_fraction** and **approx_kl** measure how far each update moved the policy from the
#   one that sampled the data; a few per cent and a few thousandths of a nat, as on CartPole,
#   mean the clipping rarely bites and the learning rate is not too large.
# * **explained_variance** of the critic, $1 - \mathrm{Var}(G - V) / \mathrm{Var}(G)$ over the
#   batch's response tokens: 1 is a perfect forecast, 0 no better than a constant. It starts
#   below 0 (the reward model's head reading prefixes it was never trained on: a confident
#   guess on a half-written review is often wrong) and climbs within a few iterations, as the
#   critic learns what prefixes lead to; the early tokens, which only know the prompt, cap it
#   well below 1. With the zero-initialised shared head it stays near 0 (exercise 9).
# * **length** and **truncated**: a policy that learns to ramble to the length limit shows up
#   here first (the truncation penalty is there to stop it).

# %% [markdown]
# ## 5. Adaptive KL control
#
# The right $\beta$ depends on the reward model's scale and on how easily the policy moves,
# neither known in advance. Ziegler et al. 2019 ("Fine-Tuning Language Models from Human
# Preferences", sec. 2.2) instead fix a **target KL** and let a proportional controller move
# $\beta$ (`AdaptiveKLController` in `minirlhf/rlhf.py`):
#
# $$e_t = \mathrm{clip}\Big(\frac{\mathrm{KL}_t}{\mathrm{KL}_{target}} - 1, -0.2, 0.2\Big),
#   \qquad \beta_{t+1} = \beta_t\,(1 + K_\beta\, e_t), \qquad K_\beta = \frac{n_{steps}}{\text{horizon}}.$$
#
# KL above target raises $\beta$ (a stronger pull back to $\pi_0$), below lowers it. The clip
# bounds one update's change to a factor $1 \pm 0.2\, n_{steps}/\text{horizon}$, so one unusual
# batch cannot swing $\beta$. Like the fixed controller (`FixedKLController`, InstructGPT's
# choice), it is a small frozen dataclass with one pure method, `update(beta, kl, n) -> beta`,
# so it runs inside the jitted iteration, and $\beta$ travels in `RLHFState` next to the
# parameters. `kl_controller(cfg)` picks one from `RLHFConfig.kl_control`.

# %%
adaptive_cfg = dataclasses.replace(rlhf_cfg, kl_control="adaptive")
ctrl = kl_controller(adaptive_cfg)
print(ctrl, "| the pipeline's run used", kl_controller(rlhf_cfg))
B = rlhf_cfg.batch_size
beta_now = rlhf_cfg.beta
print(f"\nbeta = {beta_now}, n_steps = B = {B} responses per iteration:")
print(f"{'KL_t':>8}{'KL_t/target - 1':>17}{'clipped e_t':>13}{'new beta':>11}{'factor':>10}")
for kl_t in (0.0, 1.5, 2.7, 3.0, 3.3, 4.5, 30.0):
    new = float(ctrl.update(jnp.float32(beta_now), jnp.float32(kl_t), B))
    err = kl_t / ctrl.target - 1
    print(f"{kl_t:>8.1f}{err:>17.2f}{np.clip(err, -0.2, 0.2):>13.2f}{new:>11.5f}"
          f"{new / beta_now:>10.5f}")
up = (1 + ctrl.clip * B / ctrl.horizon) ** rlhf_cfg.iterations
down = (1 - ctrl.clip * B / ctrl.horizon) ** rlhf_cfg.iterations
print(f"\nover the pipeline's {rlhf_cfg.iterations} iterations, beta can grow at most by a factor "
      f"{up:.3f}, or shrink by a factor {down:.3f}, with horizon {ctrl.horizon}")

# %% [markdown]
# The direction is right, and the steps are small: with a horizon of 2,000 responses, the
# pipeline's whole run could move $\beta$ only by the factors printed above, however wrong it
# was. The controller is built for long runs (Ziegler et al.'s horizon was 10,000 responses).
# To see it steer, a **toy**, not a language model: suppose the policy's KL drifts a tenth of
# the way each iteration towards $c/\beta$ (a larger $\beta$, a smaller KL) for a $c$ we do not
# know, and we want a KL of 3 nats.

# %%
def simulate(controller, beta0, c=0.6, iterations=300, n_steps=B):
    kl_t, beta_t, trace = 0.0, jnp.float32(beta0), []
    for _ in range(iterations):
        kl_t += 0.1 * (c / float(beta_t) - kl_t)  # the "policy" reacts to the current beta
        beta_t = controller.update(beta_t, jnp.float32(kl_t), n_steps)
        trace.append((kl_t, float(beta_t)))
    return np.array(trace)


fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.5))
for horizon in (2000, 200):
    for beta0 in (0.05, 0.5):
        tr = simulate(AdaptiveKLController(target=3.0, horizon=horizon), beta0)
        ax1.plot(tr[:, 0], label=f"horizon {horizon}, β_0 = {beta0}")
        ax2.plot(tr[:, 1], label=f"horizon {horizon}, β_0 = {beta0}")
ax1.axhline(3.0, color="k", ls="--", lw=0.8, label="target")
ax2.axhline(0.6 / 3.0, color="k", ls="--", lw=0.8, label="β that gives the target")
ax1.set_ylim(0, 15)
ax1.set_title("toy: KL per iteration")
ax2.set_title("toy: β per iteration")
for ax in (ax1, ax2):
    ax.set_xlabel("iteration")
    ax.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# While the error is large, $\beta$ changes geometrically at the clipped rate: the clip makes
# the controller's speed independent of how wrong it is. Near the target it slows down
# proportionally. A shorter horizon reaches the target sooner, but because the policy reacts
# to $\beta$ with a lag, it overshoots and oscillates before it settles; and it reacts more to
# the noise of a single batch's KL, which in a real run is large (section 4's KL curve).

# %% [markdown]
# ## 6. Best-of-n: a reward model without RL
#
# There is a way to use a reward model with no training at all: sample $n$ responses from the
# SFT model, and answer with the one the reward model scores highest (*best-of-n*, or
# rejection sampling; Stiennon et al. 2020, Nakano et al. 2021). It is the baseline PPO has to
# beat, and it is not in the decks.
#
# **Its KL is known in closed form.** If the scores have no ties, a response at quantile $u$
# of the SFT distribution's scores is chosen when it beats the other $n - 1$ draws, so
# $\pi_{bon}(y) = n\,u(y)^{n-1}\,\pi_0(y)$, and
#
# $$\mathrm{KL}(\pi_{bon} \,\|\, \pi_0) = \int_0^1 n u^{n-1} \log(n u^{n-1})\,du
#   = \log n - \frac{n-1}{n}$$
#
# (`best_of_n_kl`; an upper bound when responses can tie, Beirami et al. 2024). It grows only
# like $\log n$: best-of-1000 is less than 6 nats from the SFT model.

# %%
ns = np.unique(np.logspace(0, np.log10(1024), 40).astype(int))
u = np.linspace(0.0, 1.0, 200_001)[1:]
for n_ in (2, 8, 64):
    density = n_ * u ** (n_ - 1)  # pi_bon / pi_0 at quantile u
    numeric = np.trapezoid(density * (np.log(n_) + (n_ - 1) * np.log(u)), u)
    print(f"n = {n_:>3}: numerical integral {numeric:.4f},  log n - (n-1)/n = {best_of_n_kl(n_):.4f}")
plt.figure(figsize=(6, 3.5))
plt.plot(ns, [best_of_n_kl(int(k)) for k in ns], label="log n - (n-1)/n")
plt.plot(ns, np.log(ns), ":", label="log n")
plt.xscale("log")
plt.xlabel("n")
plt.ylabel("KL(best-of-n || π_0), nats")
plt.title("the KL of best-of-n")
plt.legend(fontsize=8)
plt.show()

# %% [markdown]
# `Evaluator` (`minirlhf/rlhf.py`) is what `train_rlhf` uses to evaluate: it samples a policy on
# the fixed held-out prompts in one compiled program, and measures gold, score, KL, format and
# length. `Evaluator.best_of_n` samples the SFT model $n$ times (draws 1 to $n$) and keeps the
# best; we take the same $n$ draws (`rlhf.best_of_n` of them) once and read off best-of-1, 2,
# 4, ... from them (`best_of_n_curve`, which `Evaluator.best_of_n` returns too), so the
# largest reproduces the pipeline's best-of-n row. (Best-of-1 is one SFT sample, from another
# draw than the table's SFT row.)

# %%
frozen = Frozen(ref_params=ref_params, rm_params=rm_params)
evaluator = Evaluator(rlhf_cfg, task, tokenizer, ref_graphdef, rm_graphdef,
                      rm_meta["normalization"], frozen)
draws = [evaluator.samples(ref_graphdef, ref_params, draw=1 + k) for k in range(rlhf_cfg.best_of_n)]
scores_nb = np.stack([d.score for d in draws])  # (n, prompts)
gold_nb = np.stack([d.gold for d in draws])
# per prompt, the highest-scoring of the first n draws, for n = 1, 2, 4, ...
bon = best_of_n_curve(scores_nb, gold_nb, best_of_n_sizes(rlhf_cfg.best_of_n))
for n_ in bon:
    print(f"best-of-{n_}: KL {bon[n_]['kl']:.2f} (formula)   score {bon[n_]['score']:+.3f}   "
          f"gold {bon[n_]['gold']:+.3f}")
rl = summary["rlhf"]
assert abs(bon[rl["n"]]["gold"] - rl["best_of_n"]["gold"]) < 1e-3  # the pipeline's best-of-n row
for key, name in (("sft", "SFT"), ("ppo", "PPO")):
    print(f"{name:>9}: KL {rl[key]['kl']:.2f} (measured)  score {rl[key]['score']:+.3f}   "
          f"gold {rl[key]['gold']:+.3f}")
print(f"\nPPO's training: {rlhf_cfg.iterations} iterations x {rlhf_cfg.batch_size} responses = "
      f"{rlhf_cfg.iterations * rlhf_cfg.batch_size:,} episodes; its reward model agrees with the "
      f"gold order on {summary['reward']['val_gold_accuracy']:.0%} of held-out pairs")

# %% [markdown]
# The fair comparison is **at equal KL**: both methods buy reward-model score with distance
# from the SFT model, and the question is which one gets more *gold* per nat. The pipeline's
# run was evaluated on the held-out prompts every `eval_every` iterations, which traces PPO's
# path through the same plane. (The two KLs are not measured the same way: best-of-n's is the
# formula, PPO's the mean of $\sum_t \mathrm{kl}_t$ over its held-out responses, itself a
# sampled estimate.)

# %%
evals = {r["step"]: {k[len("eval_"):]: v for k, v in r.items() if k.startswith("eval_")}
         for r in rows if "eval_gold" in r}  # PPO on the held-out prompts, by iteration
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
for ax, key in ((ax1, "gold"), (ax2, "score")):
    ax.plot([bon[k]["kl"] for k in bon], [bon[k][key] for k in bon], "o-",
            label=f"best-of-n (n = {', '.join(map(str, bon))})")
    for k in bon:
        ax.annotate(f"n={k}", (bon[k]["kl"], bon[k][key]), xytext=(4, 4),
                    textcoords="offset points", fontsize=8)
    ax.plot([0] + [e["kl"] for e in evals.values()], [rl["sft"][key]] + [e[key] for e in evals.values()],
            "s-", color="C1", label=f"PPO, β = {rlhf_cfg.beta}, every {rlhf_cfg.eval_every} iterations")
    ax.annotate(f"iteration {max(evals)}", (evals[max(evals)]["kl"], evals[max(evals)][key]),
                xytext=(-20, 8), textcoords="offset points", fontsize=8)
    ax.plot(0, rl["sft"][key], "kx", ms=9, label="SFT")
    ax.set_xlabel("KL to the SFT model (nats per response)")
    ax.set_ylabel(f"mean {key} on the held-out prompts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
ax1.set_title("gold reward against KL")
ax2.set_title("reward-model score against KL")
fig.tight_layout()
plt.show()
print(f"best-of-{rl['n']}: gold {rl['best_of_n']['gold']:+.3f}, score {rl['best_of_n']['score']:+.3f} "
      f"at KL {rl['best_of_n']['kl']:.2f};  PPO: gold {rl['ppo']['gold']:+.3f}, score "
      f"{rl['ppo']['score']:+.3f} at KL {rl['ppo']['kl']:.2f}")


kl_bon = rl["best_of_n"]["kl"]
# PPO's held-out value where its evaluation path first reaches best-of-n's KL (`along_path`:
# linear between evaluations; None if it never gets there)
at_bon = {key: along_path([(0.0, rl["sft"][key])] + [(e["kl"], e[key]) for e in evals.values()],
                          kl_bon) for key in ("gold", "score")}
if at_bon["gold"] is not None:
    print(f"at best-of-{rl['n']}'s KL ({kl_bon:.2f} nats), PPO's path had gold "
          f"{at_bon['gold']:+.3f} and score {at_bon['score']:+.3f} (interpolated between its "
          "evaluations)")
n_grid = np.logspace(0, 12, 2401)  # best_of_n_kl's formula, for n up to 10^12
kl_grid = np.log(n_grid) - (n_grid - 1) / n_grid
if rl["ppo"]["kl"] <= kl_grid[-1]:
    print(f"best-of-n reaches PPO's final KL ({rl['ppo']['kl']:.2f} nats) at n ≈ "
          f"{n_grid[np.searchsorted(kl_grid, rl['ppo']['kl'])]:,.0f}")

# %% [markdown]
# Judge the printed numbers, not a hoped-for story. Where PPO's path runs *below* the best-of-n
# curve in the gold panel, best-of-n bought more gold per nat; the two printed lines compare
# them at best-of-n's KL, and say how large $n$ would have to be to spend PPO's KL. In our
# runs, PPO ended with about best-of-n's gold reward (and a lower reward-model score) at
# several times its KL: on this budget, PPO does not beat best-of-n at equal KL. That is not a
# bug. Gao et al. 2022 ("Scaling Laws for Reward Model Overoptimization"), in a setup much
# like ours (a "gold" reward model in place of people, a smaller proxy trained on its labels),
# found that as a function of the KL, RL is slower than best-of-n at both optimisation and
# over-optimisation, and concluded that the KL is an imperfect yardstick across methods. RL's
# advantages lie elsewhere:
#
# * **Cost at inference.** Best-of-n samples $n$ responses and runs the reward model $n$ times
#   for *every* prompt, forever; PPO pays once, at training time, and then answers with one
#   sample.
# * **Reach.** Best-of-n's KL grows like $\log n$, so large KLs need astronomically many
#   samples; RL can go much further from $\pi_0$ (for better, or, section 7, for worse).
#
# And our PPO run is small (the episode count and the reward model's accuracy are printed
# above); exercise 3 gives it more.

# %% [markdown]
# ## 7. Reward hacking, shown
#
# *Deck "Large Language Models and RL from Human Feedback", slide "Controlling Divergence":*
# "Over-Optimization / Reward Hacking: Because reward maximization is incentivized, the model
# may try to exaggerate responses"; slide "Overoptimized policy" shows a summary that the reward
# model loves and a person would not.
#
# We run PPO again from the same SFT model against the same reward model with **$\beta = 0$**:
# no KL penalty. Same seed, so the same prompts in every iteration and even the same first
# batch of responses. Two more things change, to fit the lecture's time budget: the learning
# rate is doubled, and the run is `HACK_ITERATIONS` long, shorter than the pipeline's. (At the
# pipeline's learning rate the same thing happens, only later: exercise 5.) And the held-out
# prompts are evaluated every `HACK_EVAL_EVERY` iterations, to draw the gold reward's path.
# The SFT and best-of-n baselines do not depend on $\beta$, so we copy `baselines.json` into
# the new run folder and `train_rlhf` reads them instead of sampling them again.

# %%
HACK_ITERATIONS, HACK_EVAL_EVERY = min(24, rlhf_cfg.iterations), 4
hack_cfg = dataclasses.replace(rlhf_cfg, beta=0.0, lr=2 * rlhf_cfg.lr, iterations=HACK_ITERATIONS,
                               eval_every=HACK_EVAL_EVERY, checkpoint_every=HACK_ITERATIONS)
hack_dir = work / "ppo_beta0"
hack_dir.mkdir()
shutil.copy(out / "ppo" / "baselines.json", hack_dir / "baselines.json")
start = time.perf_counter()
_, hack_params, hack_summary = train_rlhf(hack_cfg, hack_dir)
print(f"PPO with beta = 0, lr = {hack_cfg.lr:g}, {HACK_ITERATIONS} iterations: "
      f"{time.perf_counter() - start:.0f} s")
hack_rows = [r for r in read_metrics(hack_dir / "metrics.jsonl") if "score" in r]
hack_evals = {r["step"]: {k[len("eval_"):]: v for k, v in r.items() if k.startswith("eval_")}
              for r in hack_rows if "eval_gold" in r}


def smooth(x, k=5):
    """Moving average over k iterations (each point is the mean of one batch of responses)."""
    x = np.asarray(x, float)
    return np.array([x[max(0, j - k + 1):j + 1].mean() for j in range(len(x))])


runs = {f"β = {rlhf_cfg.beta}, lr {rlhf_cfg.lr:g} (the pipeline's run)": (rows, evals, "C0"),
        f"β = 0, lr {hack_cfg.lr:g} (no KL penalty)": (hack_rows, hack_evals, "C3")}
fig, axes = plt.subplots(2, 2, figsize=(12, 8))
panels = (("score", "reward-model score (normalised)"), ("gold", "gold reward"),
          ("kl", "KL to SFT (nats per response)"))
for label, (rs, ev, color) in runs.items():
    it = [r["step"] for r in rs]
    for ax, (key, title) in zip(axes.flat, panels):
        ax.plot(it, [r[key] for r in rs], color=color, alpha=0.25)
        ax.plot(it, smooth([r[key] for r in rs]), color=color, label=label)
        ax.plot(list(ev), [e[key] for e in ev.values()], "o", color=color)
        ax.set_title(title)
        ax.set_xlabel("PPO iteration")
    axes[1, 1].plot([0] + [e["kl"] for e in ev.values()], [rl["sft"]["gold"]] + [e["gold"] for e in ev.values()],
                    "o-", color=color, label=label)
axes[1, 1].plot([bon[k]["kl"] for k in bon], [bon[k]["gold"] for k in bon], "^--", color="gray",
                label=f"best-of-n (n = {', '.join(map(str, bon))})")
axes[1, 1].set_xscale("symlog", linthresh=1.0)
axes[1, 1].set_xlabel("KL to SFT (nats per response; linear below 1, log above)")
axes[1, 1].set_title("gold reward against KL, held-out prompts")
for ax in axes.flat:
    ax.grid(alpha=0.3)
axes[0, 1].axhline(rl["sft"]["gold"], color="gray", ls="--", lw=0.8, label="SFT (held out)")
axes[0, 1].axhline(rl["best_of_n"]["gold"], color="gray", ls=":", lw=0.8,
                   label=f"best-of-{rl['n']} (held out)")
axes[0, 0].legend(fontsize=8)
axes[0, 1].legend(fontsize=8)
axes[1, 1].legend(fontsize=8)
fig.suptitle(f"the same PPO with and without the KL penalty (faint: each iteration's "
             f"{rlhf_cfg.batch_size} responses; line: 5-iteration mean; dots: the "
             f"{rlhf_cfg.n_eval} held-out prompts)", fontsize=10)
fig.tight_layout()
plt.show()

table = [("SFT", rl["sft"]), (f"best-of-{rl['n']}", rl["best_of_n"])]
table += [(f"beta = {rlhf_cfg.beta}, iteration {k}", evals[k]) for k in sorted(evals)
          if k in hack_evals or k == max(evals)]
table += [(f"beta = 0, iteration {k}", hack_evals[k]) for k in sorted(hack_evals)]
print(f"{'held-out prompts':30}{'gold':>8}{'score':>8}{'KL':>8}{'format':>8}{'length':>8}")
for name, r in table:
    print(f"{name:30}{r['gold']:>+8.3f}{r['score']:>+8.3f}{r['kl']:>8.2f}{r['format']:>8.0%}"
          f"{r['length']:>8.1f}")
gold_path = {k: e["gold"] for k, e in hack_evals.items()}
peak, last = max(gold_path, key=gold_path.get), max(hack_evals)
print(f"\nbeta = 0, held out: score {hack_evals[min(hack_evals)]['score']:+.3f} at iteration "
      f"{min(hack_evals)} -> {hack_evals[last]['score']:+.3f} at {last}; gold at its best "
      f"{gold_path[peak]:+.3f} (iteration {peak}), at the end {gold_path[last]:+.3f} "
      f"(SFT {rl['sft']['gold']:+.3f})")
hacked = hack_summary["ppo"]
print(f"the unpenalised policy's KL would cost beta * KL = {rlhf_cfg.beta} x {hacked['kl']:.1f} = "
      f"{rlhf_cfg.beta * hacked['kl']:.2f} of shaped reward at the pipeline's beta; its score "
      f"gain over SFT is {hacked['score'] - rl['sft']['score']:.2f}")

# %% [markdown]
# Read the four panels together, and the two lines under the table. Without the penalty,
# nothing holds the policy near the SFT model, and its KL grows many times faster. The reward
# model's score climbs faster too, towards best-of-n's, and stays high. The **gold reward does
# not follow**: in our runs it rose in the first iterations, like the penalised run's, then
# turned and fell below the SFT model's while the score stayed high and even crept up. The
# policy got better at pleasing the reward model and worse at writing reviews: in the (KL,
# gold) panel, the over-optimisation curve of section 3, now with a real policy and a real
# reward model. (The per-iteration curves are noisy; judge the trends, the held-out dots and
# the table.)
#
# The last printed line says why the penalised run does not go there: if $\beta$ times the
# unpenalised policy's KL is larger than its whole gain in score, that policy is worth less
# under the penalised objective than the SFT model it started from.
# (Gao et al. 2022 found that in their setup the KL penalty acted much like early stopping:
# it kept the policy at a smaller KL, but did not raise the gold reward reached *at a given
# KL*. Compare the two paths in the bottom-right panel, remembering that ours also differ in
# learning rate.)
#
# What does the over-optimised policy write? The same 8 prompts as section 2 and the same random
# key, answered by the SFT model, the penalised policy (at the end of its run) and the
# unpenalised one. `respond` was compiled once, in section 2, for this architecture and these
# shapes; all three policies reuse it.

# %%
key = jax.random.key(4)
answers = {name: jax.device_get(respond(p, key)) for name, p in
           (("SFT", sft_params), (f"beta={rlhf_cfg.beta}", ppo_params), ("beta=0", hack_params))}
for j, x in enumerate(prompts):
    print(f"{x!r}")
    for name, a in answers.items():
        text = tokenizer.decode(a.tokens[j])
        print(f"   {name:>9}  score {a.score[j]:+.2f}  gold {task.gold_reward(text):+.2f}  "
              f"KL {a.kl[j].sum():6.2f}   {text!r}")
for name, a in answers.items():
    texts = tokenizer.decode_batch(a.tokens, a.mask)
    print(f"{name:>9}: mean score {a.score.mean():+.2f}, mean gold "
          f"{np.mean([task.gold_reward(t) for t in texts]):+.2f}, mean KL {a.kl.sum(1).mean():.2f}")

# %% [markdown]
# Look at the responses the reward model scores highest, and at their gold rewards. The
# unpenalised policy has drifted towards text that no labeler ever compared (the comparisons
# were all between SFT samples): dropped or mangled ratings, invented words, fragments, a few
# positive-sounding words at the start. The reward model was never shown that such text is
# bad, so it extrapolates, and PPO finds the extrapolation's errors. This is the slide's
# "Overoptimized policy", in miniature. (The SFT row's per-response KL is exactly 0: the
# policy is the reference.)
#
# Remedies used in practice:
#
# * **The KL penalty** (this lecture): stay where the reward model is trustworthy; $\beta$ trades
#   reward against drift (section 3's curve). *Deck "RL from Human Feedback and Large Language
#   Models", slide "Controlling Divergence":* "The KL Penalty simply keeps responses within the
#   bounds of likelihood."
# * **Better reward models**: collect new comparisons *on the current policy's samples*, so the
#   reward model learns the new failure modes (InstructGPT and Anthropic iterate this way).
# * **Early stopping on a held-out judge**: here the gold reward; in practice people's
#   judgements of a sample of responses.

# %%
print(f"whole lecture: {time.perf_counter() - LECTURE_START:.0f} s; run folders under {work}")

# %% [markdown]
# ## 8. Exercises
#
# 1. **The token MDP.** In section 2's table, find the tokens with the largest positive and
#    the most negative $\mathrm{kl}_t$. Which characters did PPO make more likely than the SFT
#    model, and which less likely? Compute the exact per-state KL at those states with
#    `categorical_kl` on the two models' logits (`minirlhf.model.forward`), and compare it with
#    the sampled $\mathrm{kl}_t$.
# 2. **k1 vs. k3 in the reward.** Rerun the PPO stage with `train_rlhf` on
#    `dataclasses.replace(rlhf_cfg, rollout=dataclasses.replace(rlhf_cfg.rollout,
#    kl_estimator="k3"))` (into a new folder). Is the held-out KL (always measured with k1)
#    different? Why does the sum of k3 over a response no longer equal the sequence's
#    log-ratio, and what does the return then estimate?
# 3. **More PPO.** Give PPO twice the iterations. Does the gold reward keep rising? Where does
#    PPO end up in section 6's (KL, gold) plane? Extend the best-of-n curve to $n = 32$ with
#    more draws: do the two methods meet?
# 4. **Adaptive control for real.** Train with `kl_control="adaptive"`, `kl_target=2.0` and
#    `kl_horizon=200`. Plot $\beta$ and the KL from `metrics.jsonl`. Does the KL settle near the
#    target? What happens with the default horizon, and why (section 5)?
# 5. **The $\beta$ sweep.** At the pipeline's learning rate, train with
#    $\beta \in \{0, 0.05, 0.2, 0.5\}$ for the pipeline's number of iterations, and plot each
#    run's held-out (KL, score) and (KL, gold) points. Do they trace section 3's curve? In the
#    $\beta = 0$ run, at which iteration does the gold reward turn, compared with section 7's run
#    at twice the learning rate? Which words does the unpenalised policy settle on? Score a few
#    of its responses, and a few made-up ones built from those words, with `task.gold_reward`:
#    the "gold" reward is a formula too, with holes of its own (`envs/reviews.py`). What would
#    real labelers say?
# 6. **Reading the hack.** Edit the $\beta = 0$ policy's responses of section 7 by hand (put the
#    rating back, fix an invented word, cut a fragment) and score them with `reward_fn`. Which
#    edits lower the score? What has the reward model learned to like?
# 7. **The truncation penalty.** Set `missing_eos_penalty=0.0` and `max_new_tokens=48`. Does the
#    policy learn to stop, or do the `truncated` and `length` curves tell another story? Why
#    does `token_gae` treat a truncated response as terminated, where lecture 2 bootstrapped a
#    time limit?
# 8. **A better reward model.** Rerun the pipeline with `reward.target_agreement=0.95` (cleaner
#    labels) and twice the comparisons. Repeat section 7: does a better reward model take
#    longer to hack? (Lecture 3, section 8 shows how label noise limits the reward model.)
# 9. **The critic and $\lambda$.** Train with `critic="shared"` (a zero-initialised value head
#    on the policy's own transformer) at `gae_lambda=0.95` and at `gae_lambda=1.0`, and compare
#    their `explained_variance` curves and held-out gold rewards with the pipeline's run. Which
#    of the two does the shared head hurt, and why? Average section 4's advantages by position
#    (tokens from the end) over a batch of rollouts for the two critics. What would a value
#    head on the policy have to predict for $\lambda < 1$ to pay off, and why is the reward
#    model's transformer better placed to predict it?
