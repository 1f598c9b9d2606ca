"""Pure losses of arrays. Models never enter here: algorithms call the model and hand the
arrays over, so each loss can be checked by hand and by `jax.test_util.check_grads`.

Notation: B batch, T tokens, V vocabulary.
"""

from __future__ import annotations

import chex
import jax

from minirlhf.distributions import masked_mean, token_logprobs


def next_token_nll(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """Per-position negative log-likelihood of the next token.

    Position t predicts token t+1: nll_t = -log P(w_{t+1} | w_1..w_t). The last position has
    no next token, so the output is one shorter than the input.

    Args:
        logits: (B, T, V) the model's logits for the sequence `tokens`.
        tokens: (B, T) int ids.
    Returns:
        (B, T-1) float32 negative log-likelihoods.
    """
    chex.assert_rank(logits, 3)
    chex.assert_equal_shape_prefix([logits, tokens], 2)
    return -token_logprobs(logits[:, :-1], tokens[:, 1:])


def next_token_loss(logits: jax.Array, tokens: jax.Array, loss_mask: jax.Array) -> jax.Array:
    """The language-modelling loss L_LM, averaged over the tokens selected by `loss_mask`.

        L_LM = 1/|M| sum_{t in M} -log P(w_t | w_1, ..., w_{t-1})

    (deck "Large Language Models and RL from Human Feedback", slide "Learning a language
    model by reading the internet!"; the slide averages over all T tokens, here M is the set
    of targets the mask selects). Pretraining selects every real token after BOS; SFT --
    behavioural cloning from demonstrations, "same loss function as pretraining" (slide
    "Give specific demonstrations of what we want") -- selects the response tokens only, so
    the model is never trained to produce the prompt.

    Args:
        logits: (B, T, V).
        tokens: (B, T) int ids.
        loss_mask: (B, T) bool, True where token t is a target (predicted from t-1). Its
            first column is ignored: nothing predicts the first token.
    Returns:
        scalar mean negative log-likelihood over the selected targets.
    """
    chex.assert_equal_shape([tokens, loss_mask])
    return masked_mean(next_token_nll(logits, tokens), loss_mask[:, 1:])
