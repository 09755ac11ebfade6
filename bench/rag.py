"""Retrieval quality on real data, and whether retrieval helps a small generator — in one run.

1. Index the built-in corpus (the 208 sections of Python's pydoc topics) with MiniLM + FAISS, chunks of
   128 tokens overlapping by 32 (`hfkit rag index default`).
2. Queries: each section's title, and separately a sentence from the middle of its body. A query is
   answered when a chunk of its section (or of an identical-titled copy of it) is retrieved. Reports
   recall@1/5/10 and MRR (over the top 10) for dense (MiniLM + FAISS), BM25 (bm25s) and hybrid
   (reciprocal rank fusion).
3. The built-in pydoc Q&A records (a section's title as a question -> its first paragraph): the
   conditional perplexity of the reference answer under a run of this toolkit (default: the demo,
   runs/clm_pretrain, 256 positions), given the question alone and given the question plus the top
   retrieved chunk in the `rag` library template. Answers longer than half the generator's window are
   left out; a prompt longer than the rest loses its oldest tokens (lm-eval's truncation).

    python bench/rag.py [--generator runs/clm_pretrain] [--index DIR] [--k 2] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def middle_sentence(doc: str) -> str | None:
    body = "\n".join(doc.splitlines()[2:])
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(body.split())) if len(s.split()) >= 6]
    return sentences[len(sentences) // 2] if sentences else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--generator", default="runs/clm_pretrain")
    ap.add_argument("--index", default=None, help="an index of the default corpus (default: built here)")
    ap.add_argument("--k", type=int, default=1, help="chunks in the generator's prompt")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    from hfkit.prompting.rag import Retriever, build_index, corpus_documents, rag_prompt, retrieval_scores

    docs = corpus_documents("default")
    index = a.index
    t0 = time.time()
    if index is None:
        index = str(Path(tempfile.mkdtemp(prefix="hfkit-rag-bench-")) / "index")
        meta = build_index(docs, index, progress=True)
        print(f"indexed {meta['documents']} sections as {meta['chunks']} chunks in {time.time() - t0:.0f} s")
    r = Retriever(index)
    by_title: dict[str, set[int]] = {}
    for i, (title, _) in enumerate(docs):
        by_title.setdefault(title, set()).add(i)
    sets = {"title": [(title, by_title[title]) for title, _ in docs]}
    sets["middle sentence"] = [(s, by_title[title]) for title, text in docs if (s := middle_sentence(text))]
    results = {"index": r.meta, "retrieval": {}}
    rows = []
    for name, pairs in sets.items():
        for mode in ("dense", "bm25", "hybrid"):
            sc = retrieval_scores(r, [q for q, _ in pairs], [g for _, g in pairs], mode)
            results["retrieval"][f"{name}/{mode}"] = sc
            rows.append(f"| {name} | {mode} | {sc['n']} | {sc['recall@1']:.3f} | {sc['recall@5']:.3f} | "
                        f"{sc['recall@10']:.3f} | {sc['mrr']:.3f} |")
    print("\n| queries | retriever | n | recall@1 | recall@5 | recall@10 | MRR |\n|---|---|---|---|---|---|---|")
    print("\n".join(rows))

    # retrieval and a small generator: perplexity of the reference answers
    gen = Path(a.generator)
    if not gen.exists():
        print(f"\n(no generator at {gen}: run `make demo` for the perplexity comparison)")
    else:
        from hfkit.data.pydoc import pydoc_instructions
        from hfkit.data.tokenizer import load_tokenizer
        from hfkit.inference.scoring import loglikelihoods
        from hfkit.models import load_model

        model, tok = load_model(str(gen)), load_tokenizer(str(gen))
        # answers that leave the generator's window room for a context (at most half of its positions)
        limit = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
        qa = [q for q in pydoc_instructions() if len(tok(" " + q["output"], add_special_tokens=False)["input_ids"])
              <= limit // 2]
        questions = [q["instruction"] for q in qa]
        found = r.search(questions, a.k, "dense")
        plain = [f"Question: {q}\nAnswer:" for q in questions]
        with_rag = [rag_prompt(q, [r.chunks[i] for i, _ in hits]) for q, hits in zip(questions, found)]
        answers = [" " + q["output"] for q in qa]
        n_tokens = sum(len(tok(x, add_special_tokens=False)["input_ids"]) for x in answers)
        ppl = {}
        for name, prompts in (("question only", plain), (f"question + top-{a.k} chunks", with_rag)):
            lls = loglikelihoods(model, tok, list(zip(prompts, answers)), batch_size=8, progress=True)
            ppl[name] = math.exp(-sum(ll for ll, _ in lls) / n_tokens)
        contains = sum(any(q["output"][:60] in r.chunks[i].text for i, _ in hits) for q, hits in zip(qa, found))
        results["generator"] = {"model": str(gen), "records": len(qa), "answer_tokens": n_tokens,
                                "perplexity": {k: round(v, 2) for k, v in ppl.items()},
                                "answer_in_retrieved_chunks": round(contains / len(qa), 4)}
        print(f"\nconditional perplexity of {len(qa)} pydoc Q&A reference answers ({n_tokens} tokens) under {gen}:")
        for k, v in ppl.items():
            print(f"  {k:<28} {v:8.2f}")
        print(f"  ratio (question only / with retrieval): {ppl['question only'] / list(ppl.values())[1]:.2f}x; "
              f"the answer's opening is in a retrieved chunk for {contains}/{len(qa)} questions")
    results["seconds"] = round(time.time() - t0, 1)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
