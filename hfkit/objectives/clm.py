"""Causal-LM pretraining: tokenize -> weighted mixture -> pack into blocks -> `Trainer`.

The shapes are those of transformers' `run_clm.py`, with exact packing and perplexity logging.
"""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from ..data.corpus import Corpus, sample_mixture
from ..data.packing import pack_sequences, tokenize_documents
from ..errors import HfkitError
from ..recipe import Recipe


STAGING_DIR = ".incomplete"  # checkpoints are written here, then renamed into output_dir when complete


class CausalLMTrainer(Trainer):
    """`Trainer` that reports perplexity = exp(eval loss) wherever it logs an eval loss, and writes
    each checkpoint atomically: into `output_dir/.incomplete/checkpoint-N`, renamed to
    `output_dir/checkpoint-N` once every rank has written its part. A kill at any moment leaves no
    `checkpoint-N` folder that `resume_from_checkpoint` would pick and fail to load."""

    _staging = False

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
        self.accelerator.wait_for_everyone()  # every rank's files (RNG states, shards) are in
        if self.args.should_save:
            best = self.state.best_model_checkpoint
            if best and Path(best).parent == staged.parent:  # Trainer saw the staged path: point at the final one
                self.state.best_model_checkpoint = str(run_dir / Path(best).name)
                self.state.save_to_json(str(staged / "trainer_state.json"))
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
        for key in [k for k in logs if k.endswith("eval_loss")]:
            logs[key[: -len("loss")] + "perplexity"] = math.exp(min(logs[key], 50.0))
        super().log(logs, *args, **kwargs)


@dataclass
class ClmData:
    train: Dataset
    validation: Dataset | None
    stats: dict


def prepare_clm_data(recipe: Recipe, tokenizer, corpus: Corpus, seed: int) -> ClmData:
    """Tokenize each training source, draw the weighted mixture, and pack train and validation."""
    cfg = recipe.data
    tokenized = {k: tokenize_documents(ds, tokenizer, cfg.num_proc) for k, ds in corpus.train.items()}
    mixture, mix_report = sample_mixture(tokenized, corpus.sources, cfg.mixture_tokens, seed)
    train, train_pack = pack_sequences(mixture, cfg.block_size)
    if train_pack.blocks == 0:
        raise HfkitError(
            f"data: the training mixture has {train_pack.tokens} tokens, fewer than one block "
            f"(data.block_size={cfg.block_size}); add data or lower block_size"
        )
    validation, val_stats = None, None
    if len(corpus.validation):
        val_tok = tokenize_documents(corpus.validation, tokenizer, cfg.num_proc)
        validation, val_pack = pack_sequences(val_tok, cfg.block_size)
        val_stats = val_pack.as_dict()
        if val_pack.blocks == 0:
            validation = None  # too little held-out text for one block: no validation
    stats = {**corpus.stats, "mixture": mix_report, "train_packing": train_pack.as_dict(),
             "validation_packing": val_stats}
    return ClmData(train.with_format("numpy"), validation.with_format("numpy") if validation else None, stats)
