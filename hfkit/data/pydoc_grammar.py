"""Extractive QA on the built-in corpus: the grammar productions of the Python language reference.

Every `name ::= ...` production in `pydoc_data.topics` gives a question ("What is the syntax of
if_stmt?") whose answer is the production's exact text, a span of the section that holds it (the
section is the context). Questions about a production asked of a section without it have no answer
(SQuAD 2.0 style). Records {"id", "title", "production", "context", "question", "answers": {"text", "answer_start"}}.
"""
from __future__ import annotations

import random
import re

from datasets import Dataset

from .sources import default_corpus_documents

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


def grammar_qa_records(no_answer_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """One question per production (phrasings rotate), plus `no_answer_fraction` as many questions
    asked of another section (one with no production of that name). `title` is the section's title:
    split by it so a section never sits on both sides."""
    rng = random.Random(seed)
    rows, sections = [], []
    for doc in default_corpus_documents():
        found = productions(doc)
        if found:
            sections.append((doc, {n for n, _, _ in found}))
        for name, start, text in found:
            title = doc.splitlines()[0].strip()
            q = QUESTIONS[len(rows) % len(QUESTIONS)].format(name=name)
            rows.append({"id": f"grammar-{len(rows)}", "title": title, "production": name, "context": doc, "question": q,
                         "answers": {"text": [text], "answer_start": [start]}})
    n_answerable = len(rows)
    for k in range(round(no_answer_fraction * n_answerable)):
        asked = rows[rng.randrange(n_answerable)]
        name = asked["production"]
        doc, names = rng.choice(sections)
        while name in names or doc == asked["context"]:
            doc, names = rng.choice(sections)
        rows.append({"id": f"grammar-none-{k}", "title": doc.splitlines()[0].strip(), "production": name, "context": doc,
                     "question": asked["question"], "answers": {"text": [], "answer_start": []}})
    return Dataset.from_list(rows)
