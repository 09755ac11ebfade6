"""Batched generation vs one prompt at a time, and perplexity throughput, with the same model.

64 prompts (openings of real sentences of the built-in corpus, 3-12 words) are continued greedily
for 32 new tokens: once with hfkit's batched generation (length-sorted batches of 16 with left
padding), once one prompt per call. Same model, same settings, same thread count; the outputs are
compared too. Then corpus perplexity (sliding window) over the corpus, in tokens/s.

    python bench/generation.py [--model DIR] [--prompts 64] [--batch-size 16] [--max-new-tokens 32]

Without --model: GPT-2 4x192 (the demo's shape) with a BPE-4096 tokenizer trained here; weights are
random, which does not change the cost of a forward pass.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    a = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from hfkit.data.pydoc import default_corpus_documents
    from hfkit.data.tokenizer import train_tokenizer
    from hfkit.inference.generation import generate
    from hfkit.inference.scoring import perplexity

    docs = default_corpus_documents()
    if a.model:
        model, tok = AutoModelForCausalLM.from_pretrained(a.model), AutoTokenizer.from_pretrained(a.model)
        name = a.model
    else:
        tok = train_tokenizer(iter(docs), "bpe", 4096, 2, False)
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=192, n_layer=4, n_head=6, n_positions=256,
                                           bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
        name = "GPT-2 4x192 (random init), BPE 4096"
    model.eval()
    rng = random.Random(0)
    words = [d.split() for d in docs if len(d.split()) > 20]
    prompts = [" ".join(w[: rng.randint(3, 12)]) for w in rng.sample(words, a.prompts)]
    settings = {"max_new_tokens": a.max_new_tokens, "do_sample": False}

    generate(model, tok, prompts[:2], batch_size=2, **settings)  # warm-up
    t0 = time.perf_counter()
    batched = generate(model, tok, prompts, batch_size=a.batch_size, **settings)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = [generate(model, tok, [p], batch_size=1, **settings)[0] for p in prompts]
    t_single = time.perf_counter() - t0
    same = sum(b == s for b, s in zip(batched, single))

    text = docs[:60]
    t0 = time.perf_counter()
    ppl = perplexity(model, tok, text, block_size=128, stride=128, batch_size=16)
    t_ppl = time.perf_counter() - t0

    print(f"{name}; {a.prompts} prompts x {a.max_new_tokens} new tokens, greedy; {torch.get_num_threads()} threads")
    print(f"{'':<28}{'seconds':>9}{'prompts/s':>11}")
    print(f"{'batched (batch ' + str(a.batch_size) + ')':<28}{t_batched:>9.2f}{a.prompts / t_batched:>11.1f}")
    print(f"{'one by one':<28}{t_single:>9.2f}{a.prompts / t_single:>11.1f}")
    print(f"batched / one-by-one speed-up: {t_single / t_batched:.2f}x (goal >= 3x); "
          f"identical outputs: {same}/{a.prompts}")
    print(f"perplexity (block 128, stride 128): {ppl['tokens']:,} tokens in {t_ppl:.2f} s = "
          f"{ppl['tokens'] / t_ppl:,.0f} tokens/s")


if __name__ == "__main__":
    main()
