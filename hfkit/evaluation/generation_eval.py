"""Scoring text: prediction files against reference files, or a model's generations for records."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import HfkitError


# --- scoring files --------------------------------------------------------------------------------

def read_lines(path: str, what: str) -> list[str]:
    """One segment per line, trailing whitespace stripped: how the sacrebleu CLI reads its files."""
    p = Path(path)
    if not p.is_file():
        raise HfkitError(f"{what}: no such file: {path}")
    try:
        with open(p, encoding="utf-8") as f:
            return [line.rstrip() for line in f]
    except UnicodeDecodeError as e:
        raise HfkitError(f"{path}: not UTF-8 text (byte {e.start})") from None


def read_aligned(predictions: str, references: list[str]) -> tuple[list[str], list[list[str]]]:
    """Predictions and reference streams read from files, checked to align line by line."""
    preds = read_lines(predictions, "--predictions")
    streams = []
    for r in references:
        refs = read_lines(r, "--references")
        if not refs or not any(x.strip() for x in refs):
            raise HfkitError(f"{r}: the references are empty")
        if len(refs) != len(preds):
            raise HfkitError(f"{predictions} has {len(preds)} lines but {r} has {len(refs)}: "
                             f"predictions and references must align line by line")
        streams.append(refs)
    return preds, streams


def score_files(predictions: str, references: list[str], metrics: list[str], per_class: bool = False,
                **options) -> dict:
    """Corpus metrics of a predictions file against reference files (or a per-class report)."""
    from .text_metrics import classification_report, corpus_metrics

    preds, streams = read_aligned(predictions, references)
    if per_class:
        if len(streams) != 1:
            raise HfkitError("--per-class takes one --references file")
        scores = classification_report(preds, streams[0])
    else:
        scores = corpus_metrics(preds, streams, metrics, **options)
    scores["n"] = len(preds)
    return scores


# --- scoring a model's generations ----------------------------------------------------------------

@dataclass
class GenerationInputs:
    prompts: list[str]
    references: list[str]
    extractors: list  # per prompt: the Template whose answer part to extract, or None (strip only)
    gen_kwargs: dict
    records: list[dict]


def score_generations(model, tokenizer, prompts: list[str], references: list[str], eval_config, answer,
                      progress: bool = False, **generate_kwargs) -> dict:
    """A run's held-out scores by generation (`eval:` metrics): the model continues each prompt
    (greedy or beam, by `eval_config`), `answer(i, text)` reads the answer out of prompt i's
    continuation, and the answers are scored against the references (with five examples)."""
    from ..inference.generation import generate
    from .text_metrics import corpus_metrics

    ev = eval_config
    outs = generate(model, tokenizer, prompts, batch_size=ev.batch_size, max_new_tokens=ev.max_new_tokens,
                    num_beams=ev.num_beams, progress=progress, desc="generate (eval)", **generate_kwargs)
    preds = [answer(i, o[0]) for i, o in enumerate(outs)]
    scores = corpus_metrics(preds, references, tuple(ev.metrics))
    scores["examples"] = [{"reference": r, "prediction": p} for r, p in list(zip(references, preds))[:5]]
    scores["n"] = len(references)
    return scores


def extracted_predictions(outputs: list[list[str]], extractors: list) -> list[str]:
    """Each first generation, reduced to its answer by its template (or stripped)."""
    return [t.extract_answer(o[0]) if t else o[0].strip() for o, t in zip(outputs, extractors)]


def generation_inputs(model_path: str, tokenizer, data: str, template: str | None, target_field: str,
                      input_field: str | None, limit: int | None, run_prompts=None) -> GenerationInputs:
    """Prompts and references for generation-based evaluation.

    With `template` (Jinja over a record's fields) or `input_field` (the record's text as it is, e.g.
    for a seq2seq model) the reference is `target_field`. Without them, `run_prompts(records,
    tokenizer, where)` gives the prompt format the run in `model_path` was trained with (its task's,
    chosen by the caller from the run's recipe)."""
    from ..data.catalog import source_from_spec
    from ..data.sources import load_records, source_where

    src = source_from_spec(data)
    ds = load_records(src)
    where = source_where(src)
    n = len(ds) if limit is None else min(limit, len(ds))
    if n == 0:
        raise HfkitError(f"--data {data}: no records")
    if template or input_field:
        from .icl import render

        if target_field not in ds.column_names:
            raise HfkitError(f"{where}: target field '{target_field}' not found (columns: {', '.join(ds.column_names)})")
        if input_field and input_field not in ds.column_names:
            raise HfkitError(f"{where}: input field '{input_field}' not found (columns: {', '.join(ds.column_names)})")
        rows = [ds[i] for i in range(n)]
        prompts = [render(template, r, f"{where} record {i + 1}") if template else str(r[input_field])
                   for i, r in enumerate(rows)]
        return GenerationInputs(prompts, [str(r[target_field]) for r in rows], [None] * n, {}, rows)
    if run_prompts is None:
        raise HfkitError(f"give --template (with --target-field) or --input-field: '{model_path}' has no recipe.yaml "
                         f"of an hfkit run to take the prompt format from")
    return run_prompts(ds.select(range(n)), tokenizer, where)


def evaluate_generation(model_path: str, data: str, metrics: list[str], template: str | None = None,
                        target_field: str = "target", input_field: str | None = None, limit: int | None = None,
                        batch_size: int = 16, max_new_tokens: int = 64, num_beams: int = 1,
                        progress: bool = False, run_prompts=None, **options) -> tuple[dict, list[dict], dict]:
    """Generate for every record of `data` in batches, extract the answers, score them; returns
    (scores, samples, data fingerprint)."""
    from ..data.tokenizer import load_tokenizer
    from ..inference.generation import generate
    from ..models import load_model
    from .reports import data_fingerprint
    from .text_metrics import corpus_metrics

    tokenizer = load_tokenizer(model_path)
    inputs = generation_inputs(model_path, tokenizer, data, template, target_field, input_field, limit, run_prompts)
    model = load_model(model_path)
    outs = generate(model, tokenizer, inputs.prompts, batch_size=batch_size, max_new_tokens=max_new_tokens,
                    num_beams=num_beams, progress=progress, **inputs.gen_kwargs)
    preds = extracted_predictions(outs, inputs.extractors)
    scores = corpus_metrics(preds, inputs.references, metrics, **options)
    scores["n"] = len(inputs.references)
    samples = [{"prompt": p, "reference": r, "prediction": y} for p, r, y in zip(inputs.prompts, inputs.references, preds)]
    return scores, samples, data_fingerprint(data, inputs.records)


