"""`hfkit rag index|query`: retrieval-augmented generation over a chunked, embedded, FAISS-indexed corpus."""
from __future__ import annotations

import json
import sys

from .common import add_generation_options, add_json, add_overwrite, generation_kwargs, subcommands, number


def register(sub) -> None:
    r = sub.add_parser("rag", help="retrieval-augmented generation: index a corpus, query it with a generator")
    rs = subcommands(r, "rag_command")
    i = rs.add_parser("index", help="chunk documents, embed them (MiniLM) and build a FAISS index")
    i.add_argument("corpus", help="'default' (the built-in corpus), a text file or folder, or JSONL/CSV/Parquet records")
    i.add_argument("--out", required=True, help="the index folder (new, empty, or an index hfkit wrote with --overwrite)")
    i.add_argument("--chunk-size", type=number(int, min=1), default=128, help="tokens per chunk (the embedding model's; default 128)")
    i.add_argument("--chunk-overlap", type=number(int, min=0), default=32, help="tokens shared by consecutive chunks (default 32)")
    i.add_argument("--embedding-model", default=None, help="sentence-transformers model (default: all-MiniLM-L6-v2)")
    i.add_argument("--text-field", default="text", help="records: the field with the text")
    i.add_argument("--source-field", default=None, help="records: the field that names the source (cited)")
    add_overwrite(i, "an index hfkit wrote at --out")
    add_json(i)
    i.set_defaults(handler=run_index)
    q = rs.add_parser("query", help="retrieve top-k chunks, prompt the generator with them, answer citing sources")
    q.add_argument("index", help="the index folder")
    q.add_argument("question", nargs="+", help="one or more questions")
    q.add_argument("--model", default=None, help="the generator (run folder or Hub id); without it: retrieval only")
    q.add_argument("-k", "--chunks", type=number(int, min=1), default=4, dest="k", help="chunks to retrieve (default 4)")
    q.add_argument("--mode", choices=["dense", "bm25", "hybrid"], default="dense",
                   help="dense (MiniLM + FAISS), bm25, or hybrid (reciprocal rank fusion of both)")
    q.add_argument("--prompt-template", default="rag", help="a library template with the chunks (default: rag)")
    q.add_argument("--embedding-model", default=None,
                   help="refuse the index unless it was built with this embedding model")
    add_generation_options(q)
    add_json(q)
    q.set_defaults(handler=run_query)


def run_index(args) -> int:
    from pathlib import Path

    from ..prompting.embeddings import DEFAULT_ENCODER
    from ..prompting.rag import build_index, check_chunking, check_index_destination, corpus_documents

    check_index_destination(Path(args.out), args.overwrite)  # before any work
    check_chunking(args.chunk_size, args.chunk_overlap, args.embedding_model or DEFAULT_ENCODER)
    docs = corpus_documents(args.corpus, args.text_field, args.source_field)
    meta = build_index(docs, args.out, args.embedding_model or DEFAULT_ENCODER, args.chunk_size, args.chunk_overlap,
                       args.overwrite, progress=not args.json)
    if args.json:
        print(json.dumps({"index": args.out, **meta}, indent=2))
    else:
        print(f"indexed {meta['documents']} documents as {meta['chunks']} chunks of {meta['chunk_size']} tokens "
              f"(overlap {meta['chunk_overlap']}) with {meta['embedding_model']} -> {args.out}")
    return 0


def run_query(args) -> int:
    from ..errors import HfkitError
    from ..prompting.library import get_template
    from ..prompting.rag import Retriever, answer

    if args.k < 1:
        raise HfkitError(f"-k must be >= 1, got {args.k}")
    get_template(args.prompt_template)
    retriever = Retriever(args.index, args.embedding_model)
    if not args.model:  # retrieval only
        found = retriever.search(args.question, args.k, args.mode)
        rows = [{"question": q, "sources": [{"n": n, "source": retriever.chunks[i].source, "score": round(s, 4),
                                             "text": retriever.chunks[i].text} for n, (i, s) in enumerate(hits, 1)]}
                for q, hits in zip(args.question, found)]
    else:
        from .common import load_model_and_tokenizer

        model, tokenizer = load_model_and_tokenizer(args.model)
        rows = answer(retriever, args.question, model, tokenizer, args.k, args.mode, args.prompt_template,
                      batch_size=args.batch_size, seed=args.seed, **generation_kwargs(args))
        cut = sum(r["in_prompt"] < r["retrieved"] for r in rows)
        if cut and not args.json:
            print(f"note: {cut} prompt(s) hold fewer chunks than retrieved, to fit the model's window", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    for row in rows:
        print(f"Q: {row['question']}")
        if "answer" in row:
            print(f"A: {row['answer']}")
        for s in row["sources"]:
            print(f"  [{s['n']}] {s['source']} (score {s['score']:.3f}): {' '.join(s['text'].split())[:100]}")
        print()
    return 0
