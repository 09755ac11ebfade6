"""Tasks: what a run trains, one module each, registered by name (`task:` in a recipe).

A task is four narrow parts: its data (recipe section, checks across sections, records -> tokenized
train/validation data, collator and the data report), its model (the Auto class it builds or loads,
its head, peft's task type), its trainer (arguments class and defaults, trainer, the summary rows and
the metric keys the run report shows or hides) and its use of a saved run (pipeline, prompt format,
evaluation inputs).
The run (`hfkit.run.train`) calls these in order and never asks which task it is running.

Adding a task is one module in this package (found at import): a `Task` subclass with `@register`.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import HfkitError

from ..sections import Recipe  # noqa: F401 (what every hook reads)

DEFAULT_TASK = "clm"  # the task of a recipe that names none


@dataclass
class Prepared:
    """What `Task.prepare` hands the run."""
    train: Any  # datasets.Dataset of model inputs
    validation: Any  # or None
    collator: Callable
    stats: dict  # the data report: counts, mixture, packing, truncation (goes into metrics.json)
    overview: list[tuple[str, Any]]  # rows of the table printed when the run starts
    generation_eval: Callable[..., dict] | None = None  # (model, progress) -> held-out scores by generation
    generate_kwargs: dict = field(default_factory=dict)  # how the run's `generate:` samples are produced
    compute_metrics: Callable | None = None  # Trainer's, for validation metrics beyond the loss
    preprocess_logits_for_metrics: Callable | None = None
    loss_is_token_nll: bool = True  # the loss is a mean token NLL: exp(loss) is logged as perplexity
    chars_per_token: float | None = None  # validation characters per scored token (bits/char is logged when set)
    trainer_kwargs: dict = field(default_factory=dict)  # what else the task's trainer takes (reward functions...)


@dataclass
class PromptFormat:
    """How a run without a chat template takes one user message: its own prompt template, the field
    the message fills (the others empty), and how the answer is read back from the generated text."""
    template: Any  # hfkit.data.templates.Template
    user_field: str
    other_fields: dict = field(default_factory=dict)

    def prompt(self, message: str) -> str:
        return self.template.render_prompt({**self.other_fields, self.user_field: message})

    def answer(self, generated: str) -> str:
        return self.template.extract_answer(generated)


class TaskData:
    """The data part of a task: its recipe section, checks, and records -> model inputs."""
    section: ClassVar[str | None] = None  # the recipe section this task owns (e.g. "sft")
    config_class: ClassVar[type | None] = None  # its dataclass
    streams: ClassVar[bool] = False  # whether `data.sources` may stream (tasks that pack running text)

    def check(self, recipe: "Recipe") -> None:
        """Checks across sections that concern this task (the recipe is otherwise valid), before any work."""

    def sequence_length(self, recipe: "Recipe") -> tuple[int, str]:
        """The longest sequence the task trains on, and the recipe key that sets it."""
        return recipe.data.block_size, "data.block_size"

    def special_tokens(self, recipe: "Recipe") -> list[str]:
        """Special tokens the task needs beyond the usual ones; a tokenizer trained here gets them."""
        return []

    def check_tokenizer(self, tokenizer, where: str) -> None:
        """The special tokens the task needs."""
        if tokenizer.eos_token is None:
            raise HfkitError(f"tokenizer '{where}' has no eos_token, needed to separate documents")

    def load(self, recipe: "Recipe", seed: int) -> Any:
        """Read the data (no tokenization yet): a corpus, records..."""
        raise NotImplementedError

    def tokenizer_texts(self, data: Any) -> Iterable[str]:
        """Texts to train a tokenizer on when the recipe has none (the training split)."""
        raise NotImplementedError

    def prepare(self, recipe: "Recipe", tokenizer, model, data: Any, seed: int) -> Prepared:
        """Tokenized train/validation data, collator and report. `model` is None for a data report."""
        raise NotImplementedError


class TaskModel:
    """The model part of a task: the Auto class it builds or loads, its head, peft's task type."""
    auto_class: ClassVar[str] = "AutoModelForCausalLM"  # what the run builds or loads
    peft_task_type: ClassVar[str | None] = "CAUSAL_LM"
    architectures: ClassVar[tuple[str, ...]] = ("gpt2", "llama")  # model.architecture presets it builds
    causal: ClassVar[bool] = True  # left-to-right LM: perplexity, generation, in-context evaluation apply

    def model_class(self, recipe: "Recipe") -> str:
        """The transformers Auto class the run builds or loads (a recipe setting may change it)."""
        return self.auto_class

    def model_overrides(self, recipe: "Recipe", data: Any, tokenizer) -> dict:
        """Config fields the task's head needs (num_labels, id2label...); `data` and `tokenizer` are
        None when the model is only checked before any data is read."""
        return {}

    def setup(self, recipe: "Recipe", tokenizer, model, data: Any = None) -> None:
        """Adjust tokenizer and model before the adapter is applied (chat template, new tokens); `data`
        is what `load` returned."""


class TaskTrainer:
    """The trainer part of a task: its arguments class and defaults, its trainer, and what the run's
    report shows of the training logs (the summary rows, the perplexity key, the figures it hides)."""
    # what the run's results table reports (hfkit.evaluation.run_report): the validation perplexity (the
    # first of these keys logged), and logged figures that are diagnostics, not scores (metrics.json only)
    perplexity_keys: ClassVar[tuple[str, ...]] = ("eval_perplexity",)
    diagnostics: ClassVar[tuple[str, ...]] = ()

    def training_defaults(self, recipe: "Recipe") -> dict:
        """TrainingArguments defaults of this task (the recipe's `training` section wins)."""
        return {}

    def arguments_class(self, recipe: "Recipe") -> type:
        """The TrainingArguments class the task's trainer takes (a TRL task: its trainer's config)."""
        from transformers import Seq2SeqTrainingArguments

        return Seq2SeqTrainingArguments

    def trainer_class(self, model):
        """hfkit's Trainer for the model (Seq2SeqTrainer's subclass for encoder-decoders)."""
        from ..training.trainer import trainer_class_for

        return trainer_class_for(model)

    def make_trainer(self, model, args, prepared: Prepared, tokenizer, callbacks: list):
        """The trainer of a run (a TRL task passes what its trainer takes: reward functions...)."""
        return self.trainer_class(model)(model=model, args=args, train_dataset=prepared.train,
                                         eval_dataset=prepared.validation, data_collator=prepared.collator,
                                         processing_class=tokenizer, callbacks=callbacks,
                                         compute_metrics=prepared.compute_metrics,
                                         preprocess_logits_for_metrics=prepared.preprocess_logits_for_metrics)

    def reference_forwards(self, recipe: "Recipe") -> float:
        """Forward-only passes of a frozen reference model per trained token (DPO: one), for the run's
        FLOP count."""
        return 0.0

    def training_summary(self, log_history: list[dict]) -> dict:
        """Figures from the training logs that the task reports ({label: value}; GRPO: the mean reward
        at the start and at the end of training)."""
        return {}


class TaskUse:
    """The part of a task that uses a saved run: pipelines and cards, chat and serving, evaluation."""
    pipeline_tag: ClassVar[str] = "text-generation"  # for model cards
    pipeline_task: ClassVar[str | None] = "text-generation"  # transformers.pipeline's name for it, where it has one
    generates: ClassVar[bool] = False  # has held-out generations to score (`eval.metrics`)

    def prompt_format(self, recipe: "Recipe") -> PromptFormat | None:
        """The run's own single-turn prompt format, for chat and serving without a chat template (None:
        the task has none)."""
        return None

    def generation_inputs(self, recipe: "Recipe", records, tokenizer, where: str, model_path: str):
        """Prompts and references for `hfkit eval bleu|...` on a run of this task without --template."""
        raise HfkitError(f"'{model_path}' was trained by a {recipe.task} recipe, which has no prompt format: "
                         f"give --template and --target-field")


class Task(TaskData, TaskModel, TaskTrainer, TaskUse):
    """A task: its four narrow parts (defaults here suit a causal LM). Each caller reads only the part it
    needs: the job all four, the run report `TaskTrainer`, cards, chat and eval `TaskUse`."""
    name: ClassVar[str]


TASKS: dict[str, Task] = {}


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task available by its name."""
    if cls.name in TASKS:
        raise RuntimeError(f"task '{cls.name}' registered twice")
    TASKS[cls.name] = cls()
    return cls


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise HfkitError(f"recipe key 'task': unknown task '{name}' (tasks: {', '.join(sorted(TASKS))})")
    return TASKS[name]


for _m in pkgutil.iter_modules(__path__):  # every module here is a task
    importlib.import_module(f"{__name__}.{_m.name}")
