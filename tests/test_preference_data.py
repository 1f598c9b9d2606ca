"""The JSONL preference format: round trip, and every kind of bad record rejected with its
line number before anything is loaded."""

import json

import pytest

from minirlhf.preference_data import Comparison, load_preferences, write_preferences
from minirlhf.tokenizer import CharTokenizer

TOK = CharTokenizer("abcdefghijklmnopqrstuvwxyz .,!:/0123456789")
GOOD_PAIR = {"prompt": "the pizza was", "chosen": " great.", "rejected": " bad."}
GOOD_RANKING = {"prompt": "my car was", "ranking": [" superb.", " okay.", " awful."]}


def write_lines(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                            for r in records))
    return path


def test_round_trip_pairs_and_rankings(tmp_path):
    comps = [Comparison("the pizza was", (" great.", " bad.")),
             Comparison("my car was", (" superb.", " okay.", " awful."))]
    write_preferences(tmp_path / "p.jsonl", comps)
    assert load_preferences(tmp_path / "p.jsonl", TOK) == comps
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == GOOD_PAIR and json.loads(lines[1]) == GOOD_RANKING


def test_hand_written_file_with_blank_lines_and_extra_keys(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [GOOD_PAIR, "", dict(GOOD_RANKING, source="me")])
    assert [len(c.ranking) for c in load_preferences(path, TOK)] == [2, 3]


@pytest.mark.parametrize("bad,message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ({"chosen": " a.", "rejected": " b."}, "missing field 'prompt'"),
    ({"prompt": "x", "chosen": " a."}, "missing field 'rejected'"),
    ({"prompt": "x"}, "give 'chosen' and 'rejected', or 'ranking'"),
    ({"prompt": "x", "chosen": " a.", "rejected": "   "}, "completion 1 is empty"),
    ({"prompt": "x", "chosen": " a.", "rejected": 3}, "completion 1 must be a string"),
    ({"prompt": "x", "chosen": " Great!", "rejected": " b."}, "not in the tokenizer's alphabet"),
    ({"prompt": "x", "ranking": [" a.", " b.", " a."]}, "appears twice"),
    ({"prompt": "x", "ranking": [" a."]}, "at least 2 completions"),
    ({"prompt": "", "chosen": " a.", "rejected": " b."}, "'prompt' must be a non-empty"),
    ({"prompt": "x", "chosen": " a.", "rejected": " b.", "ranking": [" a.", " b."]},
     "not both"),
])
def test_each_bad_record_is_reported_with_its_line_and_nothing_loads(tmp_path, bad, message):
    path = write_lines(tmp_path / "p.jsonl", [GOOD_PAIR, GOOD_RANKING, bad, GOOD_PAIR])
    with pytest.raises(ValueError) as err:
        load_preferences(path, TOK)
    text = str(err.value)
    assert "p.jsonl, line 3: " in text and message in text
    assert "nothing loaded" in text


def test_several_bad_lines_are_all_listed_and_missing_or_empty_files(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [GOOD_PAIR, {"prompt": "x"}, "oops", GOOD_PAIR])
    with pytest.raises(ValueError, match="2 bad record") as err:
        load_preferences(path, TOK)
    assert "line 2" in str(err.value) and "line 3" in str(err.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_preferences(tmp_path / "nope.jsonl", TOK)
    with pytest.raises(ValueError, match="holds no comparisons"):
        load_preferences(write_lines(tmp_path / "empty.jsonl", [""]), TOK)
