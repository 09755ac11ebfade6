"""`hfkit pipeline TASK`: transformers' pipelines on hfkit runs (adapters included) and cached Hub models.

text-generation, fill-mask, text-classification, token-classification and feature-extraction are
`transformers.pipeline` itself. transformers 5 removed the question-answering, summarization and
translation pipelines; hfkit keeps them with the same inputs and outputs: extractive QA decodes the
best span as run_qa does (hfkit.inference.question_answering), summarization and translation generate
with the encoder-decoder (or decoder) model (`summary_text`, `translation_text`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import HfkitError

HF_PIPELINES = ("text-generation", "fill-mask", "text-classification", "token-classification", "feature-extraction")
OWN = ("question-answering", "summarization", "translation")
TASKS = HF_PIPELINES + OWN
_PEFT_CLASS = {"text-generation": "AutoPeftModelForCausalLM", "text-classification": "AutoPeftModelForSequenceClassification",
               "token-classification": "AutoPeftModelForTokenClassification",
               "question-answering": "AutoPeftModelForQuestionAnswering", "feature-extraction": "AutoPeftModelForFeatureExtraction",
               "summarization": "AutoPeftModelForSeq2SeqLM", "translation": "AutoPeftModelForSeq2SeqLM",
               "fill-mask": "AutoPeftModel"}
# peft's task type of an adapter trained for each pipeline task (its head is saved with the adapter)
_PEFT_TASK = {"text-generation": "CAUSAL_LM", "text-classification": "SEQ_CLS", "token-classification": "TOKEN_CLS",
              "question-answering": "QUESTION_ANS", "summarization": "SEQ_2_SEQ_LM", "translation": "SEQ_2_SEQ_LM",
              "feature-extraction": "FEATURE_EXTRACTION"}
_AUTO_CLASS = {"text-generation": "AutoModelForCausalLM", "fill-mask": "AutoModelForMaskedLM",
               "text-classification": "AutoModelForSequenceClassification",
               "token-classification": "AutoModelForTokenClassification", "feature-extraction": "AutoModel",
               "question-answering": "AutoModelForQuestionAnswering"}


def load_for(task: str, ref: str):
    """(model, tokenizer) for `task` from a run folder, a saved adapter (merged into its base, in memory)
    or a Hub id (offline: the local cache). Remote code is never run."""
    import transformers

    from ..data.tokenizer import load_tokenizer
    from ..hub import check_model_ref
    from ..models import load_model

    if task not in TASKS:
        raise HfkitError(f"pipeline task '{task}': expected one of {', '.join(TASKS)}")
    check_model_ref(ref, f"--model '{ref}'")
    tokenizer = load_tokenizer(ref)
    p = Path(ref)
    try:
        if p.is_dir() and (p / "adapter_config.json").exists():
            import json

            import peft

            trained_for = json.loads((p / "adapter_config.json").read_text()).get("task_type")
            if task in _PEFT_TASK and trained_for and trained_for != _PEFT_TASK[task] and task != "feature-extraction":
                raise HfkitError(f"--model '{ref}' is an adapter trained for {trained_for}, not {task}: its {task} "
                                 f"head would start from random weights")
            model = getattr(peft, _PEFT_CLASS[task]).from_pretrained(str(p.resolve()), trust_remote_code=False)
            model = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
        elif task in ("summarization", "translation"):
            model = load_model(ref)  # the encoder-decoder's seq2seq class (a decoder-only model continues)
        else:
            model, info = getattr(transformers, _AUTO_CLASS[task]).from_pretrained(ref, trust_remote_code=False,
                                                                                  output_loading_info=True)
            if info.get("missing_keys"):  # a head this checkpoint does not have: it would answer at random
                missing = sorted(info["missing_keys"])
                raise HfkitError(f"--model '{ref}' has no trained {task} head ({type(model).__name__}: "
                                 f"{len(missing)} weights would start random, e.g. {missing[0]}): use a run trained "
                                 f"for {task}")
    except HfkitError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise HfkitError(f"--model '{ref}' cannot serve {task}: {str(e).splitlines()[0][:200]}") from None
    return model.eval(), tokenizer


def _text(x: Any, field: str = "text") -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, dict) and isinstance(x.get(field), str):
        return x[field]
    raise HfkitError(f"input {str(x)[:60]!r}: expected text or an object with '{field}'")


def run_pipeline(task: str, model, tokenizer, inputs: list, batch_size: int = 8, max_new_tokens: int = 64,
                 prefix: str = "", **generation) -> list[Any]:
    """One output per input, as transformers' pipeline for `task` returns it (JSON-ready)."""
    if task in HF_PIPELINES:
        from transformers import pipeline

        # greedy unless asked otherwise (transformers' text-generation pipeline samples by default)
        kwargs = {"max_new_tokens": max_new_tokens, "do_sample": False, **generation} if task == "text-generation" else {}
        if task == "token-classification":
            kwargs["aggregation_strategy"] = "simple"
        texts = [_text(x) for x in inputs]
        if task == "fill-mask":
            bad = next((n for n, t in enumerate(texts, 1) if t.count(tokenizer.mask_token or "\0") != 1), None)
            if bad is not None:
                raise HfkitError(f"fill-mask input {bad}: needs exactly one mask token {tokenizer.mask_token!r} "
                                 f"(this model's)")
        pipe = pipeline(task, model=model, tokenizer=tokenizer, device=model.device, trust_remote_code=False)
        try:
            # a generator: one output per input, also for a single input (a list of one is unwrapped)
            outs = list(pipe((t for t in texts), batch_size=batch_size, **kwargs))
        except (ValueError, KeyError) as e:  # transformers' PipelineException is a ValueError
            from ..schema import one_line

            raise HfkitError(f"{task}: {one_line(e)}") from None
        return [_plain(o) for o in outs]
    if task == "question-answering":
        return _extractive_qa(model, tokenizer, inputs, batch_size)
    from .generation import generate

    texts = [prefix + _text(x) for x in inputs]
    outs = generate(model, tokenizer, texts, batch_size=batch_size, max_new_tokens=max_new_tokens, **generation)
    key = "summary_text" if task == "summarization" else "translation_text"
    return [{key: o[0].strip()} for o in outs]


def _plain(x):
    """Numbers and arrays as JSON values."""
    import numpy as np

    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def _extractive_qa(model, tokenizer, inputs: list, batch_size: int, max_length: int = 384, doc_stride: int = 128):
    import numpy as np
    import torch
    from datasets import Dataset

    from .question_answering import QaWindows, postprocess_qa_predictions, qa_features

    rows = []
    for n, x in enumerate(inputs, 1):
        if not (isinstance(x, dict) and isinstance(x.get("question"), str) and isinstance(x.get("context"), str)):
            raise HfkitError(f"question-answering input {n}: expected an object with 'question' and 'context'")
        rows.append({"question": x["question"], "context": x["context"], "answers": {"text": [], "answer_start": []},
                     "_example": n - 1})
    from ..models import max_positions

    limit = min(max_length, max_positions(model.config) or max_length, tokenizer.model_max_length or max_length)
    cfg = QaWindows(max_length=limit, doc_stride=min(doc_stride, limit // 2))
    batch = {k: [r[k] for r in rows] for k in rows[0]}
    keep_types = getattr(model.config, "type_vocab_size", 0) > 1
    feats = qa_features(batch, tokenizer, cfg, keep_types, for_eval=True)
    names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in feats]
    starts, ends = [], []
    with torch.no_grad():
        for i in range(0, len(feats["input_ids"]), batch_size):
            out = model(**{k: torch.tensor(feats[k][i:i + batch_size], device=model.device) for k in names})
            starts += out.start_logits.float().cpu().numpy().tolist()
            ends += out.end_logits.float().cpu().numpy().tolist()
    ds = Dataset.from_dict({"example_index": feats["example_index"], "offset_mapping": feats["offset_mapping"]})
    answers = postprocess_qa_predictions([r["context"] for r in rows], ds, np.array(starts), np.array(ends))
    return [{"answer": a} for a in answers]
