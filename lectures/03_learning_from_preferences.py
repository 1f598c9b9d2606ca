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
# # Lecture 3 — Learning from preferences: the reward model
#
# The deck "Large Language Models and RL from Human Feedback", slide **"High-Level Recipe for
# ChatGPT"**, lists four steps:
#
# 1. Unsupervised pre-training
# 2. Supervised finetuning (behavioral cloning) from human demonstrations
# 3. Collect preference rankings over outputs to train a reward function
# 4. Perform policy gradient updates using RL with learned reward
#
# Lecture 1 built steps 1 and 2, lecture 2 the policy-gradient machinery of step 4. This
# lecture builds the piece in between: a **reward model** learned from people's comparisons.
# (InstructGPT's figure, which the deck shows next, counts SFT as its Step 1, so there this
# is **"Step 2: Collect comparison data and train a reward model"**; it is the same step.)
#
# | section | idea | minirlhf |
# | --- | --- | --- |
# | 1 | why comparisons rather than demonstrations | |
# | 2 | the Bradley-Terry model and the preference loss; the decks' worked example | `minirlhf/losses.py` |
# | 3 | simulated labelers, label noise and agreement | `envs/labelers.py`, `envs/reviews.py` |
# | 4 | rankings vs. pairs, and sums over trajectories | `minirlhf/losses.py` |
# | 5 | preference data on disk: a JSONL file you can write by hand | `minirlhf/preference_data.py` |
# | 6 | training a reward model end to end | `minirlhf/reward_model.py` |
# | 7 | using the reward model, and where not to trust it | `minirlhf/reward_model.py` |
# | 8 | how label noise limits the reward model | `minirlhf/reward_model.py` |
# | 9 | exercises | |
#
# Everything runs on a laptop CPU: the whole notebook takes about 1.5 minutes on 2 cores.
#
# **Setup.** Install the package once from the repository root (`pip install -e .`; in Colab,
# `!pip install` the repository first), then run the cells top to bottom.

# %%
import dataclasses
import json
import os
import tempfile
import time

# Training loops show tqdm progress bars; "0" turns them back on.
os.environ.setdefault("MINIRLHF_QUIET", "1")

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from IPython.display import Image, display

from minirlhf.configs import override
from minirlhf.envs import make_task
from minirlhf.envs.labelers import (Labeler, agreement_rate, gold_agreement,
                                    predicted_agreement, predicted_gold_agreement,
                                    temperature_for_gold_agreement)
from minirlhf.logging import expect, read_metrics
from minirlhf.losses import (bradley_terry_loss, ranking_loss, ranking_pairs,
                             trajectory_preference_loss)
from minirlhf.model import count_params
from minirlhf.optim import OptimConfig
from minirlhf.pipeline import preset
from minirlhf.preference_data import Comparison, load_preferences, write_preferences
from minirlhf.pretrain import pretrain
from minirlhf.reward_model import (RewardConfig, as_pairs, evaluate_comparisons,
                                   load_reward_model, train_reward_model)
from minirlhf.sft import sft
from minirlhf.tokenizer import CharTokenizer

# %matplotlib inline

LECTURE_START = time.perf_counter()
work = tempfile.mkdtemp(prefix="minirlhf_lecture03_")  # run folders go here, never the repo
task = make_task("reviews")
print("jax", jax.__version__, "on", jax.devices())

# %% [markdown]
# ## 1. Why comparisons?
#
# *Deck "Reinforcement Learning for and with Foundation Models", slides "Case Study: ChatGPT"
# (Reward Learning from Human Feedback):* "Why? → Reward Engineering is hard!" Nobody can
# write down, as a formula, what makes an answer helpful (the deck contrasts the
# hand-written rewards of HalfCheetah and "learning to run"). So the reward is *learned*:
#
# 1. "Policy/ChatGPT proposes X 'continuations' in a prompt"
# 2. "Human labeler sorts the 'continuations' from best to worst"
# 3. "Reward is trained with pairwise comparisons"
#
# Why comparisons, when lecture 1 already trained on demonstrations? The decks give several
# reasons:
#
# * **Writing is harder than judging.** "Learning by demonstration has limitations, as
#   labelers need to generate high-quality answers" (the poem about "the melancholy of
#   Autumn"). Most of us cannot write a Nobel-prize poem, but we can tell which of two poems
#   we prefer. Deck "Large Language Models and RL from Human Feedback", slide "Why would you
#   want to learn a reward from ranked examples?": "Can't demonstrate - Cheaper / lower cog
#   burden - extrapolate prefs - alignment".
# * **Comparisons are easier to make consistently than scores.** "Which text is better?" has
#   an answer; "How 'much' better?" on an absolute scale does not, and different people use
#   a scale differently. The Bradley-Terry model of section 2 recovers "how much" from
#   *how reliably* people prefer one text to the other.
# * **Imitation cannot beat the demonstrator.** Behavioural cloning copies the
#   demonstrations, mistakes included; imitation approaches "typically can't do much better
#   than the demonstrator" (slide "Inverse Reinforcement Learning"). Comparisons instead
#   let us "find a reward function that explains the ranking, allowing for extrapolation"
#   (slides "Pre-Ranked Demonstrations", T-REX): beyond the best example we were shown.
# * **A caveat:** "What happens if Labeler does not know the correct answer, but model does?
#   → The model learns to hide information or lie!!!" ("Is chicken vegetarian?"). A reward
#   model learns what labelers *prefer*, which is not always what is true.
#
# The decks show three ways to collect the feedback (slides "Pairwise Preference Feedback",
# "Preference Feedback with Correction", "Preference Feedback with Rankings"): choose the
# better of two answers, rewrite an answer (the correction beats both originals: "Generates
# *3* preferences pairs!"), or rank several answers. Sections 2-4 turn each of them into a loss.

# %% [markdown]
# ## 2. The Bradley-Terry model and the preference loss
#
# *Deck "Reinforcement Learning for and with Foundation Models", slide "Case Study: ChatGPT"
# (Christiano et al. 2017, eq. 1):* "We can interpret a reward function estimate $\hat r$ as
# a preference-predictor if we view $\hat r$ as a latent factor explaining the human's
# judgments":
#
# $$\hat P[y_w \succ y_l] = \frac{\exp \hat r(x, y_w)}{\exp \hat r(x, y_w) + \exp \hat r(x, y_l)}
#   = \sigma\big(\hat r(x, y_w) - \hat r(x, y_l)\big).$$
#
# This is the **Bradley-Terry model** (1952, for ranking chess players and sports teams): each
# item has a latent strength, and the probability that one beats the other depends only on
# the *difference* of their strengths, through the logistic function $\sigma$.
#
# *Deck "Large Language Models and RL from Human Feedback", slide "Learning from
# Preferences":* given a preference dataset $\mathcal D$ of tuples ($x$: prompt, $y_w$:
# winning response, $y_l$: losing response), maximise the likelihood of the labels:
#
# $$\mathcal L(\hat r) = -\mathbb E_{(x, y_w, y_l) \in \mathcal D}\Big[\log \sigma\big(\hat
#   r(x, y_w) - \hat r(x, y_l)\big)\Big]$$
#
# "The loss decreases as the difference between the inferred reward for $y_w$ and $y_l$
# increases!" Slide "Learning from Preferences in practice": the same loss written with the
# softmax, $\log \frac{e^{\hat r(x,y_w)}}{e^{\hat r(x,y_w)} + e^{\hat r(x,y_l)}}$, "is
# typically just the cross entropy loss where the number of classes is k=2": the two
# rewards are the two logits, and the true class is "$y_w$".
#
# In minirlhf that is `bradley_terry_loss(r_a, r_b, prob_a=1.0)`: a loss of arrays, which
# never sees a model.
#
# **The slide's worked example.** The reward model gives the refusal ($y_w$, label 1) a reward
# of 1.23 and the harmful answer ($y_l$, label 0) 4.59. The slide's table reads: softmax
# 0.0335, cross-entropy loss 1.474. Let us recompute it.

# %%
r_w, r_l = 1.23, 4.59
logits = jnp.array([r_w, r_l])  # two classes: "y_w is better", "y_l is better"
p_w = float(jax.nn.softmax(logits)[0])  # = sigma(r_w - r_l)
loss_ln = float(bradley_terry_loss(jnp.array([r_w]), jnp.array([r_l])))
loss_optax = float(optax.softmax_cross_entropy_with_integer_labels(logits, 0))
loss_log10 = -np.log10(p_w)

print(f"softmax P(y_w) = sigma({r_w} - {r_l}) = sigma({r_w - r_l:.2f}) = {p_w:.5f}   (slide: 0.0335)")
print(f"-log10 P(y_w)                      = {loss_log10:.3f}    (slide: 1.474)")
print(f"-ln P(y_w), minirlhf               = {loss_ln:.3f}")
print(f"-ln P(y_w), optax cross-entropy    = {loss_optax:.3f}")
print(f"ratio {loss_ln:.3f} / {loss_log10:.3f} = {loss_ln / loss_log10:.4f} = ln 10")
assert abs(p_w - 0.0335) < 1e-4 and abs(loss_log10 - 1.474) < 5e-4
assert abs(loss_ln - 3.394) < 5e-4 and abs(loss_optax - loss_ln) < 1e-5

# %% [markdown]
# **Watch the logarithm.** The slide's 1.474 is $-\log_{10} 0.0335$: a *base-10* logarithm.
# Every deep-learning library (PyTorch's `F.cross_entropy`, optax, JAX's `log_sigmoid`) and
# minirlhf use the natural logarithm, which gives **3.394** for the same rewards. The two
# differ by the constant factor $\ln 10 \approx 2.303$, so they have the same minimiser and
# the base only rescales the gradient (like a learning rate). It matters when you compare
# numbers: in nats, a model that knows nothing ($\hat r(x,y_w) = \hat r(x,y_l)$) pays
# $\ln 2 = 0.693$ per comparison; in base 10 it pays 0.301. Every loss in this lecture is in
# nats.
#
# **Loss and gradient against the reward gap** $\Delta = \hat r(x,y_w) - \hat r(x,y_l)$:
#
# $$\mathcal L(\Delta) = -\log\sigma(\Delta), \qquad
#   \frac{d\mathcal L}{d\Delta} = -\big(1 - \sigma(\Delta)\big) = -\hat P[y_l \succ y_w].$$
#
# The push on the gap is the probability the model currently puts on the *wrong* answer:
# close to $-1$ when the model is confidently wrong (the worked example, $\Delta = -3.36$),
# close to 0 when it is confidently right. The loss pushes hardest on the pairs the model
# gets wrong, and ever more gently on those it already gets right.
#
# A label need not be 0 or 1. Christiano et al.'s loss (deck "Reinforcement Learning for and
# with Foundation Models", slide "Case Study: ChatGPT") weighs the two orders by $\mu(1),
# \mu(2)$: "equally preferable" is $\mu = (0.5, 0.5)$, and a label that is right with
# probability $p$ is $\mu = (p, 1-p)$. `bradley_terry_loss(r_a, r_b, prob_a=p)` is that
# cross-entropy; its minimum is no longer at $\Delta \to \infty$ but at
# $\Delta^* = \log\frac{p}{1-p}$, where $\sigma(\Delta^*) = p$: **the best reward gap is the
# log-odds of the labels.** Remember this for section 3.

# %%
gaps = jnp.linspace(-8.0, 8.0, 401)


def per_pair(fn):
    """Apply a mean-over-pairs loss to each gap separately: (G,) gaps -> (G,) losses."""
    return jax.vmap(lambda d: fn(d[None], jnp.zeros(1)))(gaps)


loss = per_pair(bradley_terry_loss)
grad = jax.vmap(jax.grad(lambda d: bradley_terry_loss(d[None], jnp.zeros(1))))(gaps)
loss_soft = per_pair(lambda a, b: bradley_terry_loss(a, b, prob_a=0.7))
best_soft = float(gaps[jnp.argmin(loss_soft)])

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
ax1.plot(gaps, loss, label="label p = 1: $-\\ln\\sigma(\\Delta)$ (minirlhf)")
ax1.plot(gaps, loss / np.log(10), ":", label="same, base 10 (the slide's table)")
ax1.plot(gaps, loss_soft, "--", label="soft label p = 0.7")
ax1.plot(best_soft, loss_soft.min(), "v", color="tab:green")
ax1.annotate(f"minimum at Δ = {best_soft:.2f}\n= log(0.7/0.3)", (best_soft, float(loss_soft.min())),
             xytext=(10, 25), textcoords="offset points", fontsize=8)
ax1.plot(r_w - r_l, loss_ln, "o", color="tab:red")
ax1.annotate(f"slide example: Δ = {r_w - r_l:.2f}\nln: {loss_ln:.3f}, log10: {loss_log10:.3f}",
             (r_w - r_l, loss_ln), xytext=(10, 5), textcoords="offset points", fontsize=8)
ax1.axhline(np.log(2), color="gray", lw=0.8)
ax1.text(-7.8, np.log(2) + 0.1, "ln 2 at Δ = 0", color="gray", fontsize=8)
ax1.set_xlabel("reward gap Δ = r(x, y_w) - r(x, y_l)")
ax1.set_ylabel("loss")
ax1.set_ylim(0, 8)
ax1.legend(fontsize=8)
ax1.set_title("the preference loss")
ax2.plot(gaps, grad, label="dL/dΔ (jax.grad)")
ax2.plot(gaps, -jax.nn.sigmoid(-gaps), "k:", label="-(1 - σ(Δ))")
ax2.plot(r_w - r_l, -(1 - p_w), "o", color="tab:red")
ax2.set_xlabel("reward gap Δ")
ax2.set_ylabel("gradient")
ax2.legend(fontsize=8)
ax2.set_title("its gradient: the probability of the wrong order")
fig.tight_layout()
plt.show()
assert abs(best_soft - np.log(0.7 / 0.3)) < 0.05

# %% [markdown]
# **Numerical stability.** A reward model can produce large gaps, especially early in
# training or on text unlike its data. Computed literally, $-\log(\sigma(\Delta))$ breaks:
# in float32 $\sigma(-1000)$ rounds to 0, the log to $-\infty$, and the gradient becomes
# `nan`, which then spreads to every parameter. `bradley_terry_loss` uses
# `jax.nn.log_sigmoid`, which evaluates $-\log\sigma(\Delta) = \log(1 + e^{-\Delta})$ without
# ever forming the tiny number: a gap of $-1000$ costs exactly 1000, with gradient $-1$.

# %%
big = jnp.array([-1000.0, -100.0, -10.0, 0.0, 10.0, 100.0, 1000.0])


def naive_loss(d):
    return -jnp.log(jax.nn.sigmoid(d))


def stable_loss(d):
    return bradley_terry_loss(d[None], jnp.zeros(1))


rows = {"naive -log(sigmoid(Δ))": (jax.vmap(naive_loss)(big), jax.vmap(jax.grad(naive_loss))(big)),
        "bradley_terry_loss": (jax.vmap(stable_loss)(big), jax.vmap(jax.grad(stable_loss))(big))}
print(f"{'Δ':>26}" + "".join(f"{float(d):>10.0f}" for d in big))
for name, (values, grads) in rows.items():
    print(f"{name + ' loss':>26}" + "".join(f"{float(v):>10.4g}" for v in values))
    print(f"{name + ' grad':>26}" + "".join(f"{float(g):>10.4g}" for g in grads))
stable_values, stable_grads = rows["bradley_terry_loss"]
assert bool(jnp.all(jnp.isfinite(stable_values)) & jnp.all(jnp.isfinite(stable_grads)))
assert float(stable_values[0]) == 1000.0 and float(stable_grads[0]) == -1.0

# %% [markdown]
# **Only differences matter.** Adding the same constant to both rewards changes nothing (up
# to float32 rounding), so the data determine a reward only up to an additive constant (and,
# section 3 shows, its scale comes from the labelers' noise). That is why minirlhf
# *normalises* a trained reward model to mean 0 and standard deviation 1 over SFT samples (as
# Ziegler et al. 2019 did): the RL stage's KL coefficient then means the same thing from run
# to run.

# %%
r_a, r_b = jnp.array([0.3, -1.2, 2.0]), jnp.array([0.1, 0.5, -1.0])
for shift in (0.0, 5.0, -100.0):
    print(f"shift {shift:>8}: loss {float(bradley_terry_loss(r_a + shift, r_b + shift)):.6f}")

# %% [markdown]
# ## 3. Labelers, label noise and agreement
#
# *Deck "Large Language Models and RL from Human Feedback", slide "Belief Distribution and
# Human Noise":* "If the reward model was trained from human input, is the resulting reward
# representation biased/skewed? Disagreement between human preferences occurs within
# datasets. Ziegler et al: 60% label agreement. Stiennon et al: **72% label** agreement."
#
# We have no crowd of labelers, so we simulate one. The review task knows a hidden **gold
# reward** `task.gold_reward(response)`, the "true" quality that a real user never sees:
# positive sentiment, but only in fluent text (words of the grammar, few repeats), plus a
# bonus for the demonstrated format, minus a penalty for a rating that contradicts the words
# (its docstring in `envs/reviews.py` has the formula). Some responses and their gold:

# %%
examples = [response for _, response in task.demonstrations(6, seed=2)] + [
    " great. i loved the crust.",          # positive, but no rating: misses the format bonus
    " great. i loved the crust. rating: 1/5",  # a rating the words contradict: worse still
    " great great great great great.",     # repetition is not fluent
    " blorf great zzk. rating: 5/5",       # babble with a positive word
    "",                                    # nothing at all
]
for response in examples:
    in_format = "yes" if task.follows_format(response) else "no"
    print(f"gold {task.gold_reward(response):+.2f}   format {in_format:3}   {response!r}")

# %% [markdown]
# **A simulated labeler** (`envs/labelers.py`) is the Bradley-Terry model itself, applied to the
# gold reward $g$ with a **temperature** $\tau$:
#
# $$P(\text{labeler prefers } a \text{ over } b) = \sigma\big((g_a - g_b)/\tau\big).$$
#
# $\tau \to 0$ is a perfect labeler who always follows the gold order; a large $\tau$ flips a
# coin. In between, the labeler is reliable on pairs whose quality differs a lot and unsure
# on close calls, which is how people behave too. And section 2's last result now says what a
# reward model trained on such labels should learn: the best gap is the labels' log-odds,
# $(g_a - g_b)/\tau$, so the ideal reward model is $\hat r = g/\tau$ + a constant. **The
# order comes from the gold reward, the scale from the labelers' noise.**
#
# Our comparisons pair two demonstrations for the same prompt (below: 1,500 pairs for
# training, 300 held out; pairs with equal gold are skipped, since no labeler can be right or
# wrong about them):

# %%
def demonstration_pairs(n, seed):
    """n (prompt, response_a, response_b) triples: two demonstrations for the same prompt
    with different gold rewards, and the (n,) gold rewards of a and b."""
    waiting, triples = {}, []
    for prompt, response in task.demonstrations(8 * n, seed=seed):
        if prompt not in waiting:
            waiting[prompt] = response  # wait for a second response to the same prompt
            continue
        first = waiting.pop(prompt)
        if task.gold_reward(first) != task.gold_reward(response):
            triples.append((prompt, first, response))
        if len(triples) == n:
            break
    assert len(triples) == n, f"only {len(triples)} pairs; draw more demonstrations"
    g_a = np.array([task.gold_reward(a) for _, a, _ in triples])
    g_b = np.array([task.gold_reward(b) for _, _, b in triples])
    return triples, g_a, g_b


train_triples, train_ga, train_gb = demonstration_pairs(1500, seed=1)
val_triples, val_ga, val_gb = demonstration_pairs(300, seed=2)
for (prompt, a, b), ga, gb in list(zip(train_triples, train_ga, train_gb))[:3]:
    print(f"{prompt!r}\n   a: {a!r:55} gold {ga:+.2f}\n   b: {b!r:55} gold {gb:+.2f}")

# %% [markdown]
# How often does a labeler at temperature $\tau$ follow the gold order, and how often do two
# independent labelers agree with each other? For one pair with $p = P(\text{prefer } a)$:
#
# * labeler vs. gold: $\max(p, 1-p)$ (`predicted_gold_agreement`);
# * labeler vs. labeler: $p^2 + (1-p)^2$ (`predicted_agreement`): both say "a" or both say "b".
#
# Averaged over our training pairs, and measured on simulated labels
# (`Labeler.compare`, then `gold_agreement` and `agreement_rate`):

# %%
taus = np.geomspace(0.02, 50, 60)
vs_gold = [predicted_gold_agreement(Labeler(t), train_ga, train_gb) for t in taus]
vs_labeler = [predicted_agreement(Labeler(t), train_ga, train_gb) for t in taus]

rng = np.random.default_rng(0)
measured_taus = np.geomspace(0.05, 20, 9)
measured = []
for t in measured_taus:
    first = Labeler(t).compare(rng, train_ga, train_gb)
    second = Labeler(t).compare(rng, train_ga, train_gb)  # an independent second labeler
    measured.append((gold_agreement(first, train_ga, train_gb), agreement_rate(first, second)))
measured = np.array(measured)

tau_70 = temperature_for_gold_agreement(train_ga, train_gb, 0.7)
# Where the decks' human agreement (60 % and 72 %, labeler vs. labeler) falls on our curves.
band = {a: float(np.interp(a, vs_labeler[::-1], taus[::-1])) for a in (0.60, 0.72)}

plt.figure(figsize=(9, 4.2))
plt.semilogx(taus, vs_gold, label="labeler vs. gold (predicted)")
plt.semilogx(taus, vs_labeler, label="labeler vs. labeler (predicted)")
plt.semilogx(measured_taus, measured[:, 0], "o", color="tab:blue",
             label="dots: measured on the 1,500 pairs")
plt.semilogx(measured_taus, measured[:, 1], "o", color="tab:orange")
plt.axhspan(0.60, 0.72, color="tab:red", alpha=0.12, label="60-72 % (Ziegler, Stiennon)")
plt.axvspan(band[0.72], band[0.60], color="tab:red", alpha=0.06)
plt.axvline(tau_70, color="k", ls="--", lw=1, label=f"τ = {tau_70:.2f}: 70 % vs. gold")
plt.axhline(0.5, color="gray", lw=0.8)
plt.xlabel("labeler temperature τ")
plt.ylabel("agreement")
plt.title("how often labels agree, as the labelers get noisier")
plt.legend(fontsize=8)
plt.show()

for a, t in band.items():
    follows = predicted_gold_agreement(Labeler(t), train_ga, train_gb)
    print(f"labelers agreeing with each other {a:.0%} of the time: τ = {t:.2f}, "
          f"and each follows the gold order {follows:.0%} of the time")
agree_70 = predicted_agreement(Labeler(tau_70), train_ga, train_gb)
print(f"a labeler at τ = {tau_70:.2f} follows the gold order 70 % of the time, "
      f"and agrees with another one {agree_70:.0%} of the time")

# %% [markdown]
# Two things to read off the plot:
#
# * **Labelers agree with each other less than with the truth.** For $p \ge 1/2$,
#   $p^2 + (1-p)^2 \le p$ (the difference is $(2p-1)(p-1) \le 0$): two noisy labelers must
#   both be right, or both wrong, to agree. The decks' 60 % and 72 % are agreements *between
#   people* (nobody knows the gold order of real text), so they belong on the orange curve;
#   they correspond to labelers who follow the (unknowable) truth noticeably more often.
# * **70 % vs. gold is a very noisy labeler.** minirlhf's default (`RewardConfig.target_agreement
#   = 0.7`, the dashed line) lets 30 % of the labels contradict the gold order, while two such
#   labelers agree with each other only about 60 % of the time, at the bottom of the decks'
#   range. If a reward model can learn from that, it can learn from people.

# %% [markdown]
# ## 4. Rankings vs. pairs, and sums over trajectories
#
# *Deck "Large Language Models and RL from Human Feedback", slides "Preference Feedback with
# Rankings" and "Step 2" of InstructGPT:* "A prompt and several model outputs are sampled. A
# labeler ranks the outputs from best to worst." A ranking of $K$ outputs implies
# $\binom{K}{2} = K(K-1)/2$ pairs. InstructGPT (Ouyang et al. 2022) had labelers rank $K = 4$
# to 9 outputs, so one ranking gave 6 to 36 comparisons for the price of reading $K$ answers
# once, and it trained on them with the pairwise loss averaged over the ranking (their eq. 1):
#
# $$\mathcal L = -\frac{1}{\binom{K}{2}}\,\mathbb E_{x}\Big[\sum_{i<j}\log\sigma\big(\hat r(x,
#   y_i) - \hat r(x, y_j)\big)\Big], \quad y_1 \succ y_2 \succ \dots \succ y_K.$$
#
# `ranking_pairs(K)` lists the pairs of a ranking written best first; `ranking_loss(rewards)`
# takes $(B, K)$ scores and is exactly the mean of `bradley_terry_loss` over those pairs:

# %%
for k in (2, 3, 4, 9):
    better, worse = ranking_pairs(k)
    shown = list(zip(better.tolist(), worse.tolist()))
    print(f"K = {k}: {len(shown):2d} pairs = K(K-1)/2 = {k * (k - 1) // 2:2d}   "
          f"{shown if k <= 4 else shown[:6] + ['...']}")

K = 4
rewards = jax.random.normal(jax.random.key(0), (5, K))  # (B, K) scores, each row best first
better, worse = ranking_pairs(K)
by_pairs = bradley_terry_loss(rewards[:, better], rewards[:, worse])
# BEGIN SOLUTION
by_loop = np.mean([-jax.nn.log_sigmoid(rewards[b, i] - rewards[b, j])
                   for b in range(rewards.shape[0]) for i in range(K) for j in range(i + 1, K)])
# END SOLUTION
print(f"\nranking_loss {float(ranking_loss(rewards)):.6f} = mean over pairs {float(by_pairs):.6f}"
      f" = explicit loop {float(by_loop):.6f}")
assert abs(float(ranking_loss(rewards)) - float(by_loop)) < 1e-5

# %% [markdown]
# InstructGPT stresses *how* to train on them: the $\binom K2$ comparisons from one ranking
# are strongly correlated (every output appears in $K-1$ of them), and shuffling them into
# the dataset as independent examples made the reward model overfit in one epoch. Keeping each
# ranking together, as one example whose $K$ outputs go through the model once, fixed that and
# is also cheaper: $K$ forward passes instead of $K(K-1)$. minirlhf's reward-model step does
# the same: a batch holds whole rankings, shape $(N, K, T)$ (`make_reward_step` in
# `minirlhf/reward_model.py`).
#
# Our simulated labeler ranks too: `Labeler.rank` draws a ranking from the **Plackett-Luce**
# model (the Bradley-Terry model for $K$ items: pick the best with probability
# $\propto e^{g/\tau}$, then the best of the rest, ...), by sorting $g/\tau$ plus Gumbel
# noise. `as_pairs` expands a ranking into its pairs. The slide's "correction" is a ranking of
# $K = 3$, the labeler's own rewrite first: 3 pairs.

# %%
prompt = "the pizza was"
candidates = [" superb. i loved the cheese. rating: 5/5", " okay. i saw the sauce. rating: 3/5",
              " bad. a dull crust. rating: 2/5", " great great great."]
gold = np.array([[task.gold_reward(c) for c in candidates]])  # (1, K)
rank_rng = np.random.default_rng(0)
for name, labeler in (("perfect labeler (τ = 0)", Labeler(0.0)),
                      (f"noisy labeler (τ = {tau_70:.2f})", Labeler(tau_70))):
    print(name)
    for trial in range(3):
        order = labeler.rank(rank_rng, gold)[0]
        print("   ", " > ".join(f"{candidates[i][:14]!r} ({gold[0, i]:+.2f})" for i in order))
ranking = Comparison(prompt, tuple(candidates[i] for i in np.argsort(-gold[0])))
print(f"\nthe gold ranking as {len(as_pairs([ranking]))} pairs:")
for pair in as_pairs([ranking]):
    print(f"    {pair.ranking[0]!r:45} > {pair.ranking[1]!r}")

# %% [markdown]
# **Sums over trajectories.** Christiano et al. compared two short *clips* of a robot's
# behaviour, not two texts, and T-REX (deck "Large Language Models and RL from Human
# Feedback", slides "Trajectory-ranked Reward Extrapolation (T-REX)", "Bradley-Terry pairwise
# ranking loss") ranks whole demonstrations. There the reward is per step and a clip's score
# is the *sum* of its rewards, $\sum_{s \in \tau} R_\theta(s)$; the loss is the same
# Bradley-Terry cross-entropy on the sums. `trajectory_preference_loss` takes per-step rewards
# and masks (clips of different lengths) and sums before calling `bradley_terry_loss`, so the
# language model and T-REX share one loss. (For a language model the "clip" is the response,
# and the reward model scores it once, at its last token.)

# %%
steps_a = jnp.array([[0.5, 0.2, 0.9, 0.0], [1.0, -0.5, 0.0, 0.0]])  # (B, T) per-step rewards
steps_b = jnp.array([[0.1, 0.1, 0.1, 0.1], [0.3, 0.3, 0.3, 0.3]])
mask_a = jnp.array([[True, True, True, False], [True, True, False, False]])  # real steps
mask_b = jnp.ones((2, 4), bool)
traj = trajectory_preference_loss(steps_a, steps_b, mask_a, mask_b)
summed = bradley_terry_loss(jnp.where(mask_a, steps_a, 0).sum(1), steps_b.sum(1))
print(f"trajectory_preference_loss {float(traj):.6f} = bradley_terry_loss on the sums {float(summed):.6f}")

# %% [markdown]
# ## 5. Preference data on disk
#
# A reward model is only as good as its comparisons, and in practice those come from people
# through some labelling tool. minirlhf reads them from a **JSONL** file
# (`minirlhf/preference_data.py`): one JSON object per line, either a pair or a ranking best
# first,
#
# ```
# {"prompt": "the pizza was", "chosen": " great. rating: 5/5", "rejected": " bad. rating: 1/5"}
# {"prompt": "my car was", "ranking": [" superb. rating: 5/5", " okay. rating: 3/5", " awful."]}
# ```
#
# so a file can be written by hand, exported from a spreadsheet, or produced by a script.
# Here the script is our simulated labeler at $\tau_{70}$: it labels every training and
# held-out pair once, and `write_preferences` writes the `Comparison`s (held-out ones last).

# %%
def label_pairs(triples, g_a, g_b, labeler, seed):
    """Ask `labeler` about each pair once; return Comparisons (chosen first) and the share of
    labels that follow the gold order."""
    a_wins = labeler.compare(np.random.default_rng(seed), g_a, g_b)
    comparisons = [Comparison(p, (a, b) if win else (b, a))
                   for (p, a, b), win in zip(triples, a_wins)]
    return comparisons, gold_agreement(a_wins, g_a, g_b)


labeler_70 = Labeler(tau_70)
train_cmp, train_agreement = label_pairs(train_triples, train_ga, train_gb, labeler_70, seed=1)
val_cmp, val_agreement = label_pairs(val_triples, val_ga, val_gb, labeler_70, seed=2)
prefs_path = os.path.join(work, "preferences.jsonl")
write_preferences(prefs_path, train_cmp + val_cmp)

with open(prefs_path) as f:
    for line in [next(f) for _ in range(3)]:
        print(line, end="")
print(f"... {len(train_cmp) + len(val_cmp)} lines in {prefs_path}")
print(f"labels that follow the gold order: training {train_agreement:.1%}, held out {val_agreement:.1%}")

# %% [markdown]
# (The third line is one of the labeler's 30 %: it chose the negative review over the
# positive one.) `load_preferences` checks **every** line before returning anything, and
# names each bad one by line number, so a model is never trained on half a file. A
# hand-written file with four typical mistakes:

# %%
bad_path = os.path.join(work, "by_hand.jsonl")
with open(bad_path, "w") as f:
    f.write('{"prompt": "the film was", "chosen": " superb.", "rejected": " dull."}\n'
            '{"prompt": "the film was", "chosen": " Superb!", "rejected": " dull."}\n'
            '{"prompt": "the song was", "chosen": " fun."}\n'
            '{"prompt": "my car was", "ranking": [" great.", " okay.", " great."]}\n'
            '{"prompt": "my car was", "chosen": " great.", "rejected": " bad.",}\n')
try:
    load_preferences(bad_path, CharTokenizer(task.alphabet))  # the model's characters
except ValueError as err:
    print(err)

# %% [markdown]
# (Without a tokenizer the loader checks the structure only; `train_reward_model` passes the
# model's.) Our own file loads back unchanged:

# %%
loaded = load_preferences(prefs_path)
assert loaded == train_cmp + val_cmp
print(len(loaded), "comparisons, e.g.", loaded[0])

# %% [markdown]
# ## 6. Training a reward model
#
# *Deck "Large Language Models and RL from Human Feedback", InstructGPT's "Step 2": "This data
# is used to train our reward model."* The reward model $\hat r(x, y)$ is the SFT model with its
# next-token head replaced by a **scalar head**: the transformer reads prompt + response, and
# one linear layer turns the hidden state at the *last real token* into one number. It starts
# from SFT because SFT already "understands" the responses it will be asked to judge; only the
# scalar head is new (`init_from_sft`). Training minimises section 2's loss over the
# comparisons.
#
# First a small SFT model. Lecture 1 trained a bigger one; here the `"tiny"` preset of
# `minirlhf.pipeline` (a one-layer transformer of width 32), trained a little longer than the
# preset's smoke-test budget, is enough: judging our reviews needs less than writing them.

# %%
pipe = override(preset("tiny"), {
    "pretrain.steps": 100, "pretrain.batch_size": 32, "pretrain.eval_every": 50,
    "pretrain.checkpoint_every": 100, "sft.steps": 50, "sft.eval_every": 25,
    "sft.checkpoint_every": 50})
start = time.perf_counter()
pretrain(pipe.pretrain, os.path.join(work, "pretrain"))
sft_dir = os.path.join(work, "sft")
sft_cfg = dataclasses.replace(pipe.sft, init=os.path.join(work, "pretrain"))
_, params_sft, tok, _ = sft(sft_cfg, sft_dir)
m = pipe.pretrain.model
print(f"SFT model: {count_params(params_sft):,} parameters (D = {m.d_model}, {m.n_layers} layer, "
      f"{m.n_heads} heads), pre-trained and fine-tuned in {time.perf_counter() - start:.0f} s")

# %% [markdown]
# Now the reward model: `train_reward_model(RewardConfig(...), run_dir)` starts from the SFT run
# folder, reads the JSONL file (its last `n_val` lines are held out), trains for 200 steps of
# 32 comparisons (about 4 passes over the 1,500), and writes a run folder. One choice differs
# from the defaults: the learning rate. `RewardConfig`'s $10^{-4}$ is set for the default,
# bigger model on noisy SFT samples; our backbone has 18 thousand parameters and our
# comparisons are clean, in-format text, and $10^{-3}$ learns in a fraction of the steps
# (exercise 9 asks what the default does here).

# %%
rm_dir = os.path.join(work, "reward_model")
rm_cfg = RewardConfig(init=sft_dir, preferences=prefs_path, n_val=len(val_cmp), steps=200,
                      batch_size=32, eval_every=50, checkpoint_every=200,
                      optim=OptimConfig(lr=1e-3, warmup_steps=20))
start = time.perf_counter()
graphdef_rm, params_rm, summary = train_reward_model(rm_cfg, rm_dir)
print(f"reward model: {rm_cfg.steps} steps x {rm_cfg.batch_size} comparisons in "
      f"{time.perf_counter() - start:.0f} s; run folder: {sorted(os.listdir(rm_dir))}")
print(json.dumps({k: round(v, 3) for k, v in summary.items() if isinstance(v, float)}, indent=1))

# %% [markdown]
# **What to measure.** Three numbers on the 300 held-out comparisons:
#
# * **accuracy against the labels** (`val_accuracy`): how often $\hat r(x, y_w) > \hat r(x,
#   y_l)$ for the labeler's choice $y_w$. This is the only accuracy a real project can
#   measure, and it is capped: if the labels contradict the truth on 30 % of the pairs, even
#   the perfect reward model "gets" those 30 % "wrong". InstructGPT's reward models predicted
#   held-out labels roughly 70 % of the time, about as often as its labelers agreed with each
#   other.
# * **accuracy against the gold order** (`val_gold_accuracy`), which only a simulation can
#   measure;
# * **the labels' own gold agreement** (`labels_gold_agreement`): how often the held-out
#   labels themselves follow the gold order.

# %%
history = read_metrics(os.path.join(rm_dir, "metrics.jsonl"))
train_pts = [(r["step"], r["loss"]) for r in history if "loss" in r]
val_pts = [r for r in history if "val_loss" in r]
labels_right = summary["labels_gold_agreement"]
floor = np.mean([  # the best possible held-out loss: the entropy of the labeler's coin
    -(p * np.log(p) + (1 - p) * np.log(1 - p))
    for p in labeler_70.prob_prefers_a(val_ga, val_gb)])

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
ax1.plot(*zip(*train_pts), alpha=0.6, label="training batch")
ax1.plot([r["step"] for r in val_pts], [r["val_loss"] for r in val_pts], "o-", label="held out")
ax1.axhline(np.log(2), color="gray", ls="--", label="ln 2 (knows nothing)")
ax1.axhline(floor, color="tab:green", ls=":", label=f"best possible: {floor:.3f}")
ax1.set_xlabel("step")
ax1.set_ylabel("preference loss (nats)")
ax1.legend(fontsize=8)
ax1.set_title("Bradley-Terry loss")
ax2.plot([r["step"] for r in val_pts], [r["val_gold_accuracy"] for r in val_pts], "o-",
         label="reward model vs. gold order")
ax2.plot([r["step"] for r in val_pts], [r["val_accuracy"] for r in val_pts], "s-",
         label="reward model vs. labels")
ax2.axhline(labels_right, color="k", ls="--", label=f"labels vs. gold order ({labels_right:.0%})")
ax2.axhline(0.5, color="gray", lw=0.8)
ax2.set_xlabel("step")
ax2.set_ylabel("held-out accuracy")
ax2.legend(fontsize=8)
ax2.set_title("held-out accuracy")
fig.tight_layout()
plt.show()
print(f"held out: vs. labels {summary['val_accuracy']:.1%}, "
      f"vs. gold {summary['val_gold_accuracy']:.1%}, labels vs. gold {labels_right:.1%}; "
      f"loss {summary['val_loss']:.3f} (ln 2 = {np.log(2):.3f}, best possible {floor:.3f})")
expect(summary["val_gold_accuracy"] > labels_right + 0.05,
       "the reward model beats its labels' gold agreement by 5 points or more")

# %% [markdown]
# **The reward model is right more often than its teachers.** It orders the held-out pairs by
# the gold reward more often than the labels it learned from did. No single label tells it
# which labels are wrong; but a labeler's mistakes are random, while the gold order is the
# same in every comparison: the more positive review wins more often than not, again and
# again, and a model that must explain *all* the labels with one reward function averages
# the coin flips away. This is the real reason to fit a model rather than look answers up in
# the labels.
#
# Its accuracy against the *labels* stays low, and that is the right outcome: if the model
# followed the gold order on a share $a$ of the pairs, and the labels on a share $q$,
# independently, it would agree with the labels on $qa + (1-q)(1-a)$ of them. It scores a
# little more, because the two are not independent: the model's mistakes, like the labels',
# fall on the close calls. And the loss cannot go near 0 either: with noisy labels the best
# possible loss is the entropy of the labeler's coin, $\mathbb E[H(\sigma(\Delta g/\tau))]$
# (the dotted line), which the held-out loss approaches.

# %%
q, a = labels_right, summary["val_gold_accuracy"]
print(f"q a + (1 - q)(1 - a) = {q * a + (1 - q) * (1 - a):.3f};  measured accuracy vs. labels: "
      f"{summary['val_accuracy']:.3f}")

# %% [markdown]
# **Calibration and the score against gold.** `train_reward_model` ends with
# `evaluate_comparisons` and `plot_reward_model`, which write `reward_model.png` into the run
# folder. Left: **calibration**: the held-out pairs binned by the predicted probability
# $\sigma(\hat r_a - \hat r_b)$, against how often $a$ was really the labeler's choice (the
# numbers are the pairs per bin); a calibrated model's "70 %" comes true 70 % of the time.
# Right: each held-out response's score against its gold reward, with their Pearson and
# Spearman (rank) correlations.

# %%
display(Image(filename=os.path.join(rm_dir, "reward_model.png")))

# %% [markdown]
# The gold rewards of the demonstrations come in a few levels, set mostly by the sentiment:
# negative reviews about $-0.5$, neutral ones $+0.25$, positive ones about $+1$ (a repeated
# word lowers the fluency a little). The reward model has learned the big differences first:
# the negative reviews form a tight cluster far below the rest, and the neutral and positive
# ones are ordered on average but overlap. The predicted probabilities are roughly calibrated
# (the points follow the diagonal) and cautious: none beyond about 0.85. Section 3
# predicted the ideal model $\hat r = g/\tau$: a slope of $1/\tau$ against gold. A
# least-squares fit of our raw scores:

# %%
final = evaluate_comparisons(graphdef_rm, params_rm, tok, task, val_cmp)
scores, gold_scores = final["scores_vs_gold"]
slope = np.polyfit(gold_scores, scores, 1)[0]
print(f"slope of the score against gold: {slope:.2f};  1/τ = {1 / tau_70:.2f};  "
      f"Pearson {final['pearson_gold']:.2f}")

# %% [markdown]
# A slope below $1/\tau$ means the model is still *less confident* than the labels allow,
# typical of a short training run. Training longer steepens it, until the model starts to
# fit the noise of its 1,500 training labels and the held-out loss turns up again (exercise 9).

# %% [markdown]
# ## 7. Using the reward model, and where not to trust it
#
# The RL stage calls the reward model on text the policy writes. `load_reward_model(run_dir)`
# returns a jittable `reward_fn(tokens, mask)` whose scores are **normalised**: mean 0 and
# standard deviation 1 over the responses of the training comparisons, which in the full
# recipe are SFT samples (section 2: only differences are defined, so we fix the constant and
# the unit). We score 300 fresh demonstrations, and two altered copies of each that no labeler
# ever judged: one with its rating removed, one that repeats its first word five times.

# %%
_, _, tok_rm, rm_meta, reward_fn = load_reward_model(rm_dir)
print("normalisation stored with the model:", rm_meta["normalization"])
reward_fn = jax.jit(reward_fn)


def reward(texts):
    """Normalised reward-model scores of full texts (prompt + response)."""
    tokens, mask = tok_rm.encode_batch(texts, bos=True, eos=True)
    return np.asarray(reward_fn(jnp.asarray(tokens), jnp.asarray(mask)))


fresh = task.demonstrations(300, seed=99)  # a fresh draw, not the labelled pairs
groups = {
    "demonstrations": [(p, r) for p, r in fresh],
    "rating removed": [(p, r.split(" rating:")[0]) for p, r in fresh],
    "first word x5": [(p, (" " + r.split()[0].strip(".")) * 5 + ".") for p, r in fresh],
}
print(f"{'':22}{'mean gold':>10}{'mean reward':>13}   example")
for name, pairs in groups.items():
    g = np.mean([task.gold_reward(r) for _, r in pairs])
    print(f"{name:22}{g:+10.2f}{reward([p + r for p, r in pairs]).mean():+13.2f}   {pairs[0][1]!r}")
levels = np.array([task.gold_reward(r) for _, r in fresh])
demo_rewards = reward([p + r for p, r in fresh])
print("\nthe demonstrations by gold level:")
for level in np.unique(levels.round(2)):
    sel = levels.round(2) == level
    if sel.sum() >= 5:
        r = demo_rewards[sel]
        print(f"   gold {level:+.2f}: {sel.sum():3d} reviews, reward {r.mean():+.2f} +- {r.std():.2f}")

# %% [markdown]
# On the kind of text it was trained on, the reward model does its job: the fresh
# demonstrations' rewards rise with their gold level. The other rows are **unlike anything in
# the comparisons**: every response the labeler judged was a well-formed demonstration, so
# the reward model never saw a review without its rating, or one word repeated, and nothing
# forced it to score them low. It scores them *higher than the best demonstrations*, while
# their gold reward is lower. A policy optimised against this reward model would find that
# within a few updates, and learn to babble. *Deck "Large Language Models and RL from Human
# Feedback", slide "Controlling Divergence":* "The preferences were given over responses from
# the SFT, so the data we feed through the reward model should stay in that distribution for
# accurate reward representations", and "Over-Optimization / Reward Hacking: Because reward
# maximization is incentivized, the model may try to exaggerate responses." That is why the RL
# stage adds the KL penalty $-\beta \log(\pi_\theta / \pi_{SFT})$ to the reward (deck
# "Reinforcement Learning for and with Foundation Models", slide "Case Study: ChatGPT": "Added
# constraint to stay close to SFT policy"), and why real projects keep collecting comparisons
# on the *current* policy's samples.

# %% [markdown]
# ## 8. How label noise limits the reward model
#
# Same 1,500 pairs, same 300 held-out pairs, same model and budget: only the labelers'
# temperature changes, to follow the gold order 60 % or 90 % of the time. (The labels share
# their random numbers, so a noisier labeler's labels are the same coin flips against a
# different threshold.)

# %%
noise_runs = {0.7: (tau_70, summary)}
for target in (0.6, 0.9):
    tau = temperature_for_gold_agreement(train_ga, train_gb, target)
    labeler = Labeler(tau)
    train_t, _ = label_pairs(train_triples, train_ga, train_gb, labeler, seed=1)
    val_t, _ = label_pairs(val_triples, val_ga, val_gb, labeler, seed=2)
    path = os.path.join(work, f"preferences_{target}.jsonl")
    write_preferences(path, train_t + val_t)
    cfg = dataclasses.replace(rm_cfg, preferences=path, eval_every=200)
    start = time.perf_counter()
    _, _, result = train_reward_model(cfg, os.path.join(work, f"reward_model_{target}"))
    noise_runs[target] = (tau, result)
    print(f"target {target:.0%} (τ = {tau:.2f}): {time.perf_counter() - start:.0f} s")

targets = sorted(noise_runs)
labels_acc = [noise_runs[t][1]["labels_gold_agreement"] for t in targets]
model_acc = [noise_runs[t][1]["val_gold_accuracy"] for t in targets]
plt.figure(figsize=(5.5, 4.5))
plt.plot([0.5, 1], [0.5, 1], "k--", lw=1, label="reward model = its labels")
plt.plot(labels_acc, model_acc, "o-", label="trained reward model")
for t, x, y in zip(targets, labels_acc, model_acc):
    plt.annotate(f"target {t:.0%}", (x, y), xytext=(6, -12), textcoords="offset points", fontsize=8)
plt.xlabel("held-out labels' agreement with the gold order")
plt.ylabel("reward model's agreement with the gold order")
plt.title("learning from noisier labels")
plt.legend(fontsize=8)
plt.show()

print(f"{'labels vs. gold':>16}{'RM vs. gold':>13}{'RM vs. labels':>15}{'held-out loss':>15}"
      f"{'best possible':>15}   (ln 2 = {np.log(2):.3f})")
for t in targets:
    tau, result = noise_runs[t]
    p = Labeler(tau).prob_prefers_a(val_ga, val_gb)
    best = np.mean(-(p * np.log(p) + (1 - p) * np.log(1 - p)))
    print(f"{result['labels_gold_agreement']:16.1%}{result['val_gold_accuracy']:13.1%}"
          f"{result['val_accuracy']:15.1%}{result['val_loss']:15.3f}{best:15.3f}")

# %% [markdown]
# Noisier labels, worse reward model, and not gradually. At 90 % and 70 % the reward model
# beats its labels and ends up close to the same accuracy: the remaining errors are the close
# calls between reviews of one sentiment, which this small model does not resolve whatever
# the labels. At 60 % the same budget finds almost nothing. The last two columns say why: a
# comparison can teach at most $\ln 2$ minus the best possible loss, the information a label
# carries about the gold order, and at 60 % that is a few hundredths of a nat; fitting the
# noise of 1,500 particular labels gains the model more than that, so it does, and its
# held-out loss ends above $\ln 2$. More comparisons (exercise 8) or a shorter run would
# help, at the price real projects pay in labelling hours.
#
# This is the question of the "Belief Distribution and Human Noise" slides, seen from the
# other side: a reward model trained on many people's labels represents something like their
# *average* judgement, and where people genuinely disagree (a different "gold" each), there
# is no single reward for it to find.

# %%
print(f"whole lecture: {time.perf_counter() - LECTURE_START:.0f} s; run folders under {work}")

# %% [markdown]
# ## 9. Exercises
#
# 1. **The slide's numbers.** Recompute the worked example of section 2 when the reward model
#    swaps the two rewards (4.59 for the refusal, 1.23 for the harmful answer). What are the
#    loss and its gradient, in nats and in base 10? Why is the gradient so much smaller?
# 2. **The scale of a reward.** Multiply every reward of section 2's `r_a, r_b` by 10. Does the
#    loss change? Combine this with section 3: if every labeler became twice as noisy, what
#    would the ideal reward model $g/\tau$ look like, and why does minirlhf normalise rewards
#    before RL?
# 3. **Agreement.** Show that for one pair, two labelers who each follow the gold order with
#    probability $q$ agree with probability $q^2 + (1-q)^2$. Which $q$ gives the decks' 60 %
#    and 72 %? Compare with the temperatures of section 3's plot: why do they differ?
# 4. **Ties.** Our comparisons skip pairs with equal gold. What reward gap minimises
#    `bradley_terry_loss(r_a, r_b, prob_a=0.5)`? The JSONL format has no way to say "equally
#    good": propose one, and say which lines of `minirlhf/preference_data.py` and
#    `minirlhf/reward_model.py` would have to change.
# 5. **Rankings.** Build comparisons of $K = 4$ demonstrations per prompt ranked by
#    `Labeler.rank`, write them as `"ranking"` lines, and train with the same budget on the
#    same number of *responses*. Is the reward model better than with pairs? Then expand the
#    rankings with `as_pairs` and train on the pairs as independent examples: does it overfit,
#    as InstructGPT reports?
# 6. **Real samples.** Train a reward model with `RewardConfig(preferences="")`: minirlhf then
#    samples the SFT model and labels its completions with `simulate_comparisons`, as in
#    InstructGPT's Step 2. How do the gold rewards of SFT samples differ from those of the
#    demonstrations, and how does that change the probes of section 7?
# 7. **Reward hacking, by hand.** Find a response to "the pizza was" that the reward model of
#    section 7 scores above every demonstration although its gold reward is low. Add 100
#    comparisons that rank such responses last and retrain: does the hole close? Does a new
#    one open?
# 8. **How much data?** Train on 100, 300 and 1,500 of the 60 %-labels of section 8 (same
#    number of steps). How many comparisons does the reward model need to beat its labels?
# 9. **Learning rate and overfitting.** Train the 70 % model with `RewardConfig`'s default
#    learning rate ($10^{-4}$), and with $10^{-3}$ for 1,000 steps. What happens to the
#    held-out loss, the gold accuracy, the slope of section 6 and the calibration panel?
#    Which of them could a real project, without a gold reward, watch?
