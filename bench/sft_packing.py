"""Useful (trained, non-padding) tokens per second of SFT: padding-free packing vs padded batches vs TRL.

Data: real English->German pairs from the machine's gettext catalogs (skewed lengths: most UI
strings are short, a few help texts are long), or, where there are none, a log-normal synthetic
mix. Same Llama model, tokenizer, prompt template, batch size, learning rate, max_length and steps
for every trainer; measured one after another in one process. TRL is a bench extra
(`pip install -e .[bench]`); without it that row is skipped.

    python bench/sft_packing.py [--steps 40] [--batch-size 32]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def pairs(n: int) -> list[dict]:
    try:
        from hfkit.data.gettext_pairs import gettext_pairs

        ds, _ = gettext_pairs("de", max_chars=600)
        rows = ds.shuffle(seed=0).select(range(min(n, len(ds)))).to_list()
        return [{"prompt": f"Translate to German: {r['source']}\nGerman:", "completion": f" {r['target']}"} for r in rows]
    except Exception:
        rng = np.random.default_rng(0)
        words = "open file save close the a of to and in is for on with".split()
        out = []
        for _ in range(n):
            k = int(np.clip(rng.lognormal(1.6, 0.9), 1, 120))
            text = " ".join(rng.choice(words, k))
            out.append({"prompt": f"Translate to German: {text}\nGerman:", "completion": " " + text.upper()})
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256)
    args = ap.parse_args()

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, LlamaConfig, Trainer, TrainingArguments

    from hfkit.data.tokenizer import train_tokenizer
    from hfkit.data.packing import filler_fraction, pack_examples
    from hfkit.tasks.sft import (PackedRowsCollator, PaddingFreeCollator, SftConfig, recipe_templates, sft_collator,
                                 tokenize_sft)

    rows = pairs(8000)
    tok = train_tokenizer((r["prompt"] + r["completion"] for r in rows), "bpe", 4000)
    cfg = SftConfig(format="prompt_completion", max_length=args.max_length)
    records = Dataset.from_list([{**r, "_index": i} for i, r in enumerate(rows)])
    data, _ = tokenize_sft(records, tok, cfg, recipe_templates(cfg), seed=0)
    lengths = np.asarray(data["num_tokens"])
    trained_per_example = float(np.mean([sum(1 for x in lab if x != -100) for lab in data["labels"]]))
    data = data.remove_columns("num_tokens")
    print(f"{len(rows)} examples; tokens per example: median {np.median(lengths):.0f}, mean {lengths.mean():.1f}, "
          f"p95 {np.percentile(lengths, 95):.0f}, max {lengths.max()}; {trained_per_example:.1f} trained tokens each")

    def model():
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(LlamaConfig(
            vocab_size=len(tok), hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=8,
            num_key_value_heads=4, max_position_embeddings=args.max_length, pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id))

    common = dict(max_steps=args.steps, per_device_train_batch_size=args.batch_size, learning_rate=1e-3,
                  logging_steps=args.steps, save_strategy="no", report_to="none", seed=0,
                  dataloader_pin_memory=False, disable_tqdm=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, collator, extra in [
            ("hfkit padding-free (rows <= max_length)",
             sft_collator(SftConfig(padding_free=True, max_length=args.max_length), tok), {}),
            ("hfkit padding-free (one row per batch)", PaddingFreeCollator(return_position_ids=True, separator_id=-100), {}),
            ("hfkit padded", sft_collator(SftConfig(padding_free=False), tok), {}),
            ("hfkit padded, length-grouped", sft_collator(SftConfig(padding_free=False), tok),
             {"train_sampling_strategy": "group_by_length"}),
        ]:
            t = Trainer(model=model(), args=TrainingArguments(output_dir=f"{tmp}/{len(results)}", **common, **extra),
                        train_dataset=data, data_collator=collator)
            t0 = time.perf_counter()
            t.train()
            results[name] = args.steps * args.batch_size * trained_per_example / (time.perf_counter() - t0)
        # best-fit decreasing rows (sft.packing_strategy: bfd): as many rows per step as give the same tokens
        packed, pstats = pack_examples(data, args.max_length)
        per_step = max(1, round(args.batch_size * lengths.mean() / args.max_length))
        per_row = float(np.mean([sum(1 for x in lab if x != -100) for lab in packed["labels"]]))
        t = Trainer(model=model(), args=TrainingArguments(output_dir=f"{tmp}/bfd", **{**common,
                    "per_device_train_batch_size": per_step}), train_dataset=packed,
                    data_collator=PackedRowsCollator(tok.pad_token_id or 0))
        t0 = time.perf_counter()
        t.train()
        results["hfkit padding-free, best-fit rows (bfd)"] = args.steps * per_step * per_row / (time.perf_counter() - t0)
        filler = {"hfkit padding-free (rows <= max_length)": filler_fraction(
                      sft_collator(SftConfig(padding_free=True, max_length=args.max_length), tok), data, args.batch_size),
                  "hfkit padding-free, best-fit rows (bfd)": filler_fraction(PackedRowsCollator(0), packed, per_step)}
        print(f"best-fit rows: {pstats['rows']} rows of <= {args.max_length} tokens for {pstats['examples']} examples, "
              f"{pstats['row_fill']:.1%} full; {per_step} rows per step")
        for k, v in filler.items():
            print(f"filler (computed positions without a token): {k}: {v:.1%}")
        try:
            import trl
            from trl import SFTConfig, SFTTrainer
        except ImportError:
            trl = None
            print("TRL not installed (pip install -e .[bench]): skipping the TRL row")
        if trl is not None:
            raw = Dataset.from_list(rows)
            for padding_free in (False, True):
                # TRL's padding-free mode needs its own packing (rows of max_length tokens, BFD)
                label = f"TRL {trl.__version__} SFTTrainer" + (" packing+padding_free" if padding_free else " padded")
                # packed rows hold ~max_length tokens: use as many rows per step as give the same tokens per step
                kw = dict(common)
                if padding_free:
                    kw["per_device_train_batch_size"] = max(1, round(args.batch_size * lengths.mean() / args.max_length))
                try:
                    sft_args = SFTConfig(output_dir=f"{tmp}/trl{int(padding_free)}", max_length=args.max_length,
                                         completion_only_loss=True, packing=padding_free, padding_free=padding_free,
                                         use_cpu=not torch.cuda.is_available(), bf16=torch.cuda.is_available(),
                                         **kw)
                    t = SFTTrainer(model=model(), args=sft_args, train_dataset=raw, processing_class=tok)
                    per_row = float(np.mean([sum(1 for x in lab if x != -100) for lab in t.train_dataset["labels"]]))
                    t0 = time.perf_counter()
                    t.train()
                    rows_seen = args.steps * kw["per_device_train_batch_size"]
                    results[label] = rows_seen * per_row / (time.perf_counter() - t0)
                except Exception as e:  # report, don't hide: some TRL modes refuse CPU attention
                    print(f"{label}: not run ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
    base = results["hfkit padded"]
    print(f"\n{'trainer':<40}{'useful tokens/s':>16}{'vs padded':>11}")
    for name, v in results.items():
        print(f"{name:<40}{v:>16,.0f}{v / base:>10.2f}x")
    pf = results["hfkit padding-free (rows <= max_length)"]
    bfd = results["hfkit padding-free, best-fit rows (bfd)"]
    print(f"best-fit rows / padding-free rows: {bfd / pf:.2f}x; / length-grouped padded: "
          f"{bfd / results['hfkit padded, length-grouped']:.2f}x")
    trl_rows = [v for k, v in results.items() if k.startswith("TRL")]
    print(f"\npadding-free / padded: {pf / base:.2f}x (goal >= 1.5)")
    if trl_rows:
        print(f"padding-free / best TRL: {pf / max(trl_rows):.2f}x (goal >= 1.0)")
    print(json.dumps({k: round(v) for k, v in results.items()}))


if __name__ == "__main__":
    main()
