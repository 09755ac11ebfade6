"""hfkit's `Trainer`: atomic checkpoints and perplexity next to every evaluation loss.

Every task trains through this class (or a subclass of it, or of one of transformers' and TRL's
Trainer subclasses combined with `AtomicCheckpoints`).
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from transformers import Seq2SeqTrainer, Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from ..io import give_umask_modes
from .checkpoints import write_manifest


STAGING_DIR = ".incomplete"  # checkpoints are written here, then renamed into output_dir when complete


class AtomicCheckpoints:
    """Mixin for any `Trainer`: each checkpoint is written into `output_dir/.incomplete/checkpoint-N`
    and renamed to `output_dir/checkpoint-N` once every rank has written its part, with a manifest of
    its files' sizes and the model's signature. A kill at any moment leaves no `checkpoint-N` folder
    that `resume_from_checkpoint` would pick and fail to load.
    Also reports perplexity = exp(eval loss) wherever an eval loss is logged."""

    _staging = False
    _resuming_from: str | None = None  # the checkpoint train() resumes from
    perplexity_from_loss = True  # false where the loss is not a token NLL (MLM + NSP)
    chars_per_token: float | None = None  # validation characters per scored token: bits/char, comparable across tokenizers

    def __init__(self, *args, **kwargs):
        model = kwargs.get("model") if "model" in kwargs else (args[0] if args else None)
        # Trainer sets config.use_cache from TrainingArguments (False) for training; saved configs keep
        # the model's own value, so that generate() after loading uses its KV cache as usual
        self._saved_use_cache = getattr(getattr(model, "config", None), "use_cache", None)
        super().__init__(*args, **kwargs)

    # --- a streaming run's data (hfkit.data.streaming.BlockStream): read by this process, resumed from its state
    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        self._resuming_from = resume_from_checkpoint if isinstance(resume_from_checkpoint, str) else None
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _stream(self):
        from ..data.streaming import BlockStream

        return self.train_dataset if isinstance(self.train_dataset, BlockStream) else None

    def _blocks_per_step(self) -> int:
        return self._train_batch_size * self.args.gradient_accumulation_steps

    def get_train_dataloader(self):
        """A stream's blocks in batches, as they come: each rank reads its own part of the stream
        (`split_dataset_by_node`), so accelerate is told not to dispatch or slice them again."""
        stream = self._stream()
        if stream is None:
            return super().get_train_dataloader()
        from accelerate.data_loader import prepare_data_loader
        from torch.utils.data import DataLoader

        stream.keep = 4 * self._blocks_per_step() + 64  # the Trainer and accelerate read ahead less than this
        loader = DataLoader(stream, batch_size=self._train_batch_size, collate_fn=self.data_collator,
                            pin_memory=self.args.dataloader_pin_memory)
        return prepare_data_loader(loader, self.args.device, num_processes=1, process_index=0,
                                   put_on_device=True, dispatch_batches=False, rng_types=None)

    def get_resumed_dataloader(self, dataloader, num_batches: int):
        """A stream continues from the state its checkpoint saved (nothing is read twice); without one
        (an older checkpoint) it is read again from its start and the trained batches are skipped."""
        stream = self._stream()
        if stream is not None and self._resuming_from:
            consumed = stream.load(self._resuming_from, self.args.process_index)
            if consumed is not None:
                if consumed != num_batches * self._train_batch_size:
                    from ..errors import HfkitError

                    raise HfkitError(f"resume: {self._resuming_from} saved the stream after {consumed} blocks, but "
                                     f"{num_batches} batches of {self._train_batch_size} were trained: the batch "
                                     f"size or gradient accumulation changed since the checkpoint")
                return dataloader
        return super().get_resumed_dataloader(dataloader, num_batches)

    def _save(self, output_dir=None, state_dict=None):
        config = getattr(self.model, "config", None)
        restore = config is not None and self._saved_use_cache is not None
        if restore:
            training_value, config.use_cache = config.use_cache, self._saved_use_cache
        try:
            super()._save(output_dir, state_dict)
        finally:
            if restore:
                config.use_cache = training_value
        if self.args.should_save:  # safetensors shards are written through temporary files (0600)
            give_umask_modes(output_dir if output_dir is not None else self.args.output_dir)

    def _get_output_dir(self, trial):
        run_dir = super()._get_output_dir(trial)
        return os.path.join(run_dir, STAGING_DIR) if self._staging else run_dir

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = Path(super()._get_output_dir(trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staged, final = run_dir / STAGING_DIR / name, run_dir / name
        if self.args.should_save and staged.exists():
            shutil.rmtree(staged)  # debris of a save that was killed
        self.accelerator.wait_for_everyone()
        self._staging = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging = False
        if (stream := self._stream()) is not None:  # each rank's place in its stream
            stream.save(staged, self.args.process_index, self.state.global_step * self._blocks_per_step())
        self.accelerator.wait_for_everyone()  # every rank's files (RNG states, shards) are in
        if self.args.should_save:
            best = self.state.best_model_checkpoint
            if best and Path(best).parent == staged.parent:  # Trainer saw the staged path: point at the final one
                self.state.best_model_checkpoint = str(run_dir / Path(best).name)
                self.state.save_to_json(str(staged / "trainer_state.json"))
            write_manifest(staged, self.model)  # sizes of every file and the model's signature: resume checks them
            if final.exists():
                shutil.rmtree(final)
            os.replace(staged, final)
            try:
                staged.parent.rmdir()
            except OSError:
                pass
            rotate_checkpoints(output_dir=str(run_dir), save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        for key in [k for k in logs if k.endswith("eval_loss") and self.perplexity_from_loss]:
            logs[key[: -len("loss")] + "perplexity"] = math.exp(min(logs[key], 50.0))
            if self.chars_per_token:
                logs[key[: -len("loss")] + "bits_per_char"] = logs[key] / math.log(2) / self.chars_per_token
        super().log(logs, *args, **kwargs)


class HfkitTrainer(AtomicCheckpoints, Trainer):
    """`Trainer` with atomic checkpoints and perplexity logging."""


class HfkitSeq2SeqTrainer(AtomicCheckpoints, Seq2SeqTrainer):
    """`Seq2SeqTrainer` (encoder-decoder models) with atomic checkpoints and perplexity logging."""


class CountingTrainer(HfkitTrainer):
    """A count-based model (the n-gram LM, whose class says `counted = True`): `train()` counts the
    training blocks once (the model's `fit_counts`), timed like a training run, with no steps;
    evaluation and saving are Trainer's."""
    counted = True

    def train(self, resume_from_checkpoint=None, **kwargs):
        import time

        from transformers.trainer_utils import TrainOutput

        ids = self.train_dataset["input_ids"]
        t0 = time.time()
        self.model.fit_counts(ids)
        seconds = round(time.time() - t0, 2)
        tokens = sum(len(x) for x in ids)
        return TrainOutput(0, 0.0, {"train_runtime": seconds, "train_tokens": tokens,
                                    "train_tokens_per_second": round(tokens / max(seconds, 1e-9), 1),
                                    "counted_ngrams": int(self.model.config.num_ngrams)})


def trainer_class_for(model) -> type:
    """Seq2SeqTrainer's subclass for an encoder-decoder, the counting one for a count-based model,
    Trainer's for any other model."""
    if getattr(type(model), "counted", False):
        return CountingTrainer
    return HfkitSeq2SeqTrainer if getattr(model.config, "is_encoder_decoder", False) else HfkitTrainer
