"""What the task heads share (classification, token classification, extractive QA): labelled records
read from any source and split (hfkit.data.records), a label list checked against every record
before any work, the head's config fields (num_labels, id2label, label2id), and scores on held-out
records before training (the new head only) and after. Not a task itself.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..data.records import Records, load_labelled_records
from ..errors import HfkitError
from . import Task

if TYPE_CHECKING:
    from ..sections import Recipe


class LabelledTask(Task):
    """A task that trains a new head on labelled records."""
    causal = False
    generates = False
    architectures = ("bert", "gpt2", "llama")

    def fields(self, cfg) -> list[str]:
        """The record columns the task reads."""
        raise NotImplementedError

    def text_columns(self, cfg) -> list[str]:
        """The columns that hold text (what a tokenizer trained here learns from)."""
        raise NotImplementedError

    def record_labels(self, cfg, records) -> list[list[str]]:
        """The label names each record carries (several for token tags)."""
        raise NotImplementedError

    def check_records(self, cfg, ds) -> None:
        """The task's own checks of every record (shapes, offsets), naming the source and record."""

    def reshape(self, ds, where: str):
        """A source in another layout -> records with `fields` (e.g. nested SQuAD JSON)."""
        return ds

    # --- checks
    def check(self, recipe: "Recipe") -> None:
        section = self.section
        for i, src in enumerate(recipe.data.sources):
            if not src.has_records:
                raise HfkitError(f"data.sources.{i}: the {src.kind} corpus is plain text, not labelled records")
        if recipe.generate.prompts:
            raise HfkitError(f"recipe key 'generate.prompts': task {recipe.task} trains a {section} head, which "
                             f"does not generate text")
        a = recipe.adapter
        if a.method == "selective" and not a.train_head:
            raise HfkitError(f"adapter.method=selective with task {recipe.task}: the {section} head is new and must "
                             f"train: set adapter.train_head=true")

    def sequence_length(self, recipe: "Recipe") -> tuple[int, str]:
        return recipe.task_config.max_length, f"{self.section}.max_length"

    def check_tokenizer(self, tokenizer, where: str) -> None:
        if tokenizer.pad_token is None and tokenizer.eos_token is None:
            raise HfkitError(f"tokenizer '{where}' has neither a pad_token nor an eos_token to pad batches with")

    # --- data
    def load(self, recipe: "Recipe", seed: int) -> Records:
        cfg = recipe.task_config
        records = load_labelled_records(recipe.data, self.fields(cfg), seed, cfg.group_field, self.section,
                                        reshape=self.reshape)
        records.text_columns = self.text_columns(cfg)
        for ds in (records.train, records.validation):  # every record, before the tokenizer and the model
            if ds is not None:
                self.check_records(cfg, ds)
        records.labels = self.labels(recipe, records)
        return records

    def tokenizer_texts(self, records: Records):
        for row in records.train.select_columns(records.text_columns):
            for v in row.values():
                yield from (v if isinstance(v, list) else [v])

    def labels(self, recipe: "Recipe", records: Records | None) -> list[str]:
        """The recipe's label list, else every label of the training records (sorted). Every record's
        labels are checked against it."""
        cfg, section = recipe.task_config, self.section
        if records is None:
            return list(cfg.labels) if cfg.labels else ["LABEL_0", "LABEL_1"]  # a placeholder for checks
        if cfg.labels:
            labels = list(cfg.labels)
            where = f"{section}.labels"
        else:
            labels = sorted({x for ls in self.record_labels(cfg, records.train) for x in ls})
            where = "the labels of the training records"
        known = set(labels)
        for ds in (records.train, records.validation):
            if ds is None:
                continue
            for row, ls in zip(ds.select_columns(["_source", "_record"]), self.record_labels(cfg, ds)):
                bad = next((x for x in ls if x not in known), None)
                if bad is not None:
                    hint = "" if cfg.labels else f"; list every label in {section}.labels"
                    raise HfkitError(f"data source '{row['_source']}' record {row['_record']}: label '{bad}' is not "
                                     f"in {where} ({', '.join(map(str, labels[:20]))}){hint}")
        if len(labels) < 2:
            raise HfkitError(f"{where}: a classifier needs at least two labels, got {labels}")
        return labels

    def model_overrides(self, recipe: "Recipe", data: Any, tokenizer) -> dict:
        labels = data.labels if data is not None else self.labels(recipe, None)
        out = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
               "label2id": {name: i for i, name in enumerate(labels)}}
        if tokenizer is not None:
            out["pad_token_id"] = tokenizer.pad_token_id  # decoders pool the last non-pad token
        return out


def keeps_token_types(model) -> bool:
    """Pass `token_type_ids` only to models that embed them (BERT-style, two or more segment types)."""
    return model is None or getattr(model.config, "type_vocab_size", 0) > 1


def require_fast(tokenizer, what: str) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise HfkitError(f"{what} needs a fast tokenizer (offsets and word ids); {type(tokenizer).__name__} is "
                         f"not one: use a checkpoint that ships tokenizer.json, or set tokenizer.path to one")
