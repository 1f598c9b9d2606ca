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
# # Lecture 1 — Language models from scratch
#
# The deck "Large Language Models and RL from Human Feedback", slide **"High-Level Recipe for
# ChatGPT"**, lists four steps:
#
# 1. Unsupervised pre-training
# 2. Supervised finetuning (behavioral cloning) from human demonstrations
# 3. Collect preference rankings over outputs to train a reward function
# 4. Perform policy gradient updates using RL with learned reward
#
# This lecture builds everything steps 1 and 2 need, one piece at a time, with the `minirlhf`
# package (every function used here is imported from it; open its source next to this notebook):
#
# | section | idea | minirlhf |
# | --- | --- | --- |
# | 1 | tokens, padding and masks | `minirlhf/tokenizer.py` |
# | 2 | the causal transformer | `minirlhf/model.py` |
# | 3 | the next-token loss $L_{LM}$ | `minirlhf/losses.py` |
# | 4 | sampling: greedy, temperature, top-k, top-p | `minirlhf/generate.py` |
# | 5 | pre-training | `minirlhf/pretrain.py` |
# | 6 | supervised fine-tuning = behavioural cloning | `minirlhf/sft.py` |
# | 7 | exercises | |
#
# Everything runs on a laptop CPU: the whole notebook takes 2 to 3 minutes on 2 cores.
#
# **Setup.** Install the package once from the repository root (`pip install -e .`; in Colab,
# `!pip install` the repository first), then run the cells top to bottom.

# %%
import os
import tempfile
import time

# Training loops show tqdm progress bars; "0" turns them back on.
os.environ.setdefault("MINIRLHF_QUIET", "1")

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from minirlhf.distributions import entropy
from minirlhf.envs import make_task
from minirlhf.generate import SamplingConfig, filter_logits, generate
from minirlhf.losses import next_token_loss, next_token_nll
from minirlhf.model import (ModelConfig, causal_attention_mask, count_params, forward, init_model,
                            positions_from_mask)
from minirlhf.lm_training import trim
from minirlhf.logging import expect
from minirlhf.pretrain import PretrainConfig, lm_data_from_texts, pretrain
from minirlhf.sft import SFTConfig, complete, format_rate, sft, sft_data
from minirlhf.tokenizer import BOS_ID, EOS_ID, PAD_ID, CharTokenizer

# %matplotlib inline

LECTURE_START = time.perf_counter()
print("jax", jax.__version__, "on", jax.devices())

# %% [markdown]
# ## 1. Tokens
#
# *Deck "Large Language Models and RL from Human Feedback", slide "Preliminaries: Language
# Models":* "Models that assign probabilities to sequences of words are called language models
# or LMs. Language modeling: the task of predicting the next word in a sequence given the
# sequence of preceding words."
#
# A model cannot read text, only integers, so a **tokenizer** maps text to a sequence of ids
# $w_1, \dots, w_T$. GPT-3 uses 50,257 sub-word tokens (deck "Reinforcement Learning for and
# with Foundation Models", slide "Case Study: ChatGPT", pre-training); our "words" are single
# characters. The task we train on all lecture is `reviews`: short product reviews written by
# a small grammar, over an alphabet of 42 characters.

# %%
task = make_task("reviews")
tok = CharTokenizer(task.alphabet)
V = tok.vocab_size
print(f"alphabet ({len(task.alphabet)} characters): {task.alphabet!r}")
print(f"vocabulary size V = 3 special tokens + {len(task.alphabet)} characters = {V}")
print("special ids: PAD =", PAD_ID, " BOS =", BOS_ID, " EOS =", EOS_ID)

# %% [markdown]
# Three ids are special:
#
# * **BOS** (beginning of sequence) is the first token of every sequence: the model needs
#   *something* to condition on when it predicts the first real character.
# * **EOS** (end of sequence) is how a model says "I am done": generation stops there.
# * **PAD** fills the unused end (or start) of a row when sequences of different lengths
#   share one rectangular batch.

# %%
text = "the pizza was great"
ids = tok.encode(text, bos=True, eos=True)
print(ids)
print([("<bos>" if i == BOS_ID else "<eos>" if i == EOS_ID else tok.decode([i])) for i in ids])
print(repr(tok.decode(ids)))  # BOS is dropped, decoding stops at EOS

# %% [markdown]
# **Batches, padding and the mask.** The same slide asks: "How do we deal with different
# length inputs?" We pad every row to a common length $T$ and carry an explicit boolean
# **mask** that is True on real tokens. Every function in minirlhf that sees a padded batch
# takes that mask as an argument.
#
# * **Right padding** (PAD at the end) is what training uses: every row starts in column 0,
#   so column $t$ holds the $t$-th token of every sequence.
# * **Left padding** (PAD at the start) is what generation uses: every prompt's last token
#   sits in the last column, so the first new token of every row goes into the same column.
#   (minirlhf's `generate` accepts either; its text-in, text-out wrapper `complete` left-pads.)

# %%
reviews = ["the film was fun", "my car was so bad", "this song is okay"]


def show_batch(tokens, mask):
    """Print a (B, T) batch: '_' for PAD, '^' for BOS, '$' for EOS, and the mask as 0/1."""
    for row, m in zip(np.asarray(tokens), np.asarray(mask)):
        chars = "".join("_" if i == PAD_ID else "^" if i == BOS_ID else "$" if i == EOS_ID
                        else tok.decode([i]) for i in row)
        print(f"{chars}   mask {''.join(str(int(b)) for b in m)}")


for padding in ("right", "left"):
    tokens, mask = tok.encode_batch(reviews, bos=True, eos=True, padding=padding)
    print(f"{padding} padding: tokens {tokens.shape} {tokens.dtype}, mask {mask.shape} {mask.dtype}")
    show_batch(tokens, mask)
    print()

# %% [markdown]
# With left padding, a token's column is no longer its position in the sentence. minirlhf
# defines a token's **position** as the number of real tokens before it, computed from the mask,
# so both paddings give each real token the same position (and, section 2 shows, the same
# logits):

# %%
_, mask_left = tok.encode_batch(reviews, bos=True, eos=True, padding="left")
print(np.asarray(positions_from_mask(jnp.asarray(mask_left))))

# %% [markdown]
# ## 2. The causal transformer and its mask
#
# *Deck "Large Language Models and RL from Human Feedback", slide "Learning a language model by
# reading the internet!", "Causal Decoder Architecture".* A GPT-style decoder turns the tokens
# $w_1..w_T$ into one **logits vector** per position (slide "Preliminaries: Language Models":
# "the logits vector"). The logits at position $t$ score every candidate for token $t+1$:
# $P(w_{t+1} \mid w_1, \dots, w_t) = \mathrm{softmax}(\text{logits}_t)$.
#
# minirlhf builds the model with Flax NNX and immediately splits it into a static `graphdef`
# (the architecture) and a pytree of arrays `params`; `forward(graphdef, params, tokens, mask)`
# is then a pure function of arrays, which `jax.grad` can differentiate and `jax.jit` can
# compile into one XLA program (much faster than running it operation by operation).

# %%
model_cfg = ModelConfig(vocab_size=V)  # the default: D=128, H=4 heads, L=2 blocks, max_len=128
graphdef, params0 = init_model(model_cfg, jax.random.key(0))
print(model_cfg)
print(f"{count_params(params0):,} parameters (GPT-3: 175,000,000,000)")

fwd = jax.jit(forward, static_argnums=0)  # graphdef is static: it is the program, not data
tokens, mask = tok.encode_batch(reviews, bos=True, eos=True)
out = fwd(graphdef, params0, jnp.asarray(tokens), jnp.asarray(mask))
print("tokens", tokens.shape, "-> logits", out.logits.shape, "= (B, T, V)")

# %% [markdown]
# **The causal mask.** Self-attention lets every position read every other position, which
# answers the slide's second question, "How do we model long-range dependencies?". But a
# model that predicts token $t+1$ must not read token $t+1$ (or anything after it): that would
# be copying the answer. So query position $t$ may only attend to key positions $s \le t$, a
# lower-triangular $(T, T)$ mask. Padding adds a second rule: never attend to a PAD key.
# `forward` combines the two in `causal_attention_mask`: `tril(ones(T, T)) & mask[:, None, :]`.
# Here is that mask for one unpadded and one left-padded row:

# %%
row_tokens, row_mask = tok.encode_batch(["the film was fun", "my car was so bad"], bos=True,
                                        padding="left")
T = row_tokens.shape[1]
attn_mask = causal_attention_mask(jnp.asarray(row_mask))  # (B, T, T): keys s <= t, no PAD

fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
for ax, b in zip(axes, (1, 0)):
    labels = ["_" if i == PAD_ID else "^" if i == BOS_ID else tok.decode([i]) for i in row_tokens[b]]
    ax.imshow(np.asarray(attn_mask[b]), cmap="Greys", vmin=0, vmax=1.4)
    ax.set_xticks(range(T), labels)
    ax.set_yticks(range(T), labels)
    ax.set_xlabel("key position s (attended to)")
    ax.set_ylabel("query position t (predicting token t+1)")
    pads = int((~row_mask[b]).sum())
    ax.set_title(f"row {b}: left-padded with {pads} PAD" if pads else f"row {b}: no padding")
fig.suptitle("Attention mask: black = may attend")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Causality, checked numerically.** If the mask does its job, changing a *future* token
# cannot change the logits at any earlier position. Change the character at position 12 and
# compare the logits of the two sequences position by position. This holds for any parameters,
# trained or not: it is a property of the architecture.

# %%
a = tok.encode("the pizza was great", bos=True)
b = list(a)
t0 = 12
b[t0] = tok.encode("x")[0]
print(repr(tok.decode(a)), "vs", repr(tok.decode(b)), f"(position {t0} changed)")
pair = jnp.asarray([a, b])
logits = fwd(graphdef, params0, pair, jnp.ones_like(pair, bool)).logits  # (2, T, V)
change = np.asarray(jnp.abs(logits[0] - logits[1]).max(axis=-1))  # (T,)

plt.figure(figsize=(8, 2.8))
plt.bar(range(len(a)), change, color=["tab:blue" if t < t0 else "tab:red" for t in range(len(a))])
plt.axvline(t0 - 0.5, color="k", ls="--")
plt.xticks(range(len(a)), ["^"] + list("the pizza was great"))
plt.ylabel("max |logit change|")
plt.title(f"changing token {t0} only changes logits at positions >= {t0}")
plt.show()
print("largest change before position", t0, "=", change[:t0].max())
assert change[:t0].max() == 0.0 and change[t0:].min() > 0.0

# %% [markdown]
# **Padding is invisible.** Because PAD keys are masked and positions come from the mask, the
# logits of the real tokens do not depend on how a row was padded:

# %%
right = tok.encode_batch(reviews, bos=True, eos=True, padding="right")
left = tok.encode_batch(reviews, bos=True, eos=True, padding="left")
lr = fwd(graphdef, params0, *map(jnp.asarray, right)).logits
ll = fwd(graphdef, params0, *map(jnp.asarray, left)).logits
diff = max(float(jnp.abs(lr[i][right[1][i]] - ll[i][left[1][i]]).max()) for i in range(len(reviews)))
print(f"max |logit difference| on real tokens, right vs left padding: {diff:.1e}")

# %% [markdown]
# ## 3. The next-token loss $L_{LM}$
#
# *Deck "Large Language Models and RL from Human Feedback", slide "Learning a language model by
# reading the internet!":* "Maximize the conditional probability [of the] next token of the
# given text sequence":
#
# $$L_{LM} = \frac{1}{T} \sum_{t=1}^{T} -\log P(w_t \mid w_1, w_2, \dots, w_{t-1})$$
#
# In code, the logits at position $t$ are scored against the token at position $t+1$:
# `next_token_nll(logits, tokens)` returns the $(B, T-1)$ terms
# $-\log \mathrm{softmax}(\text{logits}_t)[w_{t+1}]$, and
# `next_token_loss(logits, tokens, loss_mask)` averages them over the targets a mask selects
# (the real tokens after BOS for pre-training; BOS itself is given, never predicted, and PAD is
# never a target). The slide averages over the $T$ tokens of one sequence; over a padded batch,
# minirlhf averages over all the selected targets of all rows. `lm_data_from_texts` builds
# exactly such a pre-training batch: BOS + text + EOS, right-padded, with `loss_mask` = the
# real tokens after BOS.

# %%
corpus = task.pretrain_corpus(64, seed=1)
batch = trim(lm_data_from_texts(tok, corpus, length=model_cfg.max_len))  # trim: drop all-PAD columns
logits = fwd(graphdef, params0, jnp.asarray(batch.tokens), jnp.asarray(batch.mask)).logits
loss0 = float(next_token_loss(logits, jnp.asarray(batch.tokens), jnp.asarray(batch.loss_mask)))

# The index shift, by hand, for one target: position 3 predicts token 4.
by_hand = -jax.nn.log_softmax(logits[0, 3])[batch.tokens[0, 4]]
print(f"one term by hand {float(by_hand):.4f} = next_token_nll {float(next_token_nll(logits, jnp.asarray(batch.tokens))[0, 3]):.4f}")
print(f"untrained model: L_LM = {loss0:.4f} nats/token;  log V = log {V} = {np.log(V):.4f}")

# %% [markdown]
# **Why $\approx \log V$?** At initialisation the token embeddings are tiny (standard deviation
# 0.02) and the output layer reuses them (tied embeddings), so all $V$ logits are nearly equal
# and the softmax is nearly uniform: $P(w) \approx 1/V$ for every token, whatever the context,
# and $-\log(1/V) = \log V$. A model that knows nothing pays $\log V$ nats per token; anything
# it learns shows up as a loss below that line. (The small excess above $\log V$ is the price
# of the logits not being exactly equal: for random logits of spread $\sigma$ the expected loss
# is about $\log V + \sigma^2/2$.) The predictive entropy tells the same story:

# %%
real = jnp.asarray(batch.mask)
sigma = float(jnp.std(logits, axis=-1)[real].mean())
H = float(entropy(logits)[real].mean())
print(f"spread of the logits sigma = {sigma:.3f}: log V + sigma^2/2 = {np.log(V) + sigma**2 / 2:.4f}")
print(f"entropy of the predictions = {H:.4f} nats (uniform: log V = {np.log(V):.4f})")

# %% [markdown]
# ## 4. Sampling strategies
#
# *Deck "Large Language Models and RL from Human Feedback", slide "Preliminaries: Language
# Models":* "select the token with the high(est) 'probability' as a token to display
# (generate)", and "read about other sampling strategies" (Hugging Face's blog post "How to
# generate text"). `minirlhf.generate` implements four:
#
# * **greedy**: always the most likely token (`temperature=0`);
# * **temperature** $\tau$: sample from $\mathrm{softmax}(\text{logits}/\tau)$; $\tau<1$ sharpens,
#   $\tau>1$ flattens;
# * **top-k** (Fan et al. 2018): sample among the $k$ most likely tokens only;
# * **top-p / nucleus** (Holtzman et al. 2020): sample among the smallest set of most likely
#   tokens whose probabilities add up to $p$: few tokens when the model is sure, many when not.
#
# `filter_logits(logits, SamplingConfig(...))` applies the temperature and the cut-offs
# (removed tokens get logit $-\infty$, probability 0). Our untrained model's distribution is
# flat, so for a distribution worth looking at we *count*: how often does each character follow
# the word "i" in 5,000 documents of the corpus? Normalised, those counts are a tiny
# count-based language model (an n-gram model) that looks at the last 3 characters only.
# Their logs serve as logits (counts + 1, so that unseen tokens keep a little mass); with
# logits = log counts, temperature $\tau$ samples in proportion to $\text{count}^{1/\tau}$.

# %%
def next_char_counts(context, docs):
    """How often each token follows `context` in `docs` (EOS where a document ends)."""
    counts = np.zeros(V)
    for doc in docs:
        doc = " " + doc  # so that a context starting with a space matches at the start too
        start = doc.find(context)
        while start >= 0:
            nxt = start + len(context)
            counts[tok.encode(doc[nxt])[0] if nxt < len(doc) else EOS_ID] += 1
            start = doc.find(context, start + 1)
    return counts


context = " i "
counts = next_char_counts(context, task.pretrain_corpus(5000, seed=2))
count_logits = jnp.log(jnp.asarray(counts) + 1.0)  # (V,)


def token_label(i):
    return {PAD_ID: "PAD", BOS_ID: "BOS", EOS_ID: "EOS"}.get(int(i)) or tok.decode([i]).replace(" ", "␣")


def plot_strategies(logits, title, top=12):
    """Bar charts of one next-token distribution under each sampling strategy."""
    strategies = [
        ("model: τ = 1", SamplingConfig(temperature=1.0)),
        ("greedy: τ = 0", SamplingConfig(temperature=0.0)),
        ("τ = 0.5", SamplingConfig(temperature=0.5)),
        ("τ = 2", SamplingConfig(temperature=2.0)),
        ("top-k, k = 3", SamplingConfig(top_k=3)),
        ("top-p, p = 0.8", SamplingConfig(top_p=0.8)),
    ]
    order = np.argsort(-np.asarray(logits))[:top]  # the same x axis in every panel
    fig, axes = plt.subplots(2, 3, figsize=(13, 5.5), sharey=True)
    for ax, (name, cfg) in zip(axes.flat, strategies):
        if cfg.temperature == 0:  # greedy: all mass on the argmax (see sample_token)
            probs = np.asarray(jax.nn.one_hot(jnp.argmax(logits), V))
        else:
            probs = np.asarray(jax.nn.softmax(filter_logits(logits[None], cfg)[0]))
        ax.bar(range(top), probs[order], color="tab:blue")
        ax.set_xticks(range(top), [token_label(i) for i in order])
        n = int((probs > 0).sum())
        ax.set_title(f"{name}   ({n} token{'s' if n > 1 else ''} possible)")
    axes[0, 0].set_ylabel("probability")
    axes[1, 0].set_ylabel("probability")
    fig.suptitle(title)
    fig.tight_layout()
    plt.show()


plot_strategies(count_logits, f"P(next character | ...{context!r}), counted in the corpus")

# %% [markdown]
# **Sampling text.** `generate(graphdef, params, prompt, prompt_mask, key, cfg)` runs the whole
# loop (pick a token, append it, repeat) inside `jax.lax.scan`s with a key-value cache, so
# each step only processes the one new token. It returns the tokens, their log-probabilities
# under the model (what RL will need in later lectures), a response mask (True up to and
# including EOS) and whether each row finished. `complete` wraps it: text in, text out.
#
# From the untrained model, sampling produces noise: a uniform distribution has nothing to say
# (try greedy decoding, `GREEDY`, too).

# %%
prompts = task.prompts(64, seed=3)
prompt_tokens, prompt_mask = tok.encode_batch(prompts, bos=True, padding="left")
SAMPLE = SamplingConfig(max_new_tokens=80, temperature=1.0)
GREEDY = SamplingConfig(max_new_tokens=80, temperature=0.0)

gen = generate(graphdef, params0, prompt_tokens, prompt_mask, jax.random.key(1), SAMPLE)
print({name: getattr(gen, name).shape for name in ("tokens", "logprobs", "mask", "finished")})
for p, r in zip(prompts[:3], tok.decode_batch(np.asarray(gen.tokens), np.asarray(gen.mask))):
    print(f"  {p!r} -> {r!r}")

# %%
completions = complete(graphdef, params0, tok, prompts, jax.random.key(1), SAMPLE)
print(completions[:3])  # the same key gives the same samples as the cell above

# %% [markdown]
# ## 5. Pre-training: learning the language by reading
#
# *Deck "Large Language Models and RL from Human Feedback", slide "Learning a language model by
# reading the internet!"; deck "Reinforcement Learning for and with Foundation Models", slide
# "Case Study: ChatGPT": pre-training → self-supervised learning.* GPT-3 read 300 billion
# tokens on thousands of GPUs for a month; we read a few hundred thousand characters of the
# review corpus on a CPU for about a minute. The algorithm is the same: minimise $L_{LM}$ on
# batches of text with a gradient optimiser (AdamW).
#
# `pretrain(cfg, run_dir)` builds the model with `init_model(cfg.model, key(cfg.seed))` (with
# the default seed 0, exactly `params0` from section 2), trains it, and writes checkpoints,
# `metrics.jsonl` and a loss plot into `run_dir`. It returns the trained model and the metric
# history.

# %%
work = tempfile.mkdtemp(prefix="minirlhf_lecture01_")
pre_dir = os.path.join(work, "pretrain")
pre_cfg = PretrainConfig(steps=200, batch_size=32, eval_every=50, model=model_cfg)
start = time.perf_counter()
graphdef, params_pre, tok, pre_history = pretrain(pre_cfg, pre_dir)
print(f"pre-training: {pre_cfg.steps} steps x {pre_cfg.batch_size} documents in "
      f"{time.perf_counter() - start:.0f} s; run folder {pre_dir}: {sorted(os.listdir(pre_dir))}")


# %%
def plot_history(history, title):
    for key, style in (("loss", "-"), ("val_loss", "o-")):
        pts = [(r["step"], r[key]) for r in history if key in r]
        plt.plot(*zip(*pts), style, label={"loss": "training batch", "val_loss": "held out"}[key])
    plt.axhline(np.log(V), color="gray", ls="--", label="log V (knows nothing)")
    plt.xlabel("step")
    plt.ylabel("L_LM (nats / token)")
    plt.title(title)
    plt.legend()
    plt.show()


plt.figure(figsize=(7, 3.5))
plot_history(pre_history, "pre-training on the review corpus")
print("held-out loss:", {r["step"]: round(r["val_loss"], 3) for r in pre_history if "val_loss" in r})

# %% [markdown]
# **Before and after.** Same prompts, same random key, same sampling strategy:

# %%
before_pre = complete(graphdef, params0, tok, prompts, jax.random.key(1), SAMPLE)
after_pre = complete(graphdef, params_pre, tok, prompts, jax.random.key(1), SAMPLE)
for p, b, a in list(zip(prompts, before_pre, after_pre))[:5]:
    print(f"{p!r}\n   before: {b!r}\n   after:  {a!r}")
print("\ngreedy after pre-training:", complete(graphdef, params_pre, tok, prompts, jax.random.key(1), GREEDY)[:3])

# %% [markdown]
# The model now writes the corpus' language: words of the grammar, sentences, full stops, EOS.
# Compare its next-character distribution after the word "i" with the counts of section 4.
# The count model sees the last 3 characters only, so it blurs two different situations
# together: at the start of a review "i" is always followed by "thought" (the opening "i
# thought the film was ..."), in the middle it starts a sentence such as "i loved the plot".
# The transformer conditions on everything before, and tells them apart:

# %%
contexts = ["i ", "the film was bad. i "]
ctx_tokens, ctx_mask = tok.encode_batch(contexts, bos=True, padding="left")  # last token: last column
ctx_logits = fwd(graphdef, params_pre, jnp.asarray(ctx_tokens), jnp.asarray(ctx_mask)).logits
p_model = np.asarray(jax.nn.softmax(ctx_logits[:, -1]))  # (2, V)
p_count = counts / counts.sum()
order = np.argsort(-p_count)[:12]
x = np.arange(len(order))
plt.figure(figsize=(10, 3.2))
plt.bar(x - 0.27, p_count[order], width=0.27, color="gray", label=f"corpus counts after {context!r}")
plt.bar(x, p_model[0, order], width=0.27, label="pre-trained model after '^i ' (start)")
plt.bar(x + 0.27, p_model[1, order], width=0.27, label="pre-trained model after '^the film was bad. i '")
plt.xticks(x, [token_label(i) for i in order])
plt.ylabel("P(next character)")
plt.legend()
plt.show()

# %% [markdown]
# ## 6. Supervised fine-tuning = behavioural cloning
#
# *Deck "Large Language Models and RL from Human Feedback", slide "Give specific demonstrations
# of what we want":* "Collect demonstration data and train a supervised policy … Same loss
# function as pretraining. Cross entropy loss (classification)." *Deck "Reinforcement Learning
# for and with Foundation Models", slide "Case Study: ChatGPT", Supervised Fine Tuning (SFT):*
# "One-shot answers → Supervised Learning; Dialog → Behavioral Cloning / Imitation Learning."
#
# A pre-trained model continues text the way the internet would; it does not do what we ask.
# Here the "labeler" always finishes a review in one sentiment, adds a sentence, and closes
# with a rating in a fixed format. The corpus never contains a rating, so the pre-trained model
# never writes one:

# %%
demos = task.demonstrations(4, seed=0)
for prompt, response in demos:
    print(f"prompt {prompt!r:28} demonstration {response!r}")
print(f"\nformat rate of the pre-trained model: {format_rate(task, after_pre):.2f}")

# %% [markdown]
# **Same loss, different mask.** SFT minimises the very same $L_{LM}$, but only over the
# tokens the *policy* must produce: the response and its EOS. The prompt is context written by
# the user; training the model to predict it would teach it to imitate users. `sft_data`
# builds the batch and its `loss_mask`:

# %%
demo_batch = trim(sft_data(tok, task.demonstrations(8, seed=0), length=model_cfg.max_len))
kind = demo_batch.mask.astype(int) + demo_batch.loss_mask  # 0 PAD, 1 prompt, 2 target
fig, ax = plt.subplots(figsize=(12, 2.6))
ax.imshow(kind, cmap=ListedColormap(["white", "silver", "tab:orange"]),
          vmin=0, vmax=2, aspect="auto")
ax.set_xlabel("position t")
ax.set_ylabel("demonstration")
ax.set_title("loss mask: grey = prompt (context, not a target), orange = response + EOS (targets), white = PAD")
plt.show()
row = demo_batch.tokens[0][demo_batch.mask[0]]
print("".join("^" if i == BOS_ID else "$" if i == EOS_ID else tok.decode([i]) for i in row))
print("".join("T" if m else "." for m in demo_batch.loss_mask[0][demo_batch.mask[0]]), " (T = target)")

# %% [markdown]
# Where does the pre-trained model fail on a demonstration? Its per-token loss
# $-\log P(w_t \mid w_{<t})$ along the first one:

# %%
def per_token_nll(params, batch, i=0):
    """-log P(w_{t+1} | w_1..w_t) along the real tokens of row i of an LMBatch."""
    tokens = jnp.asarray(batch.tokens)
    logits = fwd(graphdef, params, tokens, jnp.asarray(batch.mask)).logits
    n = int(batch.mask[i].sum())
    return np.asarray(next_token_nll(logits, tokens)[i, : n - 1])


def plot_nll(nlls, batch, i=0):
    n = int(batch.mask[i].sum())
    chars = ["$" if t == EOS_ID else tok.decode([t]) for t in batch.tokens[i, 1:n]]
    targets = batch.loss_mask[i, 1:n]
    plt.figure(figsize=(13, 3))
    for (name, nll), shift in zip(nlls.items(), (-0.2, 0.2)):
        plt.bar(np.arange(n - 1) + shift, nll, width=0.4, label=name)
    plt.axvspan(-0.5, int(np.argmax(targets)) - 0.5, color="silver", alpha=0.4, label="prompt (not a target)")
    plt.xticks(range(n - 1), chars)
    plt.ylabel("-log P(w_t | w_<t)")
    plt.legend()
    plt.show()


nll_pre = per_token_nll(params_pre, demo_batch)
plot_nll({"pre-trained": nll_pre}, demo_batch)
loss_pre = float(next_token_loss(
    fwd(graphdef, params_pre, jnp.asarray(demo_batch.tokens), jnp.asarray(demo_batch.mask)).logits,
    jnp.asarray(demo_batch.tokens), jnp.asarray(demo_batch.loss_mask)))
print(f"pre-trained model's L_LM on the demonstrations' responses: {loss_pre:.3f} nats/token")

# %% [markdown]
# The review words are cheap (pre-training taught them); the `rating: k/5` tail and the EOS
# after it are expensive. Now fine-tune: `sft(SFTConfig(init=pre_dir, ...), run_dir)` loads the
# pre-trained checkpoint and calls pre-training's train step unchanged on the demonstrations.

# %%
sft_dir = os.path.join(work, "sft")
sft_cfg = SFTConfig(init=pre_dir, steps=100, batch_size=32, eval_every=25)
start = time.perf_counter()
graphdef, params_sft, tok, sft_history = sft(sft_cfg, sft_dir)
print(f"SFT: {sft_cfg.steps} steps x {sft_cfg.batch_size} demonstrations in {time.perf_counter() - start:.0f} s")
plt.figure(figsize=(7, 3.5))
plot_history(sft_history, "SFT on the demonstrations (loss over response tokens)")

# %%
plot_nll({"pre-trained": nll_pre, "after SFT": per_token_nll(params_sft, demo_batch)}, demo_batch)

# %% [markdown]
# The rating tail became cheap. Two details are worth a second look. The rating digit keeps a
# cost: the labeler picks 4 or 5 for a positive review, 1 or 2 for a negative one, so even a
# perfect imitator pays $\log 2$ there. And the *prompt* tokens, which SFT never trains on,
# may drift: nothing in the SFT loss holds the model to its pre-training there.

# %% [markdown]
# **Before and after SFT**, same prompts, same key, same sampling ($\tau = 1$), and the
# fraction of completions that follow the demonstrations' format (`format_rate`):

# %%
after_sft = complete(graphdef, params_sft, tok, prompts, jax.random.key(1), SAMPLE)
greedy_pre = complete(graphdef, params_pre, tok, prompts, jax.random.key(1), GREEDY)
greedy_sft = complete(graphdef, params_sft, tok, prompts, jax.random.key(1), GREEDY)
for p, b, a in list(zip(prompts, after_pre, after_sft))[:5]:
    print(f"{p!r}\n   pre-trained: {b!r}\n   after SFT:   {a!r}")

rates = {("pre-trained", "τ = 1"): format_rate(task, after_pre),
         ("pre-trained", "greedy"): format_rate(task, greedy_pre),
         ("SFT", "τ = 1"): format_rate(task, after_sft),
         ("SFT", "greedy"): format_rate(task, greedy_sft)}
plt.figure(figsize=(6, 3))
plt.bar([f"{m}\n{s}" for m, s in rates], list(rates.values()),
        color=["tab:gray", "tab:gray", "tab:orange", "tab:orange"])
plt.ylim(0, 1.05)
plt.ylabel("fraction in the demonstrated format")
plt.title(f"format rate over {len(prompts)} prompts")
plt.show()
print({f"{m}, {s}": round(r, 3) for (m, s), r in rates.items()})
expect(rates[("SFT", "τ = 1")] > rates[("pre-trained", "τ = 1")],
       "SFT samples the format more often than the pre-trained model")

# %% [markdown]
# Behavioural cloning taught the labeler's format in 100 steps. It copies
# whatever the demonstrations contain, though, and nothing more: look at the completions above
# and ask whether the rating always agrees with the review's sentiment. Judging *how good* a
# response is, rather than imitating one, is what steps 3 and 4 of the recipe (a reward model
# and RL) are for, in the next lectures.

# %%
print(f"whole lecture: {time.perf_counter() - LECTURE_START:.0f} s; run folders under {work}")

# %% [markdown]
# ## 7. Exercises
#
# 1. **Vocabulary.** What loss does an untrained model with GPT-3's vocabulary of 50,257
#    tokens start at? Why would a sub-word tokenizer make the same text *shorter* in tokens,
#    and what does that do to the cost of attention, which compares every pair of positions?
# 2. **Padding.** `complete` left-pads its prompts. Generate from right-padded prompts with
#    `generate` instead (hint: `tok.encode_batch(..., padding="right")`). Are the completions
#    the same? Which line of `minirlhf/model.py` makes that possible?
# 3. **Causality.** Suppose `forward` forgot the `tril` and every position could attend to
#    every other one. What would the pre-training loss do, and why would the model still be
#    useless for generation?
# 4. **The starting loss.** Multiply the untrained model's token-embedding table (it lives
#    in `params0["embed"]`) by 5 and measure the untrained loss and $\sigma$ again. Does
#    $\log V + \sigma^2/2$ still predict it? Why must the approximation break down as
#    $\sigma$ grows?
# 5. **Temperature.** Predict, then measure: how do the format rate and the fraction of
#    completions that end with EOS change after SFT as $\tau$ goes through 0.3, 1, 1.5, 3?
# 6. **top-k vs top-p.** Find a context where top-k with $k=3$ keeps tokens that top-p with
#    $p=0.8$ drops, and one where it is the other way round. What does this say about which
#    strategy adapts to the model's confidence?
# 7. **The SFT mask.** Fine-tune with a loss mask that also covers the prompt: build the
#    demonstrations with `sft_data`, set their `loss_mask` to their `mask`, and train with
#    `minirlhf.lm_training.train_lm` (the loop `sft` itself calls). What does the model learn in
#    addition, what happens to the prompt tokens' loss in the plot above, and does the format
#    rate change?
# 8. **Is pre-training needed?** Run SFT from a checkpoint after 1, 50 and 200 pre-training
#    steps with the same SFT budget. How do the format rate and the correctness of the words
#    depend on it? What does that tell you about where an assistant's knowledge comes from?
# 9. **Scale.** How many tokens did our pre-training read ($\text{steps} \times
#    \text{batch} \times$ average length)? How many times fewer than GPT-3's 300 billion?
