"""Prompting and retrieval: the prompt library, demonstration selection, Auto-CoT, RAG (chunking, FAISS,
BM25, hybrid), pipelines — each checked against a reference computed here."""
import json
import subprocess
import sys

import numpy as np
import pytest

from hfkit.errors import HfkitError

DOCS = [  # a small fixed corpus: six topics, no shared keywords between them
    ("bread.md", "To bake bread, mix flour, water, salt and yeast. Knead the dough, let it rise for two hours, "
                 "then bake it in a hot oven until the crust is brown."),
    ("tides.md", "Ocean tides are caused by the gravitational pull of the moon and the sun on the seas. "
                 "High tide and low tide alternate roughly every six hours."),
    ("chess.md", "In chess the bishop moves diagonally across the board, while the rook moves along ranks and "
                 "files. Checkmate ends the game."),
    ("volcano.md", "A volcano erupts when molten rock, called magma, rises through the crust and escapes as lava, "
                   "ash and gas."),
    ("violin.md", "The violin is a string instrument played with a bow; its four strings are tuned in fifths: "
                  "G, D, A and E."),
    ("tax.md", "An income tax return reports your earnings and deductions to the government, which computes "
               "the tax you owe or the refund you are due."),
]
QUERIES = [("How long should dough rise before baking?", 0), ("What makes the sea level go up and down?", 1),
           ("Which chess piece moves diagonally?", 2), ("What is lava made of?", 3),
           ("How are the strings of a violin tuned?", 4), ("How do I get a refund of income tax?", 5)]


def _cli(*argv, timeout=300):
    return subprocess.run([sys.executable, "-m", "hfkit", *argv], capture_output=True, text=True, timeout=timeout)


# --- the prompt library -----------------------------------------------------------------------------

def test_templates_render_with_and_without_demonstrations():
    from hfkit.prompting import get_template, library_prompts

    recs = [{"question": "What is 2+2?"}]
    assert library_prompts(get_template("zero_shot"), recs) == ["Question: What is 2+2?\nAnswer:"]
    demos = [{"question": f"q{i}", "answer": f"a{i}", "rationale": f"r{i}."} for i in range(5)]
    p = library_prompts(get_template("few_shot"), recs, demos, seed=3)[0]
    parts = p.split("\n\n")
    assert len(parts) == 4 and parts[-1] == "Question: What is 2+2?\nAnswer:"
    for part in parts[:3]:  # each demonstration: its question and its answer
        i = int(part.split("q")[1].split("\n")[0])
        assert part == f"Question: q{i}\nAnswer: a{i}"
    cot = library_prompts(get_template("few_shot_cot"), recs, demos, seed=3)[0].split("\n\n")
    assert cot[0].endswith("Let's think step by step. r" + cot[0].split("Answer: Let's think step by step. r")[1])
    assert "The answer is a" in cot[0] and cot[-1].endswith("Answer: Let's think step by step.")
    persona = library_prompts(get_template("persona"), [{"question": "Why?", "persona": "a pirate"}])[0]
    assert persona.startswith("You are a pirate.") and library_prompts(get_template("persona"), recs)[0].startswith(
        "You are a patient Python teacher.")
    with pytest.raises(HfkitError, match="few_shot.*--demos"):
        library_prompts(get_template("few_shot"), recs)


def test_a_template_naming_a_field_the_record_lacks_is_one_line_exit_2(tmp_path):
    p = _cli("prompts", "render", "instruction", "--record", '{"prompt": "hi"}')
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "the template uses a field the example lacks ('question' is undefined)" in p.stderr
    bad = tmp_path / "t.yaml"
    bad.write_text("template: 'Q: {{ q }}'\nshots: 1\nselect: nearest\n")
    p = _cli("prompts", "render", str(bad), "--record", '{"q": "x"}')
    assert p.returncode == 2 and "select 'nearest'" in p.stderr
    p = _cli("prompts")
    assert p.returncode == 0 and all(n in p.stdout for n in ("zero_shot", "few_shot_embedding", "self_consistency",
                                                              "auto_cot", "persona", "instruction", "rag"))


def test_tfidf_demonstrations_are_the_nearest_by_sklearn_tfidf_cosine():
    from sklearn.feature_extraction.text import TfidfVectorizer

    from hfkit.prompting.fewshot import SimilarSelector

    texts = [t for _, t in DOCS]
    query = "the rook and the bishop on the chess board"
    vec = TfidfVectorizer(token_pattern=r"\w+").fit(texts)
    sims = (vec.transform(texts) @ vec.transform([query]).T).toarray()[:, 0]
    expected = list(reversed(np.argsort(-sims, kind="stable")[:3].tolist()))
    assert SimilarSelector(texts).top(query, 3, None) == expected


def test_embedding_demonstrations_are_the_nearest_by_cosine():
    from sentence_transformers.util import cos_sim

    from hfkit.prompting.embeddings import EmbeddingSelector, load_encoder

    texts = [t for _, t in DOCS]
    sel = EmbeddingSelector(texts)
    raw = load_encoder().encode(texts + [QUERIES[3][0]], normalize_embeddings=False, convert_to_tensor=True)
    sims = cos_sim(raw[-1:], raw[:-1])[0].numpy()  # cosine of unnormalised vectors, computed apart
    for exclude in (None, 3):
        s = sims.copy()
        if exclude is not None:
            s[exclude] = -np.inf
        expected = list(reversed(np.argsort(-s, kind="stable")[:2].tolist()))
        assert sel.top(QUERIES[3][0], 2, exclude) == expected
    assert sel.top(QUERIES[3][0], 2, None)[-1] == 3  # the volcano text is the nearest


def test_kmeans_representatives_are_members_nearest_their_centre():
    from sklearn.cluster import KMeans

    from hfkit.prompting.autocot import cluster_order

    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal(c, 0.1, size=(10, 4)) for c in (0.0, 3.0, -3.0)]).astype(np.float32)
    labels, order = cluster_order(pts, 3, seed=0)
    km = KMeans(n_clusters=3, random_state=0, n_init=10).fit(pts)
    assert (labels == km.labels_).all()
    for c, members in enumerate(order):
        assert sorted(members) == np.flatnonzero(labels == c).tolist()  # every member, only members
        d = np.linalg.norm(pts[members] - km.cluster_centers_[c], axis=1)
        assert members[0] == members[int(np.argmin(d))] and (np.diff(d[np.argsort(d)]) >= 0).all()


def test_auto_cot_writes_one_demonstration_per_cluster_from_that_cluster(tiny_models, tmp_path):
    run = tiny_models["text-generation"]
    qs = [{"question": " ".join(t.split()[:5]) + "?"} for _, t in DOCS] * 2
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in qs))
    out = tmp_path / "demos.jsonl"
    p = _cli("prompts", "autocot", "--data", str(data), "--model", str(run), "--out", str(out), "--clusters", "3",
             "--max-steps", "50", "--max-new-tokens", "12", "--json")
    assert p.returncode == 0, p.stderr
    demos = [json.loads(x) for x in out.read_text().splitlines()]
    report = json.loads(p.stdout)
    from hfkit.prompting.autocot import cluster_order
    from hfkit.prompting.embeddings import embed

    labels, order = cluster_order(embed([q["question"] for q in qs]), 3, seed=0)
    assert report["demonstrations"] == len(demos) >= 1
    for d in demos:
        assert labels[d["index"]] == d["cluster"] and d["question"] == qs[d["index"]]["question"]
        assert d["rationale"] and d["answer"]
    # the heuristics: with no room for a single reasoning step, nothing is kept
    p = _cli("prompts", "autocot", "--data", str(data), "--model", str(run), "--out", str(out), "--clusters", "2",
             "--max-question-tokens", "3", "--json", "--overwrite")
    assert p.returncode == 0 and json.loads(p.stdout)["demonstrations"] == 0


# --- retrieval ------------------------------------------------------------------------------------

def test_chunks_cover_every_document_with_the_given_overlap():
    from transformers import AutoTokenizer

    from hfkit.hub import MINILM_ID, ensure_cached
    from hfkit.prompting.rag import chunk_documents

    ensure_cached(MINILM_ID)
    tok = AutoTokenizer.from_pretrained(MINILM_ID)
    docs = DOCS + [("long.txt", " ".join(f"word{i}" for i in range(300)))]
    for size, overlap in ((16, 4), (7, 0), (40, 39)):
        chunks = chunk_documents(docs, tok, size, overlap)
        for d, (src, text) in enumerate(docs):
            off = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            n = len(off)
            mine = [c for c in chunks if c.doc == d]
            assert all(c.source == src and c.text in text for c in mine)
            covered = set()
            for a, b in zip(mine, mine[1:]):
                assert b.start == a.start + size - overlap  # consecutive windows share exactly `overlap`
            for c in mine:
                k = min(size, n - c.start)  # a full window, or the document's last tokens
                assert c.text == text[off[c.start][0]:off[c.start + k - 1][1]]
                covered |= set(range(c.start, c.start + k))
            assert covered == set(range(n))  # every token of every document
    with pytest.raises(HfkitError, match="overlap"):
        chunk_documents(docs, tok, 8, 8)


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    from hfkit.prompting.rag import build_index

    out = tmp_path_factory.mktemp("rag") / "index"
    build_index(DOCS, out, size=24, overlap=6)
    return out


def test_faiss_top_k_equals_brute_force_cosine(small_index):
    from hfkit.prompting.embeddings import embed
    from hfkit.prompting.rag import Retriever

    r = Retriever(small_index)
    vecs = embed([c.text for c in r.chunks])
    for q, _ in QUERIES:
        sims = vecs @ embed([q])[0]
        expected = np.argsort(-sims, kind="stable")[:4].tolist()
        found = r.dense([q], 4)[0]
        assert [i for i, _ in found] == expected
        assert [s for _, s in found] == pytest.approx(sims[expected].tolist(), abs=1e-5)


def test_recall_on_a_small_fixed_corpus(small_index):
    from hfkit.prompting.rag import Retriever, retrieval_scores, rrf

    r = Retriever(small_index)
    qs, gold = [q for q, _ in QUERIES], [{d} for _, d in QUERIES]
    dense = retrieval_scores(r, qs, gold, "dense", ks=(1, 3))
    assert dense["recall@1"] == 1.0 and dense["mrr"] == 1.0 and dense["n"] == 6
    bm25 = retrieval_scores(r, ["bishop rook", "magma lava", "flour yeast"], [{2}, {3}, {0}], "bm25", ks=(1,))
    assert bm25["recall@1"] == 1.0
    hybrid = retrieval_scores(r, qs, gold, "hybrid", ks=(1, 3))
    assert hybrid["recall@3"] == 1.0
    # reciprocal rank fusion, by hand
    assert rrf([[(1, 9.0), (2, 8.0)], [(2, 0.9), (3, 0.8)]], 3, c=60) == [
        (2, pytest.approx(1 / 62 + 1 / 61)), (1, pytest.approx(1 / 61)), (3, pytest.approx(1 / 62))]


def test_rag_prompt_holds_the_retrieved_chunks_and_their_sources(small_index, tiny_models, tiny_run):
    from hfkit.data.tokenizer import load_tokenizer
    from hfkit.prompting.rag import Retriever, fit_prompt, rag_prompt

    r = Retriever(small_index)
    hits = [r.chunks[i] for i, _ in r.dense([QUERIES[2][0]], 3)[0]]
    full = rag_prompt(QUERIES[2][0], hits)
    for n, c in enumerate(hits, 1):
        assert f"[{n}] {c.source}: {c.text.strip()}" in full
    gen = tiny_models["text-generation"]  # 128 positions: the prompt is fitted (lowest-ranked chunks dropped, cut)
    p = _cli("rag", "query", str(small_index), QUERIES[2][0], "--model", str(gen), "-k", "3", "--max-new-tokens", "8",
             "--json")
    assert p.returncode == 0, p.stderr
    row = json.loads(p.stdout)[0]
    tok = load_tokenizer(str(gen))
    assert len(tok(row["prompt"], add_special_tokens=False)["input_ids"]) <= 128 - 8
    assert row["retrieved"] == 3 and 1 <= row["in_prompt"] == len(row["sources"])
    assert row["prompt"] == fit_prompt(QUERIES[2][0], hits, tok, 120)[0]
    assert [s["source"] for s in row["sources"]][0] == "chess.md"
    for s in row["sources"]:
        assert s["text"].strip() in row["prompt"] and f"[{s['n']}] {s['source']}: " in row["prompt"]
    assert row["prompt"].endswith(f"Question: {QUERIES[2][0]}\nAnswer:") and isinstance(row["answer"], str)
    run, _ = tiny_run  # 64 positions: not even the question and one chunk fit
    p = _cli("rag", "query", str(small_index), QUERIES[2][0], "--model", str(run), "--max-new-tokens", "8")
    assert p.returncode == 2 and "leaves no room for a retrieved chunk" in p.stderr


def test_rag_bad_input_is_one_line_exit_2(small_index, tmp_path):
    import shutil

    cases = []
    p = _cli("rag", "query", str(small_index), "q", "--embedding-model", "sentence-transformers/all-mpnet-base-v2")
    cases.append((p, "was built with embedding model 'sentence-transformers/all-MiniLM-L6-v2'"))
    cases.append((_cli("rag", "query", str(tmp_path / "nowhere"), "q"), "does not exist"))
    broken = tmp_path / "broken"
    shutil.copytree(small_index, broken)
    (broken / "index.faiss").unlink()
    cases.append((_cli("rag", "query", str(broken), "q"), "is missing index.faiss"))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(small_index, corrupt)
    (corrupt / "index.faiss").write_bytes(b"not an index")
    cases.append((_cli("rag", "query", str(corrupt), "q"), "is corrupt"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": "   "}) + "\n")
    cases.append((_cli("rag", "index", str(empty), "--out", str(tmp_path / "i")), "empty corpus"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    cases.append((_cli("rag", "index", "default", "--out", str(tmp_path / "mine")), "folder with other files"))
    cases.append((_cli("rag", "index", "default", "--out", str(small_index)), "already holds an index: pass --overwrite"))
    cases.append((_cli("rag", "index", "default", "--out", str(tmp_path / "i"), "--chunk-size", "400"),
                  "reads at most 254 tokens of a chunk"))
    for p, message in cases:
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and message in p.stderr, p.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine" and not (tmp_path / "i").exists()


# --- prompting through generate / eval icl -----------------------------------------------------------

def test_generate_and_eval_icl_take_a_library_template(tiny_models, tmp_path):
    run = tiny_models["text-generation"]
    demos = tmp_path / "demos.jsonl"
    demos.write_text("".join(json.dumps({"question": f"What is {i}+{i}?", "answer": str(2 * i)}) + "\n" for i in range(6)))
    p = _cli("generate", "--model", str(run), "--prompt", "What is 7+7?", "--prompt-template", "few_shot_tfidf",
             "--demos", str(demos), "--max-new-tokens", "4", "--json")
    assert p.returncode == 0, p.stderr
    prompt = json.loads(p.stdout)[0]["prompt"]
    assert prompt.count("Question:") == 4 and prompt.endswith("Question: What is 7+7?\nAnswer:")
    task = tmp_path / "task.jsonl"
    task.write_text("".join(json.dumps({"question": f"What is {i}+{i}?", "answer": str(2 * i)}) + "\n"
                            for i in range(6, 10)))
    p = _cli("eval", "icl", "--model", str(run), "--data", str(task), "--demos", str(demos), "--prompt-template",
             "few_shot_embedding", "--shots", "2", "--max-new-tokens", "4", "--json", "--output", str(tmp_path / "r.json"))
    assert p.returncode == 0, p.stderr
    settings = json.loads(p.stdout)["settings"]
    assert settings["select"] == "embedding" and settings["shots"] == 2  # the flag wins over the template's 3


# --- pipelines ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A tiny model per pipeline task, saved with a tokenizer trained here."""
    import transformers

    from hfkit.data.tokenizer import train_tokenizer
    from hfkit.models import ModelConfig, build_model

    root = tmp_path_factory.mktemp("pipes")
    texts = [t for _, t in DOCS] * 3
    out = {}
    specs = {"text-generation": ("gpt2", "bpe", "AutoModelForCausalLM", {}),
             "fill-mask": ("bert", "wordpiece", "AutoModelForMaskedLM", {}),
             "text-classification": ("bert", "wordpiece", "AutoModelForSequenceClassification",
                                     {"num_labels": 2, "id2label": {0: "no", 1: "yes"}, "label2id": {"no": 0, "yes": 1}}),
             "token-classification": ("bert", "wordpiece", "AutoModelForTokenClassification",
                                      {"num_labels": 3, "id2label": {0: "O", 1: "B-X", 2: "I-X"},
                                       "label2id": {"O": 0, "B-X": 1, "I-X": 2}}),
             "feature-extraction": ("bert", "wordpiece", "AutoModel", {}),
             "question-answering": ("bert", "wordpiece", "AutoModelForQuestionAnswering", {}),
             "summarization": ("t5", "bpe", "AutoModelForSeq2SeqLM", {}),
             "translation": ("bart", "bpe", "AutoModelForSeq2SeqLM", {})}
    for task, (arch, kind, auto, overrides) in specs.items():
        tok = train_tokenizer(texts, kind, 300, 1)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        cfg = ModelConfig(architecture=arch, hidden_size=32, num_layers=2, num_heads=2, max_position_embeddings=128)
        model = build_model(cfg, tok, getattr(transformers, auto), overrides)
        folder = root / task
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        out[task] = folder
    return out


@pytest.mark.parametrize("task, inputs, check", [
    ("text-generation", ["The violin"], lambda o: o[0]["generated_text"].startswith("The violin")),
    ("fill-mask", ["The violin is a <mask> instrument."], lambda o: len(o) == 5 and "token_str" in o[0]),
    ("text-classification", ["Tides and the moon."], lambda o: o["label"] in ("no", "yes") and 0 <= o["score"] <= 1),
    ("token-classification", ["The bishop moves diagonally."], lambda o: isinstance(o, list)),
    ("feature-extraction", ["magma"], lambda o: len(np.array(o).shape) == 3 and np.array(o).shape[-1] == 32),
    ("question-answering", [{"question": "What moves diagonally?", "context": DOCS[2][1]}],
     lambda o: o["answer"] in DOCS[2][1]),
    ("summarization", ["Ocean tides are caused by the moon."], lambda o: isinstance(o["summary_text"], str)),
    ("translation", ["The bishop moves."], lambda o: isinstance(o["translation_text"], str)),
])
def test_each_pipeline_task_runs_on_a_tiny_model(tiny_models, tmp_path, task, inputs, check):
    f = tmp_path / "in.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in inputs))
    out = tmp_path / "out.jsonl"
    p = _cli("pipeline", task, "--model", str(tiny_models[task]), "--file", str(f), "--out", str(out),
             "--max-new-tokens", "6")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == len(inputs) and rows[0]["input"] == inputs[0]
    assert check(rows[0]["output"]), rows[0]["output"]


def test_pipeline_runs_an_adapter_merged_into_its_base(tiny_models, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = tiny_models["text-generation"]
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, target_modules=["c_attn"]))
    for n, p in model.named_parameters():
        if "lora_B" in n:
            p.data.fill_(0.5)  # an adapter that changes the output
    model.save_pretrained(tmp_path / "adapter")
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp_path / "adapter")
    outs = {}
    for name, ref in (("base", base), ("adapter", tmp_path / "adapter")):
        p = _cli("pipeline", "text-generation", "--model", str(ref), "--input", "The violin", "--max-new-tokens", "6")
        assert p.returncode == 0, p.stderr
        outs[name] = json.loads(p.stdout)["output"][0]["generated_text"]
    from transformers import pipeline

    merged = model.merge_and_unload().eval()  # the reference: transformers' pipeline on the merged model, here
    ref = pipeline("text-generation", model=merged, tokenizer=AutoTokenizer.from_pretrained(base))
    expected = ref("The violin", max_new_tokens=6, do_sample=False)[0]["generated_text"]
    assert outs["adapter"] == expected != outs["base"]


def test_a_recipe_eval_icl_entry_takes_a_library_template(tmp_path):
    from hfkit.recipe import load_recipe

    r = load_recipe("clm_pretrain", [f"eval.icl=[{{path: {tmp_path}/t.jsonl, prompt_template: self_consistency, "
                                     f"temperature: 0.7}}]"])
    icl = r.eval.icl[0]
    assert (icl.cot, icl.self_consistency, icl.shots, icl.temperature) == (True, 5, 0, 0.7)
    r = load_recipe("clm_pretrain", [f"eval.icl=[{{path: {tmp_path}/t.jsonl, prompt_template: few_shot_tfidf, shots: 2}}]"])
    assert (r.eval.icl[0].select, r.eval.icl[0].shots) == ("tfidf", 2)  # a field of the entry's own wins
    with pytest.raises(HfkitError, match="eval.icl.0.prompt_template' 'fewshot': no such template"):
        load_recipe("clm_pretrain", [f"eval.icl=[{{path: {tmp_path}/t.jsonl, prompt_template: fewshot}}]"])
