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
# # Lecture 7 — DPO and AI feedback: two answers to "PPO-RLHF is expensive"
#
# Lecture 4 ran the recipe of the deck "Large Language Models and RL from Human Feedback",
# slide **"High-Level Recipe for ChatGPT"**: a reward model from comparisons (step 3), then
# PPO against it with a KL penalty to the SFT model (step 4). That is four models in memory
# (policy, reference, reward model, critic) and a sampling loop. Direct Preference
# Optimization (Rafailov et al. 2023) trains the policy **on the comparisons directly**: no
# reward model, no sampling, no critic; one supervised loss. It is not an approximation:
# under the same Bradley-Terry model of the labels it has the same optimum as the KL-penalised
# objective of the slide **"Reward shaping"**. This lecture derives it, checks the claim
# exactly on a toy problem, runs it on the review task next to PPO and best-of-n, and shows
# how it fails. Then the other answer, to the expense of the *labels*: RL from AI feedback
# (Bai et al. 2022, Constitutional AI; Lee et al. 2023), where a model judging by written
# principles replaces the human labeler.
#
# | section | idea | minirlhf |
# | --- | --- | --- |
# | 1 | from the KL-regularised optimum to DPO's loss, in four lines; the loss *is* Bradley-Terry | `minirlhf/losses.py` |
# | 2 | an exact check on a bandit: DPO's minimiser is $\pi_0 e^{r/\beta}/Z$; what $\beta$ does | `minirlhf/losses.py` |
# | 3 | over-fitting a finite preference set: DPO, IPO, label smoothing | `minirlhf/losses.py` |
# | 4 | DPO on the review task, against SFT, best-of-n and PPO at matched KL | `minirlhf/dpo.py`, `minirlhf/pipeline.py` |
# | 5 | what DPO's log-probs do: likelihood displacement | `minirlhf/dpo.py` |
# | 6 | RL from AI feedback: a judge model, a constitution, its labels against the humans' | `minirlhf/rlaif.py` |
# | 7 | exercises | |
#
# Everything runs on a laptop CPU, in about 4 minutes on 2 cores; most of it is section 4's
# pipeline and section 6's judge.
#
# **Setup.** Install the package once from the repository root (`pip install -e .`; in Colab,
# `!pip install` the repository first), then run the cells top to bottom.

# %%
import dataclasses
import inspect
import json
import os
import tempfile
import time
from pathlib import Path

# Training loops show tqdm progress bars; "0" turns them back on.
os.environ.setdefault("MINIRLHF_QUIET", "1")

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from IPython.display import Image, display

from minirlhf.distributions import categorical_kl
from minirlhf.dpo import likelihood_displacement
from minirlhf.envs import make_task
from minirlhf.logging import expect, read_metrics
from minirlhf.losses import bradley_terry_loss, dpo_implicit_rewards, dpo_loss
from minirlhf.pipeline import preset, run_pipeline
from minirlhf.rlaif import load_constitution, parse_constitution

# %matplotlib inline

LECTURE_START = time.perf_counter()
work = Path(tempfile.mkdtemp(prefix="minirlhf_lecture07_"))  # run folders go here, never the repo
print("jax", jax.__version__, "on", jax.devices())

# %% [markdown]
# ## 1. From the KL-regularised optimum to a loss on pairs
#
# Lecture 4 (section 3) maximised $E_{y \sim \pi}[r(x, y)] - \beta\,\mathrm{KL}(\pi \,\|\, \pi_0)$
# for each prompt $x$ and found the optimum in closed form. Four lines take it to DPO:
#
# 1. The optimum: $\pi^*(y|x) = \pi_0(y|x)\, e^{r(x, y)/\beta} / Z(x)$, with
#    $Z(x) = \sum_y \pi_0(y|x)\, e^{r(x, y)/\beta}$.
# 2. Take logs and solve for the reward: $r(x, y) = \beta \log \frac{\pi^*(y|x)}{\pi_0(y|x)} + \beta \log Z(x)$.
#    Every policy $\pi$ defines such an **implicit reward**; $Z(x)$ is intractable, but...
# 3. ...the labels only see *differences* of rewards for the same prompt (Bradley-Terry,
#    lecture 3): $P(y_w \succ y_l) = \sigma(r(x, y_w) - r(x, y_l))$, and $\beta \log Z(x)$
#    cancels.
# 4. So fit the policy's implicit reward to the labels with lecture 3's loss:
#    $$L_{\text{DPO}}(\pi) = -E_{(x, y_w, y_l)}\Big[\log \sigma\Big(\beta \log \tfrac{\pi(y_w|x)}{\pi_0(y_w|x)} - \beta \log \tfrac{\pi(y_l|x)}{\pi_0(y_l|x)}\Big)\Big].$$
#
# No reward model is trained and nothing is sampled: the data are the preference pairs, and
# $\log \pi_0$ of each response is computed once. `dpo_loss` is that line, and it is literally
# `bradley_terry_loss` on `dpo_implicit_rewards`:

# %%
print(inspect.getsource(dpo_implicit_rewards).split('"""')[0].strip() + " ...")
body = inspect.getsource(dpo_loss)
print(body[body.index("    r_c = "):])

# %%
key = jax.random.key(0)
logp = jax.random.normal(key, (4, 8)) * 3 - 20  # log pi and log pi_0 of 8 (chosen, rejected) pairs
lc, lr, rc, rr = logp
beta = 0.1
by_bt = bradley_terry_loss(dpo_implicit_rewards(lc, rc, beta), dpo_implicit_rewards(lr, rr, beta))
by_hand = -jnp.mean(jax.nn.log_sigmoid(beta * ((lc - rc) - (lr - rr))))
print(f"dpo_loss {float(dpo_loss(lc, lr, rc, rr, beta)):.6f}   Bradley-Terry on the implicit "
      f"rewards {float(by_bt):.6f}   by hand {float(by_hand):.6f}")
assert abs(float(dpo_loss(lc, lr, rc, rr, beta)) - float(by_hand)) < 1e-5

# %% [markdown]
# ## 2. An exact check: DPO's minimiser is the RLHF optimum
#
# A bandit small enough to solve exactly: one prompt, $K = 6$ possible responses, a reference
# policy $\pi_0$ (random logits) and a true reward $r$. The labelers are lecture 3's
# Bradley-Terry labelers at temperature 1: they prefer $y_i$ over $y_j$ with probability
# $\sigma(r_i - r_j)$. With *every* pair labelled infinitely often, the DPO loss is
# Bradley-Terry with soft labels $p_{ij} = \sigma(r_i - r_j)$ over all pairs. We minimise it
# over the policy's 6 logits with Adam, from $\pi_0$, and compare with
# $\pi^* = \pi_0 e^{r/\beta}/Z$: they should agree for every $\beta$.

# %%
K = 6
ref_logits = jax.random.normal(jax.random.key(1), (K,))
ref_logp = jax.nn.log_softmax(ref_logits)
r_true = jnp.linspace(-1.0, 1.5, K)
I, J = np.triu_indices(K, k=1)  # every pair (i, j), i < j
p_ij = jax.nn.sigmoid(r_true[I] - r_true[J])  # the labelers' P(y_i preferred)


def population_dpo(logits, beta, prob=p_ij):
    """DPO on every pair with soft labels `prob`: Bradley-Terry on the implicit rewards."""
    implicit = dpo_implicit_rewards(jax.nn.log_softmax(logits), ref_logp, beta)  # (K,)
    return bradley_terry_loss(implicit[I], implicit[J], prob)


def minimise(loss, steps=3000, lr=0.05):
    """Adam from pi_0's logits; the logits after each step, (steps, K)."""
    opt = optax.adam(lr)

    def step(carry, _):
        logits, state = carry
        updates, state = opt.update(jax.grad(loss)(logits), state)
        logits = optax.apply_updates(logits, updates)
        return (logits, state), logits

    return jax.lax.scan(step, (ref_logits, opt.init(ref_logits)), length=steps)[1]


frontier = {}
for beta in (0.25, 0.5, 1.0, 2.0, 4.0):
    dpo_logits = minimise(lambda z, b=beta: population_dpo(z, b))[-1]
    pi_dpo = jax.nn.softmax(dpo_logits)
    pi_star = jax.nn.softmax(ref_logp + r_true / beta)  # pi_0 exp(r / beta) / Z
    gap = float(jnp.max(jnp.abs(pi_dpo - pi_star)))
    frontier[beta] = (float(categorical_kl(jnp.log(pi_star), ref_logp)), float(pi_star @ r_true))
    print(f"beta {beta:4}: max |pi_DPO - pi*| = {gap:.1e}   KL(pi* || pi_0) = "
          f"{frontier[beta][0]:.3f}   E[r] = {frontier[beta][1]:+.3f}")
    assert gap < 1e-3, gap
print(f"pi_0: E[r] = {float(jnp.exp(ref_logp) @ r_true):+.3f};  the best response: r = "
      f"{float(r_true.max()):+.3f}")

# %% [markdown]
# DPO found $\pi^*$ to three decimals for every $\beta$, without ever writing down $r$: the
# labels' probabilities carried it. **$\beta$ is the same knob as PPO's KL coefficient**: it
# sets how far the optimum moves from $\pi_0$. Small $\beta$ buys more reward with more KL;
# large $\beta$ stays near $\pi_0$. Each $\beta$ is one point on the exact reward-KL frontier:

# %%
kls, rewards = zip(*frontier.values())
plt.figure(figsize=(5, 3.5))
plt.plot(kls, rewards, "o-")
for b, (k, v) in frontier.items():
    plt.annotate(f"β={b}", (k, v), xytext=(4, -10), textcoords="offset points", fontsize=8)
plt.xlabel("KL(π* || π₀) (nats)")
plt.ylabel("E[r] under π*")
plt.title("the bandit's optimum for each β")
plt.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## 3. Over-fitting a finite preference set: DPO, IPO, label smoothing
#
# Section 2 had infinitely many labels per pair. Real data has a few, often one, and then the
# empirical preference of a pair is 0 or 1. Bradley-Terry with a hard label is minimised only
# by an *infinite* gap; for DPO's implicit reward that means $\log \pi(y_l|x) \to -\infty$:
# every response that lost a comparison is driven to probability 0, **whatever $\beta$**.
# The KL penalty that defined $\pi^*$ has no say once the labels are deterministic (Azar et
# al. 2023, section 4.2). Two remedies are in `dpo_loss`:
#
# * **IPO** (Azar et al. 2023): regress the log-ratio margin
#   $h = \log\frac{\pi(y_w)}{\pi_0(y_w)} - \log\frac{\pi(y_l)}{\pi_0(y_l)}$ to the finite target
#   $1/(2\beta)$: $L = (h - \frac{1}{2\beta})^2$;
# * **label smoothing** ("conservative DPO"): assume each label is flipped with probability
#   $\varepsilon$, i.e. soft labels $1 - \varepsilon$, whose optimal gap is finite.
#
# On the bandit, a small preference set: the 5 pairs of neighbours $(y_0, y_1), (y_1, y_2),
# \dots$, each labelled once by the same labelers (so a label can be wrong), $\beta = 1$.

# %%
I5, J5 = np.arange(K - 1), np.arange(1, K)  # (0, 1), (1, 2), ..., (4, 5)
labels = jax.random.uniform(jax.random.key(2), (K - 1,)) < jax.nn.sigmoid(r_true[I5] - r_true[J5])
chosen, rejected = np.where(labels, I5, J5), np.where(labels, J5, I5)
losers = np.unique(rejected)  # the responses that lost a comparison
beta = 1.0
print("pairs (chosen > rejected):", [f"y{c} > y{r}" for c, r in zip(chosen, rejected)])
print(f"{int(np.sum(labels != (r_true[I5] > r_true[J5])))} of {len(labels)} labels disagree with "
      f"the true reward; the losers: {[f'y{k}' for k in losers]}")


def on_the_labels(loss_type, eps=0.0):
    def loss(logits):
        logp = jax.nn.log_softmax(logits)
        return dpo_loss(logp[chosen], logp[rejected], ref_logp[chosen], ref_logp[rejected],
                        beta, loss_type=loss_type, label_smoothing=eps)
    return loss


runs = {"DPO": on_the_labels("sigmoid"), "DPO, label smoothing 0.1": on_the_labels("sigmoid", 0.1),
        "IPO": on_the_labels("ipo")}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.5))
final = {}
for name, loss in runs.items():
    path = minimise(loss, steps=10_000)  # (steps, K) logits
    kl = jax.vmap(lambda z: categorical_kl(jax.nn.log_softmax(z), ref_logp))(path)
    lost = jax.nn.softmax(path, axis=-1)[:, losers].sum(-1)
    final[name] = (float(kl[-1]), float(lost[-1]))
    steps = np.arange(1, len(kl) + 1)
    ax1.plot(steps, kl, label=name)
    ax2.plot(steps, lost, label=name)
ax1.axhline(frontier[1.0][0], color="gray", ls="--", label="π* with β = 1 (section 2)")
ax1.set_ylabel("KL(π || π₀) (nats)")
ax2.set_ylabel("probability of the losers")
ax2.set_yscale("log")
for ax in (ax1, ax2):
    ax.set_xscale("log")
    ax.set_xlabel("Adam step")
    ax.grid(alpha=0.3)
ax1.legend(fontsize=8)
plt.show()
for name, (kl, lost) in final.items():
    print(f"{name:<26} after 10,000 steps: KL {kl:.2f}, probability of the losers {lost:.1e}")
expect(final["DPO"][1] < 1e-2 < final["IPO"][1],
       "DPO drives the losers' probability to zero, IPO does not")

# %% [markdown]
# Plain DPO pushes the losers' probability down without end (the right panel is on a log
# scale) and its KL climbs past the $\pi^*$ that the same $\beta$ defined, towards all mass
# on responses that never lost (how it splits among them, the loss does not say: the
# optimiser's path does). Here the KL levels off only because a bandit has 6 responses; a
# language model has countless, so nothing near bounds it. The two
# remedies level off. On a real model, limited capacity, early stopping and a small learning
# rate keep DPO finite, which is why its $\beta$, learning rate and number of epochs
# interact, and are tuned together on held-out pairs.

# %% [markdown]
# ## 4. DPO on the review task
#
# Now the real thing, on lecture 4's pipeline: the `"small"` preset (about two minutes on 2
# cores) with GRPO left out. Its DPO stage, `dpo_on_preferences` (`minirlhf/pipeline.py`),
# trains DPO from the SFT model on **the same preference file** the reward model learned from
# (`minirlhf/dpo.py`: `train_dpo`, through the same LM training loop as pretraining and SFT),
# and measures the result exactly as PPO's: gold reward, reward-model score, KL to SFT,
# format, rating agreement and length on the same held-out prompts.

# %%
out = work / "small"
start = time.perf_counter()
summary = run_pipeline(dataclasses.replace(preset("small"), grpo_stage=False), out)
print(f"\npipeline: {time.perf_counter() - start:.0f} s")

# %% [markdown]
# `kl_gold.png` puts every method in the plane where RLHF methods are compared (Gao et al.
# 2023): gold reward against KL to SFT. Best-of-n is a curve over n (its KL by the formula of
# lecture 4, section 6), PPO a path through training (its held-out evaluations), DPO the point
# where it ended. The lines under the table read PPO's path at best-of-n's and DPO's KL.

# %%
display(Image(filename=str(out / "kl_gold.png")))
rl = summary["rlhf"]
sft_gold = rl["sft"]["gold"]
for name in ("best_of_n", "dpo"):
    at = rl["ppo_gold_at_kl"][name]
    share = "PPO's path never got that far" if at is None else \
        f"{(rl[name]['gold'] - sft_gold) / (at - sft_gold):.0%} of PPO's gain at that KL"
    print(f"{name:>9}: gold gain over SFT {rl[name]['gold'] - sft_gold:+.3f} at KL "
          f"{rl[name]['kl']:.2f}: {share}")

# %% [markdown]
# Read the table with lecture 4's two questions. How much gold did DPO buy, and at what KL?
# Where it ended, about as much as PPO had at the same KL (the line above; on the default
# pipeline too, `README.md`). But it ended early: its default (`DPOConfig`: $\beta = 0.3$,
# 100 steps) stops at a fraction of PPO's KL, and pushed further, with a smaller $\beta$ or
# more steps, its path bends below PPO's and best-of-n's. Three reasons are visible in this
# code:
#
# * **DPO learns only from the pairs**: every gradient comes from responses the SFT model
#   wrote before training. PPO samples its *current* policy and asks the reward model about
#   responses nobody labelled, so it keeps getting feedback where the policy has moved.
# * **The labels are noisy** (lecture 3; here the labelers follow the gold order on about
#   80 % of pairs, 70 % in the default pipeline). The reward model, a scalar head on the SFT
#   network, averages the noise over similar responses into one score, and PPO then samples
#   where that score is high; DPO fits each noisy pair with the policy itself.
# * **Hard labels push margins without bound** (section 3), so the KL DPO spends is not all
#   spent on what the labelers meant.
#
# `benchmarks/bench_dpo.py` traces DPO's path for several $\beta$ on the default pipeline and
# compares each point with PPO at the same KL.

# %% [markdown]
# ## 5. What DPO does to the log-probabilities: likelihood displacement
#
# DPO's loss depends only on the *margin* between chosen and rejected log-ratios, so it can
# be lowered by pushing the rejected response down faster than the chosen one, even while
# both fall. Then probability mass leaves *both* responses of the data and goes elsewhere,
# to responses nobody labelled (Razin et al. 2024, "likelihood displacement"; Rafailov et al.
# 2024 note the chosen log-probs falling in most DPO runs). `train_dpo` logs the held-out
# chosen and rejected log-probs and says when both fell; `dpo.png` draws them:

# %%
display(Image(filename=str(out / "dpo" / "dpo.png")))
history = read_metrics(out / "dpo" / "metrics.jsonl")
evals = [r for r in history if "val_chosen_logp" in r]
first, last = evals[0], evals[-1]
print(f"held-out, step {first['step']} -> {last['step']}:")
print(f"   log pi(chosen)   {first['val_chosen_logp']:8.2f} -> {last['val_chosen_logp']:8.2f}")
print(f"   log pi(rejected) {first['val_rejected_logp']:8.2f} -> {last['val_rejected_logp']:8.2f}")
print(f"   implicit-reward accuracy {first['val_reward_accuracy']:.1%} -> "
      f"{last['val_reward_accuracy']:.1%}, margin {first['val_reward_margin']:+.3f} -> "
      f"{last['val_reward_margin']:+.3f}")
print(f"likelihood displacement (both fell): {likelihood_displacement(history)}")
expect(last["val_reward_margin"] > first["val_reward_margin"],
       "DPO widened the held-out implicit-reward margin")

# %% [markdown]
# The held-out margin grew: the policy separates chosen from rejected better than the SFT
# model did. Whether the chosen log-probs fell with the rejected ones depends on the run (the
# default pipeline's did: `README.md`, section DPO); when they do, the policy's gain in gold, if any, comes from mass
# moved to responses outside the data, which is exactly where DPO gets no feedback.

# %% [markdown]
# ## 6. RL from AI feedback: a judge and a constitution
#
# DPO saves the reward model and the sampling; the *labels* still come from people, and they
# are the slow, costly part. Constitutional AI (Bai et al. 2022) asks a language model
# instead: show it two responses and a principle written by people ("choose the response
# that is less harmful ..."), read its preference off the probabilities of "(A)" and "(B)",
# and train the reward model on those labels (RLAIF; Lee et al. 2023 found the result about
# as good as with human labels). The people's work moves from labelling thousands of pairs
# to writing a few principles.
#
# **What is simulated here, and why.** Everything in this course is small enough for a
# laptop, and a small model cannot read an instruction. So:
#
# * **The judge** is the pretrained model of section 4 fine-tuned on the demonstrations, as
#   SFT is but longer (`RLAIFConfig.judge`). All it knows of good reviews comes from text
#   people wrote; it never sees the gold reward.
# * **The constitution** is text (the task's own is below; `--rlaif.constitution FILE` takes
#   yours), but each principle also names a **probe**: a fixed question the judge can answer
#   with its next-token probabilities, because it cannot answer the principle's words. A
#   real judge reads the words.
# * **The humans** are lecture 3's simulated labelers (Bradley-Terry on the gold reward);
#   the gold reward is what both are measured against.
#
# | probe | the question put to the judge, for a response $y$ to a prompt $x$ |
# | --- | --- |
# | `pleased` | the expected star rating $E[k]$ under $p(k \mid x,\ \text{words of } y,\ \text{" rating: "})$ |
# | `rating_agrees` | $\log p(k_y \mid \ldots)$ of the rating $y$ states |
# | `fluent` | the mean log-probability per token of $y$ |
# | `on_item` | $\log p(y \mid x) - \text{mean}_j \log p(y \mid x \text{ about item } j)$ |
#
# Each probe's scores are standardised over the responses being labelled, and the judge
# prefers the response with the larger weighted sum (`rlaif.verdict_scores`).

# %%
task = make_task("reviews")
print(task.constitution)
constitution = load_constitution("", task)
try:
    parse_constitution("principle: Be kind.\nprobe: kindness\nweight: 1", "mine.txt")
except ValueError as err:
    print("a constitution the judge cannot apply is refused:", err)

# %% [markdown]
# The pipeline's RLAIF stages (`--rlaif_stage true`) train the judge, have it re-label
# **the same comparisons** the simulated humans labelled in section 4 (an equal label
# budget), train a reward model on its labels and run PPO on that. Here we run them up to
# the reward model (section 4's stages are read back, not redone; about a minute). How
# often does each label follow the gold order, for the judge, for each principle alone,
# and for the humans?

# %%
start = time.perf_counter()
run_pipeline(dataclasses.replace(preset("small"), grpo_stage=False, rlaif_stage=True), out,
             stop_after="ai_reward", echo=lambda *_: None)
print(f"judge, labels and reward model: {time.perf_counter() - start:.0f} s")
labels = json.loads((out / "ai_preferences" / "summary.json").read_text())
ai_rm = json.loads((out / "ai_reward" / "summary.json").read_text())
print(f"pairs: {labels['pairs']}")
print(f"  human labelers          {labels['human_gold_agreement']:.1%} follow the gold order")
print(f"  the judge (constitution) {labels['ai_gold_agreement']:.1%}   "
      f"(agrees with the humans on {labels['ai_human_agreement']:.1%})")
for text, share in labels["principle_gold_agreement"].items():
    print(f"     {share:.1%}  {text}")
print(f"reward model on the judge's labels: {ai_rm['val_gold_accuracy']:.1%} of held-out "
      f"pairs in the gold order (on the humans' labels: "
      f"{summary['reward']['val_gold_accuracy']:.1%})")
expect(labels["ai_gold_agreement"] > 0.6,
       "the judge's labels follow the gold order on more than 60 % of the pairs")

# %% [markdown]
# Read it as an instructor would read a labelling vendor's report.
#
# * **The principles are not equal.** "Liked the item more" carries the judge: it asks
#   what the judge learnt from the demonstrations, where ratings follow the words. "No
#   invented words" and "stays on the item" are weak on their own; the gold reward does not
#   even measure staying on the item. A constitution states what *its writers* want; the
#   labels then follow those wants, not the gold reward's.
# * **Same pairs, fewer people: who wins depends on both sides.** In this run the simulated
#   humans are clean (the small preset's labels follow the gold order about 80 % of the
#   time) and the judge is a smaller model trained shorter, so the humans' labels follow the
#   gold order more often. Compare the two reward models' lines anyway: a reward model can
#   learn more from labels that are right less often when their mistakes are systematic (a
#   function of the text it can fit) rather than coin flips. On the default pipeline
#   (`README.md`: humans at 70 %, the full judge) the judge's labels win, 74 % against 70 %,
#   its reward model orders held-out pairs better (72 % against 69 %), and PPO on it (the
#   last RLAIF stage, not run here) reached more gold than PPO on the human-label model, at
#   a little more KL (0.498 at 1.75 nats against 0.397 at 1.62). That is the
#   simulation's doing as much as RLAIF's: our judge learned from clean demonstrations of
#   the very property the gold reward scores, and its constitution's weights and training
#   budget were chosen by looking at the gold order on those pairs (on fresh pairs the judge
#   scores 74.8 %, `benchmarks/bench_rlaif.py`). **An AI labeler is as good as the model
#   behind it**: the SFT model as the judge follows the gold order on 63.1 % of them.
# * **Nobody checks the judge but the metric.** A judge's mistakes are systematic, not
#   noise: every pair it misreads, it misreads the same way, and the reward model learns the
#   mistake. Measuring its agreement on a sample of human labels, as here, is the check.
#
# `minirlhf ai-label --judge runs/pipeline/judge --preferences FILE --out FILE
# --constitution mine.txt` re-labels any preference file by your own constitution.

# %% [markdown]
# ## 7. Exercises
#
# 1. **The derivation by code.** In section 2, replace the soft labels by the labels of a
#    Bradley-Terry labeler at temperature $\tau = 2$ ($p_{ij} = \sigma((r_i - r_j)/2)$). Which
#    $\pi^*$ does DPO find now? Express it as $\pi_0 e^{r'/\beta}/Z$: what is $r'$?
# 2. **IPO's target.** Show that IPO's loss on a single pair seen once is minimised at
#    $h = 1/(2\beta)$, and find the KL this implies on the bandit of section 3 for $\beta = 1$.
#    Check it against the IPO curve.
# 3. **Label smoothing's optimum.** For one pair with smoothed label $1 - \varepsilon$, find the
#    margin that minimises the smoothed loss. What does $\varepsilon \to 0$ give?
# 4. **$\beta$ on the review task.** Re-run the pipeline of section 4 with `--dpo.beta` 0.03 and
#    1.0 (`dataclasses.replace(cfg, dpo=dataclasses.replace(cfg.dpo, beta=...))`; the earlier
#    stages are read back from `out`, so only DPO re-runs: delete `out / "dpo"` first). Where do
#    the new points land in `kl_gold.png`?
# 5. **Over-fitting a small preference set.** Train DPO on the first 100 comparisons only
#    (write them with `minirlhf.preference_data.write_preferences`). Compare the train and
#    held-out implicit-reward accuracy. Does IPO (`loss_type="ipo"`) over-fit less?
# 6. **On-policy pairs.** DPO's pairs come from the SFT model. Sample pairs from the DPO policy
#    itself, label them with `minirlhf.reward_model.simulate_comparisons` and run DPO again from
#    it ("iterative DPO"). Does the gap to PPO shrink?
# 7. **Your own constitution.** Write a constitution file without `on_item`, and one that
#    weights `rating_agrees` as much as `pleased`. Re-label section 4's comparisons with
#    `minirlhf.rlaif.label_file(out / "judge", out / "preferences" / "comparisons.jsonl", ...)`
#    and compare the agreement report with section 6's. Which principle would you add to
#    reach the humans' own agreement, and which probe could ask it?
# 8. **An AI labeler is as good as its model.** Train a judge for SFT's budget
#    (`minirlhf.sft.sft` with `steps=200, n_train=2000`) and re-label with it. How far does
#    `pleased` fall on its own?
# 9. **Mixing labels.** Keep the humans' labels on a tenth of the comparisons and the judge's
#    on the rest (Bai et al. 2022 kept human labels for helpfulness). Train a reward model on
#    the mix (`minirlhf.reward_model.train_reward_model`): where does its gold accuracy land?

# %%
print(f"lecture ran in {time.perf_counter() - LECTURE_START:.0f} s")
