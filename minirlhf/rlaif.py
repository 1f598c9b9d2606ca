"""RL from AI feedback: a judge model labels the comparisons by a written constitution (layer 2).

Bai et al. 2022 (Constitutional AI) and Lee et al. 2023 (RLAIF) replace the human labeler
of the recipe's step 2 with a language model that is shown two responses and a principle
("choose the response that is more helpful ...") and asked which is better; the labels train
the reward model as human labels would (deck "Large Language Models and RL from Human
Feedback", slides on Constitutional AI / RLAIF). Here:

    constitution (text)  ->  principles: words a person reads, a probe, a weight
    judge (a model)      ->  one score per principle and response, from its log-probabilities
    label                ->  the response with the larger sum_i w_i z_i wins (a judge at
                             temperature 0; a tie is a fair coin)

What is simulated, and why. A real judge is a large model that reads the principle's words.
Ours is a 0.4 M-parameter character model that cannot follow an instruction, so each
principle names a *probe*: a fixed way of asking the judge a question it can answer with
its next-token probabilities -- "what rating would you give these words?", "how likely is
this text?", "is this text more likely after this prompt than after another item's?". The
judge is the pretrained model fine-tuned on the task's demonstrations (as SFT, longer): all
it knows of good reviews comes from text a person wrote. Its labels never depend on the
gold reward; only the agreement report reads it, afterwards, to measure them.

    probe           the judge's score of a response y to prompt x
    pleased         E[k] under p(k | x, words of y, " rating: "), k in 1..5
    rating_agrees   log p(k_y | x, words of y, " rating: ") over k in 1..5, k_y the stated
                    rating (log 1/5 when none is stated: the judge cannot tell)
    fluent          mean log p(token | before) over y's tokens and its EOS
    on_item         log p(y | x) - mean_j log p(y | x with the item swapped for item j)

Each probe's scores are standardised over the responses being labelled (z_i), so that a
weight means the same for every principle whatever its units (so a pair's label can change
when it is labelled within another set).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from minirlhf.checkpoint import load_model
from minirlhf.configs import check_positive_ints
from minirlhf.dpo import sequence_logprobs
from minirlhf.logging import atomic_write_text
from minirlhf.model import forward, last_real_index
from minirlhf.preference_data import Comparison, load_preferences, write_preferences
from minirlhf.sft import SFTConfig
from minirlhf.tokenizer import BOS_ID, PAD_ID, CharTokenizer

PROBES = ("pleased", "rating_agrees", "fluent", "on_item")
_STATED = re.compile(r" ?rating: ([1-5])/5\s*$")
RATING_CUE = " rating: "


@dataclass(frozen=True)
class RLAIFConfig:
    """The AI labeler: a judge model, a constitution, and how the judge is asked."""

    constitution: str = ""
    """A constitution file (the format of `parse_constitution`); "" = the task's own."""
    judge: SFTConfig = field(default_factory=lambda: SFTConfig(
        steps=1000, n_train=8000, seed=1, eval_every=250, checkpoint_every=250))
    """Training of the judge: the pretrained model fine-tuned on demonstrations, as SFT but
    five times longer on four times the data and another seed (its `init` is set by the
    pipeline). The SFT model itself judges worse: on fresh pairs its labels follow the gold
    order 63.1 % of the time, this judge's 74.8 % (`benchmarks/bench_rlaif.py`)."""
    on_item_alternatives: int = 3
    """Other items the on_item probe swaps into the prompt (the cost grows with it)."""
    batch_size: int = 256
    """Texts per forward pass of the judge."""

    def __post_init__(self):
        check_positive_ints(self, "on_item_alternatives", "batch_size")


# --- the constitution ---------------------------------------------------------------------


@dataclass(frozen=True)
class Principle:
    """One principle of a constitution.

    Attributes:
        text: the principle in words, as a person (or a large judge) would read it.
        probe: how our small judge is asked about it (one of `PROBES`).
        weight: how much it counts in the judge's verdict (> 0).
    """

    text: str
    probe: str
    weight: float


def parse_constitution(text: str, source: str = "<constitution>") -> tuple[Principle, ...]:
    """Principles from a constitution's text; ValueError naming the source and line.

    The format: blocks of three "key: value" lines, each block opening with "principle:";
    blank lines and lines starting with "#" are skipped.

        principle: Prefer the review whose star rating agrees with its words.
        probe: rating_agrees
        weight: 0.5
    """
    blocks: list[dict] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}, line {n}"
        key, sep, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if not sep or key not in ("principle", "probe", "weight"):
            raise ValueError(f"{where}: expected 'principle: ...', 'probe: ...' or "
                             f"'weight: ...', got {raw.strip()!r}")
        if key == "principle":
            if not value:
                raise ValueError(f"{where}: the principle's words are empty")
            if any(b["principle"] == value for b in blocks):
                raise ValueError(f"{where}: principle {value!r} is given twice")
            blocks.append({"principle": value, "line": n})
            continue
        if not blocks:
            raise ValueError(f"{where}: {key!r} before any 'principle:' line")
        if key in blocks[-1]:
            raise ValueError(f"{where}: a second {key!r} for principle "
                             f"{blocks[-1]['principle']!r}")
        if key == "probe":
            if value not in PROBES:
                raise ValueError(f"{where}: unknown probe {value!r}; probes: {PROBES}")
            blocks[-1]["probe"] = value
        else:
            try:
                weight = float(value)
            except ValueError:
                weight = float("nan")
            if not (weight > 0 and math.isfinite(weight)):
                raise ValueError(f"{where}: weight must be a number > 0, got {value!r}")
            blocks[-1]["weight"] = weight
    if not blocks:
        raise ValueError(f"{source}: no principles (a block starts with 'principle: ...')")
    for b in blocks:
        for key in ("probe", "weight"):
            if key not in b:
                raise ValueError(f"{source}, line {b['line']}: principle {b['principle']!r} "
                                 f"has no '{key}:' line")
    return tuple(Principle(b["principle"], b["probe"], b["weight"]) for b in blocks)


def load_constitution(path: str | Path | None, task) -> tuple[Principle, ...]:
    """The constitution in the file `path`, or the task's own (`task.constitution`) for
    None or ""."""
    if not path:
        if not hasattr(task, "constitution"):
            raise ValueError(f"the {task.name} task has no constitution of its own; give a "
                             "constitution file")
        constitution = parse_constitution(task.constitution, f"{task.name} task's constitution")
    else:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"constitution file {str(path)!r} does not exist")
        constitution = parse_constitution(path.read_text(), str(path))
    # The probes read the review format (" rating: k/5") and swap the task's items.
    needs = {"pleased": "stated_rating", "rating_agrees": "stated_rating", "on_item": "items"}
    for p in constitution:
        if not hasattr(task, needs.get(p.probe, "name")):
            raise ValueError(f"probe {p.probe!r} (principle {p.text!r}) needs a task with "
                             f"`{needs[p.probe]}`; the {task.name} task has none")
    return constitution


# --- the judge's probes -------------------------------------------------------------------


def _chunked(fn, tokens: np.ndarray, mask: np.ndarray, extra: np.ndarray | None,
             batch_size: int) -> np.ndarray:
    """fn over fixed-size chunks of rows (the last padded with BOS-only rows), so one
    compilation serves every chunk."""
    out = []
    for start in range(0, len(tokens), batch_size):
        t, m = tokens[start:start + batch_size], mask[start:start + batch_size]
        e = None if extra is None else extra[start:start + batch_size]
        short = batch_size - len(t)
        if short:
            t = np.concatenate([t, np.full((short, t.shape[1]), PAD_ID, t.dtype)])
            m = np.concatenate([m, np.zeros((short, m.shape[1]), bool)])
            t[-short:, 0], m[-short:, 0] = BOS_ID, True
            if e is not None:
                e = np.concatenate([e, np.zeros((short, e.shape[1]), bool)])
        out.append(np.asarray(fn(t, m, e))[:batch_size - short])
    return np.concatenate(out)


@functools.partial(jax.jit, static_argnums=0)
def _next_token_logprobs(graphdef, params, tokens: jax.Array, mask: jax.Array) -> jax.Array:
    """(B, T) right-padded texts -> (B, V) log p(next token | the whole text)."""
    logits = forward(graphdef, params, tokens, mask).logits  # (B, T, V)
    return jax.nn.log_softmax(logits[jnp.arange(tokens.shape[0]), last_real_index(mask)], -1)


_sequence_logprobs = jax.jit(sequence_logprobs, static_argnums=0)


def split_rating(response: str) -> tuple[str, int | None]:
    """(the words, the stated rating or None): " great. rating: 5/5" -> (" great.", 5)."""
    match = _STATED.search(response)
    if match is None:
        return response, None
    return response[:match.start()], int(match.group(1))


def response_logprobs(graphdef, params, tokenizer: CharTokenizer, prompts: list[str],
                      responses: list[str], batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(M,) log p(response + EOS | BOS + prompt) and (M,) its token counts."""
    texts = [p + r for p, r in zip(prompts, responses)]
    tokens, mask = tokenizer.encode_batch(texts, bos=True, eos=True)
    starts = np.array([1 + len(p) for p in prompts])
    response_mask = mask & (np.arange(tokens.shape[1])[None, :] >= starts[:, None])
    logp = _chunked(lambda t, m, e: _sequence_logprobs(graphdef, params, t, m, e),
                    tokens, mask, response_mask, batch_size)
    return logp, response_mask.sum(1)


def rating_distribution(graphdef, params, tokenizer: CharTokenizer, prompts: list[str],
                        responses: list[str], batch_size: int = 256,
                        max_len: int | None = None) -> np.ndarray:
    """(M, 5) the judge's p(k | prompt, words of the response, " rating: "), k = 1..5,
    renormalised over the five digits. A question longer than the judge's `max_len` (BOS
    included) keeps its end: the words nearest the rating."""
    texts = [p + split_rating(r)[0].rstrip() + RATING_CUE for p, r in zip(prompts, responses)]
    if max_len is not None:
        texts = [t[-(max_len - 1):] for t in texts]
    tokens, mask = tokenizer.encode_batch(texts, bos=True)
    logp = _chunked(lambda t, m, e: _next_token_logprobs(graphdef, params, t, m),
                    tokens, mask, None, batch_size)
    digits = logp[:, [tokenizer.encode(str(k))[0] for k in range(1, 6)]]  # (M, 5)
    return np.exp(digits - np.logaddexp.reduce(digits, axis=1, keepdims=True))


def swap_item(prompt: str, items: tuple[str, ...], offset: int) -> str:
    """The prompt with its item replaced by the item `offset` places further in `items`."""
    words = prompt.split(" ")
    found = [i for i, w in enumerate(words) if w in items]
    if not found:
        raise ValueError(f"prompt {prompt!r} names none of the task's items {items}")
    i = found[0]
    words[i] = items[(items.index(words[i]) + offset) % len(items)]
    return " ".join(words)


def probe_scores(graphdef, params, tokenizer: CharTokenizer, task, prompts: list[str],
                 responses: list[str], probes: tuple[str, ...] = PROBES,
                 alternatives: int = 3, batch_size: int = 256,
                 max_len: int | None = None) -> dict[str, np.ndarray]:
    """The judge's raw score of each response for each probe (the table in the module
    docstring): {probe: (M,)}. `max_len`: the judge's context (see `rating_distribution`)."""
    unknown = set(probes) - set(PROBES)
    if unknown:
        raise ValueError(f"unknown probe(s) {sorted(unknown)}; probes: {PROBES}")
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if "on_item" in probes and not 1 <= alternatives < len(task.items):
        raise ValueError(f"on_item needs 1 <= alternatives < {len(task.items)} (the task's "
                         f"other items), got {alternatives}")
    out = {}
    if {"pleased", "rating_agrees"} & set(probes):
        dist = rating_distribution(graphdef, params, tokenizer, prompts, responses, batch_size,
                                   max_len)
        if "pleased" in probes:
            out["pleased"] = dist @ np.arange(1.0, 6.0)
        if "rating_agrees" in probes:
            stated = [split_rating(r)[1] for r in responses]
            out["rating_agrees"] = np.array([math.log(0.2) if k is None else
                                             math.log(max(dist[i, k - 1], 1e-30))
                                             for i, k in enumerate(stated)])
    if {"fluent", "on_item"} & set(probes):
        logp, count = response_logprobs(graphdef, params, tokenizer, prompts, responses,
                                        batch_size)
        if "fluent" in probes:
            out["fluent"] = logp / count
        if "on_item" in probes:
            others = np.mean([response_logprobs(
                graphdef, params, tokenizer, [swap_item(p, task.items, j) for p in prompts],
                responses, batch_size)[0] for j in range(1, alternatives + 1)], axis=0)
            out["on_item"] = logp - others
    return {p: out[p] for p in probes}


def standardise(x: np.ndarray) -> np.ndarray:
    """(x - mean) / std over the responses; zeros where every response scores alike."""
    x = np.asarray(x, float)
    std = x.std()
    return np.zeros_like(x) if std == 0 else (x - x.mean()) / std


def verdict_scores(scores: dict[str, np.ndarray],
                   constitution: tuple[Principle, ...]) -> np.ndarray:
    """(M,) sum_i w_i z_i: the judge's overall score of each response; the larger wins.
    z_i is standardised over these M responses (`standardise`)."""
    missing = {p.probe for p in constitution} - set(scores)
    if missing:
        raise ValueError(f"no scores for probe(s) {sorted(missing)}")
    return sum(p.weight * standardise(scores[p.probe]) for p in constitution)


# --- labelling comparisons ----------------------------------------------------------------


def ai_label(comparisons: list[Comparison], verdict: np.ndarray,
             seed: int = 0) -> list[Comparison]:
    """Each comparison's completions re-ordered by the judge's verdict, best first.

    `verdict` holds one score per completion, in the order of the comparisons' rankings
    flattened. Tied completions are ordered by a fair coin (seeded), never by the order
    given: that would copy the given (human) label into the judge's."""
    sizes = [len(c.ranking) for c in comparisons]
    if len(verdict) != sum(sizes):
        raise ValueError(f"{len(verdict)} verdict scores for {sum(sizes)} completions")
    coin = np.random.default_rng(seed).random(len(verdict))
    out, start = [], 0
    for c, k in zip(comparisons, sizes):
        v = np.asarray(verdict[start:start + k])
        order = np.lexsort((coin[start:start + k], -v))  # by -v, ties by the coin
        out.append(Comparison(c.prompt, tuple(c.ranking[j] for j in order)))
        start += k
    return out


def pair_indices(comparisons: list[Comparison]) -> np.ndarray:
    """(P, 2) indices, into the comparisons' rankings flattened, of the (better, worse) pairs
    each ranking implies, in the order of `reward_model.as_pairs`."""
    out, start = [], 0
    for c in comparisons:
        better, worse = np.triu_indices(len(c.ranking), 1)
        out.append(np.stack([better, worse], 1) + start)
        start += len(c.ranking)
    return np.concatenate(out) if out else np.zeros((0, 2), int)


def _share(first_wins: np.ndarray, truth: np.ndarray, decided: np.ndarray) -> float:
    """Mean agreement of a judgement of pairs with `truth` (1: the first is better) over the
    `decided` pairs; `first_wins` is 1, 0, or 0.5 for a tie (half right, as a coin is)."""
    if not decided.any():
        return float("nan")
    return float(np.mean(np.where(first_wins == 0.5, 0.5, first_wins == truth)[decided]))


def agreement_report(task, comparisons: list[Comparison], scores: dict[str, np.ndarray],
                     constitution: tuple[Principle, ...]) -> dict:
    """How the judge's labels compare with the gold order and with the given (human) labels
    on the same pairs -- an equal label budget.

    Returns the share of pairs whose order follows the gold one (gold ties excluded) for the
    judge, for each principle alone and for the given labels; the judge's agreement with the
    given labels; and the number of pairs. A tie in a score counts half, as the coin that
    `ai_label` flips for it is right half the time.

    Args:
        comparisons: as the human labelers ranked them, best first (pairs or rankings).
        scores: {probe: (M,)} the judge's raw scores of the M completions, in the order of
            the rankings flattened.
    """
    pairs = pair_indices(comparisons)  # (P, 2): the humans' (better, worse)
    texts = [t for c in comparisons for t in c.ranking]
    gold = np.array([task.gold_reward(t) for t in texts])[pairs]  # (P, 2)
    decided, gold_first = gold[:, 0] != gold[:, 1], (gold[:, 0] > gold[:, 1]).astype(float)
    everywhere = np.ones(len(pairs), bool)

    def first_wins(s):  # 1 where this score puts the humans' better completion first
        s = np.asarray(s, float)[pairs]
        return np.where(s[:, 0] > s[:, 1], 1.0, np.where(s[:, 0] < s[:, 1], 0.0, 0.5))

    ai = first_wins(verdict_scores(scores, constitution))
    return {
        "pairs": len(pairs),
        "ai_gold_agreement": _share(ai, gold_first, decided),
        "human_gold_agreement": _share(np.ones(len(pairs)), gold_first, decided),
        "ai_human_agreement": _share(ai, np.ones(len(pairs)), everywhere),
        "principle_gold_agreement": {
            p.text: _share(first_wins(scores[p.probe]), gold_first, decided)
            for p in constitution},
    }


def check_lengths(comparisons: list[Comparison], task, max_len: int, alternatives: int,
                  source: str = "the file") -> None:
    """Refuse, naming the line, a completion the judge cannot read whole: BOS + prompt (with
    the longest item swapped in, for on_item) + completion + EOS must fit in max_len."""
    items = getattr(task, "items", ()) if alternatives else ()
    longest = max((len(i) for i in items), default=0)
    for n, c in enumerate(comparisons, start=1):
        grow = max((longest - len(w) for w in c.prompt.split(" ") if w in items), default=0)
        for t in c.ranking:
            need = 2 + len(c.prompt) + grow + len(t)
            if need > max_len:
                raise ValueError(f"{source}, line {n}: completion {t!r} needs {need} positions "
                                 f"(BOS, prompt, completion, EOS), more than the judge's "
                                 f"max_len={max_len}")


def label_file(judge_dir: str | Path, preferences: str | Path, out: str | Path, task,
               constitution: tuple[Principle, ...], alternatives: int = 3,
               batch_size: int = 256, seed: int = 0) -> dict:
    """Have the judge in `judge_dir` re-label every comparison of a preference file.

    Checks the whole file first (its format, and that the judge can read every completion),
    then writes `out` (the same prompts and completions, ordered by the judge, in the format
    of `minirlhf.preference_data`) and returns `agreement_report` against the file's own
    labels. `seed` drives the coin for tied verdicts."""
    graphdef, params, tokenizer, meta = load_model(judge_dir)
    human = load_preferences(preferences, tokenizer)
    probes = tuple(dict.fromkeys(p.probe for p in constitution))
    check_lengths(human, task, meta["model"]["max_len"],
                  alternatives if "on_item" in probes else 0, str(preferences))
    scores = probe_scores(graphdef, params, tokenizer, task,
                          [c.prompt for c in human for _ in c.ranking],
                          [t for c in human for t in c.ranking], probes, alternatives,
                          batch_size, meta["model"]["max_len"])
    labelled = ai_label(human, verdict_scores(scores, constitution), seed)
    report = agreement_report(task, human, scores, constitution)
    write_preferences(out, labelled)
    return report


def write_report(path: str | Path, report: dict, constitution: tuple[Principle, ...]) -> None:
    """The agreement report and the constitution it was made with, as JSON."""
    atomic_write_text(path, json.dumps(
        {**report, "constitution": [dataclasses.asdict(p) for p in constitution]}, indent=2))
