"""Evaluating a policy on a verifiable task: pass@k on held-out prompts (layer 2).

A verifiable task (e.g. `envs.arithmetic.ArithmeticTask`) has a rule that says whether a
response is right, `verify(prompt, response) -> (correct, formatted)`, and held-out prompts
that training never sees. pass@k, the chance that at least one of k samples is right
(Chen et al. 2021), separates what a model can do (pass@k for large k) from what it does
on one try (pass@1): RL on a verifier raises the second towards the first (lecture 5).

    figures = VerifierEvaluator(task, tokenizer, n=128, k=8, max_new_tokens=64, seed=0)(
        graphdef, params)    # {"pass@1", "pass@8", "format", "length", "correct", "samples"}
"""

from __future__ import annotations

import jax
import numpy as np

from minirlhf.generate import SamplingConfig, generate
from minirlhf.tokenizer import CharTokenizer


def pass_at_k(n: int, c: np.ndarray | int, k: int) -> np.ndarray:
    """The unbiased estimator of pass@k from n samples of which c are correct
    (Chen et al. 2021, eq. 1): 1 - C(n - c, k) / C(n, k), the chance that k samples drawn
    without replacement from the n include a correct one.

    Args:
        n: samples per problem. c: (...) correct samples per problem. k: 1 <= k <= n.
    Returns:
        (...) float64.
    """
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n, got k={k}, n={n}")
    c = np.asarray(c)
    # C(n - c, k) / C(n, k) = prod_{i = n - c + 1}^{n} (1 - k / i), stable for large n.
    def one(ci):
        if n - ci < k:
            return 1.0
        return 1.0 - float(np.prod(1.0 - k / np.arange(n - ci + 1, n + 1)))
    return np.vectorize(one, otypes=[np.float64])(c)


class VerifierEvaluator:
    """pass@1, pass@k, format rate and length on held-out prompts of a verifiable task.

    The task needs `held_out_prompts(n, seed, harder=False)` and
    `verify(prompt, response) -> (correct, formatted)`. Each evaluation samples k responses
    per prompt at temperature 1 with a fixed key, so the same parameters give the same
    figures.
    """

    def __init__(self, task, tokenizer: CharTokenizer, n: int, k: int, max_new_tokens: int,
                 seed: int, harder: bool = False):
        self.task, self.tokenizer, self.k = task, tokenizer, k
        self.prompts = task.held_out_prompts(n, seed=seed + 777, harder=harder)
        rows = [p for p in self.prompts for _ in range(k)]
        self.prompt, self.prompt_mask = tokenizer.encode_batch(
            rows, bos=True, padding="left", length=1 + task.max_prompt_chars)
        self.cfg = SamplingConfig(max_new_tokens=max_new_tokens)
        self.key = jax.random.fold_in(jax.random.key(seed), 20_000 + int(harder))

    def samples(self, graphdef, params) -> list[list[str]]:
        """k responses per held-out prompt."""
        gen = generate(graphdef, params, self.prompt, self.prompt_mask, self.key, self.cfg)
        texts = self.tokenizer.decode_batch(np.asarray(gen.tokens), np.asarray(gen.mask))
        return [texts[i * self.k:(i + 1) * self.k] for i in range(len(self.prompts))]

    def __call__(self, graphdef, params) -> dict:
        """pass@1, pass@k, format (share of responses in the strict format) and length
        (characters, without EOS), under "correct" the number of correct responses to each
        prompt (of k), and under "samples" the first response to each prompt."""
        groups = self.samples(graphdef, params)
        verdicts = np.array([[self.task.verify(p, r) for r in rs]
                             for p, rs in zip(self.prompts, groups)])  # (n, k, 2)
        correct = verdicts[..., 0].sum(axis=1)
        return {"pass@1": float(pass_at_k(self.k, correct, 1).mean()),
                f"pass@{self.k}": float(pass_at_k(self.k, correct, self.k).mean()),
                "format": float(verdicts[..., 1].mean()),
                "length": float(np.mean([len(r) for rs in groups for r in rs])),
                "correct": correct.tolist(), "samples": [rs[0] for rs in groups]}


def base_pass_at_k(graphdef, params, tokenizer, task, prompts: list[str], k: int,
                   max_new_tokens: int, key) -> float:
    """pass@k of a model on training prompts (k samples each, temperature 1): the share of
    prompts that at least one of k responses solves. GRPO learns nothing from a group in
    which every response is wrong, so a base model at 0 gives it nothing to work with."""
    rows = [p for p in prompts for _ in range(k)]
    prompt, prompt_mask = tokenizer.encode_batch(rows, bos=True, padding="left",
                                                 length=1 + task.max_prompt_chars)
    gen = generate(graphdef, params, prompt, prompt_mask, key,
                   SamplingConfig(max_new_tokens=max_new_tokens))
    texts = tokenizer.decode_batch(np.asarray(gen.tokens), np.asarray(gen.mask))
    correct = np.array([task.verify(p, t)[0] for p, t in zip(rows, texts)]).reshape(-1, k)
    return float(correct.any(axis=1).mean())
