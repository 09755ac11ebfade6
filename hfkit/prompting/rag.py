"""Retrieval-augmented generation: chunk documents, embed the chunks (MiniLM through
sentence-transformers), index them with FAISS, retrieve by dense cosine, BM25 (bm25s) or both
(reciprocal rank fusion), and prompt a generator with the retrieved chunks and their sources.

An index folder holds `index.faiss` (FAISS inner-product index over unit vectors: cosine),
`chunks.jsonl` (text, source, document number, first token) and `index.json` (the embedding model,
chunking and counts). It is written whole into a temporary folder and renamed into place.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path


from ..errors import HfkitError
from .embeddings import DEFAULT_ENCODER

INDEX_FORMAT = "hfkit-rag/1"
FILES = ("index.json", "chunks.jsonl", "index.faiss")
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al., 2009)
MODES = ("dense", "bm25", "hybrid")


@dataclass
class Chunk:
    text: str
    source: str  # where the document came from (file, section title)
    doc: int  # the document's number in the corpus
    start: int  # its first token's position in the document (embedding tokenizer's tokens)


def chunk_documents(docs: list[tuple[str, str]], tokenizer, size: int = 128, overlap: int = 32) -> list[Chunk]:
    """Windows of `size` tokens of each (source, text) document, consecutive windows sharing `overlap`
    tokens; the last window ends at the document's end. Chunk texts are the documents' own characters."""
    if size < 1 or not 0 <= overlap < size:
        raise HfkitError(f"chunk size {size} and overlap {overlap}: need size >= 1 and 0 <= overlap < size")
    out = []
    for d, (source, text) in enumerate(docs):
        # the whole document at once (it is cut into windows here): no warning about its length
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
        if not offsets:
            continue
        start = 0
        while True:
            end = min(start + size, len(offsets))
            out.append(Chunk(text[offsets[start][0]:offsets[end - 1][1]], source, d, start))
            if end == len(offsets):
                break
            start = end - overlap
    return out


def corpus_documents(spec: str, text_field: str = "text", source_field: str | None = None) -> list[tuple[str, str]]:
    """(source, text) documents: `default` (the built-in corpus's sections, titled), a text/markdown file
    or folder (one document per file), or JSONL/CSV/Parquet records (`text_field`, `source_field`)."""
    from ..data.catalog import source_from_spec
    from ..data.pydoc import default_corpus_documents
    from ..data.sources import load_records

    if spec == "default":
        return [(d.splitlines()[0].strip(), d) for d in default_corpus_documents()]
    src = source_from_spec(spec, text_field)
    if src.kind == "hub":
        raise HfkitError(f"corpus '{spec}': a local file or folder, or 'default' (the built-in corpus)")
    src.validate("corpus")
    if src.kind == "text":  # one document per file, read by training's rules (UTF-8 text, the folder's own files)
        from ..data.sources import read_text_file

        docs = [(f, read_text_file(f)) for f in src.files()]
    else:
        ds = load_records(src)
        if text_field not in ds.column_names:
            raise HfkitError(f"{spec}: no field '{text_field}' (columns: {', '.join(ds.column_names)}; --text-field)")
        if source_field and source_field not in ds.column_names:
            raise HfkitError(f"{spec}: no field '{source_field}' (columns: {', '.join(ds.column_names)})")
        bad = next((i for i, t in enumerate(ds[text_field]) if t is not None and not isinstance(t, str)), None)
        if bad is not None:  # as training: every record's text is text
            raise HfkitError(f"{spec}: field '{text_field}' of record {bad} is not text")
        docs = [(str(r[source_field]) if source_field else f"{Path(spec).name}#{i + 1}", r[text_field] or "")
                for i, r in enumerate(ds)]
    docs = [(s, t) for s, t in docs if t.strip()]
    if not docs:
        raise HfkitError(f"corpus '{spec}': no documents with text (an empty corpus)")
    return docs


def build_index(docs: list[tuple[str, str]], out: str | os.PathLike, encoder: str = DEFAULT_ENCODER, size: int = 128,
                overlap: int = 32, overwrite: bool = False, progress: bool = False) -> dict:
    """Chunk, embed and index `docs` into the folder `out`; returns the index's description."""
    import faiss

    from .embeddings import embed, load_encoder

    out = Path(out)
    check_index_destination(out, overwrite)
    check_chunking(size, overlap, encoder)
    if not docs:
        raise HfkitError("the corpus is empty: nothing to index")
    chunks = chunk_documents(docs, load_encoder(encoder).tokenizer, size, overlap)
    if not chunks:
        raise HfkitError("the corpus is empty: nothing to index")
    t0 = time.time()
    vectors = embed([c.text for c in chunks], encoder, progress=progress)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    meta = {"format": INDEX_FORMAT, "embedding_model": encoder, "dimension": int(vectors.shape[1]),
            "chunk_size": size, "chunk_overlap": overlap, "documents": len(docs), "chunks": len(chunks),
            "embed_seconds": round(time.time() - t0, 1)}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.incomplete-"))
    old = None
    try:
        faiss.write_index(index, str(staging / "index.faiss"))
        with open(staging / "chunks.jsonl", "w", encoding="utf-8") as f:
            for c in chunks:
                f.write(json.dumps(asdict(c), ensure_ascii=False) + "\n")
        (staging / "index.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.chmod(staging, 0o777 & ~_umask())
        if out.exists():  # only an index hfkit wrote (checked above): kept until the new one is in place
            old = out.parent / f".{out.name}.replaced-{os.getpid()}"
            os.replace(out, old)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and not out.exists():
            os.replace(old, out)  # the earlier index, as it was
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return meta


def check_chunking(size: int, overlap: int, encoder: str = DEFAULT_ENCODER) -> None:
    """Chunks the encoder reads whole (it cuts longer texts: their ends would not be embedded)."""
    from .embeddings import max_tokens

    if size < 1 or not 0 <= overlap < size:
        raise HfkitError(f"--chunk-size {size} and --chunk-overlap {overlap}: need size >= 1 and 0 <= overlap < size")
    limit = max_tokens(encoder) - 2  # its [CLS] and [SEP]
    if size > limit:
        raise HfkitError(f"--chunk-size {size}: {encoder} reads at most {limit} tokens of a chunk (the rest would "
                         f"not be embedded)")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_index_destination(out: Path, overwrite: bool) -> None:
    """`--out` may be a new folder, an empty one, or (with --overwrite) an index hfkit wrote."""
    from ..io import check_writable_dir

    if out.exists() and not out.is_dir():
        raise HfkitError(f"--out '{out}' is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        ours = _read_meta(out, quiet=True) is not None
        if not ours:
            raise HfkitError(f"--out '{out}' is a folder with other files: hfkit writes an index only into a new or "
                             f"empty folder, or over an index it wrote")
        if not overwrite:
            raise HfkitError(f"--out '{out}' already holds an index: pass --overwrite to replace it")
    check_writable_dir(out.parent if not out.exists() else out, "--out")


def _read_meta(folder: Path, quiet: bool = False) -> dict | None:
    try:
        meta = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
            raise ValueError("not an hfkit index")
        return meta
    except (OSError, ValueError):
        if quiet:
            return None
        raise


class Retriever:
    """A loaded index: dense (FAISS), BM25 and hybrid retrieval of chunks."""

    def __init__(self, folder: str | os.PathLike, embedding_model: str | None = None):
        import faiss

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise HfkitError(f"index folder '{folder}' does not exist (build it with `hfkit rag index CORPUS --out DIR`)")
        missing = [f for f in FILES if not (self.folder / f).is_file()]
        if missing:
            raise HfkitError(f"index folder '{folder}' is missing {missing[0]}: not a complete hfkit index "
                             f"(rebuild it with `hfkit rag index`)")
        try:
            self.meta = _read_meta(self.folder)
        except (OSError, ValueError) as e:
            raise HfkitError(f"index folder '{folder}': index.json is corrupt ({str(e).splitlines()[0][:100]})") from None
        if embedding_model and embedding_model != self.meta["embedding_model"]:
            raise HfkitError(f"index '{folder}' was built with embedding model '{self.meta['embedding_model']}', not "
                             f"'{embedding_model}': query with the model that built it, or rebuild the index")
        try:
            self.index = faiss.read_index(str(self.folder / "index.faiss"))
            with open(self.folder / "chunks.jsonl", encoding="utf-8") as f:
                self.chunks = [Chunk(**json.loads(line)) for line in f if line.strip()]
        except (RuntimeError, ValueError, TypeError) as e:
            raise HfkitError(f"index folder '{folder}' is corrupt ({str(e).splitlines()[0][:120]}): rebuild it") from None
        if self.index.ntotal != len(self.chunks) or self.index.d != self.meta["dimension"]:
            raise HfkitError(f"index folder '{folder}' is corrupt: {self.index.ntotal} vectors of dimension "
                             f"{self.index.d} for {len(self.chunks)} chunks of dimension {self.meta['dimension']}")
        self.encoder = self.meta["embedding_model"]
        self._bm25 = None

    def dense(self, queries: list[str], k: int) -> list[list[tuple[int, float]]]:
        from .embeddings import embed

        scores, ids = self.index.search(embed(queries, self.encoder), min(k, len(self.chunks)))
        return [[(int(i), float(s)) for i, s in zip(row_i, row_s) if i >= 0] for row_i, row_s in zip(ids, scores)]

    def bm25(self, queries: list[str], k: int) -> list[list[tuple[int, float]]]:
        import bm25s

        if self._bm25 is None:
            self._bm25 = bm25s.BM25()
            self._bm25.index(bm25s.tokenize([c.text for c in self.chunks], stopwords="en", show_progress=False),
                             show_progress=False)
        ids, scores = self._bm25.retrieve(bm25s.tokenize(queries, stopwords="en", show_progress=False),
                                          k=min(k, len(self.chunks)), show_progress=False)
        return [[(int(i), float(s)) for i, s in zip(row_i, row_s)] for row_i, row_s in zip(ids, scores)]

    def hybrid(self, queries: list[str], k: int, depth: int = 50) -> list[list[tuple[int, float]]]:
        """Reciprocal rank fusion of the dense and BM25 rankings (each to `depth`)."""
        return [rrf([d, b], k) for d, b in zip(self.dense(queries, depth), self.bm25(queries, depth))]

    def search(self, queries: list[str], k: int = 4, mode: str = "dense") -> list[list[tuple[int, float]]]:
        if mode not in MODES:
            raise HfkitError(f"--mode '{mode}': expected one of {', '.join(MODES)}")
        return getattr(self, mode)(queries, k)


def rrf(rankings: list[list[tuple[int, float]]], k: int, c: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: score(d) = sum over rankings of 1 / (c + rank of d), rank from 1."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, (i, _) in enumerate(ranking, 1):
            scores[i] = scores.get(i, 0.0) + 1.0 / (c + rank)
    return sorted(scores.items(), key=lambda t: (-t[1], t[0]))[:k]


def retrieval_scores(retriever: Retriever, queries: list[str], gold_docs: list[set[int]], mode: str,
                     ks: tuple[int, ...] = (1, 5, 10)) -> dict:
    """recall@k (a gold document among the documents of the top-k chunks) and MRR (of the first chunk
    of a gold document, over the top max(ks) chunks), averaged over the queries."""
    depth = max(ks)
    hits = retriever.search(queries, depth, mode)
    recall = {k: 0 for k in ks}
    mrr = 0.0
    for found, gold in zip(hits, gold_docs):
        docs = [retriever.chunks[i].doc for i, _ in found]
        rank = next((r for r, d in enumerate(docs, 1) if d in gold), None)
        if rank is not None:
            mrr += 1.0 / rank
            for k in ks:
                recall[k] += rank <= k
    n = len(queries)
    return {**{f"recall@{k}": round(recall[k] / n, 4) for k in ks}, "mrr": round(mrr / n, 4), "n": n}


def rag_prompt(question: str, chunks: list[Chunk], template: str = "rag", record: dict | None = None) -> str:
    """The library template (`rag` by default) over the question and the retrieved chunks."""
    from .library import get_template

    t = get_template(template)
    return t.render({**(record or {}), "question": question,
                     "chunks": [{"text": c.text.strip(), "source": c.source} for c in chunks]}, "rag query")


def fit_prompt(question: str, chunks: list[Chunk], tokenizer, budget: int | None, template: str = "rag"
               ) -> tuple[str, list[Chunk]]:
    """The RAG prompt within `budget` tokens: the lowest-ranked chunks are dropped first, then the
    last one left is cut (its opening kept). Returns the prompt and the chunks it holds."""
    def size(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    chunks = list(chunks)
    prompt = rag_prompt(question, chunks, template)
    if budget is None:
        return prompt, chunks
    while size(prompt) > budget and len(chunks) > 1:
        chunks.pop()
        prompt = rag_prompt(question, chunks, template)
    if size(prompt) > budget and chunks:
        c = chunks[0]
        room = budget - size(rag_prompt(question, [Chunk("", c.source, c.doc, c.start)], template))
        offsets = tokenizer(c.text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if room < 8:
            raise HfkitError(f"the {template} prompt for {question[:40]!r} leaves no room for a retrieved chunk in "
                             f"{budget} tokens (the model's positions minus --max-new-tokens): use a model with a "
                             f"longer window, or fewer new tokens")
        chunks = [Chunk(c.text[: offsets[room - 1][1]], c.source, c.doc, c.start)]
        prompt = rag_prompt(question, chunks, template)
    return prompt, chunks


def answer(retriever: Retriever, questions: list[str], model, tokenizer, k: int = 4, mode: str = "dense",
           template: str = "rag", max_new_tokens: int = 64, **generation) -> list[dict]:
    """Retrieve, prompt and generate: per question its answer, the prompt and the cited sources. The
    prompt fits the generator's window (hfkit.prompting.rag.fit_prompt)."""
    from ..inference.generation import generate
    from ..models import max_positions

    limit = max_positions(model.config)
    budget = limit - max_new_tokens if limit else None
    if budget is not None and budget < 16:
        raise HfkitError(f"--max-new-tokens {max_new_tokens} leaves no room for a prompt in the model's {limit} positions")
    found = retriever.search(questions, k, mode)
    fitted = [fit_prompt(q, [retriever.chunks[i] for i, _ in hits], tokenizer, budget, template)
              for q, hits in zip(questions, found)]
    outs = generate(model, tokenizer, [p for p, _ in fitted], max_new_tokens=max_new_tokens, **generation)
    rows = []
    for q, (p, used), o, hits in zip(questions, fitted, outs, found):
        sources = [{"n": n, "source": c.source, "score": round(s, 4), "text": c.text}
                   for n, (c, (_, s)) in enumerate(zip(used, hits), 1)]
        rows.append({"question": q, "answer": o[0].strip(), "prompt": p, "sources": sources,
                     "retrieved": len(hits), "in_prompt": len(used)})
    return rows
