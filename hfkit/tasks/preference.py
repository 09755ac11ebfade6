"""Preference tuning through TRL: a reward model (`task: reward`, TRL's RewardTrainer), direct
preference optimisation (`task: dpo`, DPOTrainer; IPO and the other DPO-family losses by its
`loss_type`) and online RL against a computed reward (`task: grpo`, GRPOTrainer).

hfkit does not re-implement the losses: each task hands its records (TRL's standard formats, checked
up front by hfkit.data.preferences), its model (built or loaded, with hfkit's adapters: a LoRA
policy's reference is the same model with the adapter off, as TRL does) and its section — whose
keys are the TRL config's own field names — to TRL's trainer. hfkit adds the recipe, the data
sources, the held-out BLEU/chrF before and after, atomic checkpoints, reports and push.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from datasets import Dataset, concatenate_datasets

from ..data.records import gather_records
from ..data.preferences import check_preferences
from ..data.sources import quiet_datasets, source_label
from ..errors import HfkitError
from . import Prepared, Task, register

if TYPE_CHECKING:
    from ..sections import Recipe


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

    from ..data.tokenizer import load_tokenizer
    from ..inference.generation import generate
    from ..models import load_model

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


def _trl(name: str):
    try:
        import trl
    except ImportError:
        raise HfkitError("preference tuning needs TRL: pip install 'trl>=1.0'") from None
    return getattr(trl, name)


def documented_choices(config: str, name: str) -> list[str]:
    """The values TRL's help text for `config.name` lists ("Possible/Supported values are 'a', 'b'..."):
    TRL checks some only when its trainer starts; hfkit checks them when the recipe is read."""
    import re

    f = {f.name: f for f in dataclasses.fields(_trl(config))}.get(name)
    text = (f.metadata.get("help", "") if f else "").split("values are", 1)
    if len(text) < 2:
        return []
    return re.findall(r"'(\w+)'", re.split(r"\.\s", text[1], maxsplit=1)[0])


def check_choices(values: list[str], config: str, name: str, key: str) -> None:
    allowed = documented_choices(config, name)
    bad = next((v for v in values if allowed and v not in allowed), None)
    if bad is not None:
        raise HfkitError(f"recipe key '{key}': unknown value '{bad}' (TRL's {config}.{name}: {', '.join(allowed)})")


# TRL config fields that would load the model another way than the recipe's `model:` says (remote code)
_MODEL_LOADING = ("trust_remote_code", "model_init_kwargs")


@dataclass
class PreferenceSection:
    """Fields shared by the preference sections; the others are the TRL config's, by its names and
    with its defaults: those hfkit reads are declared below, every other field of the TRL config
    passes through (`options`, checked against the TRL class when the recipe is read, as `adapter:`
    is against peft's)."""
    fields: dict = field(default_factory=dict)  # rename columns: {prompt: question, chosen: good, ...}
    options: dict = field(default_factory=dict)  # the TRL config's other fields (truncation_mode, ...)

    HFKIT_FIELDS: ClassVar[tuple[str, ...]] = ("fields", "options")
    EXTRA_FIELD: ClassVar[str] = "options"
    TRL_CONFIG: ClassVar[str] = ""

    def trl_fields(self) -> dict:
        """The section's values for the TRL config (every field but hfkit's own)."""
        declared = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in self.HFKIT_FIELDS}
        return {**declared, **self.options}

    def check_options(self, prefix: str) -> None:
        """The pass-through fields: the TRL config's own (not TrainingArguments', which go in `training:`)."""
        if not self.options:
            return
        import transformers

        from ..schema import check_fields

        general = {f.name for f in dataclasses.fields(transformers.TrainingArguments)}
        for k in self.options:
            if k in general:
                raise HfkitError(f"recipe key '{prefix}.{k}' is a TrainingArguments field, for every task: set it as "
                                 f"'training.{k}'")
        declared = {f.name for f in dataclasses.fields(self)}
        for k in _MODEL_LOADING:
            if k in self.options:
                raise HfkitError(f"recipe key '{prefix}.{k}': how the model loads is the model section's "
                                 f"(model.trust_remote_code, model.revision, ...), for every task")
        self.options = check_fields(_trl(self.TRL_CONFIG), self.options, prefix, skip=general | declared)


@dataclass
class RewardSection(PreferenceSection):
    """Recipe section `reward`: trl.RewardConfig's own fields."""
    max_length: Optional[int] = 1024  # pairs whose chosen or rejected is longer are dropped (TRL)
    center_rewards_coefficient: Optional[float] = None  # pushes rewards towards mean zero (TRL)
    disable_dropout: bool = True

    TRL_CONFIG: ClassVar[str] = "RewardConfig"

    def validate(self, prefix: str) -> None:
        self.check_options(prefix)
        if self.max_length is not None and self.max_length < 2:
            raise HfkitError(f"recipe key '{prefix}.max_length' must be >= 2, got {self.max_length}")


@dataclass
class DpoSection(PreferenceSection):
    """Recipe section `dpo`: trl.DPOConfig's own fields."""
    beta: float = 0.1  # how far the policy may move from the reference (higher: less)
    loss_type: list[str] = field(default_factory=lambda: ["sigmoid"])  # sigmoid = DPO; ipo, hinge, robust, ...
    loss_weights: Optional[list[float]] = None
    label_smoothing: float = 0.0  # robust DPO / cDPO
    max_length: Optional[int] = 1024  # prompt + completion tokens (truncation_mode: which end TRL keeps)
    precompute_ref_log_probs: bool = False
    use_weighting: bool = False  # WPO
    ld_alpha: Optional[float] = None
    disable_dropout: bool = True

    TRL_CONFIG: ClassVar[str] = "DPOConfig"

    def validate(self, prefix: str) -> None:
        self.check_options(prefix)
        if self.beta <= 0:
            raise HfkitError(f"recipe key '{prefix}.beta' must be > 0, got {self.beta}")
        check_choices(self.loss_type, "DPOConfig", "loss_type", f"{prefix}.loss_type")
        if self.max_length is not None and self.max_length < 2:
            raise HfkitError(f"recipe key '{prefix}.max_length' must be >= 2, got {self.max_length}")


@dataclass
class GrpoSection(PreferenceSection):
    """Recipe section `grpo`: the reward functions (GRPOTrainer's `reward_funcs`, by the names of
    hfkit.training.rewards) and trl.GRPOConfig's own fields."""
    reward_funcs: list[str] = field(default_factory=lambda: ["chrf"])
    reward_weights: Optional[list[float]] = None
    num_generations: int = 8  # completions sampled per prompt (the group)
    max_completion_length: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.0  # KL to the reference model; 0: no reference model is kept (TRL's default)
    epsilon: float = 0.2  # clipping
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    num_iterations: int = 1
    mask_truncated_completions: bool = False
    log_completions: bool = False

    HFKIT_FIELDS: ClassVar[tuple[str, ...]] = ("fields", "options", "reward_funcs")
    TRL_CONFIG: ClassVar[str] = "GRPOConfig"

    def validate(self, prefix: str) -> None:
        from ..training.rewards import reward_function

        self.check_options(prefix)
        if not self.reward_funcs:
            raise HfkitError(f"recipe key '{prefix}.reward_funcs' is empty: name at least one reward")
        for i, name in enumerate(self.reward_funcs):
            reward_function(name, f"{prefix}.reward_funcs.{i}")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise HfkitError(f"recipe key '{prefix}.reward_weights' has {len(self.reward_weights)} weights for "
                             f"{len(self.reward_funcs)} reward functions")
        check_choices([self.loss_type], "GRPOConfig", "loss_type", f"{prefix}.loss_type")
        if self.num_generations < 2:
            raise HfkitError(f"recipe key '{prefix}.num_generations' must be >= 2 (advantages compare a group), "
                             f"got {self.num_generations}")
        if self.max_completion_length < 1:
            raise HfkitError(f"recipe key '{prefix}.max_completion_length' must be >= 1, got {self.max_completion_length}")


@dataclass
class PreferenceRecords:
    train: Dataset
    validation: Dataset | None
    stats: dict


def _trainer(base: str):
    """TRL's trainer `base` with hfkit's atomic checkpoints."""
    from ..training.trainer import AtomicCheckpoints

    cls = _trl(base)
    return type(f"Hfkit{base}", (AtomicCheckpoints, cls), {"perplexity_from_loss": False})


class TrlTask(Task):
    """What the TRL tasks share: records in TRL's formats, split like any source; TRL tokenizes."""
    records_kind: ClassVar[str] = "paired"  # or "prompt_only"
    trl_config: ClassVar[str]  # the TRL config class the trainer takes
    trl_trainer: ClassVar[str]
    causal = True
    # TRL's logged diagnostics (metrics.json), not scores for the results table
    diagnostics = ("eval_num_tokens", "eval_entropy", "eval_mean_token_accuracy", "eval_logits/chosen",
                   "eval_logits/rejected", "eval_logps/chosen", "eval_logps/rejected", "eval_min_reward",
                   "eval_max_reward")

    def check(self, recipe: "Recipe") -> None:
        for i, src in enumerate(recipe.data.sources):
            if src.weight is not None or src.epochs is not None:
                raise HfkitError(f"recipe key 'data.sources.{i}.{'weight' if src.weight is not None else 'epochs'}': "
                                 f"task {recipe.task} trains on every record once per epoch (no mixture weights)")
            if not src.has_records:
                raise HfkitError(f"data.sources.{i}: the {src.kind} corpus is plain text, not preference records")

    def sequence_length(self, recipe: "Recipe") -> tuple[int, str]:
        cfg = recipe.task_config
        if isinstance(cfg, GrpoSection):
            return cfg.max_completion_length, f"{self.section}.max_completion_length"
        return cfg.max_length or 1024, f"{self.section}.max_length"

    def arguments_class(self, recipe: "Recipe") -> type:
        return _trl(self.trl_config)

    def training_defaults(self, recipe: "Recipe") -> dict:
        # TRL's configs turn activation (gradient) checkpointing on to save GPU memory; hfkit's other tasks
        # leave it off (it recomputes every layer's forward): the recipe's `training` may turn it on
        return {**recipe.task_config.trl_fields(), "activation_checkpointing": False}

    def trainer_class(self, model):
        return _trainer(self.trl_trainer)

    def load(self, recipe: "Recipe", seed: int) -> PreferenceRecords:
        """The one record pipeline (hfkit.data.records): map fields, one format per run, dedup, split per source."""
        cfg, data = recipe.task_config, recipe.data
        fmt, sampled = [], {}

        def shape(ds: Dataset, src, where: str) -> Dataset:
            if getattr(src, "rejected", None) == "on_policy":  # the policy's own worst samples replace the hard negatives
                ds, report = on_policy_rejections(ds, src.policy, src.num_samples)
                sampled[source_label(src)] = report
            renames = {col: name for name, col in cfg.fields.items() if col != name}
            for col in renames:
                if col not in ds.column_names:
                    raise HfkitError(f"{where}: mapped field '{col}' ({self.section}.fields) not found "
                                     f"(columns: {', '.join(ds.column_names)})")
            with quiet_datasets():
                ds = ds.rename_columns(renames) if renames else ds
            found = check_preferences(ds, where, self.records_kind)
            if fmt and found != fmt[0]:
                raise HfkitError(f"{where}: {found['style']} records with {found['prompt']} prompt, but data.sources.0 "
                                 f"has {fmt[0]['style']} with {fmt[0]['prompt']} prompt (one format per run)")
            fmt[:] = [found]
            return ds

        got = gather_records(data, seed, shape=shape,
                             key=lambda r: [r[k] for k in ("prompt", "chosen", "rejected") if k in r])
        with quiet_datasets():
            train_all = concatenate_datasets(list(got.train.values())).shuffle(seed=seed)
        stats = {"format": fmt[0], "removed_duplicates": got.removed_duplicates, "sources": got.counts,
                 "train_records": len(train_all), "validation_records": len(got.validation),
                 **({"on_policy": sampled} if sampled else {})}
        return PreferenceRecords(train_all, got.validation if len(got.validation) else None, stats)

    def setup(self, recipe: "Recipe", tokenizer, model, data: Any = None) -> None:
        """Conversational records go through the tokenizer's chat template: ChatML where it has none
        (hfkit.data.templates, as for sft), added before any adapter."""
        if data is not None and data.stats["format"]["style"] == "conversational":
            from ..data.templates import setup_chat_template

            setup_chat_template(tokenizer, model)

    def tokenizer_texts(self, records: PreferenceRecords):
        for row in records.train:
            for k in ("prompt", "chosen", "rejected", "reference"):
                v = row.get(k)
                if isinstance(v, str):
                    yield v
                elif isinstance(v, list):  # with the role: a chat template writes it
                    yield from (f"{m['role']}\n{m['content']}" for m in v)

    def prepare(self, recipe: "Recipe", tokenizer, model, records: PreferenceRecords, seed: int) -> Prepared:
        overview = [("train records", records.stats["train_records"]),
                    ("validation records", records.stats["validation_records"]),
                    ("format", f"{records.stats['format']['style']}, {records.stats['format']['prompt']} prompt"),
                    ("trainer", f"trl.{self.trl_trainer}")]
        prepared = Prepared(records.train, records.validation, None, dict(records.stats), overview,
                            loss_is_token_nll=False)
        if self.generates and recipe.eval.metrics and records.validation is not None:
            prepared.generation_eval = _generation_eval(recipe, tokenizer, records.validation)
        return prepared

    def make_trainer(self, model, args, prepared: Prepared, tokenizer, callbacks: list):
        return self.trainer_class(model)(model=model, args=args, train_dataset=prepared.train,
                                         eval_dataset=prepared.validation, processing_class=tokenizer,
                                         callbacks=callbacks, **prepared.trainer_kwargs)

    def generation_inputs(self, recipe: "Recipe", records, tokenizer, where: str, model_path: str):
        """`hfkit eval bleu --model RUN --data F`: the records' prompts, scored against `reference`,
        `answer` or `chosen` (the section's `fields` renames apply)."""
        from ..evaluation.generation_eval import GenerationInputs

        if not self.generates:
            return super().generation_inputs(recipe, records, tokenizer, where, model_path)
        renames = {col: name for name, col in recipe.task_config.fields.items() if col != name and col in records.column_names}
        records = records.rename_columns(renames) if renames else records
        if "prompt" not in records.column_names:
            raise HfkitError(f"{where}: records have no 'prompt' field (columns: {', '.join(records.column_names)})")
        prompts, refs = _eval_pairs(records, tokenizer, None)
        return GenerationInputs(prompts, refs, [None] * len(prompts), {}, [records[i] for i in range(len(records))])


def _eval_pairs(records: Dataset, tokenizer, limit: int | None) -> tuple[list[str], list[str]]:
    """Held-out prompts (rendered with the chat template when conversational) and references: the
    record's `reference`, else its chosen answer."""
    from ..training.rewards import completion_text

    n = len(records) if limit is None else min(limit, len(records))
    prompts, refs = [], []
    for i in range(n):
        r = records[i]
        p = r["prompt"] if "prompt" in r else None
        if isinstance(p, list):
            p = tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
        ref = r.get("reference") or r.get("answer") or r.get("chosen")
        if ref is None:
            raise HfkitError(f"eval.metrics: held-out record {i} has no 'reference', 'answer' or 'chosen' to score against")
        prompts.append(p or "")
        refs.append(completion_text(ref) if not isinstance(ref, str) else ref.strip())
    return prompts, refs


def _generation_eval(recipe: "Recipe", tokenizer, validation: Dataset):
    ev = recipe.eval

    def generation_eval(m, progress: bool = False) -> dict:
        from ..evaluation.generation_eval import score_generations
        from ..training.rewards import completion_text

        prompts, refs = _eval_pairs(validation, tokenizer, ev.max_examples)
        return score_generations(m, tokenizer, prompts, refs, ev, lambda i, text: completion_text(text), progress)

    return generation_eval


@register
class RewardModelling(TrlTask):
    """A reward model: a sequence-classification head scoring a whole (prompt +) answer, trained by
    TRL's RewardTrainer on chosen/rejected pairs (Bradley-Terry); reports pairwise accuracy."""
    name = "reward"
    section = "reward"
    config_class = RewardSection
    auto_class = "AutoModelForSequenceClassification"
    peft_task_type = "SEQ_CLS"
    pipeline_tag = "text-classification"
    pipeline_task = "text-classification"
    architectures = ("gpt2", "llama", "bert")
    causal = False
    trl_config = "RewardConfig"
    trl_trainer = "RewardTrainer"

    def check_tokenizer(self, tokenizer, where: str) -> None:
        if tokenizer.eos_token is None and tokenizer.sep_token is None:
            raise HfkitError(f"tokenizer '{where}' has neither an eos_token nor a sep_token to end each answer with")

    def setup(self, recipe: "Recipe", tokenizer, model, data: Any = None) -> None:
        super().setup(recipe, tokenizer, model, data)
        if tokenizer.eos_token is None:  # an encoder's (BERT's [SEP]): TRL ends every answer with the eos token
            tokenizer.eos_token = tokenizer.sep_token

    def model_overrides(self, recipe: "Recipe", data: Any, tokenizer) -> dict:
        out = {"num_labels": 1, "id2label": {0: "reward"}, "label2id": {"reward": 0}}
        if tokenizer is not None:
            out["pad_token_id"] = tokenizer.pad_token_id  # decoders score the last non-pad token
        return out


@register
class DirectPreference(TrlTask):
    """DPO and its family (IPO, hinge, robust... by `dpo.loss_type`) with TRL's DPOTrainer; the
    reference model is a frozen copy of the starting policy, or with a LoRA adapter the same model
    with the adapter off. Reports reward margins and preference accuracy (eval) and BLEU/chrF of
    held-out generations before and after."""
    name = "dpo"
    section = "dpo"
    config_class = DpoSection
    generates = True
    trl_config = "DPOConfig"
    trl_trainer = "DPOTrainer"

    def reference_forwards(self, recipe: "Recipe") -> float:
        return 1.0  # the reference's log-probabilities of every chosen and rejected token (precomputed or not)

    def prepare(self, recipe: "Recipe", tokenizer, model, records: PreferenceRecords, seed: int) -> Prepared:
        import copy

        from peft import PeftModel

        prepared = super().prepare(recipe, tokenizer, model, records, seed)
        # the reference: TRL reloads the policy's checkpoint; a frozen copy of the starting policy is
        # the same model and also serves one built here. None with an adapter (TRL turns it off instead).
        if model is not None and not isinstance(model, PeftModel) and not recipe.task_config.precompute_ref_log_probs:
            ref = copy.deepcopy(model).eval()
            ref.requires_grad_(False)
            prepared.trainer_kwargs["ref_model"] = ref
        if recipe.task_config.precompute_ref_log_probs:
            ref = "log-probabilities precomputed before training"
        else:
            ref = "the policy with its adapter off" if recipe.adapter.is_peft else "a frozen copy of the starting policy"
        prepared.overview.append(("reference model", ref))
        return prepared


@register
class GroupRelativePolicyOptimization(TrlTask):
    """Online RL: TRL's GRPOTrainer samples `num_generations` completions per prompt, scores them
    with the recipe's reward functions (hfkit.training.rewards) and moves the policy towards the
    better ones of each group."""
    name = "grpo"
    section = "grpo"
    config_class = GrpoSection
    generates = True
    records_kind = "prompt_only"
    trl_config = "GRPOConfig"
    trl_trainer = "GRPOTrainer"

    def training_defaults(self, recipe: "Recipe") -> dict:
        # TRL evaluates GRPO by sampling groups; hfkit's held-out BLEU/chrF (eval.metrics) is the measure
        # the prompt records' other columns (reference...) reach the reward functions
        # (the rollouts carry no input_ids for Trainer to count tokens by)
        return {**super().training_defaults(recipe), "eval_strategy": "no", "eval_on_start": False,
                "remove_unused_columns": False, "include_num_input_tokens_seen": "no"}

    def training_summary(self, log_history: list[dict]) -> dict:
        """The mean reward of the sampled completions over the first and the last fifth of the logged steps."""
        rewards = [h["reward"] for h in log_history if "reward" in h]
        if not rewards:
            return {}
        k = max(1, len(rewards) // 5)
        return {"mean reward, first logs": round(sum(rewards[:k]) / k, 4),
                "mean reward, last logs": round(sum(rewards[-k:]) / k, 4), "logged steps": len(rewards)}

    def prepare(self, recipe: "Recipe", tokenizer, model, records: PreferenceRecords, seed: int) -> Prepared:
        from ..training.rewards import reward_function

        cfg = recipe.task_config
        prepared = super().prepare(recipe, tokenizer, model, records, seed)
        prepared.validation = None  # scored by generation (eval.metrics), not by TRL's sampled evaluation
        prepared.trainer_kwargs["reward_funcs"] = [reward_function(n, f"grpo.reward_funcs.{i}")
                                                   for i, n in enumerate(cfg.reward_funcs)]
        prepared.overview.append(("rewards", ", ".join(cfg.reward_funcs)))
        return prepared
