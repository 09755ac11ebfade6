"""The built-in sources: real data this machine has offline, each a `data.sources` kind with its own
small config (hfkit.data.sources holds files and Hub datasets). Importing this module registers them.

| kind | what | fields |
|---|---|---|
| default | English prose of `pydoc_data.topics`, one document per section | |
| pydoc_qa | a section's title -> its first paragraph (instruction records) | |
| pydoc_grammar_qa | grammar productions as extractive QA (SQuAD 2.0 style) | |
| gettext | English -> `lang` pairs from the gettext catalogs | lang, path, max_chars |
| gettext_language | UI strings labelled with their language | languages, path, max_records, max_chars |
| gettext_pair_match | (English, `lang`) pairs, matching or not | lang, path, max_records, max_chars |
| gettext_preferences | translation prompt, chosen, rejected (a hard negative; `on_policy`: the preference task samples) | lang, path, max_chars, max_records, rejected, policy, num_samples |
| python_tokens | the standard library's tokens tagged by kind | max_records |
| python_stdlib | the standard library's modules as documents | max_records |
| python_summaries | a docstring's description -> its summary line (document, summary, module) | max_records |
| python_code | a function's signature and docstring -> its body (prompt, completion, module) | max_records |
| instruction_mixture | several built-in tasks as instruction records, each task's definition its instruction (instruction, input, output, task) | tasks, max_records, max_chars, extra |
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from datasets import Dataset

from ..errors import HfkitError
from ..hub import looks_like_hub_id
from .gettext_pairs import DEFAULT_LOCALE_DIR
from .sources import KINDS, SourceConfig, file_kind, source_kind

LANGUAGE_ID_DEFAULT = ("de", "fr", "es", "it", "ru", "ja")


@dataclass
class BuiltinSource(SourceConfig):
    builtin = True

    def where(self) -> str:
        return f"{self.KIND} source"


@dataclass
class _Sampled(BuiltinSource):
    max_records: Optional[int] = None  # sample this many

    def check(self, key: str) -> None:
        if self.max_records is not None and self.max_records < 1:
            raise HfkitError(f"recipe key '{key}.max_records' must be >= 1, got {self.max_records}")


@source_kind("default")
@dataclass
class PydocCorpus(BuiltinSource):
    """English prose from Python's own documentation (`pydoc_data.topics`), one document per section."""
    has_records = False

    def label(self) -> str:
        return self.name or "pydoc"

    def load(self) -> Dataset:
        from .pydoc import default_corpus_documents

        return Dataset.from_dict({"text": default_corpus_documents()})


@source_kind("pydoc_qa")
@dataclass
class PydocQa(BuiltinSource):
    """Instruction records: a documentation section's title -> its first paragraph."""

    def load(self) -> Dataset:
        from .pydoc import pydoc_instructions

        return Dataset.from_list(pydoc_instructions())


@source_kind("pydoc_grammar_qa")
@dataclass
class PydocGrammarQa(BuiltinSource):
    """Extractive QA: the grammar productions of the language reference, with unanswerable questions."""

    def load(self) -> Dataset:
        from .pydoc_grammar import grammar_qa_records

        return grammar_qa_records()


@dataclass
class _Gettext(BuiltinSource):
    """The machine's gettext catalogs (`path`: a locale folder, default /usr/share/locale)."""
    path: Optional[str] = None  # locale folder
    max_chars: Optional[int] = None  # drop pairs longer than this

    @property
    def locale_dir(self) -> str:
        return self.path or DEFAULT_LOCALE_DIR


@dataclass
class _GettextPairs(_Gettext):
    lang: Optional[str] = None  # target language of the English->lang pairs (de, fr, ...)

    def check(self, key: str) -> None:
        if not self.lang:
            raise HfkitError(f"recipe key '{key}.lang' is required for a '{self.KIND}' source (e.g. de)")

    def label(self) -> str:
        return self.name or f"{self.KIND}_{self.lang}"


@source_kind("gettext")
@dataclass
class GettextPairs(_GettextPairs):
    """English -> `lang` translation pairs: source, target, catalog."""

    def load(self) -> Dataset:
        from .gettext_pairs import gettext_pairs

        return gettext_pairs(self.lang, self.locale_dir, max_chars=self.max_chars)[0]


@source_kind("gettext_pair_match")
@dataclass
class GettextPairMatch(_GettextPairs):
    """(English, `lang`) sentence pairs labelled as translations of each other or not."""
    max_records: Optional[int] = None

    def check(self, key: str) -> None:
        super().check(key)
        _Sampled.check(self, key)

    def load(self) -> Dataset:
        from .gettext_pairs import pair_match_records

        return pair_match_records(self.lang, self.locale_dir, self.max_records, self.max_chars)


@source_kind("gettext_preferences")
@dataclass
class GettextPreferences(_GettextPairs):
    """Translation preferences: prompt, chosen (the catalog's translation), rejected. What is rejected:
    another message's translation of similar length from the same catalog (hard_negative), or the worst
    of `num_samples` samples of the run at `policy` by chrF (on_policy: sampled by the preference task)."""
    max_records: Optional[int] = None
    rejected: Literal["hard_negative", "on_policy"] = "hard_negative"
    policy: Optional[str] = None  # on_policy: the run that samples (e.g. runs/sft_translate)
    num_samples: int = 2  # on_policy: samples per prompt

    def check(self, key: str) -> None:
        super().check(key)
        _Sampled.check(self, key)
        if self.rejected == "on_policy":
            if not self.policy:
                raise HfkitError(f"recipe key '{key}.policy' is required for rejected=on_policy: the run that samples "
                                 f"(e.g. runs/sft_translate)")
            if self.num_samples < 2:
                raise HfkitError(f"recipe key '{key}.num_samples' must be >= 2, got {self.num_samples}")
            from ..hub import check_model_ref

            check_model_ref(self.policy, f"recipe key '{key}.policy'")

    def load(self) -> Dataset:
        """The hard-negative records (on-policy rejections replace them in the preference task)."""
        from .preferences import gettext_preference_records

        return gettext_preference_records(self.lang, self.locale_dir, self.max_chars, self.max_records)


@source_kind("gettext_language")
@dataclass
class GettextLanguage(_Gettext):
    """UI strings labelled with their language (`languages`: the labels; `max_records` per language)."""
    languages: list[str] = field(default_factory=lambda: list(LANGUAGE_ID_DEFAULT))
    max_records: Optional[int] = None

    def check(self, key: str) -> None:
        if len(self.languages) < 2:
            raise HfkitError(f"recipe key '{key}.languages' needs at least two languages, got {self.languages}")
        _Sampled.check(self, key)

    def load(self) -> Dataset:
        from .gettext_pairs import language_id_records

        return language_id_records(self.languages, self.locale_dir, self.max_records, self.max_chars)


@source_kind("python_tokens")
@dataclass
class PythonTokens(_Sampled):
    """Token classification: the standard library's tokens tagged by kind (`max_records`: modules read)."""

    def load(self) -> Dataset:
        from .code_tokens import python_token_records

        return python_token_records(self.max_records or 60)


@source_kind("python_stdlib")
@dataclass
class PythonStdlib(_Sampled):
    """The standard library's modules as documents of real code (`max_records`: modules read)."""
    has_records = False

    def load(self) -> Dataset:
        from .code_tokens import stdlib_documents

        return stdlib_documents(self.max_records)


@source_kind("python_summaries")
@dataclass
class PythonSummaries(_Sampled):
    """Summarization: a standard-library docstring's description -> its PEP 257 summary line
    (`document`, `summary`; `module` for a split by module; `max_records`: modules read)."""

    def load(self) -> Dataset:
        from .docstrings import summarization_records

        return summarization_records(self.max_records)


@source_kind("python_code")
@dataclass
class PythonCode(_Sampled):
    """Code generation: a standard-library function's signature and docstring -> its body (`prompt`,
    `completion`; `module` for a split by module; `max_records`: modules read)."""

    def load(self) -> Dataset:
        from .docstrings import code_records

        return code_records(self.max_records)


# the built-in tasks of an instruction mixture: (source kind and its settings, input field, output field);
# each is named after its shipped task definition (hfkit/configs/tasks), whose definition is the instruction
MIXTURE_TASKS = {
    "summarize_docstring": (("python_summaries", {}), "document", "summary"),
    "complete_function": (("python_code", {}), "prompt", "completion"),
    "translate_de": (("gettext", {"lang": "de"}), "source", "target"),
    "answer_pydoc": (("pydoc_qa", {}), "instruction", "output"),
}


@source_kind("instruction_mixture")
@dataclass
class InstructionMixture(BuiltinSource):
    """Several built-in tasks as one set of instruction records (FLAN / Natural Instructions style): each
    record's `instruction` is its task's definition, `input` the example, `output` the answer, `task` its
    name (hold a task out entirely with sft.group_field: task and sft.validation_groups). `extra`: a JSONL
    of instruction records added as task `self_instruct` (what `hfkit data self-instruct` writes)."""
    tasks: list[str] = field(default_factory=lambda: list(MIXTURE_TASKS))
    max_records: Optional[int] = 2000  # per task, drawn at random (seeded) from those short enough
    max_chars: Optional[int] = 400  # drop examples whose input and output together are longer
    extra: Optional[str] = None

    def check(self, key: str) -> None:
        unknown = [t for t in self.tasks if t not in MIXTURE_TASKS]
        if unknown or not self.tasks:
            raise HfkitError(f"recipe key '{key}.tasks': {f'unknown task {unknown[0]!r}' if unknown else 'empty'} "
                             f"(tasks: {', '.join(MIXTURE_TASKS)})")
        if self.max_records is not None and self.max_records < 1:
            raise HfkitError(f"recipe key '{key}.max_records' must be >= 1, got {self.max_records}")
        if self.extra is not None and not Path(self.extra).is_file():
            raise HfkitError(f"recipe key '{key}.extra': no such file: {self.extra}")

    def label(self) -> str:
        return self.name or "instructions"

    def load(self) -> Dataset:
        from .task_definitions import load_definition

        rows: dict[str, list] = {"instruction": [], "input": [], "output": [], "task": []}
        for task in self.tasks:
            (kind, settings), inp, out = MIXTURE_TASKS[task]
            ds = KINDS[kind](**settings).load()
            instruction = load_definition(task, f"task '{task}'").definition.strip()
            keep = [i for i, (a, b) in enumerate(zip(ds[inp], ds[out]))
                    if a and b and (self.max_chars is None or len(a) + len(b) <= self.max_chars)]
            if self.max_records is not None and len(keep) > self.max_records:
                import random

                keep = sorted(random.Random(0).sample(keep, self.max_records))
            for i in keep:
                rows["instruction"].append(instruction)
                rows["input"].append(ds[i][inp])
                rows["output"].append(ds[i][out])
                rows["task"].append(task)
        if self.extra:
            from ..io import read_jsonl_objects

            for n, rec in read_jsonl_objects(self.extra, f"{self.KIND} extra"):
                if not isinstance(rec.get("instruction"), str) or not isinstance(rec.get("output"), str):
                    raise HfkitError(f"{self.extra} line {n}: an instruction record needs 'instruction' and 'output'")
                rows["instruction"].append(rec["instruction"])
                rows["input"].append(str(rec.get("input") or ""))
                rows["output"].append(rec["output"])
                rows["task"].append("self_instruct")
        return Dataset.from_dict(rows)


def source_from_spec(spec: str, text_field: str = "text") -> SourceConfig:
    """CLI shorthand: `default`, a file/folder path (kind from its extension), or `hub:owner/name`."""
    if spec == "default":
        return KINDS["default"]()
    if spec.startswith("hub:"):
        return KINDS["hub"](kind="hub", path=spec[4:], text_field=text_field)
    p = Path(spec)
    if p.exists():
        kind = file_kind(p)
        return KINDS[kind](kind=kind, path=spec, text_field=text_field)
    if looks_like_hub_id(spec) and "/" in spec:
        return KINDS["hub"](kind="hub", path=spec, text_field=text_field)
    raise HfkitError(f"data source not found: {spec} (give a file, a folder, 'default' or hub:owner/name)")


BUILTIN_KINDS = tuple(k for k, cls in KINDS.items() if cls.builtin)


def make_source(kind: str = "default", **fields) -> SourceConfig:
    """A source config of `kind` from its fields (Python's way to write a `data.sources` entry)."""
    if kind not in KINDS:
        raise HfkitError(f"unknown source kind '{kind}' (kinds: {', '.join(KINDS)})")
    return KINDS[kind](kind=kind, **fields)
