"""Streaming sources (hfkit.data.streaming): blocks equal to the in-memory packing, the shuffle buffer,
sharding across ranks, weighted mixtures, and resume that continues the stream bit-exactly."""
import json
import shutil

import numpy as np
import pytest
from safetensors.torch import load_file

from conftest import TINY_MODEL


def _pydoc_jsonl(path, n=None, prefix=""):
    """Real prose: pydoc's topics, one document per line (each text once)."""
    import pydoc_data.topics as t

    docs = list(dict.fromkeys(prefix + v for v in t.topics.values()))[:n]  # a few topics share a text
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return docs


@pytest.fixture(scope="module")
def tokenizer():
    import pydoc_data.topics as t

    from hfkit.data.tokenizer import train_tokenizer

    return train_tokenizer(iter(list(t.topics.values())), "bpe", 500, 2, False, [])


def _stream(tmp_path, tokenizer, buffer, block=64, **data):
    from hfkit.data.corpus import DataConfig
    from hfkit.data.sources import KINDS
    from hfkit.data.streaming import build_streaming_corpus, stream_corpus

    cfg = DataConfig(sources=[KINDS["json"](path=str(tmp_path / "c.jsonl"), streaming=True)], validation_fraction=0,
                     block_size=block, shuffle_buffer_size=buffer, **data)
    return stream_corpus(cfg, tokenizer, build_streaming_corpus(cfg, 0), seed=7).train


def test_stream_blocks_equal_the_in_memory_packing_and_the_buffer_shuffles_whole_documents(tmp_path, tokenizer):
    from datasets import Dataset

    from hfkit.data.packing import pack_sequences, tokenize_documents

    docs = _pydoc_jsonl(tmp_path / "c.jsonl")
    # no shuffle: the stream's blocks are pack_sequences' blocks of the same documents, in file order
    reference, stats = pack_sequences(tokenize_documents(Dataset.from_dict({"text": docs}), tokenizer), 64)
    ref = np.asarray(reference["input_ids"])
    stream = _stream(tmp_path, tokenizer, buffer=0)
    got = np.stack([b["input_ids"] for _, b in zip(range(len(ref)), stream)])
    assert stats.blocks > 100 and (got == ref).all()
    # a shuffle buffer of 20 documents: whole documents in a new order, packed the same way
    stream = _stream(tmp_path, tokenizer, buffer=20)
    shuffled = [d for _, d in zip(range(len(docs) - 20), stream.documents())]
    ids = [list(x) for x in tokenize_documents(Dataset.from_dict({"text": docs}), tokenizer)["input_ids"]]
    as_lists = [list(d) for d in shuffled]
    assert all(d in ids for d in as_lists) and len({tuple(d) for d in as_lists}) == len(as_lists)
    order = [ids.index(d) for d in as_lists]
    assert order != sorted(order)  # shuffled, each document whole and at most once in a pass
    expect, _ = pack_sequences(Dataset.from_dict({"input_ids": shuffled, "num_tokens": [len(d) for d in shuffled]}), 64)
    expect = np.asarray(expect["input_ids"])
    got = np.stack([b["input_ids"] for _, b in zip(range(len(expect)), _stream(tmp_path, tokenizer, buffer=20))])
    assert (got == expect).all()
    # endless: a second pass follows the first
    assert len([b for _, b in zip(range(3 * len(ref)), _stream(tmp_path, tokenizer, buffer=0))]) == 3 * len(ref)


def test_stream_state_continues_exactly_from_the_middle(tmp_path, tokenizer):
    _pydoc_jsonl(tmp_path / "c.jsonl")
    a = _stream(tmp_path, tokenizer, buffer=10)
    a.keep = 100
    it = iter(a)
    first = [next(it)["input_ids"] for _ in range(250)]  # past the first pass (about 180 blocks)
    later = [next(it)["input_ids"] for _ in range(5)]  # read ahead of a trainer that consumed 250
    assert a.save(tmp_path, 0, consumed=250)
    rest = later + [next(it)["input_ids"] for _ in range(40)]
    b = _stream(tmp_path, tokenizer, buffer=10)
    assert b.load(tmp_path, 0) == 250
    again = [x["input_ids"] for _, x in zip(range(45), b)]
    assert all((x == y).all() for x, y in zip(rest, again)) and len(again) == 45
    assert not (first[0] == rest[0]).all()
    c = _stream(tmp_path, tokenizer, buffer=11)
    with pytest.raises(Exception, match="shuffle_buffer_size=10"):
        c.load(tmp_path, 0)


def test_ranks_read_disjoint_parts_and_weights_are_token_shares(tmp_path, tokenizer, monkeypatch):
    from hfkit.data.corpus import DataConfig
    from hfkit.data.sources import KINDS
    from hfkit.data.streaming import build_streaming_corpus, document_stream

    docs = _pydoc_jsonl(tmp_path / "c.jsonl")
    cfg = DataConfig(sources=[KINDS["json"](path=str(tmp_path / "c.jsonl"), streaming=True)], validation_fraction=0.1)
    seen = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        c = build_streaming_corpus(cfg, 0)
        seen.append([r["text"] for r in c.train[next(iter(c.train))]])
        validation = c.validation["text"]
    assert not set(seen[0]) & set(seen[1])  # split_dataset_by_node: one document in two each
    assert len(seen[0]) + len(seen[1]) + len(validation) == len(docs)  # the held-out ones are the rest
    assert validation and not set(validation) & (set(seen[0]) | set(seen[1]))
    # two sources, weights 3:1 of the tokens, one with documents 4x longer
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    (tmp_path / "long.jsonl").write_text("".join(json.dumps({"text": " ".join([d] * 4)}) + "\n" for d in docs))
    cfg = DataConfig(sources=[KINDS["json"](path=str(tmp_path / "long.jsonl"), streaming=True, weight=3.0),
                              KINDS["json"](path=str(tmp_path / "c.jsonl"), streaming=True, weight=1.0)],
                     validation_fraction=0)
    stream, report = document_stream(build_streaming_corpus(cfg, 0), tokenizer, 0)
    long_ids = {tuple(x) for x in tokenizer([" ".join([d] * 4) for d in docs], add_special_tokens=False)["input_ids"]}
    tokens = {"long": 0, "short": 0}
    for _, r in zip(range(600), stream):
        tokens["long" if tuple(r["input_ids"][:-1]) in long_ids else "short"] += len(r["input_ids"])
    share = tokens["long"] / sum(tokens.values())
    assert abs(share - 0.75) < 0.08, (share, report)
    assert report["long"]["mean_tokens_per_document"] > 3 * report["c"]["mean_tokens_per_document"]


def test_a_hub_dataset_streams_offline(tmp_path, monkeypatch):
    from test_data import _dataset_repo, _hub_import

    from hfkit.data.sources import HubSource

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    de = [{"en": f"file {i}", "de": f"Datei {i}"} for i in range(8)]
    _hub_import(_dataset_repo(tmp_path / "v1", de, de[:2]), "acme/pairs", cache)
    src = HubSource(path="acme/pairs", config_name="de", split="test", streaming=True)
    from datasets import IterableDataset

    ds = src.stream()
    assert isinstance(ds, IterableDataset) and list(ds) == de[:3]


STREAM = [o for o in TINY_MODEL if not o.startswith("save_strategy=")] + [
    "save_strategy=steps", "save_steps=10", "data.shuffle_buffer_size=16", "data.streaming_validation_documents=8"]


def test_streaming_run_resumes_bit_exactly_from_the_saved_stream_state(tmp_path, monkeypatch):
    """A clm run on a streamed JSONL: killed after checkpoint-10 and resumed, it ends with weights equal to
    the uninterrupted run's, continuing the stream from the state in the checkpoint (nothing skipped
    or read twice); a checkpoint without that state resumes by skipping, also exactly."""
    import transformers.trainer as trainer_module

    import hfkit

    _pydoc_jsonl(tmp_path / "c.jsonl")
    src = f"data.sources=[{{kind: json, path: {tmp_path / 'c.jsonl'}, streaming: true}}]"
    full = tmp_path / "full"
    m = hfkit.train("clm_pretrain", STREAM + [src, f"output_dir={full}", "max_steps=20"], quiet=True)
    assert m["data"]["streaming"] and (full / "checkpoint-10" / "hfkit_stream_rank0.npz").is_file()
    assert m["data"]["validation_packing"]["blocks"] > 0

    def resume(name, drop_state):
        part = tmp_path / name
        part.mkdir()
        for f in ("recipe.yaml", ".hfkit.json"):
            shutil.copy(full / f, part / f)
        marker = json.loads((part / ".hfkit.json").read_text())
        (part / ".hfkit.json").write_text(json.dumps({**marker, "state": "running"}))
        shutil.copytree(full / "checkpoint-10", part / "checkpoint-10")
        if drop_state:  # as an older checkpoint: the stream is read again and the trained blocks skipped
            (part / "checkpoint-10" / "hfkit_stream_rank0.npz").unlink()
            manifest = part / "checkpoint-10" / "hfkit_checkpoint.json"
            m = json.loads(manifest.read_text())
            del m["files"]["hfkit_stream_rank0.npz"]
            manifest.write_text(json.dumps(m))
        hfkit.train("clm_pretrain", STREAM + [src, f"output_dir={part}", "max_steps=20",
                                              "resume_from_checkpoint=auto"], quiet=True)
        a, b = load_file(full / "model.safetensors"), load_file(part / "model.safetensors")
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a), name

    real_skip = trainer_module.skip_first_batches
    skipped = []
    monkeypatch.setattr(trainer_module, "skip_first_batches", lambda dl, n: skipped.append(n) or real_skip(dl, n))
    resume("from_state", drop_state=False)
    assert skipped == []  # continued from the saved state
    resume("by_skipping", drop_state=True)
    assert skipped == [10]


def test_two_processes_stream_their_own_parts_and_save_both_states(tmp_path):
    """2 ranks (gloo on CPU) each read their part of the stream (split_dataset_by_node), train one model
    (the same tokenizer, trained on every rank's documents alike) and save their own stream state."""
    import os
    import subprocess
    import sys

    _pydoc_jsonl(tmp_path / "c.jsonl")
    run = [o for o in STREAM if not o.startswith("per_device_train_batch_size")]
    p = subprocess.run([sys.executable, "-m", "hfkit", "train", "clm_pretrain", *run, "per_device_train_batch_size=8",
                        f"data.sources=[{{kind: json, path: {tmp_path / 'c.jsonl'}, streaming: true}}]", "max_steps=10",
                        "save_steps=5", f"output_dir={tmp_path / 'two'}", "--num-processes", "2", "--json"],
                       capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["world_size"] == 2 and out["data"]["world_size"] == 2
    ranks = out["rank_weights_sha256"]
    assert len(ranks) == 2 and ranks[0] == ranks[1]
    metas = []
    for rank in (0, 1):
        with np.load(tmp_path / "two" / "checkpoint-5" / f"hfkit_stream_rank{rank}.npz") as z:
            metas.append(json.loads(str(z["meta"])))
    assert [m["consumed"] for m in metas] == [40, 40]  # 5 steps x 8 blocks, each rank
    assert metas[0]["upstream"] != metas[1]["upstream"]  # each rank where its own part of the stream is
