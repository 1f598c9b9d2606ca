"""The verifiable arithmetic task: worked columns by hand, the verifier on hand-written
completions, the held-out split, and the corpus's stated share of mistakes."""

import numpy as np
import pytest

from minirlhf.envs import make_task
from minirlhf.envs.arithmetic import (ArithmeticTask, Problem, parse_prompt, response_chars,
                                      strict_response, worked_columns)
from minirlhf.tokenizer import CharTokenizer

TASK = ArithmeticTask()


@pytest.mark.parametrize("problem,steps,answer", [
    (Problem(47, "+", 38), ["7+8+0=15", "4+3+1=8"], 85),
    (Problem(95, "+", 17), ["5+7+0=12", "9+1+1=11"], 112),  # the last column's whole sum
    (Problem(5, "+", 0), ["5+0+0=5"], 5),
    (Problem(43, "-", 18), ["13-8-0=5", "4-1-1=2"], 25),  # borrow: the top digit plus 10
    (Problem(1000, "-", 999), ["10-9-0=1", "10-9-1=0", "10-9-1=0", "1-0-1=0"], 1),
    (Problem(999, "-", 999), ["9-9-0=0", "9-9-0=0", "9-9-0=0"], 0),
])
def test_worked_columns_by_hand(problem, steps, answer):
    assert worked_columns(problem) == (steps, answer)
    assert answer == problem.answer


def test_the_two_kinds_of_mistake():
    # Forgetting the carry: 47 + 38 with the carry written as 0 gives 75.
    assert worked_columns(Problem(47, "+", 38), forget_carry=True) == (
        ["7+8+0=15", "4+3+0=7"], 75)
    assert worked_columns(Problem(43, "-", 18), forget_carry=True)[1] == 35
    # A slip in column 0: 7 + 8 = 16, the rest follows from it.
    assert worked_columns(Problem(47, "+", 38), slip=0) == (["7+8+0=16", "4+3+1=8"], 86)


def test_answers_are_right_for_many_problems():
    for p in TASK.problems(2000, seed=1) + TASK.problems(200, seed=2, held_out=True, harder=True):
        assert worked_columns(p)[1] == p.answer, p
        assert p.op in "+-" and p.answer >= 0


def test_verifier_on_hand_written_completions():
    prompt = "47+38="
    cases = {
        "<think>7+8+0=15,4+3+1=8</think><answer>85</answer>": (True, True),
        "<think>7+8+0=15,4+3+0=7</think><answer>75</answer>": (False, True),  # wrong
        "<answer>85</answer>": (True, False),  # right, but no thinking
        "<think>7+8+0=15,4+3+1=8</think>answer: 85": (False, False),  # no answer tags
        "<think>7+8+0=15,4+3+1=8</think><answer>85": (False, False),  # tag never closed
        "<think>7+8+0=15</think><answer>85</answer> and more": (True, False),  # trailing text
        "<think>hmm</think><answer>85</answer>": (True, False),  # thinking is not columns
        "": (False, False),
        "<answer>085</answer>": (True, False),
    }
    for response, expected in cases.items():
        assert TASK.verify(prompt, response) == expected, response
    rewards = TASK.reward([prompt] * 3, list(cases)[:3])
    assert rewards.dtype == np.float32
    np.testing.assert_allclose(rewards, [1.5, 0.5, 1.0])


def test_bad_prompts_and_mismatched_lists_are_refused():
    for bad in ("47+38", "a+b=", "47*3=", ""):
        with pytest.raises(ValueError, match="not an arithmetic prompt"):
            parse_prompt(bad)
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        TASK.reward(["1+1=", "2+2="], ["<answer>2</answer>"])
    with pytest.raises(ValueError, match="held_out=True"):
        TASK.problems(3, seed=0, harder=True)


def test_held_out_problems_never_appear_in_training_data():
    train = {p.prompt for p in TASK.problems(5000, seed=3)}
    held = set(TASK.held_out_prompts(500, seed=4))
    assert not train & held
    assert all(TASK.held_out(parse_prompt(p)) for p in held)
    corpus_prompts = {doc[:doc.index("=") + 1] for doc in TASK.pretrain_corpus(3000, seed=5)}
    assert not corpus_prompts & held
    # Harder problems: operands of exactly max_digits + 1 digits.
    for prompt in TASK.held_out_prompts(50, seed=6, harder=True):
        p = parse_prompt(prompt)
        assert len(str(p.a)) == len(str(p.b)) == TASK.max_digits + 1


def test_corpus_has_the_stated_shares_of_mistakes_and_loose_format():
    rng = np.random.default_rng(0)
    n = 4000
    results = [TASK.solution(rng, p) for p in TASK.problems(n, seed=7)]
    wrong = np.mean([not correct for _, correct, _ in results])
    loose = np.mean([not strict for _, _, strict in results])
    # A slip always changes the answer, a forgotten carry does when there is a carry.
    assert abs(wrong - TASK.wrong_share) < 0.03, wrong
    assert abs(loose - TASK.loose_share) < 0.03, loose
    for text, correct, strict in results[:200]:
        assert TASK.follows_format(text) == strict


def test_same_seed_same_data_and_every_character_is_in_the_alphabet():
    assert TASK.pretrain_corpus(50, seed=1) == TASK.pretrain_corpus(50, seed=1)
    assert TASK.pretrain_corpus(50, seed=1) != TASK.pretrain_corpus(50, seed=2)
    tok = CharTokenizer(make_task("arithmetic").alphabet)
    for doc in TASK.pretrain_corpus(500, seed=1):
        tok.encode(doc)  # raises on an unknown character


def test_lengths_fit_the_stated_bounds():
    for digits in (1, 2, 3, 4):
        task = ArithmeticTask(max_digits=digits)
        longest = max(len(strict_response(*worked_columns(p)))
                      for p in task.problems(3000, seed=digits))
        assert longest <= response_chars(digits)
    assert max(len(p) for p in TASK.held_out_prompts(500, 0, harder=True)) <= \
        TASK.max_prompt_chars
