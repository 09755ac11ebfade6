"""`hfkit.run.train(recipe, overrides)`: one run, for every task, as a handful of steps.

recipe -> the output folder planned and every setting checked (hfkit.job) -> the folder claimed
(hfkit.outputs.claim: locked, marked, finished or cleaned up) -> the job built (data, tokenizer,
model, adapter, TrainingArguments) -> fitted (hfkit.training.fit) -> saved -> reported
(hfkit.evaluation.run_report). The task (hfkit.tasks) fills in what differs. A run that fails leaves
no debris, and an earlier run it was to replace as it was. Several runs: hfkit.sweep.
"""
from __future__ import annotations

import time
from pathlib import Path

from .evaluation.run_report import RunReport
from .job import assemble, base_model_info, finished_run, output_plan, preflight
from .outputs import claim
from .recipe import Recipe, load_recipe
from .training.fit import Fit, fix_best_checkpoint_paths, resume_point


def train(recipe: str | Path | Recipe, overrides: list[str] | dict | None = None, quiet: bool = False) -> dict:
    """Run one training recipe; returns its metrics (also written to `output_dir/metrics.json`). A sweep
    of runs goes through `hfkit.train` (hfkit.sweep.train), which calls this for each of them.

    The output folder is planned first (new, empty, resumed, or replaced at the end), every setting
    is checked before any data is read, and a finished run asked to resume is left as it is."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    plan = output_plan(recipe)  # the other ranks of a launched run leave the checks to rank 0
    preflight(recipe)
    if (done := finished_run(plan, recipe)) is not None:
        return done  # nothing more to train: said so, the run left as it is
    with claim(plan, "recipe key 'training.output_dir'", "continue it with resume_from_checkpoint=auto",
               after_move=fix_best_checkpoint_paths, task=recipe.task, base_model=base_model_info(recipe)):
        t0 = time.time()
        job = assemble(recipe, str(plan.workdir))
        resume = resume_point(job.args, job.model, quiet)  # known before anything is written
        plan.changed = True  # from here on a resumed run is written into
        job.save_recipe(plan.workdir)
        fit = Fit(job.make_trainer, job.model, job.args, resume, *job.flops_setting(),
                  evaluate=job.prepared.validation is not None)
        main = fit.main_process  # scoring by generation, sampling and writing: once
        report = RunReport(f"hfkit {recipe.task} run", job.task.perplexity_keys, job.task.diagnostics,
                           show=main and not quiet)
        metrics = job.first_metrics(fit.parameters())
        report.overview(job.overview(metrics["parameters"]))
        metrics.update(job.held_out_scores("before", report.show) if main else {})
        metrics.update(fit.run(replacing=plan.mode == "replace"))
        plan.done = fit.state  # where training ended, for the folder's marker
        metrics.update(job.after_training(fit.trainer, plan.workdir, main, report.show))
        metrics["wall_seconds"] = round(time.time() - t0, 1)
        if main:
            report.finish(metrics, fit.trainer.state.log_history, plan.workdir, plan.final)
    return metrics
