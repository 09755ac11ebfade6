"""Training machinery shared by every task: TrainingArguments, the Trainer, callbacks, checkpoints, launching."""
