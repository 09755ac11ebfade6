import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasets import Dataset

from hfkit.data.corpus import build_corpus, deduplicate, normalize_text, sample_mixture, split_indices
from hfkit.data.packing import pack_sequences, packed_lm_collator, tokenize_documents
from hfkit.data.catalog import source_from_spec
from hfkit.data.sources import load_source
from hfkit.data.tokenizer import train_tokenizer
from hfkit.errors import HfkitError
from hfkit.data.corpus import DataConfig
from hfkit.data.catalog import make_source as SourceConfig


@pytest.fixture(scope="module")
def tok():
    from hfkit.data.pydoc import default_corpus_documents

    return train_tokenizer(default_corpus_documents(), "bpe", 500)


def test_packing_loses_no_tokens_but_the_final_partial_block(tok):
    docs = [f"document number {i} " + "word " * (i % 17) for i in range(101)]
    ds = tokenize_documents(Dataset.from_dict({"text": docs}), tok)
    expected = []
    for d in docs:
        expected += tok(d, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    blocks, stats = pack_sequences(ds, 16)
    assert stats.tokens == len(expected) == sum(ds["num_tokens"])
    assert stats.blocks * 16 + stats.dropped_tokens == stats.tokens
    assert 0 <= stats.dropped_tokens < 16
    flat = np.asarray(blocks.with_format("numpy")["input_ids"]).reshape(-1)
    assert flat.tolist() == expected[: stats.blocks * 16]  # same tokens, same order, EOS between documents
    batch = packed_lm_collator([blocks.with_format("numpy")[i] for i in range(3)])
    assert batch["input_ids"].shape == (3, 16) and (batch["labels"] == batch["input_ids"]).all()


def test_collator_keeps_eos_labels_even_when_pad_is_eos(tok):
    ids = [tok.eos_token_id] * 4
    batch = packed_lm_collator([{"input_ids": np.asarray(ids)}])
    assert (batch["labels"] != -100).all()


def test_dedup_removes_exactly_the_duplicates():
    docs = ["Alpha beta.", "alpha   BETA!", "Alpha beta.", "gamma", "Gamma", "delta", "Ａlpha beta"]
    ds = Dataset.from_dict({"text": docs})
    exact, n_exact = deduplicate(ds, "exact")
    assert n_exact == 1 and exact["text"] == ["Alpha beta.", "alpha   BETA!", "gamma", "Gamma", "delta", "Ａlpha beta"]
    norm, n_norm = deduplicate(ds, "normalized")
    assert norm["text"] == ["Alpha beta.", "gamma", "delta"] and n_norm == 4
    assert normalize_text("Ａlpha,  Beta!") == "alpha beta"  # NFKC folds the full-width letter
    assert deduplicate(ds, "none")[1] == 0


def test_split_is_deterministic_and_disjoint():
    tr, va = split_indices(100, 0.1, seed=3)
    tr2, va2 = split_indices(100, 0.1, seed=3)
    assert (tr == tr2).all() and (va == va2).all()
    assert len(va) == 10 and not set(tr) & set(va) and len(tr) + len(va) == 100
    assert not (split_indices(100, 0.1, seed=4)[1] == va).all()


def _tokenized_source(n_docs, words, tok, tag):
    texts = [f"{tag} " + " ".join(f"w{j}" for j in range(words)) for _ in range(n_docs)]
    return tokenize_documents(Dataset.from_dict({"text": texts}), tok)


def test_mixture_follows_weights(tok):
    big = _tokenized_source(400, 30, tok, "big")
    small = _tokenized_source(50, 30, tok, "small")
    srcs = {"big": SourceConfig(weight=0.3), "small": SourceConfig(weight=0.7)}
    mixed, report = sample_mixture({"big": big, "small": small}, srcs, mixture_tokens=40_000, seed=0)
    assert report["big"]["share"] == pytest.approx(0.3, abs=0.01)
    assert report["small"]["share"] == pytest.approx(0.7, abs=0.01)
    assert sum(mixed["num_tokens"]) == report["big"]["drawn_tokens"] + report["small"]["drawn_tokens"]
    # the small source is repeated: effective epochs = drawn tokens / its tokens (GPT-3 table)
    small_tokens = sum(small["num_tokens"])
    assert report["small"]["effective_epochs"] == pytest.approx(0.7 * 40_000 / small_tokens, rel=0.02)
    assert report["small"]["effective_epochs"] > 5
    assert report["big"]["effective_epochs"] < 1


def test_mixture_epochs_and_determinism(tok):
    a = _tokenized_source(40, 10, tok, "a")
    b = _tokenized_source(40, 10, tok, "b")
    srcs = {"a": SourceConfig(epochs=2.5), "b": SourceConfig()}
    m1, r = sample_mixture({"a": a, "b": b}, srcs, None, seed=1)
    assert r["a"]["effective_epochs"] == pytest.approx(2.5, abs=0.03)
    assert r["b"]["effective_epochs"] == 1.0
    m2, _ = sample_mixture({"a": a, "b": b}, srcs, None, seed=1)
    assert m1["input_ids"] == m2["input_ids"]
    with pytest.raises(HfkitError, match="weight or epochs, not both"):
        sample_mixture({"a": a}, {"a": SourceConfig(weight=1.0, epochs=2.0)}, None, seed=1)


def test_local_sources(tmp_path):
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"body": f"doc {i}", "id": i}) for i in range(5)))
    pd.DataFrame({"body": ["c1", "c2"]}).to_csv(tmp_path / "b.csv", index=False)
    pd.DataFrame({"body": ["p1", "p2", "p3"]}).to_parquet(tmp_path / "c.parquet")
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "one.txt").write_text("first file\nsecond line")
    (folder / "two.txt").write_text("para one\n\npara two")
    assert load_source(source_from_spec(str(tmp_path / "a.jsonl"), "body"))["text"] == [f"doc {i}" for i in range(5)]
    assert load_source(source_from_spec(str(tmp_path / "b.csv"), "body"))["text"] == ["c1", "c2"]
    assert load_source(source_from_spec(str(tmp_path / "c.parquet"), "body"))["text"] == ["p1", "p2", "p3"]
    assert sorted(load_source(SourceConfig(kind="text", path=str(folder)))["text"]) == [
        "first file\nsecond line", "para one\n\npara two"]
    paras = load_source(SourceConfig(kind="text", path=str(folder), sample_by="paragraph"))["text"]
    assert len(paras) == 3


def test_bad_jsonl_line_and_missing_field(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "ok"}\n{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(HfkitError, match=r"bad.jsonl line 3: invalid JSON"):
        load_source(source_from_spec(str(p)))
    q = tmp_path / "nofield.jsonl"
    q.write_text('{"body": "x"}\n')
    with pytest.raises(HfkitError, match=r"text field 'text' not found \(columns: body\)"):
        load_source(source_from_spec(str(q)))


def test_hub_dataset_loads_offline_from_the_hub_cache(tmp_path, monkeypatch):
    # a cache laid out as huggingface_hub writes it: datasets--owner--name/{refs,snapshots}
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "datasets--acme--tiny-corpus"
    (repo / "snapshots" / sha / "data").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    (repo / "snapshots" / sha / "data" / "train.jsonl").write_text('{"text": "from the hub"}\n{"text": "two"}\n')
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    ds = load_source(source_from_spec("hub:acme/tiny-corpus"))
    assert ds["text"] == ["from the hub", "two"]
    with pytest.raises(HfkitError, match="not in the local cache and HF_HUB_OFFLINE=1"):
        load_source(source_from_spec("hub:acme/missing"))


def test_corpus_filters_dedups_before_split(tmp_path):
    p = tmp_path / "d.jsonl"
    rows = [{"text": f"document {i} " * 5} for i in range(40)] + [{"text": "document 0 " * 5}, {"text": "tiny"}]
    p.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = DataConfig(sources=[SourceConfig(kind="json", path=str(p))], min_chars=10, validation_fraction=0.1)
    c = build_corpus(cfg, seed=0)
    assert c.stats["removed_by_length"] == 1 and c.stats["removed_duplicates"] == 1
    train = c.train["d"]["text"]
    assert len(train) + len(c.validation) == 40
    assert not set(train) & set(c.validation["text"])
    with pytest.raises(HfkitError, match="no documents left after filtering"):
        build_corpus(DataConfig(sources=cfg.sources, min_chars=10_000), seed=0)


HUB_README = """---
configs:
- config_name: de
  data_files:
  - split: train
    path: de/train.jsonl
  - split: test
    path: de/test.jsonl
- config_name: fr
  data_files:
  - split: train
    path: fr/train.jsonl
---
# pairs
"""


def _dataset_repo(root, rows_de, rows_fr, extra=None):
    repo = root / "repo"
    for sub, name, rows in (("de", "train", rows_de), ("de", "test", rows_de[:3]), ("fr", "train", rows_fr)):
        (repo / sub).mkdir(parents=True, exist_ok=True)
        (repo / sub / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (repo / "README.md").write_text(HUB_README)
    for name, text in (extra or {}).items():
        (repo / name).write_text(text)
    return repo


def _hub_import(folder, repo_id, cache):
    import os
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "hfkit", "hub", "import", str(folder), "--repo-id", repo_id, "--dataset",
                        "--json"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HF_HUB_CACHE": str(cache)})
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["snapshot"]


def test_a_hub_dataset_by_id_config_split_revision_and_data_files_offline(tmp_path, monkeypatch):
    """`kind: hub` reads a dataset repo from the local Hub cache with HF_HUB_OFFLINE=1: its configs
    (README.md), splits, a pinned revision and data_files; a wrong config or split is one line that
    names what exists, and a dataset that is not cached says how to get it."""
    from hfkit.data.sources import HubSource
    from hfkit.errors import HfkitError

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    de = [{"en": f"file {i}", "de": f"Datei {i}"} for i in range(8)]
    fr = [{"en": f"file {i}", "fr": f"fichier {i}"} for i in range(5)]
    first = _hub_import(_dataset_repo(tmp_path / "v1", de, fr), "acme/pairs", cache)
    de2 = de + [{"en": "open", "de": "öffnen"}]
    _hub_import(_dataset_repo(tmp_path / "v2", de2, fr), "acme/pairs", cache)  # a new main revision

    def load(**kw):
        src = HubSource(path="acme/pairs", **kw)
        src.check("data.sources.0")
        return src.load()

    assert load(config_name="de").to_list() == de2  # main: the newest import
    assert load(config_name="de", split="test").to_list() == de2[:3]
    assert load(config_name="fr").to_list() == fr
    assert load(config_name="de", revision=Path(first).name).to_list() == de  # pinned to the first commit
    assert load(data_files={"train": "fr/train.jsonl"}).to_list() == fr
    for kw, message in [(dict(config_name="es"), "'es'"), (dict(config_name="fr", split="test"), "test")]:
        with pytest.raises(HfkitError, match="Hub dataset 'acme/pairs'") as e:
            load(**kw)
        assert message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(HfkitError, match="not in the local cache and HF_HUB_OFFLINE=1"):
        HubSource(path="acme/missing").load()
    with pytest.raises(HfkitError, match="data_files"):
        HubSource(path="acme/pairs", data_files=3).check("data.sources.0")
