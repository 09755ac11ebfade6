"""Tokenize-and-pack throughput and peak memory: hfkit in memory, hfkit streaming, and `group_texts`
from transformers' run_clm.py.

All run on the same JSONL corpus (the built-in pydoc prose, repeated with numbered copies), with the
same tokenizer, each in a fresh subprocess with its own empty datasets cache (so none reads another's
cached map results). Prints tokens/s, peak RSS and tokens dropped, and the ratios. With several
`--sizes`, every method runs at every size and the slope of peak memory against corpus size is printed:
streaming must stay flat.

    python bench/packing.py [--mb 50] [--block-size 512] [--num-proc 2]
    python bench/packing.py --sizes 100,300,1000 --methods run_clm,hfkit,stream
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_corpus(path: Path, mb: int) -> int:
    from hfkit.data.pydoc import default_corpus_documents

    docs = default_corpus_documents()
    size, copy = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while size < mb * 1_000_000:
            for d in docs:
                line = json.dumps({"text": f"[copy {copy}] {d}"}) + "\n"
                f.write(line)
                size += len(line.encode())
            copy += 1
    return size


def worker(method: str, corpus: str, tokenizer_dir: str, block_size: int) -> dict:
    from datasets import load_dataset
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    if method == "stream":  # one pass of the training stream: read, tokenize, shuffle (1000 documents), pack
        from hfkit.data.corpus import DataConfig
        from hfkit.data.sources import KINDS
        from hfkit.data.streaming import build_streaming_corpus, stream_corpus

        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        cfg = DataConfig(sources=[KINDS["json"](path=corpus, streaming=True)], validation_fraction=0,
                         block_size=block_size)
        stream = stream_corpus(cfg, tok, build_streaming_corpus(cfg, 0), 0).train
        n_blocks = 0
        for _ in stream:  # until the second pass begins (the blocks still in the shuffle buffer are not counted)
            if stream._live.epoch:
                break
            n_blocks += 1
        seconds = time.perf_counter() - t0
        n_tokens = n_blocks * block_size
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {"method": method, "seconds": seconds, "tokens": n_tokens, "blocks": n_blocks, "dropped_tokens": 0,
                "tokens_per_s": n_tokens / seconds, "peak_rss_mb": peak / 1024, "rss_growth_mb": (peak - base_rss) / 1024}
    ds = load_dataset("json", data_files=corpus, split="train")
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if method.startswith("hfkit"):  # hfkit, or hfkitN: with num_proc=N
        from hfkit.data.packing import pack_sequences, tokenize_documents

        procs = int(method[5:]) if method[5:] else None
        tokenized = tokenize_documents(ds, tok, procs)
        blocks, stats = pack_sequences(tokenized, block_size, procs)
        n_tokens, n_blocks, dropped = stats.tokens, stats.blocks, stats.dropped_tokens
    else:  # run_clm.py, verbatim in substance: tokenize, then group_texts over 1000-example map batches
        from itertools import chain

        def tokenize_function(examples):
            return tok(examples["text"])

        tokenized = ds.map(tokenize_function, batched=True, remove_columns=["text"])

        def group_texts(examples):
            concatenated = {k: list(chain(*examples[k])) for k in examples.keys()}
            total_length = len(concatenated[list(examples.keys())[0]])
            total_length = (total_length // block_size) * block_size
            result = {k: [t[i: i + block_size] for i in range(0, total_length, block_size)]
                      for k, t in concatenated.items()}
            result["labels"] = result["input_ids"].copy()
            return result

        blocks = tokenized.map(group_texts, batched=True)
    seconds = time.perf_counter() - t0
    if not method.startswith("hfkit"):  # counted after the clock stopped
        import pyarrow.compute as pc

        n_tokens = int(pc.sum(pc.list_value_length(tokenized.with_format("arrow")[:]["input_ids"])).as_py())
        n_blocks = len(blocks)
        dropped = n_tokens - n_blocks * block_size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"method": method, "seconds": seconds, "tokens": n_tokens, "blocks": n_blocks,
            "dropped_tokens": dropped, "tokens_per_s": n_tokens / seconds,
            "peak_rss_mb": peak / 1024, "rss_growth_mb": (peak - base_rss) / 1024}


def run_worker(method: str, corpus: Path, tok_dir: Path, block_size: int) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "HF_DATASETS_CACHE": cache, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "true"}
        out = subprocess.run([sys.executable, __file__, "--worker", method, "--corpus", str(corpus),
                              "--tokenizer", str(tok_dir), "--block-size", str(block_size)],
                             env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--sizes", help="corpus sizes in MB, comma-separated (every method at every size)")
    ap.add_argument("--methods", default="run_clm,hfkit", help="of run_clm, hfkit, hfkitN (num_proc=N), stream")
    ap.add_argument("--block-size", type=int, default=512)
    ap.add_argument("--worker")
    ap.add_argument("--num-proc", type=int, default=None, help="also run hfkit with datasets.map's num_proc=N")
    ap.add_argument("--corpus")
    ap.add_argument("--tokenizer")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.corpus, args.tokenizer, args.block_size)))
        return

    from hfkit.data.pydoc import default_corpus_documents
    from hfkit.data.tokenizer import train_tokenizer

    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else [args.mb]
    methods = tuple(args.methods.split(",")) + ((f"hfkit{args.num_proc}",) if args.num_proc else ())
    results: dict[int, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train_tokenizer(default_corpus_documents(), "bpe", 8192).save_pretrained(tmp / "tok")
        for mb in sizes:
            size = make_corpus(tmp / "corpus.jsonl", mb)
            print(f"corpus: {size / 1e6:.1f} MB JSONL, block_size={args.block_size}, byte-level BPE (8192)", flush=True)
            results[mb] = {m: run_worker(m, tmp / "corpus.jsonl", tmp / "tok", args.block_size) for m in methods}
            show(results[mb])
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        print(f"peak RSS against corpus size ({lo} -> {hi} MB):")
        for m in methods:
            a, b = results[lo][m]["peak_rss_mb"], results[hi][m]["peak_rss_mb"]
            each = " / ".join(f"{results[x][m]['peak_rss_mb']:,.0f}" for x in sizes)
            print(f"  {m:<9} {each} MB; slope "
                  f"{(b - a) / ((hi - lo) / 1000):,.0f} MB of RAM per GB of corpus")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "packing.json").write_text(json.dumps({"block_size": args.block_size, "results": results}, indent=1))


def show(res: dict) -> None:
    print(f"{'method':<10}{'seconds':>9}{'tokens/s':>12}{'peak RSS MB':>13}{'RSS growth MB':>15}{'dropped':>10}")
    for m, r in res.items():
        print(f"{m:<10}{r['seconds']:>9.1f}{r['tokens_per_s']:>12,.0f}{r['peak_rss_mb']:>13,.0f}"
              f"{r['rss_growth_mb']:>15,.0f}{r['dropped_tokens']:>10,}")
    h, b = res.get("hfkit"), res.get("run_clm")
    if h and b:
        print(f"throughput ratio hfkit/run_clm: {h['tokens_per_s'] / b['tokens_per_s']:.2f}x")
        print(f"peak memory ratio hfkit/run_clm: {h['peak_rss_mb'] / b['peak_rss_mb']:.2f}x")
        print(f"tokens dropped: hfkit {h['dropped_tokens']:,} (final partial block only; hfkit also adds one EOS "
              f"per document), run_clm {b['dropped_tokens']:,} (a partial block per 1000-document map batch)")
    if h and (st := res.get("stream")):
        print(f"streaming vs in memory: {st['tokens_per_s'] / h['tokens_per_s']:.2f}x throughput, "
              f"{st['peak_rss_mb'] / h['peak_rss_mb']:.2f}x peak RSS")
    for m in res:
        if h and m.startswith("hfkit") and m != "hfkit":
            print(f"{m} (num_proc={m[5:]}) vs hfkit (one process): {res[m]['tokens_per_s'] / h['tokens_per_s']:.2f}x "
                  f"throughput, {res[m]['peak_rss_mb'] / h['peak_rss_mb']:.2f}x peak RSS (main process)")


if __name__ == "__main__":
    main()
