"""The default text task: short reviews from a small grammar.

The shape of the sentiment task that RLHF tutorials use (Ziegler et al. 2019 continue film
reviews positively), small enough that a tiny character-level model learns it in a minute
on a CPU. Three kinds of data come from one grammar:

* a pretraining corpus: free-form reviews of one to three sentences, mixed sentiment, no
  fixed format -- "reading the internet" (deck "Large Language Models and RL from Human
  Feedback", slide "Learning a language model by reading the internet!");
* prompts: review openings such as ``"the pizza was"``;
* demonstrations for SFT: a prompt and the completion a labeler would write -- finish the
  sentence, add one more, and close with a rating in a fixed format, ``" rating: 4/5"``
  (slide "Give specific demonstrations of what we want"). The pretraining corpus never
  contains a rating, so "follows the format" is a visible effect of SFT.

All sampling is driven by an explicit integer seed through `numpy.random.Generator`, so the
same seed gives the same data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

ALPHABET = "abcdefghijklmnopqrstuvwxyz .,!:/0123456789"

ITEMS = ("pizza", "film", "book", "hotel", "phone", "game", "coffee", "show", "song", "car")
ASPECTS = {
    "pizza": ("crust", "sauce", "cheese"),
    "film": ("plot", "acting", "ending"),
    "book": ("story", "writing", "ending"),
    "hotel": ("room", "staff", "view"),
    "phone": ("screen", "battery", "camera"),
    "game": ("story", "music", "levels"),
    "coffee": ("taste", "smell", "price"),
    "show": ("cast", "jokes", "pace"),
    "song": ("beat", "voice", "words"),
    "car": ("engine", "seats", "price"),
}
# The sentiment lexicon: later issues build the gold reward on it.
POSITIVE = ("great", "good", "lovely", "superb", "fun", "excellent", "wonderful", "nice")
NEGATIVE = ("bad", "awful", "boring", "dull", "poor", "terrible", "bland", "weak")
NEUTRAL = ("okay", "fine", "average", "plain", "normal", "long")
POS_VERBS = ("loved", "liked", "enjoyed")
NEG_VERBS = ("hated", "disliked", "regretted")
NEU_VERBS = ("noticed", "saw", "remember")
INTENSIFIERS = ("really", "very", "quite", "so")
OPENINGS = ("the {item} was", "i thought the {item} was", "this {item} is", "my {item} was")

# Every word the grammar can write: the gold reward's fluency term counts the others as babble.
VOCABULARY = frozenset(
    {w for item, aspects in ASPECTS.items() for w in (item, *aspects)}
    | set(POSITIVE) | set(NEGATIVE) | set(NEUTRAL) | set(POS_VERBS) | set(NEG_VERBS)
    | set(NEU_VERBS) | set(INTENSIFIERS)
    | {w for o in OPENINGS for w in o.replace("{item}", "").split()}
    | {"a", "the", "i", "was", "rating"})

SENTIMENTS = ("positive", "negative", "neutral")
RATING = {"positive": (4, 5), "negative": (1, 2), "neutral": (3,)}
# The AI labeler's written principles (minirlhf.rlaif; the format of
# rlaif.parse_constitution). Each names the probe by which the small judge model is asked
# about it. The weights were set by hand, looking at the agreement with the gold order of
# each principle alone and together on the default pipeline's pairs, and re-measured on
# fresh pairs (`benchmarks/bench_rlaif.py`: 74.8 %; equal weights 69.1 %, mostly because
# on_item measures something the gold reward does not).
CONSTITUTION = """\
# The review task's constitution: what the AI labeler is asked to prefer.
principle: Prefer the review whose writer liked the item more.
probe: pleased
weight: 1

principle: Prefer the review whose star rating agrees with its words.
probe: rating_agrees
weight: 0.5

principle: Prefer the review with no invented or repeated words.
probe: fluent
weight: 0.5

principle: Prefer the review that stays on the item it was asked about.
probe: on_item
weight: 0.5
"""

_FORMAT = re.compile(r"^ [a-z ,.!]+\. rating: [1-5]/5$")
_STATED = re.compile(r"rating: ([1-5])/5\s*$")


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


@dataclass(frozen=True)
class ReviewTask:
    """The review task: corpus, prompts, demonstrations and a format check.

    Attributes:
        max_prompt_chars: no prompt is longer than this (sizes the generation budget).
        max_response_chars: no demonstration response is longer than this.
        items: the things reviewed; each prompt names one.
        constitution: the principles an AI labeler judges responses by (`minirlhf.rlaif`).
    """

    name: str = "reviews"
    alphabet: str = ALPHABET
    max_prompt_chars: int = 24
    max_response_chars: int = 72
    items: tuple[str, ...] = ITEMS
    constitution: str = CONSTITUTION

    # --- the grammar -----------------------------------------------------------------
    def _adjective(self, rng, sentiment: str) -> str:
        words = {"positive": POSITIVE, "negative": NEGATIVE, "neutral": NEUTRAL}[sentiment]
        adj = _pick(rng, words)
        if sentiment != "neutral" and rng.random() < 0.3:
            adj = f"{_pick(rng, INTENSIFIERS)} {adj}"
        return adj

    def _sentence(self, rng, item: str, sentiment: str) -> str:
        aspect = _pick(rng, ASPECTS[item])
        verbs = {"positive": POS_VERBS, "negative": NEG_VERBS, "neutral": NEU_VERBS}[sentiment]
        form = int(rng.integers(3))
        if form == 0:
            return f"the {aspect} was {self._adjective(rng, sentiment)}"
        if form == 1:
            return f"i {_pick(rng, verbs)} the {aspect}"
        return f"a {self._adjective(rng, sentiment)} {aspect}"

    def _opening(self, rng, item: str) -> str:
        return _pick(rng, OPENINGS).format(item=item)

    # --- the three kinds of data -----------------------------------------------------
    def pretrain_corpus(self, n: int, seed: int) -> list[str]:
        """n free-form reviews with mixed sentiment and no rating."""
        rng = np.random.default_rng(seed)
        docs = []
        for _ in range(n):
            item = _pick(rng, ITEMS)
            first = f"{self._opening(rng, item)} {self._adjective(rng, _pick(rng, SENTIMENTS))}"
            rest = [self._sentence(rng, item, _pick(rng, SENTIMENTS))
                    for _ in range(int(rng.integers(0, 3)))]
            docs.append(". ".join([first, *rest]) + ".")
        return docs

    def prompts(self, n: int, seed: int) -> list[str]:
        """n review openings, e.g. "the pizza was"."""
        rng = np.random.default_rng(seed)
        return [self._opening(rng, _pick(rng, ITEMS)) for _ in range(n)]

    def demonstrations(self, n: int, seed: int) -> list[tuple[str, str]]:
        """n (prompt, response) pairs written by a consistent demonstrator.

        The response finishes the opening with one sentiment, adds a sentence of the same
        sentiment, and ends with " rating: k/5" where k agrees with the sentiment.
        """
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(n):
            item = _pick(rng, ITEMS)
            sentiment = _pick(rng, SENTIMENTS)
            prompt = self._opening(rng, item)
            response = (
                f" {self._adjective(rng, sentiment)}. {self._sentence(rng, item, sentiment)}."
                f" rating: {_pick(rng, RATING[sentiment])}/5"
            )
            out.append((prompt, response))
        return out

    # --- checks ----------------------------------------------------------------------
    def follows_format(self, response: str) -> bool:
        """Whether a completion has the demonstrations' shape: sentences, then " rating: k/5"."""
        return bool(_FORMAT.match(response))

    def gold_reward(self, response: str) -> float:
        """The hidden "true" quality of a response: what the simulated labelers judge by.

        A real user never sees this number; the task knows it so that experiments can ask
        how well a reward model (or a policy) tracks the truth. It rewards positive
        sentiment, but only in fluent text, so it cannot be maxed by babble, and a rating
        two or more stars from what the words say costs twice what the format earns:

            sentiment = tanh((#positive - #negative) / 2)      in (-1, 1), saturating
            fluency   = (share of words the review grammar knows) * (share of distinct words)
            gold      = sentiment * fluency + (fluency - 1) + 0.25 * [follows the format]
                        - 0.5 * rating_mismatch

        "great. i loved the crust. rating: 5/5" scores about 1.0, the same words rated 1/5
        about 0.5, a negative review about -0.5, a neutral one 0.25, "great great great great"
        about -0.5, an empty response -2.
        """
        words = re.findall(r"[a-z]+", response)
        if not words:
            return -2.0
        pos = sum(w in POSITIVE or w in POS_VERBS for w in words)
        neg = sum(w in NEGATIVE or w in NEG_VERBS for w in words)
        fluency = (sum(w in VOCABULARY for w in words) / len(words)) * (len(set(words)) / len(words))
        format_bonus = 0.25 if self.follows_format(response) else 0.0
        return float(math.tanh((pos - neg) / 2) * fluency + (fluency - 1.0) + format_bonus
                     - 0.5 * self.rating_mismatch(response))

    def stated_rating(self, response: str) -> int | None:
        """The k of a closing " rating: k/5", or None when the response has none."""
        match = _STATED.search(response)
        return None if match is None else int(match.group(1))

    def implied_ratings(self, response: str) -> tuple[int, ...]:
        """The ratings the words support, as the demonstrator rates: 4 or 5 for more positive
        than negative lexicon words, 1 or 2 for fewer, 3 for as many."""
        s = self.sentiment_score(response)
        return RATING["positive" if s > 0 else "negative" if s < 0 else "neutral"]

    def rating_mismatch(self, response: str) -> float:
        """How far the stated rating is from the words: 0 when it agrees (or no rating is
        stated -- the format bonus is lost instead), 0.5 one star off, 1 two or more off.
        " great. i loved the crust. rating: 1/5" -> 1.0."""
        k = self.stated_rating(response)
        if k is None:
            return 0.0
        return min(min(abs(k - r) for r in self.implied_ratings(response)), 2) / 2

    def rating_agrees(self, response: str) -> bool:
        """Whether the response states a rating and its words support it."""
        k = self.stated_rating(response)
        return k is not None and k in self.implied_ratings(response)

    def sentiment_score(self, text: str) -> int:
        """(#positive - #negative) lexicon words: a crude sentiment, for diagnostics."""
        words = re.findall(r"[a-z]+", text)
        pos = sum(w in POSITIVE or w in POS_VERBS for w in words)
        neg = sum(w in NEGATIVE or w in NEG_VERBS for w in words)
        return pos - neg
