"""A verifiable text task: multi-digit addition and subtraction, worked column by column.

The decks' second recipe, DeepSeek-R1-Zero (deck "Large Language Models and RL from Human
Feedback", slides "DeepSeek-R1-Zero" and "Group Relative Policy Optimization (GRPO)"), needs
problems whose answer a rule can check: no reward model, no labeler, just "is the answer
right?" and "is the format right?". This task is the smallest such world a character-level
model learns in a minute on a CPU:

    prompt    "47+38="
    response  "<think>7+8+0=15,4+3+1=8</think><answer>85</answer>"

The thinking works the columns from the right, each written ``a+b+c=s`` with the carry c
from the column before (subtraction: ``a-b-c=s``, the top digit plus 10 where it borrows,
e.g. ``13-8-0=5``); the answer follows in R1-Zero's tags. A verifier reads the answer back
from the tags and checks it; the format check is R1-Zero's template as a regular expression.

The pretraining corpus is "the internet": worked problems in this format, but imperfect on
purpose, so that a model trained on it starts well below perfect and RL has room to improve:

* `wrong_share` of the solutions contain a mistake (the carry or borrow forgotten, or a slip
  in one column), carried through to a wrong answer;
* `loose_share` are written in a loose format (no tags, no thinking, or an unclosed tag).

A model that imitates this corpus exactly answers right in the strict format only about
(1 - wrong_share)(1 - loose_share) of the time, while most problems have a right answer
among a few samples (pass@k >> pass@1): the situation in which RL on a verifier sharpens the
model (Yue et al. 2025).

Problems are split by a hash of (a, op, b): one in ten belongs to the held-out set and never
appears in the corpus nor in the RL prompts. Held-out problems with one more digit than
trained on (`harder=True`) test generalisation in length. All sampling is driven by an
explicit integer seed through `numpy.random.Generator`.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

ALPHABET = "0123456789+-=,:<>/ abehiknorstw"
"""Digits, the operators, the tags' and the loose formats' letters."""

_PROMPT = re.compile(r"^(\d+)([+-])(\d+)=$")
_STRICT = re.compile(r"^<think>[0-9+\-=,]+</think><answer>(\d+)</answer>$")
_ANSWER = re.compile(r"<answer>(\d+)</answer>")


@dataclass(frozen=True)
class Problem:
    """a op b, with op "+" or "-" (for "-", a >= b, so the answer is never negative)."""

    a: int
    op: str
    b: int

    @property
    def prompt(self) -> str:
        return f"{self.a}{self.op}{self.b}="

    @property
    def answer(self) -> int:
        return self.a + self.b if self.op == "+" else self.a - self.b


def parse_prompt(prompt: str) -> Problem:
    """The problem a prompt states, e.g. "47+38=" -> Problem(47, "+", 38).

    Raises:
        ValueError: naming the prompt, if it is not of the form "<digits>(+|-)<digits>=".
    """
    m = _PROMPT.match(prompt)
    if not m:
        raise ValueError(f"not an arithmetic prompt: {prompt!r}; expected e.g. '47+38='")
    return Problem(int(m.group(1)), m.group(2), int(m.group(3)))


def worked_columns(problem: Problem, forget_carry: bool = False,
                   slip: int | None = None) -> tuple[list[str], int]:
    """The column steps of a written addition or subtraction, right to left, and the answer
    they lead to.

    Args:
        problem: the problem.
        forget_carry: the classic mistake: every carry (borrow) is written as 0.
        slip: index of a column whose result is off by one (a second kind of mistake).
    Returns:
        (steps, answer): e.g. (["7+8+0=15", "4+3+1=8"], 85) for 47+38; the answer is what
        the steps give, right or wrong.
    """
    da, db = str(problem.a)[::-1], str(problem.b)[::-1]
    width = max(len(da), len(db))
    steps, digits, carry = [], [], 0
    for i in range(width):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        if problem.op == "+":
            s = x + y + carry
            if i == slip:
                s = s + 1 if s < 19 else s - 1
            steps.append(f"{x}+{y}+{carry}={s}")
            # The last column writes its whole sum: it is the answer's leading digits.
            digits.append(str(s) if i == width - 1 else str(s % 10))
            carry = 0 if forget_carry else s // 10
        else:
            top = x + 10 if x - carry < y else x  # borrow from the next column
            s = top - y - carry
            if i == slip:
                s = s + 1 if s < 9 else s - 1
            steps.append(f"{top}-{y}-{carry}={s}")
            digits.append(str(s))
            carry = 0 if forget_carry else int(top > x)
    answer = int("".join(reversed(digits)))
    return steps, answer


def strict_response(steps: list[str], answer: int) -> str:
    """R1-Zero's template: "<think>steps</think><answer>answer</answer>"."""
    return f"<think>{','.join(steps)}</think><answer>{answer}</answer>"


@dataclass(frozen=True)
class ArithmeticTask:
    """Addition and subtraction of 1 to `max_digits`-digit numbers, with rule-based rewards.

    Attributes:
        max_digits: operands of the training problems have 1 to max_digits digits.
        wrong_share: share of the pretraining corpus's solutions with a mistake.
        loose_share: share of the pretraining corpus written in a loose format.
        format_weight: weight of the format reward next to the correctness reward.
        max_prompt_chars: no prompt is longer (held-out problems with one more digit too).
        max_response_chars: no strict response to a training problem is longer.
    """

    name: str = "arithmetic"
    alphabet: str = ALPHABET
    max_digits: int = 3
    wrong_share: float = 0.3
    loose_share: float = 0.3
    format_weight: float = 0.5

    @property
    def max_prompt_chars(self) -> int:
        return 2 * (self.max_digits + 1) + 2

    @property
    def max_response_chars(self) -> int:
        return response_chars(self.max_digits)

    # --- problems ----------------------------------------------------------------------
    @staticmethod
    def held_out(problem: Problem) -> bool:
        """Whether a problem belongs to the held-out tenth (a fixed hash of the problem)."""
        return zlib.crc32(problem.prompt.encode()) % 10 == 0

    def _operand(self, rng: np.random.Generator, digits: int) -> int:
        n = int(rng.integers(1, digits + 1))  # as many 1- as 3-digit numbers
        return int(rng.integers(0 if n == 1 else 10 ** (n - 1), 10 ** n))

    def problems(self, n: int, seed: int, held_out: bool = False,
                 harder: bool = False) -> list[Problem]:
        """n problems drawn by `seed`: from the training part, or from the held-out tenth.

        Args:
            held_out: draw from the held-out tenth (never in the corpus nor the RL prompts).
            harder: operands with exactly max_digits + 1 digits (held-out only).
        """
        if harder and not held_out:
            raise ValueError("harder problems exist only in the held-out set (held_out=True)")
        rng = np.random.default_rng(seed)
        out = []
        while len(out) < n:
            if harder:
                d = self.max_digits + 1
                a, b = (int(rng.integers(10 ** (d - 1), 10 ** d)) for _ in range(2))
            else:
                a, b = self._operand(rng, self.max_digits), self._operand(rng, self.max_digits)
            op = "+" if rng.random() < 0.5 else "-"
            if op == "-" and a < b:
                a, b = b, a
            p = Problem(a, op, b)
            if self.held_out(p) == held_out:
                out.append(p)
        return out

    def prompts(self, n: int, seed: int) -> list[str]:
        """n training prompts, e.g. "47+38=" (the RL stage's questions)."""
        return [p.prompt for p in self.problems(n, seed)]

    def held_out_prompts(self, n: int, seed: int, harder: bool = False) -> list[str]:
        """n held-out prompts (never trained on); `harder`: operands one digit longer."""
        return [p.prompt for p in self.problems(n, seed, held_out=True, harder=harder)]

    # --- the corpus --------------------------------------------------------------------
    def solution(self, rng: np.random.Generator, problem: Problem) -> tuple[str, bool, bool]:
        """One corpus solution of `problem`: (response, right answer?, strict format?)."""
        forget, slip = False, None
        if rng.random() < self.wrong_share:
            steps, right = worked_columns(problem)
            has_carry = worked_columns(problem, forget_carry=True)[1] != right
            if has_carry and rng.random() < 0.7:
                forget = True
            else:
                slip = int(rng.integers(len(steps)))
        steps, answer = worked_columns(problem, forget, slip)
        correct = answer == problem.answer
        if rng.random() >= self.loose_share:
            return strict_response(steps, answer), correct, True
        thinking = ",".join(steps)
        kind = int(rng.integers(4))
        if kind == 0:  # no tags at all
            text = f"{thinking} so {answer}"
        elif kind == 1:  # the answer outside its tags
            text = f"<think>{thinking}</think>answer: {answer}"
        elif kind == 2:  # no thinking
            text = f"<answer>{answer}</answer>"
        else:  # the answer tag never closed
            text = f"<think>{thinking}</think><answer>{answer}"
        return text, correct, False

    def pretrain_corpus(self, n: int, seed: int) -> list[str]:
        """n worked problems, prompt and solution in one text, imperfect as described above."""
        rng = np.random.default_rng(seed)
        return [p.prompt + self.solution(rng, p)[0]
                for p in self.problems(n, int(rng.integers(2 ** 31)))]

    # --- the verifier --------------------------------------------------------------------
    def verify(self, prompt: str, response: str) -> tuple[bool, bool]:
        """(correct, well formatted) of one response.

        correct: the number inside <answer>...</answer> is the problem's answer (R1-Zero's
        accuracy reward asks for the answer in a stated place, here the answer tags).
        well formatted: the whole response is "<think>...</think><answer>N</answer>",
        the thinking made of digits, "+", "-", "=" and ",".
        """
        problem = parse_prompt(prompt)
        m = _ANSWER.search(response)
        correct = m is not None and int(m.group(1)) == problem.answer
        return correct, bool(_STRICT.match(response))

    def reward(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """The rule-based reward: 1 for a correct answer, plus format_weight for the format.

        The plug-in shape every GRPO reward has: lists of prompts and responses in,
        (B,) float32 rewards out.
        """
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        out = np.empty(len(prompts), np.float32)
        for i, (p, r) in enumerate(zip(prompts, responses)):
            correct, formatted = self.verify(p, r)
            out[i] = float(correct) + self.format_weight * float(formatted)
        return out

    def follows_format(self, response: str) -> bool:
        """Whether a response is in the strict think/answer template."""
        return bool(_STRICT.match(response))


def response_chars(digits: int) -> int:
    """The longest strict response to a problem with operands of up to `digits` digits:
    the tags (32 characters), `digits` columns of at most 8 characters ("9+9+1=19",
    "19-9-1=9") and the commas between them, and an answer of at most digits + 1 digits."""
    return 32 + 9 * digits - 1 + digits + 1
