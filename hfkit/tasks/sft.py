"""Supervised fine-tuning (`task: sft`): records -> (prompt, answer) or chats -> token ids with
answer-only labels.

Data shaping lives here (as in TRL): templates, chat templates, label masks, truncation that never
cuts the prompt, and the two batching modes — padding-free (transformers'
`DataCollatorWithFlattening`: examples concatenated in rows of at most `max_length` tokens, position
ids restarting at 0, so attention never crosses examples) and padded, length-grouped batches. Knobs
that mean what TRL's `SFTConfig` fields mean carry TRL's names (`max_length`, `padding_free`,
`completion_only_loss`, `assistant_only_loss`).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Optional

import torch
from datasets import Dataset
from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

from ..data.corpus import sample_mixture
from ..data.records import gather_records
from ..data.sources import quiet_datasets
from ..data.templates import (Template, builtin_templates, chat_stop_ids, check_chat, choose_template,
                              setup_chat_template)
from ..errors import HfkitError
from . import Prepared, PromptFormat, Task, register

if TYPE_CHECKING:
    from ..sections import Recipe


@dataclass
class TemplateConfig:
    prompt: str  # Jinja over the record's fields
    answer: str  # Jinja; its single field is what answer extraction returns
    name: Optional[str] = None
    # a task definition (Natural Instructions style, hfkit.data.task_definitions): a file or a mapping, put in
    # front of the prompt with its first positive_examples / negative_examples; the prompt is then the input
    definition: Any = None
    positive_examples: int = 2
    negative_examples: int = 0

    def template(self, name: str, where: str | None = None) -> Template:
        prompt = self.prompt
        if self.definition is not None:
            from ..data.task_definitions import definition_template, load_definition

            where = where or f"template '{name}': definition"
            defn = load_definition(self.definition, where)
            try:
                prompt = definition_template(defn, prompt, self.positive_examples, self.negative_examples)
            except HfkitError as e:
                raise HfkitError(f"{where}: {e}") from None
        return Template(prompt, self.answer, name)


@dataclass
class SftConfig:
    """Recipe section `sft`."""
    format: Literal["instruction", "prompt_completion", "chat"] = "instruction"
    fields: dict = field(default_factory=dict)  # rename columns: {instruction: question, output: answer, ...}
    templates: list[TemplateConfig] = field(default_factory=list)  # several = FLAN-style mix; default per format
    chat_template: Optional[str] = None  # Jinja chat template; default: the tokenizer's own, else ChatML
    system_prompt: Optional[str] = None  # chat: prepended as a system message when a record has none
    completion_only_loss: bool = True  # instruction/prompt_completion: loss on the answer only (TRL's name)
    assistant_only_loss: bool = True  # chat: loss on assistant turns only (TRL's name)
    padding_free: bool = True  # no pad tokens: examples flattened into rows of <= max_length (TRL's name)
    # padding-free rows: "batch" flattens each batch's examples in order (a batch is that many examples);
    # "bfd" packs the whole training set into rows by best fit decreasing first (TRL's name and strategy:
    # rows nearly full, little filler; a batch is that many rows)
    packing_strategy: Literal["batch", "bfd"] = "batch"
    max_length: int = 512  # tokens per example; longer ones are cut in the answer, never in the prompt
    # records sharing this field's value (a module, a document) sit all in training or all in validation,
    # so validation holds whole groups out (the labelled tasks' key); None: each source split by record
    group_field: Optional[str] = None
    # with group_field: these groups (e.g. one task of a mixture) are the validation set, whole, and nothing
    # else is (validation_fraction is then not used): zero-shot evaluation on a task never trained on
    validation_groups: list[str] = field(default_factory=list)

    RENAMED = {"packing": ("padding_free", "(true | false; TRL's SFTConfig name: 'packing: padded' is "
                                           "'padding_free: false')")}

    def validate(self, prefix: str) -> None:
        if self.validation_groups and not self.group_field:
            raise HfkitError(f"recipe key '{prefix}.validation_groups' names groups of sft.group_field: set "
                             f"{prefix}.group_field (e.g. task)")
        for i, t in enumerate(self.templates):  # task definitions read and rendered now, before any work
            if t.definition is not None:
                t.template(t.name or f"template{i}", f"recipe key '{prefix}.templates.{i}.definition'")
        if self.max_length < 2:
            raise HfkitError(f"recipe key '{prefix}.max_length' must be >= 2, got {self.max_length}")
        if self.packing_strategy == "bfd" and not self.padding_free:
            raise HfkitError(f"recipe key '{prefix}.packing_strategy'=bfd packs padding-free rows: set "
                             f"{prefix}.padding_free=true (or packing_strategy=batch)")


REQUIRED = {"instruction": ("instruction", "output"), "prompt_completion": ("prompt", "completion"),
            "chat": ("messages",)}
PACKING_ATTENTION = ("eager", "sdpa", "flash_attention_2", "flash_attention_3")


def recipe_templates(cfg: SftConfig) -> list[Template]:
    if cfg.templates:
        return [t.template(t.name or f"template{i}") for i, t in enumerate(cfg.templates)]
    return builtin_templates(cfg.format)


def map_fields(ds: Dataset, cfg: SftConfig, templates: list[Template], where: str) -> Dataset:
    """Rename the recipe's mapped columns to hfkit's names and check every needed field exists."""
    renames = {col: name for name, col in cfg.fields.items() if col != name}
    for col in renames:
        if col not in ds.column_names:
            raise HfkitError(f"{where}: mapped field '{col}' (sft.fields) not found (columns: {', '.join(ds.column_names)})")
    ds = ds.rename_columns(renames) if renames else ds
    if cfg.format == "chat" and not cfg.templates:
        needed = {"messages"}
    elif cfg.templates:
        needed = set().union(*(t.fields for t in templates))
    else:
        needed = set(REQUIRED[cfg.format])
    missing = sorted(needed - set(ds.column_names))
    if missing:
        raise HfkitError(f"{where}: record 0 is missing field '{missing[0]}' (columns: {', '.join(ds.column_names)}; "
                         f"map yours with sft.fields)")
    return ds


def _with_system(messages: list[dict], system: str | None) -> list[dict]:
    if system and (not messages or messages[0]["role"] != "system"):
        return [{"role": "system", "content": system}] + list(messages)
    return list(messages)


def chat_messages(record: dict, cfg: SftConfig, templates: list[Template], seed: int) -> list[dict]:
    """A chat record's conversation: its `messages`, or (chat format with templates) one user turn and
    one assistant turn rendered from the record by its template, FLAN-style."""
    if not cfg.templates:
        return _with_system(record["messages"], cfg.system_prompt)
    prompt, answer = choose_template(templates, record["_index"], seed).render(record, record["_index"])
    return _with_system([{"role": "user", "content": prompt.strip()}, {"role": "assistant", "content": answer.strip()}],
                        cfg.system_prompt)


def assistant_char_spans(tokenizer, messages: list[dict], index: int) -> tuple[str, list[tuple[int, int]]]:
    """The rendered chat and the character spans of every assistant turn (content + end of turn).

    Found by rendering the conversation up to each turn: works with any chat template whose
    renderings extend each other, which is checked.
    """
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start_text = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        end_text = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (end_text.startswith(start_text) and full.startswith(end_text)):
            raise HfkitError(f"record {index}: the chat template does not render conversations prefix by prefix; "
                             f"answer-only labels cannot be located")
        spans.append((len(start_text), len(end_text)))
    return full, spans


def _record(row: dict, cfg: SftConfig) -> dict:
    if cfg.format == "instruction" and not cfg.templates:
        row.setdefault("input", "")  # Alpaca's input is optional
        if row["input"] is None:
            row["input"] = ""
    return row


def validate_records(ds: Dataset, cfg: SftConfig, templates: list[Template], seed: int) -> None:
    """Every record up front, so bad input fails in one line before any long work starts."""
    for record in ds:
        record = _record(record, cfg)
        idx = record["_index"]
        if cfg.format == "chat":
            check_chat(chat_messages(record, cfg, templates, seed), idx)
            continue
        for name in REQUIRED[cfg.format] if not cfg.templates else ():
            if record.get(name) is None:
                raise HfkitError(f"record {idx}: field '{name}' is missing")
        template = choose_template(templates, idx, seed)
        if not template.render(record, idx)[1].strip():
            raise HfkitError(f"record {idx}: empty answer (template '{template.name}')")


def _tokenize_batch(batch: dict, tokenizer, cfg: SftConfig, templates: list[Template], seed: int,
                    seq2seq_config=None) -> dict:
    out = {"input_ids": [], "labels": [], "num_tokens": []}
    for record in _rows(batch):
        record = _record(record, cfg)
        idx = record["_index"]
        if seq2seq_config is not None:  # encoder-decoder: the prompt is the encoder's input, the answer the target
            from ..inference.encoding import seq2seq_ids

            prompt, answer = choose_template(templates, idx, seed).render(record, idx)
            ids = seq2seq_ids(tokenizer, seq2seq_config, prompt)
            if len(ids) > cfg.max_length:
                continue  # the prompt does not fit: dropped, as for decoder-only models
            labels = seq2seq_ids(tokenizer, seq2seq_config, answer)[: cfg.max_length]
            out["input_ids"].append(ids)
            out["labels"].append(labels)
            out["num_tokens"].append(len(ids) + len(labels))
            continue
        if cfg.format == "chat":
            messages = chat_messages(record, cfg, templates, seed)
            text, spans = assistant_char_spans(tokenizer, messages, idx)
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            ids = enc["input_ids"]
            trained = [any(a <= s < b for a, b in spans) for s, _ in enc["offset_mapping"]]
            labels = [t if (tr or not cfg.assistant_only_loss) else -100 for t, tr in zip(ids, trained)]
            ids, labels = ids[: cfg.max_length], labels[: cfg.max_length]
            if all(x == -100 for x in labels):
                continue  # truncation removed every answer token: counted as dropped
        else:
            prompt, answer = choose_template(templates, idx, seed).render(record, idx)
            p = tokenizer(prompt)["input_ids"]  # with the tokenizer's own BOS, if it adds one
            a = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            if len(p) >= cfg.max_length:
                continue  # no room for any answer token: dropped, never trained on a prompt alone
            a = a[: cfg.max_length - len(p)]
            ids = p + a
            labels = ([-100] * len(p) if cfg.completion_only_loss else p) + a
        out["input_ids"].append(ids)
        out["labels"].append(labels)
        out["num_tokens"].append(len(ids))
    return out


def tokenize_sft(ds: Dataset, tokenizer, cfg: SftConfig, templates: list[Template], seed: int,
                 num_proc: int | None = None, seq2seq_config=None) -> tuple[Dataset, int]:
    """Batched map to input_ids/labels; returns the dataset and how many records truncation dropped.
    `seq2seq_config`: an encoder-decoder's config (prompt -> encoder input, answer -> labels)."""
    tok = ds.map(_tokenize_batch, batched=True, remove_columns=ds.column_names,
                 fn_kwargs={"tokenizer": tokenizer, "cfg": cfg, "templates": templates, "seed": seed,
                            "seq2seq_config": seq2seq_config},
                 num_proc=num_proc, desc="tokenize (sft)")
    return tok, len(ds) - len(tok)


def eval_prompts(records: Dataset, tokenizer, cfg: SftConfig, templates: list[Template], seed: int,
                 limit: int | None) -> tuple[list[str], list[str], list[Template | None]]:
    """Prompts, reference answers and templates (for extraction) of held-out records."""
    prompts, refs, used = [], [], []
    n = len(records) if limit is None else min(limit, len(records))
    for i in range(n):
        rec = _record(records[i], cfg)
        if cfg.format == "chat":
            messages = chat_messages(rec, cfg, templates, seed)
            prompts.append(tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True))
            refs.append(messages[-1]["content"])
            used.append(None)
        else:
            t = choose_template(templates, rec["_index"], seed)
            p, a = t.render(rec, rec["_index"])
            prompts.append(p)
            refs.append(t.extract_answer(a))
            used.append(t)
    return prompts, refs, used


@dataclass
class SftData:
    train: Dataset
    validation: Dataset | None
    eval_records: Dataset | None
    templates: list[Template]
    stats: dict = field(default_factory=dict)


@dataclass
class SftRecords:
    """The records of an sft run, split: per-source training records and validation records."""
    train: dict[str, Dataset]
    validation: Dataset | None
    stats: dict


def load_sft_records(recipe: "Recipe", seed: int) -> SftRecords:
    """The one record pipeline (hfkit.data.records): map fields, check every record, dedup, split per source
    (or, with `sft.group_field`, by group over all sources)."""
    cfg, data = recipe.task_config, recipe.data
    templates = recipe_templates(cfg)

    def shape(ds: Dataset, src, where: str) -> Dataset:
        ds = map_fields(ds, cfg, templates, where)
        if cfg.group_field and cfg.group_field not in ds.column_names:
            raise HfkitError(f"{where}: field '{cfg.group_field}' (sft.group_field) not found "
                             f"(columns: {', '.join(ds.column_names)})")
        return ds

    grouped = bool(cfg.group_field)
    got = gather_records(data, seed, shape=shape, key=lambda r: sorted((k, v) for k, v in r.items() if k[0] != "_"),
                         check=lambda everything: validate_records(everything, cfg, templates, seed),
                         keep=("_index", "_source") if grouped else ("_index",),
                         split="pooled" if grouped else "by_source", group_field=cfg.group_field,
                         validation_groups=[str(g) for g in cfg.validation_groups] or None)
    if grouped:  # back to per-source training sets (the mixture works on them)
        with quiet_datasets():
            train = {label: got.train.filter(lambda b: [s == label for s in b["_source"]], batched=True)
                     for label in got.labels}
            counts = {label: {"train": len(ds), "validation": sum(1 for s in got.validation["_source"] if s == label)}
                      for label, ds in train.items()}
            train = {label: ds.remove_columns("_source") for label, ds in train.items() if len(ds)}
            validation = got.validation.remove_columns("_source")
        per_source = {k: {"records": c["train"] + c["validation"], **c} for k, c in counts.items()}
    else:
        train, validation = got.train, got.validation
        per_source = {k: {"records": c["total"], "train": c["train"], "validation": c["validation"]}
                      for k, c in got.counts.items()}
    stats = {"removed_duplicates": got.removed_duplicates, "sources": per_source}
    if grouped:
        stats["split_by"] = cfg.group_field
        stats["validation_groups"] = len(set(validation[cfg.group_field])) if len(validation) else 0
    return SftRecords(train, validation if len(validation) else None, stats)


def _rows(batch: dict) -> list[dict]:
    keys = list(batch)
    return [dict(zip(keys, vals)) for vals in zip(*(batch[k] for k in keys))]


def prepare_sft_data(recipe: "Recipe", tokenizer, train_records: dict[str, Dataset], val_records: Dataset | None,
                     stats: dict, seed: int, seq2seq_config=None) -> SftData:
    cfg = recipe.task_config
    templates = recipe_templates(cfg)
    tokenized, dropped = {}, 0
    for label, ds in train_records.items():
        tokenized[label], d = tokenize_sft(ds, tokenizer, cfg, templates, seed, recipe.data.num_proc, seq2seq_config)
        dropped += d
        if len(tokenized[label]) == 0:
            raise HfkitError(f"data source '{label}': every record was dropped by truncation "
                             f"(sft.max_length={cfg.max_length})")
    mixture, report = sample_mixture(tokenized, {k: s for k, s in zip(train_records, recipe.data.sources)},
                                     recipe.data.mixture_tokens, seed)
    validation = None
    if val_records is not None and len(val_records):
        validation, d = tokenize_sft(val_records, tokenizer, cfg, templates, seed, recipe.data.num_proc,
                                     seq2seq_config)
        dropped += d
        validation = validation.remove_columns("num_tokens") if len(validation) else None
    if dropped:
        print(f"warning: {dropped} records dropped: prompt fills sft.max_length={cfg.max_length}, no answer left",
              file=sys.stderr)
    trained = sum(sum(1 for x in lab if x != -100) for lab in mixture["labels"])
    stats = {**stats, "mixture": report, "dropped_by_truncation": dropped, "train_examples": len(mixture),
             "train_tokens": int(sum(mixture["num_tokens"])), "trained_tokens": int(trained)}
    return SftData(mixture.remove_columns("num_tokens"), validation, val_records, templates, stats)


class PaddingFreeCollator(DataCollatorWithFlattening):
    """transformers' flattening collator, plus two things.

    `use_cache=False`: with a KV cache in the forward pass the model ignores the restarting position
    ids and lets packed examples attend to each other.
    `max_row_tokens`: with eager/SDPA attention a packed row costs (row length)^2 however it is
    masked, so consecutive examples are packed into rows of at most this many tokens (the batch
    becomes a few rows; only the short tail of each row but the longest is filler, which forms a
    segment of its own and carries no labels). None: the whole batch in one row, as with
    flash-attention's variable-length kernels.
    """

    def __init__(self, *args, max_row_tokens: int | None = None, pad_token_id: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_row_tokens = max_row_tokens
        self.pad_token_id = pad_token_id

    def __call__(self, features, return_tensors=None, separator_id=None):
        if not self.max_row_tokens:
            batch = super().__call__(features, return_tensors, separator_id)
            batch["use_cache"] = False
            return batch
        rows, row, used = [], [], 0
        for f in features:
            n = len(f["input_ids"])
            if row and used + n > self.max_row_tokens:
                rows.append(row)
                row, used = [], 0
            row.append(f)
            used += n
        rows.append(row)
        flat = [super(PaddingFreeCollator, self).__call__(r, "pt", separator_id) for r in rows]
        return pad_rows([{k: b[k][0] for k in ("input_ids", "labels", "position_ids")} for b in flat],
                        self.pad_token_id)


def pad_rows(rows: list[dict], pad_token_id: int) -> dict:
    """Rows of one or more examples (input_ids, labels, position_ids restarting at each example; an
    unpacked example may omit them) padded to the longest row: the filler is a segment of its own and
    carries no labels. `use_cache=False`: with a KV cache the model would ignore the restarting
    positions."""
    width = max(len(r["input_ids"]) for r in rows)
    out = {"input_ids": torch.full((len(rows), width), pad_token_id, dtype=torch.long),
           "labels": torch.full((len(rows), width), -100, dtype=torch.long),
           "position_ids": torch.zeros((len(rows), width), dtype=torch.long)}
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        out["input_ids"][i, :n] = torch.as_tensor(r["input_ids"])
        out["labels"][i, :n] = torch.as_tensor(r["labels"])
        out["position_ids"][i, :n] = torch.as_tensor(r["position_ids"]) if "position_ids" in r else torch.arange(n)
        out["position_ids"][i, n:] = torch.arange(width - n)  # filler: its own segment
    out["use_cache"] = False
    return out


class PackedRowsCollator:
    """Rows packed ahead of training (`pack_examples`: input_ids, labels, position_ids) padded to the
    batch's longest row; the filler is a segment of its own and carries no labels. Unpacked examples
    (validation) are rows of one example."""

    def __init__(self, pad_token_id: int = 0):
        self.pad_token_id = pad_token_id

    def __call__(self, features):
        return pad_rows(features, self.pad_token_id)


def sft_collator(cfg: SftConfig, tokenizer, model=None):
    if model is not None and getattr(model.config, "is_encoder_decoder", False):  # decoder inputs from the labels
        return DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100, padding="longest")
    if cfg.padding_free and cfg.packing_strategy == "bfd":
        return PackedRowsCollator(pad_token_id=tokenizer.pad_token_id or 0)
    if cfg.padding_free:
        return PaddingFreeCollator(return_position_ids=True, separator_id=-100, max_row_tokens=cfg.max_length,
                                   pad_token_id=tokenizer.pad_token_id or 0)
    return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, padding="longest")


@torch.no_grad()
def check_padding_free(model) -> None:
    """Refuse padding-free packing where the model would let packed examples see each other."""
    impl = getattr(model.config, "_attn_implementation", None) or "eager"
    if impl not in PACKING_ATTENTION:
        raise HfkitError(f"sft.padding_free=true does not support attn_implementation '{impl}' "
                         f"(supported: {', '.join(PACKING_ATTENTION)}); set sft.padding_free=false")
    was_training = model.training
    model.eval()
    try:
        g = torch.Generator().manual_seed(0)
        vocab = model.get_input_embeddings().num_embeddings
        a = torch.randint(0, vocab, (6,), generator=g)
        b = torch.randint(0, vocab, (5,), generator=g)
        dev = model.device
        packed = model(input_ids=torch.cat([a, b])[None].to(dev),
                       position_ids=torch.tensor([list(range(6)) + list(range(5))], device=dev), use_cache=False).logits
        alone = model(input_ids=b[None].to(dev), use_cache=False).logits
        if (packed[0, 6:] - alone[0]).abs().max().item() > 1e-3:
            raise HfkitError(f"sft.padding_free=true: {type(model).__name__} with attn_implementation '{impl}' "
                             f"does not isolate packed examples; set sft.padding_free=false")
    finally:
        model.train(was_training)


def _record_texts(records: dict[str, Dataset]):
    """Every string of the training records (a tokenizer trained here must cover them)."""
    for ds in records.values():
        for row in ds:
            for k, v in row.items():
                if isinstance(v, str) and not k.startswith("_"):
                    yield v
                elif k == "messages":
                    yield from (m["content"] for m in v)


@register
class SupervisedFineTuning(Task):
    name = "sft"
    section = "sft"
    config_class = SftConfig
    generates = True
    architectures = ("gpt2", "llama", "t5", "bart")  # encoder-decoders: the prompt is the encoder's input

    def check(self, recipe: "Recipe") -> None:
        cfg = recipe.task_config
        if recipe.adapter.virtual_tokens and cfg.padding_free:
            raise HfkitError(f"adapter.method={recipe.adapter.method} adds virtual tokens in front of every sequence, "
                             f"which padding-free packing cannot place: set sft.padding_free=false")
        for i, src in enumerate(recipe.data.sources):
            if not src.has_records:
                raise HfkitError(f"data.sources.{i}: the {src.kind} corpus is plain text, not instruction records")

    def sequence_length(self, recipe: "Recipe") -> tuple[int, str]:
        return recipe.task_config.max_length, "sft.max_length"

    def load(self, recipe: "Recipe", seed: int) -> SftRecords:
        return load_sft_records(recipe, seed)

    def tokenizer_texts(self, records: SftRecords):
        return _record_texts(records.train)

    def setup(self, recipe: "Recipe", tokenizer, model, data: Any = None) -> None:
        cfg = recipe.task_config
        if cfg.format == "chat" or cfg.chat_template:
            setup_chat_template(tokenizer, model, cfg.chat_template)

    def prepare(self, recipe: "Recipe", tokenizer, model, records: SftRecords, seed: int) -> Prepared:
        cfg, ev = recipe.task_config, recipe.eval
        enc_dec = model.config if model is not None and getattr(model.config, "is_encoder_decoder", False) else None
        if enc_dec is not None and (cfg.padding_free or cfg.format == "chat"):
            raise HfkitError(f"{type(model).__name__} is an encoder-decoder: the prompt goes to the encoder and the "
                             f"answer is the target, so set sft.padding_free=false and use the instruction or "
                             f"prompt_completion format")
        data = prepare_sft_data(recipe, tokenizer, records.train, records.validation, records.stats, seed, enc_dec)
        if cfg.padding_free and model is not None:
            check_padding_free(model)
        if cfg.padding_free:
            from ..data.packing import filler_fraction, pack_examples

            if cfg.packing_strategy == "bfd":
                data.train, data.stats["packing"] = pack_examples(data.train, cfg.max_length)
            # what the rows still waste, over one shuffled epoch of this run's batches
            from ..training.arguments import resolved

            batch = resolved(recipe.training, self.training_defaults(recipe)).per_device_train_batch_size
            data.stats["filler_fraction"] = round(filler_fraction(sft_collator(cfg, tokenizer, model), data.train,
                                                                  batch, seed), 4)
        chat = cfg.format == "chat"
        gen_kw = {"add_special_tokens": not chat, "stop_token_ids": chat_stop_ids(tokenizer) if chat else None}

        def generation_eval(m, progress: bool = False) -> dict:
            from ..evaluation.generation_eval import extracted_predictions, score_generations

            prompts, refs, templates = eval_prompts(data.eval_records, tokenizer, cfg, data.templates, seed,
                                                    ev.max_examples)
            return score_generations(m, tokenizer, prompts, refs, ev,
                                     lambda i, text: extracted_predictions([[text]], [templates[i]])[0], progress,
                                     **gen_kw)

        s = data.stats
        overview = [("train examples", s["train_examples"]), ("train tokens", s["train_tokens"]),
                    ("trained (answer) tokens", s["trained_tokens"]),
                    ("dropped by truncation", s["dropped_by_truncation"]),
                    ("batching", ("padding-free" + (f", best-fit rows ({s['packing']['rows']} rows, "
                                                    f"{s['packing']['row_fill']:.1%} full)" if "packing" in s else "")
                                  if cfg.padding_free else "padded")),
                    *((("filler (computed, no token)", f"{s['filler_fraction']:.1%}"),) if "filler_fraction" in s else ()),
                    ("validation examples", len(data.validation) if data.validation else 0)]
        has_gen_eval = bool(ev.metrics) and data.eval_records is not None and len(data.eval_records) > 0
        return Prepared(data.train, data.validation, sft_collator(cfg, tokenizer, model), s, overview,
                        generation_eval if has_gen_eval else None, gen_kw)

    def training_defaults(self, recipe: "Recipe") -> dict:
        if recipe.task_config.padding_free:
            return {}
        return {"train_sampling_strategy": "group_by_length"}  # similar lengths share a batch: little padding

    def prompt_format(self, recipe: "Recipe") -> PromptFormat | None:
        cfg = recipe.task_config
        if cfg.format == "chat":
            return None  # the run's chat template says it
        template = recipe_templates(cfg)[0]
        from ..data.templates import template_fields

        fields = template_fields(template.prompt)
        user = next((f for f in ("instruction", "prompt", "question") if f in fields), None)
        if user is None and len(fields) == 1:
            user = next(iter(fields))
        if user is None:
            return None
        return PromptFormat(template, user, {f: "" for f in fields if f != user})

    def generation_inputs(self, recipe: "Recipe", records, tokenizer, where: str, model_path: str):
        from ..evaluation.generation_eval import GenerationInputs

        cfg = recipe.task_config
        templates = recipe_templates(cfg)
        records = map_fields(records, cfg, templates, where)
        records = records.add_column("_index", list(range(len(records))))
        chat = cfg.format == "chat"
        if chat:
            setup_chat_template(tokenizer, None, cfg.chat_template)  # the run saved its template with the tokenizer
        prompts, refs, extractors = eval_prompts(records, tokenizer, cfg, templates, recipe.seed, None)
        gen_kw = {"add_special_tokens": not chat, "stop_token_ids": chat_stop_ids(tokenizer) if chat else None}
        return GenerationInputs(prompts, refs, extractors, gen_kw, [records[i] for i in range(len(records))])
