"""Extractive QA on the built-in corpus: the grammar productions of the Python language reference.

Every `name ::= ...` production in `pydoc_data.topics` gives a question ("What is the syntax of
if_stmt?") whose answer is the production's exact text, a span of the section that holds it (the
context is the paragraphs around it). Questions about a production asked of paragraphs of a section
without it have no answer (SQuAD 2.0 style). Records {"id", "title", "production", "context", "question", "answers": {"text", "answer_start"}}.
"""
from __future__ import annotations

import random
import re

from datasets import Dataset

from .pydoc import default_corpus_documents

_PRODUCTION = re.compile(r"^( +)([A-Za-z_][\w]*) +::= ", re.M)
QUESTIONS = ("What is the syntax of {name}?", "What is the grammar rule for {name}?",
             "How is {name} defined in the grammar?", "Which production defines {name}?")


def productions(section: str) -> list[tuple[str, int, str]]:
    """(name, start, text) of every production in a section: its first line and the lines after it
    indented deeper than the name (the continuation lines), exactly as they stand."""
    out = []
    for m in _PRODUCTION.finditer(section):
        indent, start = len(m.group(1)), m.start(2)
        end = section.find("\n", start)
        end = len(section) if end < 0 else end
        while end < len(section):
            nxt = section.find("\n", end + 1)
            nxt = len(section) if nxt < 0 else nxt
            line = section[end + 1:nxt]
            if not line.strip() or len(line) - len(line.lstrip(" ")) <= indent or "::=" in line:
                break
            end = nxt
        out.append((m.group(2), start, section[start:end].rstrip()))
    return out


def paragraph_window(section: str, start: int, end: int, max_chars: int) -> tuple[int, int]:
    """The character range of whole paragraphs around [start, end): the paragraphs holding it, then
    neighbours before and after in turn while the window stays within `max_chars`."""
    starts = [0] + [m.end() for m in re.finditer(r"\n[ \t]*\n", section)]
    bounds = starts + [len(section)]
    first = max(i for i in range(len(starts)) if starts[i] <= start)
    last = min(i for i in range(len(starts)) if bounds[i + 1] >= end)
    grew = True
    while grew:
        grew = False
        if first > 0 and bounds[last + 1] - bounds[first - 1] <= max_chars:
            first, grew = first - 1, True
        if last + 1 < len(starts) and bounds[last + 2] - bounds[first] <= max_chars:
            last, grew = last + 1, True
    return bounds[first], bounds[last + 1]


def grammar_qa_records(no_answer_fraction: float = 0.2, max_context_chars: int = 1200, seed: int = 0) -> Dataset:
    """One question per production (phrasings rotate) whose context is the paragraphs around it (about
    `max_context_chars`, as SQuAD's contexts are paragraphs; a longer production gets a longer one),
    plus `no_answer_fraction` as many questions asked of paragraphs of another section (one with no
    production of that name). `title` is the section's title: split by it so a section never sits
    on both sides."""
    rng = random.Random(seed)
    rows, sections = [], []
    for doc in default_corpus_documents():
        found = productions(doc)
        title = doc.splitlines()[0].strip()
        if found:
            sections.append((doc, title, {n for n, _, _ in found}))
        for name, start, text in found:
            lo, hi = paragraph_window(doc, start, start + len(text), max_context_chars)
            q = QUESTIONS[len(rows) % len(QUESTIONS)].format(name=name)
            rows.append({"id": f"grammar-{len(rows)}", "title": title, "production": name,
                         "context": doc[lo:hi].rstrip(), "question": q,
                         "answers": {"text": [text], "answer_start": [start - lo]}})
    n_answerable = len(rows)
    for k in range(round(no_answer_fraction * n_answerable)):
        asked = rows[rng.randrange(n_answerable)]
        doc, title, names = rng.choice(sections)
        while asked["production"] in names or title == asked["title"]:
            doc, title, names = rng.choice(sections)
        at = rng.randrange(len(doc))
        lo, hi = paragraph_window(doc, at, at, max_context_chars)
        rows.append({"id": f"grammar-none-{k}", "title": title, "production": asked["production"],
                     "context": doc[lo:hi].rstrip(), "question": asked["question"],
                     "answers": {"text": [], "answer_start": []}})
    return Dataset.from_list(rows)
