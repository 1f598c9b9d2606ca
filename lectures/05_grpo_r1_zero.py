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
# # Lecture 5 — GRPO and R1-Zero: reinforcement learning from a verifier
#
# The deck "Large Language Models and RL from Human Feedback" ends its RLHF part with **"Very
# recent work"**, DeepSeek-R1 (DeepSeek-AI 2025). Slide **"DeepSeek-R1-Zero"**:
#
# * "Directly applies RL to the base model without SFT"
# * "Allows the model to explore chain-of-thought (CoT) for solving complex problems"
#
# Slide **"No learned reward model"**: "Uses rule-based reward based on correct answers",
# "Works well for math, code, and STEM questions with deterministic answers", and "heuristic
# reward to require the following format in answers:
# `<think> ... reasoning steps ... </think> <answer> final result </answer>`".
#
# So two of lecture 4's four steps are gone: no demonstrations (no SFT) and no preferences (no
# reward model; a program checks the answer). The RL algorithm changes too: slide **"Group
# Relative Policy Optimization (GRPO)"**, "No critic model -> massive memory and compute
# savings". This lecture takes GRPO apart and runs R1-Zero, small: a character-level model
# that learns written column addition and subtraction from an imperfect corpus, then RL
# against a verifier.
#
# | section | idea | minirlhf |
# | --- | --- | --- |
# | 1 | from PPO to GRPO: what the group mean replaces, what is dropped and what is kept | `minirlhf/rlhf.py`, `minirlhf/grpo.py`, `minirlhf/rollout.py` |
# | 2 | the GRPO objective term by term, in the library's code | `minirlhf/advantages.py`, `minirlhf/losses.py`, `minirlhf/grpo.py` |
# | 3 | R1-Zero on arithmetic: the verifier, the base model, GRPO, curves, samples, length | `envs/arithmetic.py`, `minirlhf/r1_zero.py` |
# | 4 | two biases of GRPO on real batches: length aggregation and the std division (Dr. GRPO) | `minirlhf/losses.py`, `minirlhf/advantages.py` |
# | 5 | zero-variance ("flat") groups and dynamic sampling | `minirlhf/advantages.py`, `minirlhf/grpo.py` |
# | 6 | pass@1 vs. pass@k: does RL teach new answers or sharpen old ones? | `minirlhf/evaluation.py` |
# | 7 | exercises | |
#
# Everything runs on a laptop CPU, in about 3 minutes on 2 cores; most of it is section 3's
# pretraining and GRPO run.
#
# **Setup.** Install the package once from the repository root (`pip install -e .`; in Colab,
# `!pip install` the repository first), then run the cells top to bottom.

# %%
import dataclasses
import inspect
import os
import re
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

# Training loops show tqdm progress bars; "0" turns them back on.
os.environ.setdefault("MINIRLHF_QUIET", "1")

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import minirlhf.grpo
import minirlhf.rlhf
from minirlhf.advantages import flat_groups, group_advantages
from minirlhf.checkpoint import load_model
from minirlhf.envs import make_task
from minirlhf.envs.arithmetic import parse_prompt, strict_response, worked_columns
from minirlhf.generate import SamplingConfig, generate
from minirlhf.evaluation import VerifierEvaluator, pass_at_k
from minirlhf.grpo import counted_responses
from minirlhf.logging import read_metrics
from minirlhf.losses import AGGREGATIONS, aggregate, grpo_loss
from minirlhf.model import count_params, init_model
from minirlhf.r1_zero import R1ZeroConfig, run_r1_zero
from minirlhf.rollout import token_gae

# %matplotlib inline

LECTURE_START = time.perf_counter()
work = Path(tempfile.mkdtemp(prefix="minirlhf_lecture05_"))  # run folders go here, never the repo
task = make_task("arithmetic")
print("jax", jax.__version__, "on", jax.devices())


def source_between(fn, first: str, last: str) -> str:
    """The lines of fn's source from the first containing `first` to the next containing `last`."""
    lines = inspect.getsource(fn).splitlines()
    i = next(k for k, line in enumerate(lines) if first in line)
    j = next(k for k, line in enumerate(lines) if k >= i and last in line)
    return textwrap.dedent("\n".join(lines[i:j + 1]))


# %% [markdown]
# ## 1. From PPO to GRPO
#
# *Deck "Large Language Models and RL from Human Feedback", slide "Group Relative Policy
# Optimization (GRPO)":*
#
# * "Step 1: Sample a group of outputs. For a given prompt $q$, the **old policy**
#   $\pi_{old}$ samples a **group** of $G$ outputs: $\{o_1, o_2, \ldots, o_G\}$"
# * "Step 2: Evaluate each output. For each $o_i$, compute a reward $r_i$ (via rule-based
#   evaluators — correctness and formatting)."
# * "Step 3: Compute relative advantage. Normalize the rewards within the group to get the
#   advantage $A_i$":
#
# $$A_i = \frac{r_i - \mathrm{mean}(\{r_1, \dots, r_G\})}{\mathrm{std}(\{r_1, \dots, r_G\})}.$$
#
# **What the critic did in lecture 4.** PPO-RLHF trained a second transformer, the critic,
# to predict $V(s_t)$, the reward still to come, at *every* response token, and GAE turned its
# forecasts into a per-token advantage $A_t = \sum_l (\gamma\lambda)^l \delta_{t+l}$: credit
# assignment inside the response. It cost a model as large as the policy, trained alongside
# it with its own Adam state, and one more forward (and backward) pass per batch.
#
# **What the group mean replaces.** With $\gamma = \lambda = 1$ GAE's advantage is the return
# minus the baseline, $A_t = G_t - V(s_t)$. The verifier's reward arrives once, at the end,
# and GRPO puts no KL in the reward, so $G_t = r_i$ at every token. Now take as "critic" the
# one number we can estimate without a network: the value of the *prompt*,
# $V(q) = E_{o \sim \pi_{old}}[r(q, o)]$, estimated by the group's mean reward, and use it at
# every token. GAE then gives every token of $o_i$ the advantage $r_i - \mathrm{mean}(r)$:
# GRPO's, before the std division. The cell checks this with lecture 4's `token_gae` on a hand
# batch of two prompts with $G = 4$ responses each (rewards 0, 0.5 or 1.5, section 3's
# verifier):

# %%
G_hand = 4
r_hand = jnp.array([[1.5, 0.5, 1.5, 0.0],   # prompt 1: two right, one wrong, one malformed
                    [0.5, 0.5, 0.5, 1.5]])  # prompt 2: one right out of four
lengths_hand = jnp.array([6, 6, 5, 3, 7, 7, 7, 6])  # response lengths in tokens
N_hand = 8
mask_hand = jnp.arange(N_hand)[None, :] < lengths_hand[:, None]  # (B*G, N)
r_flat = r_hand.reshape(-1)
# The reward on each response's last token, 0 elsewhere: the token MDP of lecture 4, no KL.
last_token = jnp.arange(N_hand)[None, :] == lengths_hand[:, None] - 1
token_rewards = jnp.where(last_token, r_flat[:, None], 0.0)
group_mean = jnp.repeat(r_hand.mean(axis=1), G_hand)  # V(q), the same at every token
values = jnp.where(mask_hand, group_mean[:, None], 0.0)
adv_gae, _ = token_gae(token_rewards, values, mask_hand, 1.0, 1.0)  # gamma = lambda = 1
adv_dr = group_advantages(r_hand, "dr_grpo").reshape(-1)  # r_i - mean(r)
adv_grpo = group_advantages(r_hand, "grpo").reshape(-1)   # (r_i - mean(r)) / std(r)
print("GAE advantages per token (gamma = lambda = 1, V = group mean):")
print(np.round(np.asarray(adv_gae), 3))
print("r_i - mean(r):          ", np.round(np.asarray(adv_dr), 3))
print("(r_i - mean(r)) / std(r):", np.round(np.asarray(adv_grpo), 3))
assert np.allclose(np.where(mask_hand, adv_gae, 0), np.where(mask_hand, adv_dr[:, None], 0),
                   atol=1e-6)

# %% [markdown]
# Every token of a response carries the same number: GRPO has **no credit assignment inside
# a response**. A wrong response's right columns are pushed down with its wrong one. It relies
# on many samples instead: a column that is right in most responses is pushed up by the right
# ones more often than down by the wrong ones. (The std is the *sample* standard deviation,
# divisor $G - 1$, as `torch.std` and TRL compute it.)
#
# One iteration of each algorithm, side by side: lecture 4's `make_iteration` in
# `minirlhf/rlhf.py`, then `make_iteration` in `minirlhf/grpo.py`, from sampling to the update.

# %%
print("# PPO-RLHF, minirlhf/rlhf.py")
print(source_between(minirlhf.rlhf.make_iteration, "ro = rollout(", "train, metrics = update("))
print("\n# GRPO, minirlhf/grpo.py")
print(source_between(minirlhf.grpo.make_iteration, "gen = generate(", "state, metrics = update("))

# %% [markdown]
# | | PPO-RLHF (lecture 4) | GRPO | where |
# | --- | --- | --- | --- |
# | sampler | one response per prompt, temperature 1 | $G$ responses per prompt (the prompt repeated $G$ times), temperature 1 | `generate` (`minirlhf/generate.py`) |
# | log-probs of $\pi_{old}$ and $\pi_{ref}$ | full forwards over prompt + response | $\pi_{old}$'s from the sampler itself (one forward fewer), $\pi_{ref}$'s from a full forward | `generate`, `response_outputs` (`minirlhf/rollout.py`) |
# | reward | a reward model $r_\phi$, normalised | a rule: the verifier (or a reward model, `model_reward`) | `rule_reward`, `RewardFn` (`minirlhf/grpo.py`) |
# | **critic** | a second transformer, initialised from the reward model | **dropped**: the group mean is the baseline | `critic_from_reward_model` (`minirlhf/rlhf.py`) |
# | **advantage** | per token, **GAE** over the critic's values, whitened over the batch | per response, relative to its group | `token_gae` vs. `group_advantages` |
# | **KL to the reference** | **in the reward**: $r_t = -\beta\,\mathrm{kl}_t$ (k1), score at the last token | **in the loss**: $-\beta\,\mathrm{k3}_{i,t}$ | `kl_shaped_rewards` vs. `grpo_loss` |
# | surrogate | clipped, $\epsilon = 0.2$ | the same, with an optional higher upper clip | `clipped_surrogate` (`minirlhf/losses.py`) |
# | KL estimator | k1 in the reward, k3 for `approx_kl` | k3 in the loss and in the logged KL | `kl_estimate` (`minirlhf/distributions.py`) |
# | update | epochs × minibatches of Adam steps | the same function, each minibatch's gradient summed over microbatches | `make_update` (`minirlhf/ppo.py`), `accumulate_gradients` |
# | averaging over tokens | mean over all response tokens | per response, then over responses (or two others, section 4) | `masked_mean` vs. `aggregate` |
#
# What "massive memory and compute savings" means at our size: the models each algorithm keeps
# in memory, for the architecture section 3 trains.

# %%
model_cfg = R1ZeroConfig().pretrain.model
n_params = count_params(init_model(model_cfg, jax.random.key(0))[1])
print(f"one transformer ({model_cfg.n_layers} layers, width {model_cfg.d_model}): "
      f"{n_params:,} parameters")
print(f"{'':38}{'trained':>10}{'frozen':>10}{'Adam moments':>14}{'all floats':>12}")
totals = {}
for name, trained, frozen in (("PPO-RLHF (policy, critic | ref, RM)", 2, 2),
                              ("GRPO (policy | ref)", 1, 1)):
    totals[name] = (trained + frozen + 2 * trained) * n_params
    print(f"{name:38}{trained * n_params:>10,}{frozen * n_params:>10,}{2 * trained * n_params:>14,}"
          f"{totals[name]:>12,}")
print(f"GRPO / PPO-RLHF: {min(totals.values()) / max(totals.values()):.2f} of the floats")

# %% [markdown]
# GRPO keeps half the models and half the floats (the last line), and each iteration runs
# two forwards over the sampled responses (for $\pi_{old}$ and $\pi_{ref}$) instead of four
# (policy, reference, critic, reward model). It pays in samples: $G$ responses per prompt where
# PPO took one.

# %% [markdown]
# ## 2. The GRPO objective, term by term
#
# The objective the slide's three steps feed (Shao et al. 2024, DeepSeekMath, eq. 3; DeepSeek-R1,
# eq. 1), in the deck's notation ($q$ a prompt, $o_i$ the $i$-th of $G$ outputs, $o_{i,t}$ its
# $t$-th token):
#
# $$\mathcal{J}(\theta) = \mathbb{E}_{q,\,\{o_i\}_{i=1}^G \sim \pi_{old}(\cdot|q)}
#   \frac{1}{G}\sum_{i=1}^{G} \frac{1}{|o_i|}\sum_{t=1}^{|o_i|}
#   \Big\{ \min\big(\rho_{i,t} A_i,\ \mathrm{clip}(\rho_{i,t}, 1-\epsilon, 1+\epsilon)\, A_i\big)
#   - \beta\, \mathbb{D}_{KL}\big[\pi_\theta \,\|\, \pi_{ref}\big]_{i,t} \Big\},
#   \qquad \rho_{i,t} = \frac{\pi_\theta(o_{i,t} \mid q, o_{i,<t})}
#                          {\pi_{old}(o_{i,t} \mid q, o_{i,<t})}.$$
#
# | term | meaning | minirlhf |
# | --- | --- | --- |
# | $\{o_i\} \sim \pi_{old}$ | $G$ samples per prompt from the policy as it was when sampling | `generate` in `make_iteration`; row $bG + i$ is response $i$ to prompt $b$ |
# | $A_i$ | the slide's step 3, one number per response | `group_advantages(rewards, "grpo")` |
# | $\rho_{i,t}$ | how much more likely the token is now than when sampled | `jnp.exp(logp - old_logp)` in `clipped_surrogate` |
# | $\min(\cdot, \mathrm{clip}(\cdot))$ | PPO's pessimistic bound (lecture 2, section 3) | `clipped_surrogate`, $\epsilon_{low}$ = `clip_eps`, $\epsilon_{high}$ = `clip_eps_high` |
# | $\beta\,\mathbb{D}_{KL}$ | per-token k3 estimate of the KL to the reference (the base model) | `kl_estimate(logp, ref_logp, "k3")` in `grpo_loss` |
# | $\frac1G \sum_i \frac{1}{\lvert o_i \rvert} \sum_t$ | per-response mean, then mean over responses | `aggregate(..., "sequence_mean")` |
#
# The code, first the advantage:

# %%
print(inspect.getsource(group_advantages))

# %% [markdown]
# The loss is the objective negated, per token, then aggregated. The KL term is the
# estimator k3 of lecture 4, section 3, written with $\pi_{ref}/\pi_\theta$ as DeepSeekMath
# writes it:
# $\mathbb{D}_{KL} = \frac{\pi_{ref}}{\pi_\theta} - \log\frac{\pi_{ref}}{\pi_\theta} - 1 \ge 0$,
# unbiased for $\mathrm{KL}(\pi_\theta \| \pi_{ref})$ on tokens sampled from $\pi_\theta$.

# %%
print(inspect.getsource(grpo_loss))

# %% [markdown]
# And the averaging, whose three options section 4 compares:

# %%
print(inspect.getsource(aggregate))

# %% [markdown]
# **The gradient, on the hand batch of section 1.** At $\rho = 1$ (the first minibatch of an
# iteration: $\pi_\theta = \pi_{old}$) the min and the clip are inactive, and the surrogate's
# gradient is the policy gradient: $\partial\mathcal{J}/\partial \log\pi_\theta(o_{i,t}) =
# A_i \cdot w_{i,t}$, with $w_{i,t} = 1/(B G\,|o_i|)$ under `sequence_mean` (here $B G = 8$
# responses). Two more things the cell shows: a token whose ratio has already moved past
# $1 + \epsilon$ in the direction its (positive) advantage favours gets no gradient; and the
# k3 term is 0, with gradient 0, where $\pi_\theta = \pi_{ref}$ (at the start of training),
# and pulls back towards $\pi_{ref}$ once they differ.

# %%
eps, beta_hand = 0.2, 0.04
logp0 = jnp.where(mask_hand, -0.5, 0.0)  # log pi_old of the sampled tokens (made up)
loss_of = lambda lp, ref: grpo_loss(lp, logp0, ref, adv_grpo, mask_hand, eps, eps, beta_hand)
grad0 = -jax.grad(loss_of)(logp0, logp0)  # d J / d log pi_theta at pi_theta = pi_old = pi_ref
expected = adv_grpo[:, None] / (8 * lengths_hand[:, None]) * mask_hand
print("dJ/dlog pi(o_it) at rho = 1, one row per response (first 3 tokens):")
print(np.round(np.asarray(grad0[:, :3]), 4))
assert np.allclose(grad0, expected, atol=1e-6)

# One token of response 0 (A > 0) already 30 % more likely than when sampled: clipped. (The
# reference moved with it, so that the KL term is silent and only the surrogate speaks.)
logp_moved = logp0.at[0, 0].add(jnp.log(1.3))
g_clip = -jax.grad(loss_of)(logp_moved, logp_moved)
print(f"\nresponse 0, token 0 at rho = 1.3 > 1 + eps: gradient {float(g_clip[0, 0]):+.4f} "
      f"(its neighbour at rho = 1: {float(g_clip[0, 1]):+.4f}, A_0 = {float(adv_grpo[0]):+.3f})")
# The KL term alone: per-token k3 and its pull when pi_theta is above pi_ref on one token.
zero_adv = jnp.zeros_like(adv_grpo)
kl_only = lambda lp, ref: grpo_loss(lp, logp0, ref, zero_adv, mask_hand, eps, eps, beta_hand)
ref_lower = logp0.at[0, 0].add(-0.5)  # pi_ref gives token (0, 0) less probability
pull = float(-jax.grad(kl_only)(logp0, ref_lower)[0, 0])
print(f"k3 loss at pi_theta = pi_ref: {float(kl_only(logp0, logp0)) + 0.0:.4f}; "
      f"with log pi_ref 0.5 lower on one token: {float(kl_only(logp0, ref_lower)):.5f}, "
      f"gradient there {pull:+.5f} (pushes log pi down)")

# %% [markdown]
# **How often does the clip bite in practice?** Only once the ratio has moved. GRPO's default
# here is one pass (`update_epochs=1`) over two minibatches, so the first minibatch is at
# $\rho = 1$ (up to float rounding: $\pi_{old}$'s log-probs are the sampler's, the update's a
# full forward's) and the second after one Adam step: section 3's run logs `clip_low` and
# `clip_high`, the share of tokens clipped, and they stay near 0. The clip matters when the same
# batch is reused for several epochs (DeepSeekMath's $\mu$; exercise 7), which is what PPO's
# ratio was built for.

# %% [markdown]
# ## 3. R1-Zero on arithmetic
#
# ### The task and its verifier
#
# *Slide "No learned reward model": "Uses rule-based reward based on correct answers" and a
# "heuristic reward to require the following format".* `envs/arithmetic.py` is the smallest
# world with such a rule that a character-level model learns on a CPU: addition and subtraction
# of numbers with up to `max_digits` digits, worked column by column from the right in the
# `<think>` tags, each column written `a+b+c=s` with the carry `c` from the column before (for
# subtraction `a-b-c=s`, the top digit plus 10 where it borrows), and the answer in the
# `<answer>` tags. The reward (`ArithmeticTask.reward`) is $1$ for the right number inside
# `<answer>...</answer>` plus `format_weight` for the exact template (`ArithmeticTask.verify`
# returns the two checks). Hand-made responses to one problem:

# %%
problem = parse_prompt("47+38=")
steps, answer = worked_columns(problem)
wrong_steps, wrong_answer = worked_columns(problem, forget_carry=True)
slip_steps, slip_answer = worked_columns(problem, slip=0)
thinking = ",".join(steps)
hand = [("right, in the template", strict_response(steps, answer)),
        ("carry forgotten", strict_response(wrong_steps, wrong_answer)),
        ("a slip in column 0", strict_response(slip_steps, slip_answer)),
        ("the slip, but the right answer", strict_response(slip_steps, answer)),
        ("no thinking", f"<answer>{answer}</answer>"),
        ("no tags", f"{thinking} so {answer}"),
        ("answer outside its tags", f"<think>{thinking}</think>answer: {answer}"),
        ("answer tag never closed", f"<think>{thinking}</think><answer>{answer}"),
        ("right, a space added", f"<think>{thinking}</think> <answer>{answer}</answer>")]
print(f"task: max_digits={task.max_digits}, format_weight={task.format_weight}, "
      f"wrong_share={task.wrong_share}, loose_share={task.loose_share}")
print(f"prompt {problem.prompt!r}, answer {problem.answer}\n")
print(f"{'':32}{'response':58}{'correct':>8}{'format':>8}{'reward':>8}")
for name, response in hand:
    correct, formatted = task.verify(problem.prompt, response)
    print(f"{name:32}{response!r:58}{correct!s:>8}{formatted!s:>8}"
          f"{task.reward([problem.prompt], [response])[0]:>8.1f}")

# %% [markdown]
# Read the rows against the rule: "correct" needs the right number *inside closed answer
# tags*, so a right number anywhere else earns nothing; "format" is the whole response
# matching the template exactly, so even the added space (the deck's template has spaces, ours
# has none) fails it. A wrong answer in the right format earns `format_weight`. The verifier
# never reads the thinking: a response whose columns are wrong but whose answer is right earns
# the full reward (the fourth row). (R1-Zero's rules were of this kind: the answer in a stated
# place, and the tags.)
#
# ### The base model: pretraining on an imperfect corpus, no SFT
#
# R1-Zero started from DeepSeek-V3-Base, a model pretrained on text from the internet, which
# contains worked solutions, some wrong, in all kinds of formats. Our "internet" is
# `ArithmeticTask.pretrain_corpus`: worked problems in the template, but `wrong_share` of them
# with a mistake (a forgotten carry or a slip, carried through to a wrong answer) and
# `loose_share` in one of four loose formats. The kinds of responses, as the rest of the lecture
# will count them:

# %%
LOOSE = re.compile(r"^(?:[0-9+\-=,]+ so \d+|<think>[0-9+\-=,]+</think>answer: \d+"
                   r"|<answer>\d+</answer>|<think>[0-9+\-=,]+</think><answer>\d+)$")
KINDS = ("right, template", "wrong: carry forgotten", "wrong: another mistake",
         "loose format (of the corpus's four)", "malformed (none of them)")


def kind_of(prompt: str, response: str) -> str:
    """Which of KINDS a response is (the template's wrong answers told apart by their cause)."""
    correct, formatted = task.verify(prompt, response)
    if formatted and correct:
        return KINDS[0]
    if formatted:
        p = parse_prompt(prompt)
        return KINDS[1] if response == strict_response(*worked_columns(p, forget_carry=True)) \
            else KINDS[2]
    return KINDS[3] if LOOSE.match(response) else KINDS[4]


corpus = task.pretrain_corpus(4000, seed=1)
corpus_kinds = Counter(kind_of(question + "=", solution)
                       for question, _, solution in (doc.partition("=") for doc in corpus))
for doc in corpus[:6]:
    print(f"   {doc!r}")
print(f"\nkinds of solution in {len(corpus)} corpus documents:")
for kd in KINDS:
    print(f"   {kd:38}{corpus_kinds[kd] / len(corpus):>7.1%}")
print(f"expected share right in the template: (1 - wrong_share)(1 - loose_share) = "
      f"{(1 - task.wrong_share) * (1 - task.loose_share):.1%}")

# %% [markdown]
# The first row is close to the formula (a "mistake" can happen to give the right answer, and
# the documents are random). A model that imitates this corpus perfectly is right in
# the template about half the time; but most problems have a right answer among a few of its
# samples, and that is the room RL works in (section 6).
#
# ### Pretraining, then GRPO
#
# `run_r1_zero` (`minirlhf/r1_zero.py`, the `minirlhf grpo` command) runs the whole job:
#
# 1. **pretrain** the base model on the corpus (`PretrainConfig`: the task's tokenizer,
#    rotary positions, so a column sits at the same distance from the operator whatever the
#    operands' lengths);
# 2. **GRPO** from the base model with the verifier's reward (`train_grpo`): each iteration
#    samples `group_size` responses to each of `prompts_per_iteration` training prompts, and
#    every `eval_every` iterations evaluates on held-out problems (never in the corpus nor in
#    the RL prompts): `pass_k` samples each, pass@1, pass@k, format, length;
# 3. evaluates both models on **harder** held-out problems, with one more digit than any
#    problem trained on.
#
# We shorten the GRPO stage to fit the lecture's budget (the command's default is 100
# iterations on 128 held-out problems) and evaluate more often, to draw the curves. The
# configuration:

# %%
ITERATIONS = 40
cfg = dataclasses.replace(R1ZeroConfig(), iterations=ITERATIONS, eval_every=10,
                          checkpoint_every=ITERATIONS, n_eval=64)
print(f"pretraining: {cfg.pretrain.steps} steps x {cfg.pretrain.batch_size} documents, "
      f"lr {cfg.pretrain.optim.lr}, model {cfg.pretrain.model.n_layers} layers x "
      f"{cfg.pretrain.model.d_model}, positions {cfg.pretrain.model.positions!r}")
for name in ("iterations", "prompts_per_iteration", "group_size", "max_new_tokens", "advantage",
             "aggregation", "beta", "clip_eps", "clip_eps_high", "update_epochs",
             "num_minibatches", "lr", "truncation", "dynamic_sampling", "eval_every", "n_eval",
             "pass_k"):
    print(f"   {name:22} {getattr(cfg, name)}")

# %% [markdown]
# The next cell is the long one (in our runs two to four minutes on 2 cores, depending on
# what else the machine runs; most of it pretraining; it prints its time). GRPO
# first checks the base model: if it solved none of a few training problems in `group_size`
# tries, every group would be all wrong and GRPO would learn nothing, so it refuses to start
# (a mistake worth minutes of compute, caught in seconds). The job ends with its table: base
# model and GRPO policy on the held-out problems, and the first sample of each on a few of them.

# %%
out = work / "r1_zero"
start = time.perf_counter()
result = run_r1_zero(cfg, out)
print(f"\nR1-Zero job: {time.perf_counter() - start:.0f} s")

# %% [markdown]
# ### The curves
#
# `train_grpo` logs one line per iteration to `grpo/metrics.jsonl` (and draws `grpo/grpo.png`):
# the mean reward of the iteration's training responses, the share of **flat** groups (all
# rewards equal, section 5), the response **length** in tokens (EOS included), the **KL** to
# the base model (the sum of per-token k3 over a response, in nats), the policy's entropy per
# token, and the clip fractions; every `eval_every` iterations, the held-out figures
# (`eval_pass@1`, `eval_pass@8`, `eval_format`, `eval_length` in characters). Iteration 0 is the
# base model's evaluation (`grpo/base.json`).

# %%
history = read_metrics(out / "grpo" / "metrics.jsonl")
rows = [r for r in history if "reward" in r]
its = np.array([r["step"] for r in rows])
k = cfg.pass_k
base_eval, grpo_eval = result["held_out"]["base"], result["held_out"]["grpo"]
ev_its = [0] + [r["step"] for r in rows if "eval_pass@1" in r]
ev = {key: [base_eval[key]] + [r[f"eval_{key}"] for r in rows if "eval_pass@1" in r]
      for key in ("pass@1", f"pass@{k}", "format", "length")}
held_prompts = result["prompts"]["held_out"]
template_chars = np.mean([len(strict_response(*worked_columns(parse_prompt(p))))
                          for p in held_prompts])  # the right answer's length, in the template


def smooth(x, n=5):
    """Moving average over n iterations (each point is the mean of one batch)."""
    x = np.asarray(x, float)
    return np.array([x[max(0, j - n + 1):j + 1].mean() for j in range(len(x))])


fig, axes = plt.subplots(2, 3, figsize=(15, 7))
ax = axes[0, 0]
for key in ("pass@1", f"pass@{k}", "format"):
    ax.plot(ev_its, ev[key], "o-", label=f"held out: {key}")
ax.set_title(f"held-out problems ({cfg.n_eval}, {k} samples each)", fontsize=9)
ax.set_ylim(0, 1.02)
ax.legend(fontsize=8)
panels = ((axes[0, 1], "reward", f"training reward (max {1 + task.format_weight})"),
          (axes[1, 0], "kl", "KL(π_θ || π_ref), nats per response (k3)"),
          (axes[1, 1], "flat_groups", "share of flat groups (advantage 0)"),
          (axes[1, 2], "entropy", "entropy per token (nats)"))
for ax, key, title in panels:
    y = [r[key] for r in rows]
    ax.plot(its, y, color="C0", alpha=0.3)
    ax.plot(its, smooth(y), color="C0")
    ax.set_title(title, fontsize=9)
ax = axes[0, 2]  # the logged length counts tokens, EOS included: one more than the characters
ax.plot(its, [r["length"] - 1 for r in rows], color="C0", alpha=0.3)
ax.plot(its, smooth([r["length"] - 1 for r in rows]), color="C0", label="training responses")
ax.plot(ev_its, ev["length"], "o-", color="C1", label="held-out responses")
ax.axhline(template_chars, color="gray", ls="--", lw=0.8,
           label="the right answer in the template (held out)")
ax.set_title("response length (characters)", fontsize=9)
ax.legend(fontsize=8)
for ax in axes.flat:
    ax.set_xlabel("GRPO iteration")
    ax.grid(alpha=0.3)
fig.suptitle("R1-Zero on arithmetic (faint: each iteration's batch; line: 5-iteration mean; "
             "dots: held-out evaluations, 0 = the base model)", fontsize=10)
fig.tight_layout()
plt.show()

print(f"{'':16}{'first 5 iterations':>20}{'last 5 iterations':>20}")
for key in ("reward", "length", "kl", "entropy", "flat_groups", "clip_low", "clip_high",
            "approx_kl", "truncated"):
    print(f"{key:16}{np.mean([r[key] for r in rows[:5]]):>20.3f}"
          f"{np.mean([r[key] for r in rows[-5:]]):>20.3f}")

# %% [markdown]
# What to read:
#
# * **Accuracy and format** rise together, and not by chance: a right number outside closed
#   answer tags counts as wrong, so part of the accuracy gained is format gained. The table of
#   kinds below separates the two.
# * **pass@8 moves much less** than pass@1: most held-out problems were already solved
#   by one of eight base-model samples. Section 6 asks what that means.
# * **The KL** grows from 0 as the policy leaves the base model, and stays small (the table's
#   last column): a fraction of a nat per response. The KL term ($\beta$ = `beta`) pulls
#   towards the base model; exercise 3 removes it.
# * **Entropy** was already low (a worked column leaves little choice) and falls further; the
#   clip fractions are near 0, as section 2 said.
#
# **Length.** *Slide "Just using RL leads to 'learning how to think'":* "Figure 3 | The average
# response length of DeepSeek-R1-Zero on the training set during the RL process.
# DeepSeek-R1-Zero naturally learns to solve reasoning tasks with more thinking time." Our
# length panel also rises, but it is not the same phenomenon, and on the held-out problems it
# levels off near the dashed line.
# The table below sorts the held-out responses (the first sample per problem) by kind, with
# their mean length:

# %%
def kinds_table(prompts, samples_by_model):
    """Count and mean length (characters) of each kind of response, per model."""
    stats = {}
    for name, samples in samples_by_model.items():
        kinds = [kind_of(p, s) for p, s in zip(prompts, samples)]
        stats[name] = {kd: [len(s) for s, kk in zip(samples, kinds) if kk == kd] for kd in KINDS}
    print(f"{'':38}" + "".join(f"{name + ': share':>16}{'length':>8}" for name in stats))
    for kd in KINDS:
        cells = ""
        for name, st in stats.items():
            n, lens = len(st[kd]), st[kd]
            cells += f"{n / len(prompts):>16.1%}" + (f"{np.mean(lens):>8.1f}" if n else f"{'-':>8}")
        print(f"{kd:38}{cells}")


samples = {"base": base_eval["samples"], "GRPO": grpo_eval["samples"]}
kinds_table(held_prompts, samples)
for name, ss in samples.items():
    ends = [re.search(r"(\d+)\D*$", s_) for s_ in ss]  # the number at the end, in any format
    right_number = np.mean([m is not None and int(m.group(1)) == parse_prompt(p).answer
                            for p, m in zip(held_prompts, ends)])
    verified = np.mean([task.verify(p, s_)[0] for p, s_ in zip(held_prompts, ss)])
    print(f"{name}: right number at the end, in any format, {right_number:.1%}; right by the "
          f"verifier (closed answer tags) {verified:.1%}")
print(f"\nmean length: base {np.mean([len(s) for s in samples['base']]):.1f}, GRPO "
      f"{np.mean([len(s) for s in samples['GRPO']]):.1f}, the right answer in the template "
      f"{template_chars:.1f} characters")

# %% [markdown]
# **Where the accuracy came from.** Compare the rows: the loose formats all but vanish, and
# the "right number in any format" line says how much of the verifier's gain is arithmetic
# rather than tags. (Each share is over one sample per problem, so a few points are noise.)
#
# **Why the length grew.** In our runs, because the **short loose formats disappear** (the
# corpus's "no thinking" and "no tags" forms are shorter than the template; compare the
# length columns), and a response in the template has a length fixed by the problem: one
# column per digit. Once the format is learned, the length has nowhere to go: in our runs the
# mean ended near the template's length (the last printed line). R1-Zero's thinking was
# free-form: the model could write more steps, check them, start again ("Aha moments", the
# next slide), and the reward favoured whatever raised accuracy, which turned out to be longer
# thinking. To see length grow
# for that reason here, the task would need thinking of variable length, e.g. a checking step
# the template allows but does not require. (Section 4 shows a second, unwanted reason
# responses can grow under GRPO: its averaging.)
#
# **Samples, before and after.** The first held-out problems, the first sample of each model
# (✓ right by the verifier, ✗ not):

# %%
for p, a, b in list(zip(held_prompts, samples["base"], samples["GRPO"]))[:10]:
    marks = ["✓" if task.verify(p, s)[0] else "✗" for s in (a, b)]
    print(f"{p!r}\n   base {marks[0]} {a!r}\n   GRPO {marks[1]} {b!r}")

# %% [markdown]
# ## 4. Two biases of GRPO, on real batches
#
# Liu et al. 2025 ("Understanding R1-Zero-Like Training: A Critical Perspective", Dr. GRPO)
# point at two normalisations in GRPO's objective that no policy-gradient derivation asks for:
#
# 1. **$1/|o_i|$, the per-response length average** (`aggregation="sequence_mean"`): every
#    response weighs the same, so each *token* of a long response weighs less. A wrong
#    response ($A_i < 0$) is pushed down less per token the longer it is; a right one is pushed
#    up more per token the shorter it is.
# 2. **$1/\mathrm{std}(r)$, the std division** (`advantage="grpo"`): groups whose rewards vary
#    little get their advantages scaled up. Those are the prompts that are nearly always
#    solved, or nearly never: too easy or too hard.
#
# Their remedy: `aggregation="constant"` (sum over tokens, divide by the budget $N$, the same
# for every response) and `advantage="dr_grpo"` ($A_i = r_i - \mathrm{mean}(r)$). DAPO's
# `token_mean` (Yu et al. 2025) fixes the first within a batch. We measure both biases on groups
# the base model really samples: the 64 training prompts `train_grpo` checked the base model on,
# with the same key and shapes (so the sampler compiled there is reused), `group_size`
# responses each.

# %%
graphdef, base_params, tokenizer, _ = load_model(out / "base")
_, grpo_params, _, _ = load_model(out / "grpo")
G = cfg.group_size
group_prompts = task.prompts(64, seed=cfg.seed + 555)
rows_prompts = [p for p in group_prompts for _ in range(G)]  # row b * G + i: response i to prompt b
prompt, prompt_mask = tokenizer.encode_batch(rows_prompts, bos=True, padding="left",
                                             length=1 + task.max_prompt_chars)
sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens)


def sample_groups(params):
    """G responses to each of the 64 prompts: texts, (64, G) rewards and correct, the Generation."""
    gen = generate(graphdef, params, prompt, prompt_mask, jax.random.key(cfg.seed + 555), sampling)
    texts = tokenizer.decode_batch(np.asarray(gen.tokens), np.asarray(gen.mask))
    rewards = task.reward(rows_prompts, texts).reshape(-1, G)
    correct = np.array([task.verify(p, t)[0] for p, t in zip(rows_prompts, texts)]).reshape(-1, G)
    return texts, rewards, correct, gen


texts, rewards, correct, gen = sample_groups(base_params)
mask = gen.mask
lengths = np.asarray(mask.sum(axis=1))  # |o_i| in tokens, EOS included
adv = {kind: np.asarray(group_advantages(jnp.asarray(rewards), kind, cfg.std_floor)).reshape(-1)
       for kind in ("grpo", "dr_grpo")}
print(f"{len(texts)} responses; rewards: " + ", ".join(
    f"{v:g} x {n}" for v, n in sorted(Counter(rewards.ravel().tolist()).items())))
print(f"pass@{G} of the base model on these prompts (one right in the group): "
      f"{correct.any(axis=1).mean():.0%}, as train_grpo printed above")
print(f"mean length (tokens): reward 0 (malformed) {lengths[rewards.ravel() == 0].mean():.1f}, "
      f"reward >= {task.format_weight} (the template) {lengths[rewards.ravel() > 0].mean():.1f}")

# %% [markdown]
# **The length bias.** The weight each aggregation gives each token is its derivative,
# `jax.grad` of `aggregate` with respect to the per-token terms $l_{i,t}$; at $\rho = 1$ the
# policy gradient on token $t$ of response $i$ is $A_i$ times that weight. We scale the weights
# so that `token_mean`'s are 1 (multiply by the batch's token count).

# %%
total_tokens = int(lengths.sum())
weights = {}  # the weight of each token of o_i (all of them alike), token_mean's scaled to 1
for how in AGGREGATIONS:
    w = jax.grad(lambda x, h=how: aggregate(x, mask, h, cfg.max_new_tokens))(
        jnp.zeros(mask.shape))
    weights[how] = np.asarray(w)[:, 0] * total_tokens
right = correct.ravel()
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
axes[2].sharey(axes[1])
for how, style in zip(AGGREGATIONS, ("o", "s", "^")):
    axes[0].plot(lengths, weights[how], style, ms=4, alpha=0.5, label=how)
axes[0].set_xlabel("response length |o_i| (tokens)")
axes[0].set_ylabel("weight of each of its tokens (token_mean = 1)")
axes[0].set_title("per-token weight, by aggregation", fontsize=9)
axes[0].legend(fontsize=8)
for ax, how in zip(axes[1:], ("sequence_mean", "token_mean")):
    push = adv["grpo"] * weights[how]
    for sel, color, label in ((right, "C2", "right (A > 0 mostly)"),
                              (~right & (rewards.ravel() > 0), "C1", "wrong, in the template"),
                              (rewards.ravel() == 0, "C3", "malformed (reward 0)")):
        ax.plot(lengths[sel], push[sel], "o", ms=4, alpha=0.5, color=color, label=label)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xlabel("response length |o_i| (tokens)")
    ax.set_ylabel("A_i × per-token weight")
    ax.set_title(f"the push on each token, {how}", fontsize=9)
    ax.legend(fontsize=8)
for ax in axes:
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

neg = adv["grpo"] < 0
median = np.median(lengths[neg])
short, long_ = neg & (lengths < median), neg & (lengths >= median)
print(f"responses with A < 0 (made less likely): {short.sum()} shorter than their median length "
      f"({median:.0f} tokens), mean A {adv['grpo'][short].mean():+.2f}; {long_.sum()} longer, "
      f"mean A {adv['grpo'][long_].mean():+.2f}")
print(f"{'':16}{'per-token weight: short':>24}{'long':>7}{'push per token: short':>24}{'long':>7}")
for how in AGGREGATIONS:
    push = adv["grpo"] * weights[how]
    print(f"{how:16}{weights[how][short].mean():>24.2f}{weights[how][long_].mean():>7.2f}"
          f"{push[short].mean():>24.2f}{push[long_].mean():>7.2f}")

# %% [markdown]
# Under `sequence_mean` the per-token weight is the hyperbola $\bar L / |o_i|$ (left panel):
# the short malformed responses (red, middle panel) are pushed down hardest per token, long
# wrong ones least. That is the bias: where a wrong response can be long or short, GRPO prefers
# it long. Liu et al. argue that part of the length growth seen in R1-Zero-like training comes
# from this bias: wrong responses growing longer, which is not "more thinking". Under
# `token_mean` and `constant` the per-token push is $A_i$ times one factor for the whole
# batch (right panel): no length gets a discount. (`constant` differs from `token_mean` only in
# that factor: the budget $B G N$ instead of the batch's token count, so it does not change
# from batch to batch as long as every response counts.)
#
# In our task the lengths within a group are nearly fixed by the problem (the template), and
# the malformed responses are the *short* ones, so here `sequence_mean` pushes hardest against
# malformed responses, which helps the format rather than lengthening answers. The bias is
# there, but the task gives it little room to act.
#
# **The std bias.** Per group, the sum of $|A_i|$, how hard the group pushes in total, against
# the number of right responses in it, under `grpo` and `dr_grpo`:

# %%
n_right = correct.sum(axis=1)
std = rewards.std(axis=1, ddof=1)
flat = np.asarray(flat_groups(jnp.asarray(rewards), cfg.std_floor))
mass = {kind: np.abs(a.reshape(-1, G)).sum(axis=1) for kind, a in adv.items()}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(n_right))
for (kind, m), color in zip(mass.items(), ("C0", "C1")):
    ax1.plot(n_right + jitter, m, "o", alpha=0.5, color=color, label=f"advantage={kind!r}")
    means = [m[n_right == j].mean() if (n_right == j).any() else np.nan for j in range(G + 1)]
    ax1.plot(range(G + 1), means, "-", color=color)
ax1.set_xlabel(f"right responses in the group (of G = {G})")
ax1.set_ylabel("sum_i |A_i| over the group")
ax1.set_title("how hard each group pushes (line: mean per count)", fontsize=9)
ax1.legend(fontsize=8)
ok = ~flat
ax2.plot(std[ok], mass["grpo"][ok] / mass["dr_grpo"][ok], "o", alpha=0.6)
std_grid = np.linspace(std[ok].min(), std[ok].max(), 100)
ax2.plot(std_grid, 1 / std_grid, "--", color="gray", label="1 / std")
ax2.set_xlabel("std of the group's rewards")
ax2.set_ylabel("grpo's push / dr_grpo's push")
ax2.set_title("the std division scales each group by 1 / std", fontsize=9)
ax2.legend(fontsize=8)
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

print(f"{'right of ' + str(G):>12}{'groups':>8}{'mean std':>10}{'sum|A| grpo':>13}{'dr_grpo':>9}"
      f"{'ratio':>7}")
for j in range(G + 1):
    sel = (n_right == j) & ~flat
    if sel.any():
        g_mass, d_mass = mass["grpo"][sel].mean(), mass["dr_grpo"][sel].mean()
        print(f"{j:>12}{sel.sum():>8}{std[sel].mean():>10.3f}{g_mass:>13.2f}{d_mass:>9.2f}"
              f"{g_mass / d_mass:>7.2f}")

# %% [markdown]
# Under `dr_grpo` a group pushes hardest when its rewards are most spread, half right and half
# wrong: where the samples disagree most, there is most to learn. Under `grpo` every group with
# any spread is scaled to the same size ($\sum_i A_i^2 = G - 1$ exactly), so a group with a
# small std is blown up (the ratio column, largest at the two ends of the table). Look at
# the groups with **no** right response: their rewards differ only in the format (0 or
# `format_weight`), and `grpo` pushes them about as hard as a half-right group, all of it spent
# on the format of problems the model cannot solve yet. At the easy end (all right but one or
# two), the few wrong responses get large negative advantages. Liu et al. call this a
# question-level difficulty bias: too-easy and too-hard questions weigh more than the
# information they carry. (The table leaves out flat groups, which have no advantages at all.)
#
# Which one trains better is an empirical question (exercise 2). On a reward that is right or
# wrong with probability $p$, the std division multiplies a group by about $1/\sqrt{p(1-p)}$: a
# per-prompt step size. Adam rescales the whole gradient, but not the groups' weights relative
# to each other within a batch, which is what the figure shows.

# %% [markdown]
# ## 5. Flat groups: no variance, no gradient
#
# A group whose $G$ rewards are all equal, all right in the template or all malformed, has
# $r_i - \mathrm{mean}(r) = 0$ for every $i$: advantage 0 at every token, so the surrogate
# contributes **no gradient**, however many tokens it has. (`flat_groups` also counts groups whose
# std is below `std_floor`: a reward model's scores of near-identical texts differ by rounding,
# and the std division would blow that up into advantages of $\pm 1$.) What such a group still
# does, in GRPO as written:
#
# * it was **sampled**, the most expensive part of an iteration, for nothing;
# * under `sequence_mean` its responses still count among the $B G$ the loss divides by,
#   which **dilutes** the other groups' gradient;
# * with $\beta > 0$ its tokens still feel the KL term's pull towards $\pi_{ref}$.
#
# As the policy improves, more groups come out all right: the flat share in section 3's curves
# grows. The same 64 prompts, sampled now from the GRPO policy with the same key (same shapes,
# so no new compilation):

# %%
g_texts, g_rewards, g_correct, g_gen = sample_groups(grpo_params)
g_flat = np.asarray(flat_groups(jnp.asarray(g_rewards), cfg.std_floor))
fig, ax = plt.subplots(figsize=(8, 3.5))
width = 0.4
for shift, (name, corr, fl) in zip((-width / 2, width / 2), (("base", correct, flat),
                                                              ("GRPO", g_correct, g_flat))):
    nr = corr.sum(axis=1)
    counts_all = np.array([(nr == j).sum() for j in range(G + 1)])
    counts_flat = np.array([((nr == j) & fl).sum() for j in range(G + 1)])
    ax.bar(np.arange(G + 1) + shift, counts_all, width, label=name,
           color="C0" if name == "base" else "C1", alpha=0.8)
    ax.bar(np.arange(G + 1) + shift, counts_flat, width, fill=False, hatch="//",
           edgecolor="k", lw=0)
ax.bar([0], [0], fill=False, hatch="//", edgecolor="k", lw=0, label="flat groups (advantage 0)")
ax.set_xlabel(f"right responses in the group (of G = {G})")
ax.set_ylabel("groups (of 64)")
ax.set_title("the same 64 training prompts, G samples each, before and after GRPO", fontsize=9)
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
for name, rw, fl in (("base", rewards, flat), ("GRPO", g_rewards, g_flat)):
    kinds = Counter(float(rw[b, 0]) for b in np.flatnonzero(fl))
    which = ", ".join(f"{n} with every reward {v:g}" for v, n in sorted(kinds.items()))
    print(f"{name:>5}: flat groups {fl.mean():.0%} ({which or 'none'})")
print(f"training batches: flat share {np.mean([r['flat_groups'] for r in rows[:10]]):.0%} "
      f"over the first 10 iterations, {np.mean([r['flat_groups'] for r in rows[-10:]]):.0%} over "
      f"the last 10")

# %% [markdown]
# The histogram moves to the right: GRPO turned many "mostly right" groups into "all right",
# which are flat. This is how GRPO runs out of signal on a fixed set of problems: the better
# the policy, the more of each batch is flat. (`train_grpo` warns when the share passes
# `flat_warning`.)
#
# **No gradient, and dilution, on the GRPO batch.** At $\rho = 1$ and $\pi_\theta = \pi_{ref}$
# (so that the KL term is silent), the loss's gradient with respect to every token's
# log-probability, summed per group; then the total weight `sequence_mean` gives the non-flat
# groups' tokens, with and without DAPO's **dynamic sampling** (`GRPOConfig.dynamic_sampling`),
# which takes flat groups out of the loss and its averages (`counted_responses`):

# %%
g_adv = group_advantages(jnp.asarray(g_rewards), cfg.advantage, cfg.std_floor).reshape(-1)
logp = g_gen.logprobs  # the sampler's log pi_old
grad = jax.grad(lambda lp: grpo_loss(lp, logp, lp, g_adv, g_gen.mask, cfg.clip_eps,
                                     cfg.clip_eps_high, cfg.beta, cfg.aggregation))(logp)
per_group = np.abs(np.asarray(grad)).reshape(-1, G * cfg.max_new_tokens).sum(axis=1)
print(f"sum |dL/dlog pi| over a group: flat groups max {per_group[g_flat].max():.1e}, "
      f"the others mean {per_group[~g_flat].mean():.3f}")
truncated = ~np.asarray(g_gen.finished)
for ds in (False, True):
    ds_cfg = dataclasses.replace(cfg.grpo(str(out / "base")), dynamic_sampling=ds)
    counts = counted_responses(jnp.asarray(truncated), jnp.asarray(g_flat), ds_cfg)
    loss_mask = g_gen.mask & counts[:, None]
    w = jax.grad(lambda x, m=loss_mask, h=ds_cfg.aggregation: aggregate(x, m, h))(
        jnp.zeros(loss_mask.shape))
    informative = np.asarray(w).reshape(-1, G, cfg.max_new_tokens)[~g_flat].sum()
    print(f"dynamic_sampling={ds!s:5}: responses in the loss {int(counts.sum()):>3} of "
          f"{len(counts)}, total weight on the non-flat groups' tokens {informative:.2f}")

# %% [markdown]
# The flat groups' gradient is exactly 0. Without dynamic sampling, the other groups' total
# weight is their share of the batch: the flat share is, in effect, a cut in the learning rate
# that grows as the policy improves. With it, the informative groups get the whole weight
# (minirlhf's version just drops the flat groups, so the batch shrinks). DAPO's full recipe
# also **refills**: it keeps sampling prompts until the batch holds `prompts_per_iteration`
# non-flat groups, which costs more sampling but keeps the batch size, and so the gradient's
# noise, constant. Other remedies: a larger $G$ (an all-right group of 16 is rarer than one of
# 8), or a curriculum that moves on to harder problems (exercises 1 and 9).

# %% [markdown]
# ## 6. pass@1 vs. pass@k: sharpening or new answers?
#
# *Deck, the slide with R1-Zero's Figure 2:* "AIME accuracy of DeepSeek-R1-Zero during training.
# For each question, we sample 16 responses and calculate the overall average accuracy", and its
# table: "Pass@1: Is the first model output correct?", "Cons@k: Is the most common answer
# across k samples correct? (Majority vote)". Our pass@1 is that average over samples. **pass@k**
# asks whether *any* of $k$ samples is right; from $n \ge k$ samples of which $c$ are right,
# Chen et al. 2021 (eq. 1) estimate it without bias as
#
# $$\text{pass@}k = 1 - \binom{n - c}{k} \Big/ \binom{n}{k}$$
#
# (`pass_at_k`): the chance that $k$ of the $n$ samples, drawn without replacement, include a
# right one. pass@k for large $k$ measures what a model *can* do, pass@1 what it *usually*
# does. Yue et al. 2025 ("Does Reinforcement Learning Really Incentivize Reasoning Capacity in
# LLMs Beyond the Base Model?") found that RL with verifiable rewards raises pass@1 but not
# pass@k at large $k$, where base models catch up or overtake: RL **sharpens** the distribution
# towards answers the base model could already reach, rather than teaching new ones. On the
# held-out problems of section 3's evaluations, $K$ samples of each model:

# %%
K, N_PROBLEMS = 32, cfg.n_eval
# Same seed and count as train_grpo's evaluator: the same problems, K samples each.
pass_eval = VerifierEvaluator(task, tokenizer, N_PROBLEMS, K, cfg.max_new_tokens, cfg.seed)
assert pass_eval.prompts == held_prompts[:N_PROBLEMS]
c, k_samples = {}, {}
for name, params in (("base", base_params), ("GRPO", grpo_params)):
    k_samples[name] = pass_eval.samples(graphdef, params)  # K responses per problem
    c[name] = np.array([sum(task.verify(p, r)[0] for r in rs)
                        for p, rs in zip(pass_eval.prompts, k_samples[name])])
ks = np.arange(1, K + 1)
curve = {name: np.array([pass_at_k(K, cn, kk).mean() for kk in ks]) for name, cn in c.items()}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
for name, y in curve.items():
    ax1.plot(ks, y, "o-", ms=3, label=name)
ax1.set_xscale("log", base=2)
ax1.set_xlabel("k")
ax1.set_ylabel("pass@k")
ax1.set_title(f"pass@k on {N_PROBLEMS} held-out problems ({K} samples each)", fontsize=9)
ax1.legend(fontsize=8)
ax2.plot(c["base"] / K + np.random.default_rng(1).uniform(-0.01, 0.01, N_PROBLEMS),
         c["GRPO"] / K, "o", alpha=0.6)
ax2.plot([0, 1], [0, 1], "--", color="gray", lw=0.8)
ax2.set_xlabel("base model: share of samples right")
ax2.set_ylabel("GRPO: share of samples right")
ax2.set_title("per problem", fontsize=9)
for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
print(f"{'k':>4}" + "".join(f"{name:>8}" for name in curve) + f"{'gap':>8}")
for kk in (1, 2, 4, 8, 16, 32):
    print(f"{kk:>4}" + "".join(f"{y[kk - 1]:>8.3f}" for y in curve.values())
          + f"{curve['GRPO'][kk - 1] - curve['base'][kk - 1]:>+8.3f}")
for a, b in (("base", "GRPO"), ("GRPO", "base")):
    only = [p for p, ca, cb in zip(pass_eval.prompts, c[a], c[b]) if ca > 0 and cb == 0]
    print(f"solved by {a} in {K} tries, never by {b}: {len(only)} {only}")
neither = [p for p, x, y in zip(pass_eval.prompts, c["base"], c["GRPO"]) if x + y == 0]
print(f"solved by neither: {neither}")
odd = [i for i in range(N_PROBLEMS) if min(c["base"][i], c["GRPO"][i]) == 0]
for i in odd[:3]:  # what the models write where one of them (or both) never got it right
    q = pass_eval.prompts[i]
    print(f"\n{q!r} (answer {parse_prompt(q).answer}): right in {c['base'][i]} (base) and "
          f"{c['GRPO'][i]} (GRPO) of {K}; the most common responses:")
    for name in c:
        for text, n in Counter(k_samples[name][i]).most_common(2):
            print(f"   {name:>4} x{n:<3}{text!r}")

# %% [markdown]
# Read the gap column: large at $k = 1$, shrinking as $k$ grows, small at $k = K$. Within
# these $K$ samples, the base model already reached nearly every problem GRPO solves. The few
# problems one model solves and the other does not are printed with their most common
# responses: judge whether a count of 1 or 2 in $K$ is more than chance. (In our runs, on one
# of them both models mostly wrote every column right and then a wrong answer: the verifier
# reads only the answer, so right thinking earns nothing there.) In the right panel, nearly
# every problem moved up: what GRPO did was make the right answer, which the base model wrote
# some of the time, the usual one.
# That is Yue et al.'s "sharpening", and on this task it is no surprise: the corpus taught the
# method, and the base model's mistakes (the corpus's forgotten carries and slips, and its
# own) are noise that RL filters out, because the verifier tells which samples have them.
# Whether RL can also *extend* what a model can do is the open question; at large $k$ Yue et
# al. saw base models overtake their RL versions, which they attribute to sharpening also
# trimming the rarer paths to an answer.
#
# **The harder problems**, one more digit than any problem in the corpus or the RL prompts,
# evaluated by `run_r1_zero` on `n_eval` of them (`pass_k` samples each):

# %%
harder = result["harder"]
print(f"{'':12}{'pass@1':>8}{'pass@' + str(k):>8}{'format':>8}{'length':>8}")
for name in ("base", "grpo"):
    r = harder[name]
    print(f"{name:12}{r['pass@1']:>8.1%}{r[f'pass@{k}']:>8.1%}{r['format']:>8.1%}"
          f"{r['length']:>8.1f}")
for p, a, b in list(zip(result["prompts"]["harder"], harder["base"]["samples"],
                        harder["grpo"]["samples"]))[:5]:
    print(f"{p!r}\n   base {a!r}\n   GRPO {b!r}")

# %% [markdown]
# Neither model solves them, in any of its samples, and they almost never write the
# template: the responses fall apart at the start (in our runs they often begin by continuing
# the prompt's digits, as above). A four-digit operand, and a four- or five-column answer, are
# inputs and outputs the model never saw. RL cannot help: with (nearly) every reward 0, every
# group is flat (section 5), and `train_grpo`'s base-model check would refuse to start on these
# problems. RL sharpens what is in the base model's samples; to go further, the base model
# needs the data (or a curriculum that reaches the new problems in steps a sample can bridge).

# %%
print(f"whole lecture: {time.perf_counter() - LECTURE_START:.0f} s; run folders under {work}")

# %% [markdown]
# ## 7. Exercises
#
# Each GRPO run below starts from the base model of section 3 (`cfg.grpo(str(out / "base"))`
# gives the stage's `GRPOConfig`; change fields with `dataclasses.replace` and call
# `train_grpo(config, work / "a_new_folder", task=task)`); in our runs, under a minute for
# section 3's number of iterations.
#
# 1. **Dynamic sampling.** Train with `dynamic_sampling=True`, and plot `flat_groups` and
#    `eval_pass@1` from both runs' `metrics.jsonl`. Does dropping flat groups speed learning up
#    in the second half, when they are common? Then try `group_size=16` with
#    `prompts_per_iteration=8` (the same 128 responses per iteration): how does the flat share
#    change, and why?
# 2. **Dr. GRPO.** Train with `advantage="dr_grpo"` and `aggregation="constant"`, then with only
#    one of the two changed. Compare pass@1 and format over iterations, and the mean length of
#    the *wrong* held-out responses (`kind_of` on the evaluator's samples). Does either bias of
#    section 4 show up in the curves on this task?
# 3. **No KL term.** Train with `beta=0` (DAPO and Dr. GRPO drop it). Does the KL to the base
#    model grow faster? Does held-out pass@1 suffer or gain? With `lr=3e-4`?
# 4. **A verifier with a hole.** Write a reward function `(prompts, responses) -> (B,) array`
#    that forgets to check the closing tag (search for `<answer>(\d+)` only) and pass it as
#    `train_grpo(..., reward_fn=...)`. Do unclosed tags come back? Then one that gives 0.01 per
#    character of thinking: does the length grow now, and at what cost in accuracy? (Reward
#    hacking without a reward model.)
# 5. **Format without a format reward.** `ArithmeticTask(format_weight=0.0)` rewards only the
#    right answer (`dataclasses.replace(task, format_weight=0.0)`, passed as `task=`). Does the
#    format still improve, and why (what does "correct" require)? And with `format_weight=2.0`?
# 6. **The credit of one column.** Sample a group from the base model for a problem with a
#    carry, and find a wrong response whose first column is right. Compute its tokens'
#    gradient with `grpo_loss` (section 2): what happens to the right column's tokens? How
#    many samples would it take for the column to be pushed up on average?
# 7. **Several epochs and clip-higher.** Train with `update_epochs=4` and then also
#    `clip_eps_high=0.28` (DAPO's clip-higher). Plot `clip_low`, `clip_high`, `approx_kl` and
#    `entropy`. Does the clip now bite? Does clip-higher keep the entropy up?
# 8. **pass@k at large k.** Set section 6's `K = 128` and `N_PROBLEMS = 16`. Does the base model
#    catch up with, or overtake, the GRPO policy at large $k$? Which problems does the GRPO
#    policy never solve that the base model does, and what did its samples write instead?
# 9. **GRPO from nothing.** Subclass `ArithmeticTask` with a `prompts(n, seed)` that returns
#    four-digit problems (`Problem(a, op, b).prompt` from `envs/arithmetic.py`, skipping those
#    for which `ArithmeticTask.held_out(problem)` is True) and train on it. Read
#    `train_grpo`'s message: why does it refuse? What would you change, in the data or in the
#    RL, to reach four-digit problems (think of a curriculum: mix in a few, raise the share)?
