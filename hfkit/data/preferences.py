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
    from .gettext_pairs import _sample, gettext_pairs

    pairs, _ = gettext_pairs(lang, locale_dir, max_chars=max_chars)  # as the `gettext` source: same records, same split
    rows = [{"source": s, "target": t, "catalog": c} for s, t, c in zip(pairs["source"], pairs["target"], pairs["catalog"])]
    rows = _sample(rows, max_records, seed)
    rng = random.Random(seed + 1)
    by_catalog: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_catalog.setdefault(r["catalog"], []).append(i)
    out = []
    for r in rows:
        same = [j for j in by_catalog[r["catalog"]] if rows[j]["target"] != r["target"]]
        if same:
            j = min(same, key=lambda j: (abs(len(rows[j]["target"]) - len(r["target"])), rng.random()))
        else:
            j = rng.randrange(len(rows))
            while rows[j]["target"] == r["target"]:
                j = rng.randrange(len(rows))
        out.append({"prompt": translation_prompt(r["source"], lang), "chosen": " " + r["target"],
                    "rejected": " " + rows[j]["target"], "reference": r["target"], "source": r["source"],
                    "catalog": r["catalog"]})
    return Dataset.from_list(out)


def on_policy_rejections(records: Dataset, policy: str, num_samples: int = 2, temperature: float = 1.0,
                         max_new_tokens: int = 48, batch_size: int = 64, seed: int = 0,
                         progress: bool = True) -> tuple[Dataset, dict]:
    """Replace each record's `rejected` by the policy's own mistake: `num_samples` samples of the run
    at `policy` for its prompt, ranked by sentence chrF against `reference`; the worst becomes
    `rejected` (chosen stays the reference). Empty samples and samples equal to the reference do not
    count; where none is left the record keeps the rejected answer it had (the hard negative), so the
    records, and the split made from them, stay those of the other kinds. Returns the records and a
    report (mean chrF of the best and worst samples)."""
    from sacrebleu.metrics import CHRF

    from ..inference.generation import generate
    from ..models import load_model
    from .tokenizer import load_tokenizer

    model, tokenizer = load_model(policy), load_tokenizer(policy)
    outs = generate(model, tokenizer, list(records["prompt"]), batch_size=batch_size, max_new_tokens=max_new_tokens,
                    do_sample=True, temperature=temperature, num_return_sequences=num_samples, seed=seed,
                    progress=progress, desc="sample (on-policy preferences)")
    chrf = CHRF()
    rejected, best, worst, kept = [], [], [], 0
    for samples, ref, before in zip(outs, records["reference"], records["rejected"]):
        samples = [s.split("\n")[0].strip() for s in samples]
        # an empty answer is no text to prefer against (TRL's records need one); the reference is no mistake
        scored = sorted(((chrf.sentence_score(s, [ref]).score, s) for s in samples if s and s != ref.strip()),
                        key=lambda t: t[0])
        if not scored:
            rejected.append(before)
            kept += 1
            continue
        rejected.append(" " + scored[0][1])
        worst.append(scored[0][0])
        best.append(scored[-1][0])
    out = records.remove_columns("rejected").add_column("rejected", rejected)
    report = {"policy": policy, "num_samples": num_samples, "temperature": temperature, "records": len(out),
              "on_policy": len(out) - kept, "kept_hard_negative": kept,
              "mean_chrf_worst_sample": round(sum(worst) / max(len(worst), 1), 2),
              "mean_chrf_best_sample": round(sum(best) / max(len(best), 1), 2)}
    return out, report
