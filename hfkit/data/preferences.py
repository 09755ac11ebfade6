"""Preference data in TRL's standard formats, checked up front, and a real preference set built
offline from the machine's gettext catalogs.

Formats (TRL's names, https://huggingface.co/docs/trl/dataset_formats):
- paired, explicit prompt: {"prompt", "chosen", "rejected"};
- paired, implicit prompt: {"chosen", "rejected"} (the prompt is their shared beginning);
- prompt-only: {"prompt"} (online RL: completions are sampled), plus any columns a reward reads;
each either standard (strings) or conversational (lists of {"role", "content"} messages).
"""
from __future__ import annotations

import random
from typing import Literal

from datasets import Dataset

from ..errors import HfkitError

PAIRED = ("chosen", "rejected")
ROLES = ("system", "user", "assistant", "tool")
# the instruction of the built-in translation preferences: sft_translate's first template, so that a
# run of it starts from prompts it was trained on
LANGUAGE_NAMES = {"de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "pt": "Portuguese", "nl": "Dutch",
                  "pl": "Polish", "sv": "Swedish", "ru": "Russian", "ja": "Japanese", "zh_CN": "Chinese",
                  "cs": "Czech", "da": "Danish", "fi": "Finnish", "hu": "Hungarian", "tr": "Turkish"}


def translation_prompt(source: str, lang: str) -> str:
    name = LANGUAGE_NAMES.get(lang, lang)
    return f"Translate to {name}: {source}\n{name}:"


def _is_messages(value) -> bool:
    return isinstance(value, list)


def _check_value(value, field: str, where: str) -> str:
    """'standard' or 'conversational'; one line naming the record and field otherwise."""
    if isinstance(value, str):
        if not value.strip():
            raise HfkitError(f"{where}: field '{field}' is empty")
        return "standard"
    if _is_messages(value):
        if not value:
            raise HfkitError(f"{where}: field '{field}' is an empty list of messages")
        for j, m in enumerate(value):
            if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ROLES:
                raise HfkitError(f"{where}: field '{field}' message {j} must be {{role: {'|'.join(ROLES)}, "
                                 f"content: text}}, got {str(m)[:80]}")
        return "conversational"
    raise HfkitError(f"{where}: field '{field}' must be text or a list of messages, got "
                     f"{type(value).__name__ if value is not None else 'nothing'}")


def check_preferences(ds: Dataset, where: str, kind: Literal["paired", "prompt_only"]) -> dict:
    """Check every record (one line naming the first bad one); returns the format found:
    {"prompt": explicit|implicit|only, "style": standard|conversational}."""
    cols = set(ds.column_names)
    needed = PAIRED if kind == "paired" else ("prompt",)
    missing = [c for c in needed if c not in cols]
    if missing:
        hint = ("prompt/chosen/rejected, or chosen/rejected with the prompt in both" if kind == "paired"
                else "prompt (and the columns the reward functions read)")
        raise HfkitError(f"{where}: records have no field '{missing[0]}' (columns: {', '.join(sorted(cols))}; "
                         f"expected {hint}; rename yours with the section's `fields`)")
    if len(ds) == 0:
        raise HfkitError(f"{where}: no records")
    fields = [c for c in ("prompt", *PAIRED) if c in cols and (kind == "paired" or c == "prompt")]
    style = None
    for i, row in enumerate(ds):
        at = f"{where}: record {i}"
        styles = {_check_value(row.get(f), f, at) for f in fields}
        if len(styles) > 1:
            raise HfkitError(f"{at}: mixes text and message lists across {', '.join(fields)}")
        s = styles.pop()
        if style is None:
            style = s
        elif s != style:
            raise HfkitError(f"{at}: is {s} but record 0 is {style} (one format per dataset)")
        if kind == "paired":
            if row["chosen"] == row["rejected"]:
                raise HfkitError(f"{at}: 'chosen' and 'rejected' are the same")
            if s == "conversational" and row["chosen"][-1]["role"] != "assistant":
                raise HfkitError(f"{at}: field 'chosen' must end with an assistant message")
    return {"prompt": "only" if kind == "prompt_only" else "explicit" if "prompt" in cols else "implicit",
            "style": style}


def gettext_preference_records(lang: str, locale_dir: str, max_chars: int | None = None, max_records: int | None = None,
                               seed: int = 0) -> Dataset:
    """English->`lang` preferences: prompt = the translation instruction, chosen = the catalog's
    translation, rejected = a hard negative: another message's translation from the same catalog, of
    the most similar length (from anywhere when the catalog has no other). Also `reference` (the
    translation, for rewards computed against it), `source` and `catalog`."""
    from .gettext_pairs import _sample, by_catalog, gettext_pairs, other_translation

    pairs, _ = gettext_pairs(lang, locale_dir, max_chars=max_chars)  # as the `gettext` source: same records, same split
    rows = [{"source": s, "target": t, "catalog": c} for s, t, c in zip(pairs["source"], pairs["target"], pairs["catalog"])]
    rows = _sample(rows, max_records, seed)
    rng = random.Random(seed + 1)
    catalogs = by_catalog(rows)
    out = []
    for i, r in enumerate(rows):
        j = other_translation(rows, i, catalogs, rng)
        out.append({"prompt": translation_prompt(r["source"], lang), "chosen": " " + r["target"],
                    "rejected": " " + rows[j]["target"], "reference": r["target"], "source": r["source"],
                    "catalog": r["catalog"]})
    return Dataset.from_list(out)
