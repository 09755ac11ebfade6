"""What a training run reports: the overview table when it starts; at the end `metrics.json`, the loss
curve (`loss.png`) and the results table (validation perplexity before/after, the task's other
held-out scores, generation and in-context scores, throughput, FLOPs and utilisation, samples).

Which validation metrics are the task's scores is the task's to say (`perplexity_keys`,
`diagnostics`: logged, kept in metrics.json, left out of the table); Trainer's own bookkeeping is
left out for every task."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Trainer's own figures of an evaluation: in metrics.json, not scores
TRAINER_FIGURES = ("epoch", "eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second",
                   "eval_perplexity")


@dataclass
class RunReport:
    title: str
    perplexity_keys: tuple[str, ...] = ("eval_perplexity",)  # the first logged is the table's perplexity
    diagnostics: tuple[str, ...] = ()  # the task's logged figures that are not scores
    show: bool = True  # print the tables (the main process, not --json)

    def overview(self, rows: list) -> None:
        from ..display import print_table

        if self.show:
            print_table(self.title, rows)

    def finish(self, metrics: dict, log_history: list[dict], folder: Path, shown_as: Path) -> None:
        """Write metrics.json and loss.png into `folder`; print the results (`shown_as`: where the run
        ends up, when it is written into a staging folder)."""
        from ..display import plot_loss
        from ..io import write_json

        write_json(folder / "metrics.json", metrics)
        plot_loss(log_history, folder / "loss.png", metrics.get("eval_before"))
        if self.show:
            self.print_summary(metrics, shown_as)

    def summary_rows(self, metrics: dict, out: Path) -> list[tuple]:
        rows = []
        if "eval_before" not in metrics and "eval_perplexity" in metrics.get("eval_after", {}):  # counted, not trained
            rows.append(("validation perplexity", metrics["eval_after"]["eval_perplexity"]))
        if "eval_before" in metrics and "eval_after" in metrics:
            before, after = metrics["eval_before"], metrics["eval_after"]
            key = next((k for k in self.perplexity_keys if k in after), None)
            if key:
                b, a = before[key], after[key]
                what = "validation perplexity" if key == "eval_perplexity" else \
                    f"validation {key[5:].replace('_perplexity', '').upper()} perplexity"
                rows += [(f"{what} before", b), (f"{what} after", a), ("improvement", f"{b / a:.1f}x")]
            hidden = {*TRAINER_FIGURES, *self.diagnostics, *self.perplexity_keys}
            for k, a in after.items():  # the task's other held-out scores (accuracy, F1, exact match...)
                if k in before and isinstance(a, float) and k not in hidden:
                    rows.append((f"{k[5:].replace('_', ' ')} before -> after", f"{before[k]:.4g} -> {a:.4g}"))
        after, before = metrics.get("generation_after", {}), metrics.get("generation_before", {})
        for name, a in after.items():
            if isinstance(a, float) and name in before:
                rows.append((f"held-out {name} before -> after", f"{before[name]:.2f} -> {a:.2f}"))
        for name, a in metrics.get("icl_after", {}).items():
            b = metrics["icl_before"][name]
            rows += [(f"icl {name} {k} before -> after", f"{b[k]:.1f} -> {a[k]:.1f}")
                     for k in ("acc", "acc_norm", "exact_match") if k in a]
        rows += list(metrics.get("training_summary", {}).items())
        t = metrics["train"]
        rows += [("train loss (mean)", t.get("train_loss")), ("train time (s)", t.get("train_runtime"))]
        if t.get("train_tokens_per_second"):
            rows.append(("tokens/s (training)", f"{t['train_tokens_per_second']:,.0f}"))
        if t.get("train_flops"):
            rows.append(("train FLOPs", f"{t['train_flops']:.3g} ({t['train_flops_per_token']:.3g} per token)"))
        if t.get("utilisation") is not None:
            rows.append(("FLOP/s, utilisation", f"{t['train_flops_per_second']:.3g}, {t['utilisation']:.1%} of the "
                                                f"{t['peak_source']} peak {t['peak_flops_per_second']:.3g}"))
        rows.append(("output", str(out)))
        return rows

    def print_summary(self, metrics: dict, out: Path) -> None:
        from ..display import print_table

        print_table("hfkit results", self.summary_rows(metrics, out))
        for s in metrics.get("samples", []):
            for o in s["outputs"]:
                print(f"\n--- sample ---\n{s['prompt']}{o}")
