"""The reward model: learning a reward from comparisons.

"Collect comparison data and train a reward model": step 2 of InstructGPT's three, step 3
of the four-step recipe on the deck's slide (deck "Large Language Models and RL from Human
Feedback", slide "High-Level Recipe for ChatGPT", which counts pretraining as step 1). A labeler compares (or ranks)
completions of a prompt; the model -- the SFT transformer with a scalar head read at the
last real token of prompt + completion -- learns r(x, y) such that
P(y_w > y_l) = sigma(r(x, y_w) - r(x, y_l)) (the Bradley-Terry loss in `losses.py`).

    r = scores(graphdef, params, tokens, mask)          # (B,) one number per sequence

The training loop is pretraining's (`lm_training.train_lm`), with this module's step: same
checkpoints, resume, metrics and data parallelism. After training, the scores are
normalised to mean 0 and std 1 over SFT samples (lm-human-preferences, Ziegler et al.
2019), so that a KL coefficient in the RL stage keeps its meaning from run to run.

Notation: N comparisons, K completions per comparison (2 for pairs), T tokens.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from matplotlib.figure import Figure

from minirlhf.checkpoint import Checkpointer, load_model, load_with_heads, read_finished
from minirlhf.configs import check_positive_ints, to_dict
from minirlhf.envs.labelers import (Labeler, agreement_rate, gold_agreement,
                                    temperature_for_gold_agreement)
from minirlhf.generate import SamplingConfig, generate
from minirlhf.logging import atomic_write_text, plot_curves, save_figure
from minirlhf.losses import bradley_terry_loss, ranking_pairs
from minirlhf.model import forward
from minirlhf.optim import OptimConfig, TrainState, accumulate_gradients, num_microbatches
from minirlhf.parallel import DATA, default_microbatch_tokens, microbatches_at_once
from minirlhf.preference_data import Comparison, load_split, write_preferences
from minirlhf.lm_training import LMTrainConfig, train_lm
from minirlhf.tokenizer import PAD_ID, CharTokenizer


@dataclass(frozen=True)
class RewardConfig(LMTrainConfig):
    """Training a reward model from comparisons, starting from an SFT model."""

    init: str = "runs/sft"
    """Run folder of the SFT model: the reward model's backbone starts from it."""
    preferences: str = ""
    """A JSONL file of comparisons (see minirlhf.preference_data); empty: generate them by
    sampling the SFT model and asking the task's simulated labelers."""
    n_train: int = 3000
    """Comparisons to generate for training (when `preferences` is empty)."""
    n_val: int = 500
    """Held-out comparisons to generate (or, with a file, taken from its end)."""
    k: int = 2
    """Completions per generated comparison: 2 for pairs, more for rankings."""
    target_agreement: float = 0.7
    """Generated labels follow the gold order on this share of comparisons (the labelers'
    temperature is set to reach it). Note this is agreement with the truth: two labelers
    at 0.7 agree with *each other* only about 59 % of the time, near the 60 % between
    human labelers that Ziegler et al. report (Stiennon et al.: 72 %)."""
    steps: int = 400
    """Number of optimiser updates."""
    batch_size: int = 32
    """Comparisons per update."""
    eval_every: int = 100
    """Evaluate on the held-out comparisons every this many steps (and at the end)."""
    checkpoint_every: int = 200
    """Save a resumable checkpoint every this many steps (and at the end)."""
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, warmup_steps=20))
    """The optimiser (a small learning rate: with noisy labels, 3e-4 overfits within 200
    steps on the default task)."""

    def __post_init__(self):
        super().__post_init__()
        check_positive_ints(self, "n_train", "n_val")
        if not isinstance(self.k, int) or self.k < 2:
            raise ValueError(f"RewardConfig.k must be an integer >= 2, got {self.k!r}")
        if not 0.5 < self.target_agreement < 1:
            raise ValueError("RewardConfig.target_agreement must be in (0.5, 1), got "
                             f"{self.target_agreement!r}")
        object.__setattr__(self, "init", os.fspath(self.init))
        object.__setattr__(self, "preferences", os.fspath(self.preferences))


@struct.dataclass
class PreferenceBatch:
    """Comparisons as token arrays.

    Attributes:
        tokens: (N, K, T) int32: BOS + prompt + completion + EOS, right-padded; completion 0
            is the best.
        mask: (N, K, T) bool, real tokens.
    """

    tokens: np.ndarray
    mask: np.ndarray


def encode_comparisons(tokenizer: CharTokenizer, comparisons: list[Comparison],
                       length: int) -> PreferenceBatch:
    """Token arrays of comparisons that all have the same K (use `as_pairs` otherwise)."""
    ks = {len(c.ranking) for c in comparisons}
    if len(ks) != 1:
        raise ValueError(f"comparisons rank different numbers of completions {sorted(ks)}; "
                         "expand them with as_pairs() first")
    k = ks.pop()
    texts = [c.prompt + t for c in comparisons for t in c.ranking]
    longest = max(len(t) for t in texts) + 2
    if longest > length:
        raise ValueError(f"a comparison needs {longest} tokens, more than the model's "
                         f"max_len={length}")
    tokens, mask = tokenizer.encode_batch(texts, bos=True, eos=True, length=longest)
    n = len(comparisons)
    return PreferenceBatch(tokens.reshape(n, k, -1), mask.reshape(n, k, -1))


def as_pairs(comparisons: list[Comparison]) -> list[Comparison]:
    """Each ranking of K expanded into its K(K-1)/2 (better, worse) pairs (the same pairs,
    in the same order, as `losses.ranking_pairs`)."""
    out = []
    for c in comparisons:
        better, worse = np.triu_indices(len(c.ranking), 1)
        out += [Comparison(c.prompt, (c.ranking[i], c.ranking[j]))
                for i, j in zip(better, worse)]
    return out


# --- the model ------------------------------------------------------------------------------


def scores(graphdef, params, tokens: jax.Array, mask: jax.Array) -> jax.Array:
    """r(x, y) for sequences (..., T) -> (...): the scalar head at the last real token."""
    lead, T = tokens.shape[:-1], tokens.shape[-1]
    out = forward(graphdef, params, tokens.reshape(-1, T), mask.reshape(-1, T))
    return out.scalar.reshape(lead)


# One compiled program per (model, shape), reused by every evaluation.
_scores_jit = jax.jit(scores, static_argnums=0)


def init_from_sft(sft_dir: str | Path, seed: int):
    """The reward model: SFT's transformer with a fresh scalar head.

    Returns:
        (graphdef, params, tokenizer, sft_meta).
    """
    return load_with_heads(sft_dir, seed, scalar_head=True)


def make_reward_step(graphdef, optimizer: optax.GradientTransformation,
                     microbatch_tokens: int = -1):
    """The Bradley-Terry train step, to be wrapped by `parallel.data_parallel`.

    Every comparison of K completions contributes its K(K-1)/2 pairs; each device sums its
    pairs' losses and psums over "data", so N devices compute what one device would. Each
    device does so over microbatches of at most `microbatch_tokens` tokens (whole
    comparisons of K x T tokens), as `lm_training.make_train_step` does, two of them side by
    side on a CPU device with cores to spare (`parallel.microbatches_at_once`).

    Args:
        graphdef: the reward model's graph (a Transformer with `scalar_head=True`).
        optimizer: the optax transformation.
        microbatch_tokens: the per-device microbatch budget; -1:
            `parallel.default_microbatch_tokens()`, 0: the whole device batch at once.
    Returns:
        train_step(state, batch: PreferenceBatch, key) -> (state, metrics), metrics holding
        the loss, the pairwise accuracy, the gradient norm and the number of microbatches.
    """
    if microbatch_tokens < 0:
        microbatch_tokens = default_microbatch_tokens()

    def train_step(state: TrainState, batch: PreferenceBatch, key: jax.Array):
        del key
        N, K, T = batch.tokens.shape
        count = jax.lax.psum(N * K * (K - 1) // 2, DATA)  # pairs, all devices

        def loss_fn(params, micro: PreferenceBatch):
            r = scores(graphdef, params, micro.tokens, micro.mask)  # (n, K)
            better, worse = ranking_pairs(K)
            gap = r[:, better] - r[:, worse]  # (n, pairs)
            local = bradley_terry_loss(r[:, better], r[:, worse]) * gap.size
            correct = jnp.sum(gap > 0) + 0.5 * jnp.sum(gap == 0)  # ties count half
            return jax.lax.psum(local, DATA) / count, jax.lax.psum(correct, DATA) / count

        n = num_microbatches(N, K * T, microbatch_tokens)
        unroll = microbatches_at_once(jax.lax.axis_size(DATA))
        (loss, accuracy), grads = accumulate_gradients(loss_fn, state.params, batch, n, unroll)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "accuracy": accuracy, "grad_norm": optax.tree.norm(grads),
                   "microbatches": jnp.int32(n)}
        return TrainState(params=params, opt_state=opt_state, step=state.step + 1), metrics

    return train_step


def score_texts(graphdef, params, tokenizer: CharTokenizer, texts: list[str],
                batch_size: int = 256) -> np.ndarray:
    """Raw scores of full texts (prompt + completion), in fixed-size chunks."""
    fn = lambda p, t, m: _scores_jit(graphdef, p, t, m)
    tokens, mask = tokenizer.encode_batch(texts, bos=True, eos=True)
    out = []
    for start in range(0, len(texts), batch_size):
        t, m = tokens[start:start + batch_size], mask[start:start + batch_size]
        short = batch_size - len(t)
        if short:  # pad to one shape (rows of BOS only), so there is one compilation
            t = np.concatenate([t, np.full((short, t.shape[1]), PAD_ID, t.dtype)])
            m = np.concatenate([m, np.zeros((short, m.shape[1]), bool)])
            m[-short:, 0] = True
        out.append(np.asarray(fn(params, t, m))[:batch_size - short])
    return np.concatenate(out)


# --- simulated preference data ------------------------------------------------------------


def sample_completions(graphdef, params, tokenizer: CharTokenizer, prompts: list[str],
                       key: jax.Array, max_new_tokens: int, batch_size: int = 256) -> list[str]:
    """One completion per prompt at temperature 1 (the policy's own distribution)."""
    cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=1.0)
    out = []
    for i, start in enumerate(range(0, len(prompts), batch_size)):
        chunk = prompts[start:start + batch_size]
        chunk = chunk + [chunk[0]] * (batch_size - len(chunk))  # one shape, one compilation
        tokens, mask = tokenizer.encode_batch(chunk, bos=True, padding="left", length=None)
        gen = generate(graphdef, params, tokens, mask, jax.random.fold_in(key, i), cfg)
        texts = tokenizer.decode_batch(np.asarray(gen.tokens), np.asarray(gen.mask))
        out += texts[:min(batch_size, len(prompts) - start)]
    return out


def simulate_comparisons(graphdef, params, tokenizer: CharTokenizer, task, n: int, k: int,
                         seed: int, temperature: float | None = None,
                         target_agreement: float = 0.7):
    """Sample k completions for each of n task prompts and have a simulated labeler rank them.

    Completions equal to another of the same prompt are re-drawn as empty-handed ties would
    teach nothing; a prompt whose k samples cannot be made distinct is skipped.

    Args:
        temperature: the labelers' temperature; None: chosen so that labels follow the gold
            order on `target_agreement` of the pairs.
    Returns:
        (comparisons, info): info has the temperature, the labels' measured gold agreement
        and the agreement of a second, independent labeler with the first.
    """
    rng = np.random.default_rng(seed)
    prompts = task.prompts(int(n * 1.3) + 8, seed=seed)  # spares for duplicate samples
    key = jax.random.key(seed)
    samples = [sample_completions(graphdef, params, tokenizer, prompts,
                                  jax.random.fold_in(key, j), task.max_response_chars + 8)
               for j in range(k)]
    groups = []
    for i, prompt in enumerate(prompts):
        texts = [s[i] for s in samples]
        if len(set(texts)) == k and all(t.strip() for t in texts):
            groups.append((prompt, texts))
        if len(groups) == n:
            break
    if len(groups) < n:
        raise ValueError(f"only {len(groups)} of {n} prompts got {k} distinct non-empty "
                         "completions; lower n or k")
    gold = np.array([[task.gold_reward(t) for t in texts] for _, texts in groups])  # (n, k)
    better, worse = map(np.asarray, ranking_pairs(k))
    if temperature is None:
        temperature = temperature_for_gold_agreement(gold[:, better].ravel(),
                                                     gold[:, worse].ravel(), target_agreement)
    labeler, second = Labeler(temperature), Labeler(temperature)
    order = labeler.rank(rng, gold)  # (n, k) best first
    comparisons = [Comparison(p, tuple(texts[j] for j in order[i]))
                   for i, (p, texts) in enumerate(groups)]
    # Agreement, on the pairs the labels imply: labels vs gold, and vs a second labeler.
    ranked_gold = np.take_along_axis(gold, order, axis=1)
    g_first, g_second = ranked_gold[:, better].ravel(), ranked_gold[:, worse].ravel()
    first_says = np.ones_like(g_first, bool)  # the first labeler put "better" ahead
    second_says = second.compare(rng, g_first, g_second)
    info = {"labeler_temperature": float(temperature),
            "label_gold_agreement": gold_agreement(first_says, g_first, g_second),
            "labeler_labeler_agreement": agreement_rate(first_says, second_says),
            "gold_ties": float(np.mean(g_first == g_second))}
    return comparisons, info


# --- evaluation -----------------------------------------------------------------------------


def evaluate_comparisons(graphdef, params, tokenizer: CharTokenizer, task,
                         comparisons: list[Comparison], seed: int = 0) -> dict:
    """Held-out metrics of a reward model.

    Returns a dict with: accuracy against the labels (pairs from rankings), accuracy against
    the gold order (gold ties excluded), the labels' own gold agreement on the same pairs,
    Pearson and Spearman correlation of the score with the gold reward over all held-out
    completions, and the (predicted probability, label) points of a calibration plot.
    """
    pairs = as_pairs(comparisons)
    texts_a = [c.prompt + c.ranking[0] for c in pairs]
    texts_b = [c.prompt + c.ranking[1] for c in pairs]
    r = score_texts(graphdef, params, tokenizer, texts_a + texts_b)
    r_a, r_b = r[:len(pairs)], r[len(pairs):]
    g_a = np.array([task.gold_reward(c.ranking[0]) for c in pairs])
    g_b = np.array([task.gold_reward(c.ranking[1]) for c in pairs])
    decided = g_a != g_b
    # Calibration: orient each pair at random, so the label is 1 or 0 half the time each.
    flip = np.random.default_rng(seed).random(len(pairs)) < 0.5
    predicted = 1 / (1 + np.exp(-np.where(flip, r_b - r_a, r_a - r_b)))
    observed = (~flip).astype(float)
    all_r, all_g = np.concatenate([r_a, r_b]), np.concatenate([g_a, g_b])

    def rank(x):  # average ranks, so tied values (gold comes in few levels) share a rank
        order = np.argsort(x, kind="stable")
        ranks = np.empty(len(x))
        ranks[order] = np.arange(len(x))
        _, inverse = np.unique(x, return_inverse=True)
        return (np.bincount(inverse, ranks) / np.bincount(inverse))[inverse]

    def corr(x, y):  # 0 for a constant input (a fresh scalar head scores everything alike)
        if np.std(x) == 0 or np.std(y) == 0:
            return 0.0
        return float(np.corrcoef(x, y)[0, 1])

    return {
        # A tie in score counts as half right: a constant model scores 50 %, not 0 %.
        "val_accuracy": float(np.mean((r_a > r_b) + 0.5 * (r_a == r_b))),
        "val_gold_accuracy": float(np.mean(
            np.where(r_a == r_b, 0.5, (r_a > r_b) == (g_a > g_b))[decided])),
        "labels_gold_agreement": float(np.mean((g_a > g_b)[decided])),
        "pearson_gold": corr(all_r, all_g),
        "spearman_gold": corr(rank(all_r), rank(all_g)),
        "val_loss": float(np.mean(np.logaddexp(0.0, -(r_a - r_b)))),
        "calibration": (predicted, observed),
        "scores_vs_gold": (all_r, all_g),
    }


def plot_reward_model(metrics: dict, path: str | Path) -> None:
    """Two panels: calibration (predicted preference probability vs observed frequency, in
    bins) and the reward model's score against the gold reward."""
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    predicted, observed = metrics["calibration"]
    bins = np.linspace(0, 1, 11)
    idx = np.clip(np.digitize(predicted, bins) - 1, 0, 9)
    centers, freqs, counts = [], [], []
    for b in range(10):
        sel = idx == b
        if sel.sum() >= 5:
            centers.append(predicted[sel].mean())
            freqs.append(observed[sel].mean())
            counts.append(int(sel.sum()))
    ax1.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax1.plot(centers, freqs, "o-", label="reward model")
    for x, y, c in zip(centers, freqs, counts):
        ax1.annotate(str(c), (x, y), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ax1.set_xlabel("predicted P(a preferred) = sigma(r_a - r_b)")
    ax1.set_ylabel("observed frequency a was preferred")
    ax1.set_title("calibration on held-out comparisons")
    ax1.legend(fontsize=8)
    r, g = metrics["scores_vs_gold"]
    ax2.scatter(g, r, s=4, alpha=0.3)
    ax2.set_xlabel("gold reward (never shown to the reward model)")
    ax2.set_ylabel("reward model score")
    ax2.set_title(f"score vs gold: Pearson {metrics['pearson_gold']:.2f}, "
                  f"Spearman {metrics['spearman_gold']:.2f}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


# --- the stage ------------------------------------------------------------------------------


def train_reward_model(cfg: RewardConfig, run_dir: str | Path, stop_after: int | None = None):
    """Train a reward model; write its run folder; return (graphdef, params, summary).

    The run folder gets preferences_train.jsonl / preferences_val.jsonl (the data it used),
    checkpoints/, metrics.jsonl, loss.png, reward_model.png (calibration and score vs gold)
    and summary.json. The normalisation (mean, std of the raw scores over SFT samples) is
    stored in the checkpoint's metadata; `load_reward_model` applies it.
    """
    from minirlhf.envs import make_task

    if not (Path(cfg.init) / "checkpoints").is_dir():
        raise FileNotFoundError(f"RewardConfig.init={cfg.init!r} is not a run folder with "
                                "checkpoints; run `minirlhf sft` first or point init at one")
    run_dir = Path(run_dir)
    if (finished := read_finished(run_dir, cfg)) is not None:  # read back, not redone
        return finished
    graphdef, params, tokenizer, sft_meta = init_from_sft(cfg.init, cfg.seed)
    task = make_task(sft_meta["task"])
    length = sft_meta["model"]["max_len"]
    data_info = {}
    if cfg.preferences:
        train_cmp, val_cmp = load_split(cfg.preferences, tokenizer, cfg.n_val)
        data_info["source"] = os.fspath(cfg.preferences)
    else:
        sft_graphdef, sft_params, _, _ = load_model(cfg.init)
        train_cmp, data_info = simulate_comparisons(
            sft_graphdef, sft_params, tokenizer, task, cfg.n_train, cfg.k, cfg.seed,
            target_agreement=cfg.target_agreement)
        val_cmp, _ = simulate_comparisons(
            sft_graphdef, sft_params, tokenizer, task, cfg.n_val, cfg.k, cfg.seed + 10_000,
            temperature=data_info["labeler_temperature"])
        data_info["source"] = "simulated labelers"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_preferences(run_dir / "preferences_train.jsonl", train_cmp)
    write_preferences(run_dir / "preferences_val.jsonl", val_cmp)
    if len({len(c.ranking) for c in train_cmp}) > 1:
        train_cmp = as_pairs(train_cmp)
    train = encode_comparisons(tokenizer, train_cmp, length)

    def validate(p):
        m = evaluate_comparisons(graphdef, p, tokenizer, task, val_cmp, cfg.seed)
        return {k: v for k, v in m.items() if isinstance(v, float)}

    meta = {**sft_meta, "stage": "reward", "model": {**sft_meta["model"], "scalar_head": True,
                                                      "value_head": False},
            "config": to_dict(cfg), "data": data_info}
    params, history = train_lm(run_dir, cfg, graphdef, params, train, None, meta,
                               "reward model", stop_after, make_step=make_reward_step,
                               validate=validate)
    plot_curves(history, ["loss", "val_loss"], run_dir / "loss.png", title="reward model")
    if stop_after is not None and stop_after < cfg.steps:
        return graphdef, params, {}
    final = evaluate_comparisons(graphdef, params, tokenizer, task, val_cmp, cfg.seed)
    plot_reward_model(final, run_dir / "reward_model.png")
    # Normalise over SFT samples: every completion in the training comparisons is one.
    raw = score_texts(graphdef, params, tokenizer,
                      [c.prompt + t for c in train_cmp for t in c.ranking])
    norm = {"mean": float(raw.mean()), "std": float(raw.std() + 1e-8)}
    ckpt = Checkpointer(run_dir / "checkpoints")
    try:
        step = ckpt.latest_step()
        _, opt_state, old_meta = ckpt.restore(params, _opt_like(cfg, params))
        ckpt.save(step + 1, params, opt_state, {**old_meta, "normalization": norm})
    finally:
        ckpt.close()
    summary = {k: v for k, v in final.items() if isinstance(v, float)}
    summary.update(data_info, normalization=norm, n_train=len(train_cmp), n_val=len(val_cmp))
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return graphdef, params, summary


def _opt_like(cfg: RewardConfig, params):
    from minirlhf.optim import make_optimizer
    return make_optimizer(cfg.optim, cfg.steps).init(params)


def load_reward_model(run_dir: str | Path):
    """(graphdef, params, tokenizer, meta, reward_fn) of a trained reward model.

    reward_fn(tokens (..., T), mask (..., T)) -> (...) normalised scores (mean 0, std 1
    over SFT samples), jittable.
    """
    graphdef, params, tokenizer, meta = load_model(run_dir)
    if meta.get("stage") != "reward" or "normalization" not in meta:
        raise ValueError(f"{run_dir} does not hold a finished reward model")
    return graphdef, params, tokenizer, meta, make_reward_fn(graphdef, params,
                                                             meta["normalization"])


def make_reward_fn(graphdef, params, normalization: dict):
    """(tokens (..., T), mask (..., T)) -> (...) scores normalised by the stored
    {"mean", "std"} (mean 0, std 1 on SFT samples); jittable, and `params` may be traced."""
    mean, std = float(normalization["mean"]), float(normalization["std"])
    return lambda tokens, mask: (scores(graphdef, params, tokens, mask) - mean) / std
