"""Preference data on disk: a JSONL format a person can write by hand, and its loader.

One comparison per line, either a pair or a ranking:

    {"prompt": "the pizza was", "chosen": " great. rating: 5/5", "rejected": " bad. rating: 1/5"}
    {"prompt": "my car was", "ranking": [" superb. rating: 5/5", " okay. rating: 3/5", " awful."]}

`ranking` lists completions best first (K >= 2, no duplicates); a pair is a ranking of
K = 2. Completions are appended to the prompt as they are (start them with a space if the
prompt does not end with one). Every character must be in the model's tokenizer. Other keys
are ignored (e.g. a "source" note).

`load_preferences` checks every line before returning anything, and reports each bad one
by file and line number (missing field, wrong type, empty completion, unknown character,
duplicates in a ranking), so a model is never trained on part of a file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from minirlhf.logging import atomic_write_text
from minirlhf.tokenizer import CharTokenizer


@dataclass(frozen=True)
class Comparison:
    """A prompt and its completions ranked best first (two for a pair)."""

    prompt: str
    ranking: tuple[str, ...]

    def to_json(self) -> dict:
        if len(self.ranking) == 2:
            return {"prompt": self.prompt, "chosen": self.ranking[0],
                    "rejected": self.ranking[1]}
        return {"prompt": self.prompt, "ranking": list(self.ranking)}


def _check_text(tokenizer: CharTokenizer | None, text: str, what: str) -> str | None:
    if tokenizer is None:
        return None
    unknown = sorted({c for c in text if c not in tokenizer.alphabet})
    if unknown:
        return (f"{what} {text!r} has character(s) {unknown} that are not in the tokenizer's "
                f"alphabet {tokenizer.alphabet!r}")
    return None


def parse_record(record, tokenizer: CharTokenizer | None = None) -> Comparison:
    """One decoded JSON line -> Comparison; ValueError saying what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if "prompt" not in record:
        raise ValueError("missing field 'prompt'")
    has_pair = "chosen" in record or "rejected" in record
    if has_pair and "ranking" in record:
        raise ValueError("give either 'chosen' and 'rejected' or 'ranking', not both")
    if has_pair:
        for name in ("chosen", "rejected"):
            if name not in record:
                raise ValueError(f"missing field {name!r} (a pair needs 'chosen' and 'rejected')")
        ranking = [record["chosen"], record["rejected"]]
    elif "ranking" in record:
        ranking = record["ranking"]
        if not isinstance(ranking, list) or len(ranking) < 2:
            raise ValueError(f"'ranking' must be a list of at least 2 completions, got {ranking!r}")
    else:
        raise ValueError("missing field: give 'chosen' and 'rejected', or 'ranking'")
    prompt = record["prompt"]
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"'prompt' must be a non-empty string, got {prompt!r}")
    for i, text in enumerate(ranking):
        if not isinstance(text, str):
            raise ValueError(f"completion {i} must be a string, got {text!r}")
        if not text.strip():
            raise ValueError(f"completion {i} is empty")
    if len(set(ranking)) != len(ranking):
        dup = sorted({t for t in ranking if ranking.count(t) > 1})
        raise ValueError(f"the same completion appears twice: {dup}")
    for problem in [_check_text(tokenizer, prompt, "prompt")] + \
            [_check_text(tokenizer, t, f"completion {i}") for i, t in enumerate(ranking)]:
        if problem:
            raise ValueError(problem)
    return Comparison(prompt, tuple(ranking))


def load_preferences(path: str | Path, tokenizer: CharTokenizer | None = None,
                     max_errors: int = 10) -> list[Comparison]:
    """Every comparison in a JSONL file, or a ValueError listing the bad lines.

    Blank lines are skipped. Nothing is returned unless every line is valid.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"preference file {path} does not exist")
    out, errors = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(parse_record(json.loads(line), tokenizer))
        except json.JSONDecodeError as err:
            errors.append(f"{path}, line {number}: not valid JSON ({err.msg})")
        except ValueError as err:
            errors.append(f"{path}, line {number}: {err}")
    if errors:
        more = f"\n... and {len(errors) - max_errors} more" if len(errors) > max_errors else ""
        raise ValueError(f"{len(errors)} bad record(s), nothing loaded:\n"
                         + "\n".join(errors[:max_errors]) + more)
    if not out:
        raise ValueError(f"{path} holds no comparisons")
    return out


def load_split(path: str | Path, tokenizer: CharTokenizer, n_val: int,
               field: str = "n_val") -> tuple[list[Comparison], list[Comparison]]:
    """(train, held-out) comparisons of a JSONL file: the held-out part is its last n_val.

    `field` names n_val's config field in the error when the file is too short.
    """
    everything = load_preferences(path, tokenizer)  # every line checked first
    if len(everything) <= n_val:
        raise ValueError(f"{path} holds {len(everything)} comparisons; need more than "
                         f"{field}={n_val} (the held-out part is its end)")
    return everything[:-n_val], everything[-n_val:]


def write_preferences(path: str | Path, comparisons: list[Comparison]) -> None:
    """Write comparisons as JSONL, atomically."""
    atomic_write_text(path, "".join(json.dumps(c.to_json()) + "\n" for c in comparisons))
