"""A character-level tokenizer with PAD, BOS and EOS.

"Models that assign probabilities to sequences of words are called language models"
(deck "Large Language Models and RL from Human Feedback", slide "Preliminaries: Language
Models"). Our "words" are characters: a vocabulary of a few dozen symbols keeps the model
tiny, needs no training of the tokenizer, and makes every token readable in a lecture.

Ids 0, 1, 2 are PAD, BOS and EOS; the alphabet follows in the order given. Batches are
returned as `(tokens, mask)` numpy arrays, the mask marking real (non-PAD) tokens, so that
padding is always explicit downstream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import numpy as np

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")


@dataclass(frozen=True)
class CharTokenizer:
    """Maps characters to ids and back.

    Attributes:
        alphabet: the characters the tokenizer knows, each once; id of `alphabet[i]` is 3 + i.
    """

    alphabet: str

    def __post_init__(self):
        if len(set(self.alphabet)) != len(self.alphabet):
            dup = sorted({c for c in self.alphabet if self.alphabet.count(c) > 1})
            raise ValueError(f"alphabet has repeated characters {dup!r}; each must appear once")
        if not self.alphabet:
            raise ValueError("alphabet is empty; expected at least one character")

    # --- ids -------------------------------------------------------------------------
    pad_id = PAD_ID
    bos_id = BOS_ID
    eos_id = EOS_ID

    @property
    def vocab_size(self) -> int:
        """V = 3 special tokens + the alphabet."""
        return len(SPECIAL_TOKENS) + len(self.alphabet)

    @property
    def _index(self) -> dict[str, int]:
        return {c: i + len(SPECIAL_TOKENS) for i, c in enumerate(self.alphabet)}

    # --- single sequences ------------------------------------------------------------
    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        """Ids of `text`, optionally framed by BOS / EOS.

        Raises:
            ValueError: naming the first character not in the alphabet and its position.
        """
        index = self._index
        ids = []
        for pos, ch in enumerate(text):
            if ch not in index:
                raise ValueError(
                    f"unknown character {ch!r} at position {pos} of {text!r}; "
                    f"the tokenizer's alphabet is {self.alphabet!r}"
                )
            ids.append(index[ch])
        return ([BOS_ID] if bos else []) + ids + ([EOS_ID] if eos else [])

    def decode(self, ids: Iterable[int], *, stop_at_eos: bool = True) -> str:
        """Text of `ids`; PAD and BOS are dropped, decoding stops at the first EOS."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID and stop_at_eos:
                break
            if i < len(SPECIAL_TOKENS):
                continue
            if i >= self.vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
            out.append(self.alphabet[i - len(SPECIAL_TOKENS)])
        return "".join(out)

    # --- batches ---------------------------------------------------------------------
    def encode_batch(
        self,
        texts: Sequence[str],
        *,
        bos: bool = True,
        eos: bool = False,
        length: int | None = None,
        padding: Literal["right", "left"] = "right",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Encode and pad a batch.

        Args:
            texts: B strings.
            bos, eos: frame each sequence with BOS / EOS.
            length: T, the padded length; default the longest sequence. A longer sequence
                is an error, never silently cut.
            padding: "right" (training, scoring) or "left" (prompts for generation; both work).

        Returns:
            tokens: (B, T) int32, PAD where mask is False.
            mask: (B, T) bool, True on real tokens.
        """
        if padding not in ("right", "left"):
            raise ValueError(f"padding must be 'right' or 'left', got {padding!r}")
        seqs = [self.encode(t, bos=bos, eos=eos) for t in texts]
        longest = max((len(s) for s in seqs), default=0)
        T = longest if length is None else length
        if longest > T:
            i = max(range(len(seqs)), key=lambda j: len(seqs[j]))
            raise ValueError(
                f"text {i} ({texts[i]!r}) encodes to {len(seqs[i])} tokens, more than length={T}"
            )
        tokens = np.full((len(seqs), T), PAD_ID, np.int32)
        mask = np.zeros((len(seqs), T), bool)
        for i, s in enumerate(seqs):
            sl = slice(0, len(s)) if padding == "right" else slice(T - len(s), T)
            tokens[i, sl] = s
            mask[i, sl] = True
        return tokens, mask

    def decode_batch(self, tokens: np.ndarray, mask: np.ndarray | None = None) -> list[str]:
        """Decode each row of a (B, T) batch, ignoring positions where `mask` is False."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2:
            raise ValueError(f"expected tokens of shape (B, T), got shape {tokens.shape}")
        if mask is not None:
            tokens = np.where(np.asarray(mask, bool), tokens, PAD_ID)
        return [self.decode(row) for row in tokens]

    # --- persistence -----------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"type": "char", "alphabet": self.alphabet})

    @classmethod
    def from_json(cls, text: str) -> "CharTokenizer":
        data = json.loads(text)
        if data.get("type") != "char" or not isinstance(data.get("alphabet"), str):
            raise ValueError(f"not a character-tokenizer description: {text[:80]!r}")
        return cls(data["alphabet"])
