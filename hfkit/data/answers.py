"""SQuAD's answer normalisation, the one rule by which hfkit compares short answers: evaluation's exact
match and F1 (hfkit.evaluation.text_metrics) and the self-consistency vote (hfkit.prompting.fewshot)."""
from __future__ import annotations

import re
import string

_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, drop punctuation and English articles, collapse spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())
