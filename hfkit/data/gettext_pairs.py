"""A real English->X parallel corpus from the machine's gettext message catalogs (`*.mo`).

Every Debian system carries translated UI strings under /usr/share/locale/<lang>/LC_MESSAGES.
Read with Python's `gettext`; catalogs that fail to decode are skipped, plural forms give their
singular, the header and format-string-only entries are dropped, and each English source appears
once. Records: {"source", "target", "catalog"}, sorted by catalog then source (deterministic).
"""
from __future__ import annotations

import gettext
import re
from pathlib import Path

from datasets import Dataset

from ..errors import HfkitError

DEFAULT_LOCALE_DIR = "/usr/share/locale"
# printf/python/shell-style placeholders and what is left when they are removed
_PLACEHOLDER = re.compile(r"%(\([^)]*\))?[-#0 +'I]*(\*|\d+)?(\.(\*|\d+))?(hh|h|ll|l|L|q|j|z|t)?[diouxXeEfFgGaAcspnm%]"
                          r"|\{[^{}]*\}|\$\{?\w+\}?|<[^<>]*>")
_WORD = re.compile(r"[^\W\d_]{2,}")


def is_format_only(text: str) -> bool:
    """True when a message has no words once placeholders and markup are removed ("%s: %s")."""
    return not _WORD.search(_PLACEHOLDER.sub(" ", text))


def read_catalog(path: Path) -> dict[str, str]:
    """msgid -> msgstr of one compiled catalog (singular forms; context prefixes removed)."""
    with open(path, "rb") as f:
        catalog = gettext.GNUTranslations(f)._catalog
    out = {}
    for key, value in catalog.items():
        if isinstance(key, tuple):  # plural: (msgid, index)
            key, index = key
            if index != 0:
                continue
        if "\x04" in key:  # msgctxt\x04msgid
            key = key.split("\x04", 1)[1]
        out[key] = value
    return out


def gettext_pairs(lang: str, locale_dir: str = DEFAULT_LOCALE_DIR, min_chars: int = 1,
                  max_chars: int | None = None) -> tuple[Dataset, dict]:
    """All English->`lang` pairs of the machine's catalogs, and a report of what was skipped."""
    folder = Path(locale_dir) / lang / "LC_MESSAGES"
    files = sorted(folder.glob("*.mo"))
    if not files:
        raise HfkitError(f"no gettext catalogs for language '{lang}' in {folder}")
    rows, seen = [], set()
    report = {"catalogs": 0, "catalogs_skipped": [], "entries": 0, "format_only": 0, "duplicates": 0,
              "untranslated": 0, "length": 0}
    for path in files:
        try:
            entries = read_catalog(path)
        except (UnicodeDecodeError, OSError, LookupError) as e:
            report["catalogs_skipped"].append(f"{path.name}: {type(e).__name__}")
            continue
        report["catalogs"] += 1
        for src in sorted(entries):
            tgt = entries[src]
            if not src:  # the catalog header
                continue
            report["entries"] += 1
            if not tgt.strip() or tgt == src:
                report["untranslated"] += 1
            elif is_format_only(src):
                report["format_only"] += 1
            elif src in seen:
                report["duplicates"] += 1
            elif len(src) < min_chars or (max_chars is not None and (len(src) > max_chars or len(tgt) > max_chars)):
                report["length"] += 1
            else:
                seen.add(src)
                rows.append({"source": src, "target": tgt, "catalog": path.stem})
    if not rows:
        raise HfkitError(f"no usable gettext pairs for language '{lang}' in {folder}")
    report["pairs"] = len(rows)
    return Dataset.from_list(rows), report


def _sample(rows: list[dict], n: int | None, seed: int) -> list[dict]:
    """At most `n` rows, drawn without replacement with a fixed seed, in their original order."""
    if n is None or len(rows) <= n:
        return rows
    import random

    keep = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in keep]


def language_id_records(languages: list[str], locale_dir: str = DEFAULT_LOCALE_DIR, per_language: int | None = None,
                        max_chars: int | None = None, seed: int = 0) -> Dataset:
    """Language identification: each catalog's translated strings labelled with their language.
    Records {"text", "label", "catalog"}; `catalog` is the program, so a split by catalog keeps one
    program's strings (and their translations into the other languages) on one side."""
    rows = []
    for lang in languages:
        pairs, _ = gettext_pairs(lang, locale_dir, min_chars=8, max_chars=max_chars)
        rows += _sample([{"text": t, "label": lang, "catalog": c}
                         for t, c in zip(pairs["target"], pairs["catalog"])], per_language, seed)
    return Dataset.from_list(rows)


def other_translation(rows: list[dict], i: int, by_catalog: dict[str, list[int]], rng,
                      hard_fraction: float | None = None) -> int:
    """The index of another message's translation for `rows[i]` (never one with the same text): a
    hard negative, from the same catalog and of the most similar length, when the catalog has
    another (for `hard_fraction` of the rows, drawn; None: always), else one from anywhere."""
    r = rows[i]
    same = [j for j in by_catalog[r["catalog"]] if rows[j]["target"] != r["target"]]
    if same and (hard_fraction is None or rng.random() < hard_fraction):
        return min(same, key=lambda j: (abs(len(rows[j]["target"]) - len(r["target"])), rng.random()))
    j = rng.randrange(len(rows))
    while rows[j]["target"] == r["target"]:
        j = rng.randrange(len(rows))
    return j


def by_catalog(rows: list[dict]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        out.setdefault(r["catalog"], []).append(i)
    return out


def pair_match_records(lang: str, locale_dir: str = DEFAULT_LOCALE_DIR, max_records: int | None = None,
                       max_chars: int | None = None, hard_fraction: float = 0.5, seed: int = 0) -> Dataset:
    """Does `text_pair` (lang) translate `text` (English)? Every pair once as a match and once with
    another message's translation: for `hard_fraction` of them one from the same catalog of the most
    similar length (a hard negative), else from anywhere. Records {"text", "text_pair", "label", "catalog"}."""
    import random

    pairs, _ = gettext_pairs(lang, locale_dir, min_chars=8, max_chars=max_chars)
    rows = [{"source": s, "target": t, "catalog": c} for s, t, c in zip(pairs["source"], pairs["target"], pairs["catalog"])]
    rows = _sample(rows, max_records // 2 if max_records else None, seed)
    rng = random.Random(seed + 1)
    catalogs = by_catalog(rows)
    out = []
    for i, r in enumerate(rows):
        out.append({"text": r["source"], "text_pair": r["target"], "label": "match", "catalog": r["catalog"]})
        j = other_translation(rows, i, catalogs, rng, hard_fraction)  # hard: same program, closest length
        out.append({"text": r["source"], "text_pair": rows[j]["target"], "label": "no_match", "catalog": r["catalog"]})
    return Dataset.from_list(out)
