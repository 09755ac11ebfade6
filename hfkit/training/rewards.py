"""Reward functions for online RL (TRL's GRPOTrainer calls them with the sampled completions and
every other column of the prompt's record as keyword arguments). Each returns one float per
completion; a record without the column a reward reads gets one line naming it."""
from __future__ import annotations

import functools

from ..errors import HfkitError


def completion_text(completion) -> str:
    """The answer in a completion: a conversational one's last message; its first line, stripped."""
    if isinstance(completion, list):
        completion = completion[-1]["content"] if completion else ""
    return completion.strip().split("\n")[0].strip()


def _references(kwargs: dict, n: int, name: str, columns=("reference", "answer")) -> list[str]:
    col = next((c for c in columns if c in kwargs), None)
    if col is None:
        raise HfkitError(f"reward '{name}' compares with a record field {' or '.join(repr(c) for c in columns)}, "
                         f"which the prompt records lack (fields: {', '.join(sorted(kwargs)) or 'none'})")
    refs = kwargs[col]
    return [completion_text(r) if not isinstance(r, str) else r.strip() for r in refs][:n]


@functools.lru_cache(maxsize=1)
def _chrf():
    from sacrebleu.metrics import CHRF

    return CHRF()


def chrf(completions, **kwargs) -> list[float]:
    """Sentence chrF (sacrebleu, 0..1) of each completion against the record's `reference`."""
    refs = _references(kwargs, len(completions), "chrf")
    return [_chrf().sentence_score(completion_text(c), [r]).score / 100.0 for c, r in zip(completions, refs)]


def _normal(text: str) -> str:
    return " ".join(text.lower().strip(" .!?").split())


def exact_match(completions, **kwargs) -> list[float]:
    """1.0 where the completion's answer equals the record's `answer` (or `reference`), case and
    spacing and final punctuation aside; else 0.0."""
    refs = _references(kwargs, len(completions), "exact_match", ("answer", "reference"))
    return [float(_normal(completion_text(c)) == _normal(r)) for c, r in zip(completions, refs)]


def length_penalty(completions, **kwargs) -> list[float]:
    """-|len(answer) - len(reference)| / len(reference), in characters: 0 at the reference's length."""
    refs = _references(kwargs, len(completions), "length_penalty")
    return [-abs(len(completion_text(c)) - len(r)) / max(len(r), 1) for c, r in zip(completions, refs)]


REWARDS = {"chrf": chrf, "exact_match": exact_match, "length_penalty": length_penalty}


def reward_function(name: str, key: str):
    if name not in REWARDS:
        raise HfkitError(f"recipe key '{key}': unknown reward function '{name}' (shipped: {', '.join(REWARDS)})")
    return REWARDS[name]
