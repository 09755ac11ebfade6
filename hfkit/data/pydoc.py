"""The English prose that ships with every CPython (`pydoc_data.topics`, ~65k words): the built-in
corpus of training recipes, and instruction records made from it. Real text, always there offline."""
from __future__ import annotations

import re

_HEADING = re.compile(r"\n(?=[^\n]+\n[=*\-~^]{3,}\n)")


def default_corpus_documents() -> list[str]:
    """English prose from Python's own `pydoc_data.topics` (~65k words), split into sections.

    It ships with every CPython, so a recipe always has real text to train on, offline.
    """
    from pydoc_data.topics import topics

    docs = []
    for key in sorted(topics):
        for section in _HEADING.split(topics[key]):
            section = section.strip()
            if section:
                docs.append(section)
    return docs


def pydoc_instructions() -> list[dict]:
    """Instruction records from the default corpus: a section's title -> its first paragraph.

    Real English and always there offline: the built-in data for instruction-tuning recipes."""
    rows, seen = [], set()
    for doc in default_corpus_documents():
        lines = doc.splitlines()
        if len(lines) < 3 or not re.fullmatch(r"[=*\-~^]{3,}", lines[1].strip()):
            continue
        title = lines[0].strip()
        paragraphs = [p.strip() for p in "\n".join(lines[2:]).split("\n\n") if p.strip()]
        prose = next((p for p in paragraphs if not p.startswith(" ") and len(p.split()) >= 8), None)
        if prose and title not in seen:
            seen.add(title)
            rows.append({"instruction": f'What does the Python documentation say about "{title}"?',
                         "input": "", "output": " ".join(prose.split())})
    return rows
