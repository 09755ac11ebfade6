import json
import struct

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

from hfkit.data.gettext_pairs import gettext_pairs, is_format_only
from hfkit.data.templates import CHATML_TEMPLATE, Template
from hfkit.data.tokenizer import train_tokenizer
from hfkit.errors import HfkitError
from hfkit.data.templates import setup_chat_template
from hfkit.tasks.sft import PaddingFreeCollator, check_padding_free, tokenize_sft
from hfkit.tasks.sft import SftConfig, TemplateConfig


@pytest.fixture(scope="module")
def tok():
    from hfkit.data.pydoc import default_corpus_documents

    t = train_tokenizer(default_corpus_documents() + ["Guten Tag. Datei öffnen."], "bpe", 600)
    t.chat_template = CHATML_TEMPLATE
    setup_chat_template(t, None)
    return t


def _records(rows):
    return Dataset.from_list([{**r, "_index": i} for i, r in enumerate(rows)])


def test_instruction_labels_mask_exactly_the_prompt(tok):
    rows = [{"instruction": "Name a loop statement.", "input": "", "output": "The for statement."},
            {"instruction": "Translate", "input": "Open file", "output": "Datei öffnen"}]
    cfg = SftConfig(format="instruction")
    from hfkit.tasks.sft import recipe_templates

    ds, dropped = tokenize_sft(_records(rows), tok, cfg, recipe_templates(cfg), seed=0)
    assert dropped == 0
    for row, ex in zip(rows, ds):
        prompt, answer = recipe_templates(cfg)[0].render(row)
        p = tok(prompt)["input_ids"]
        a = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert ex["input_ids"] == p + a
        assert ex["labels"] == [-100] * len(p) + a
        assert ("### Input:" in prompt) == bool(row["input"])
    full, _ = tokenize_sft(_records(rows), tok, SftConfig(format="instruction", completion_only_loss=False),
                           recipe_templates(cfg), seed=0)
    assert full[0]["labels"] == full[0]["input_ids"]


def test_multi_turn_chat_trains_every_assistant_turn_and_nothing_else(tok):
    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Open a file?"},
            {"role": "assistant", "content": "Use open()."}]
    ds, _ = tokenize_sft(_records([{"messages": msgs}]), tok, SftConfig(format="chat"), [], seed=0)
    ids, labels = ds[0]["input_ids"], ds[0]["labels"]
    trained = [i for i, lab in zip(ids, labels) if lab != -100]
    assert all(lab in (-100, i) for i, lab in zip(ids, labels))
    assert tok.decode(trained) == "Hello.<|im_end|>\nUse open().<|im_end|>\n"
    # every token of system and user turns is masked: the labelled tokens form exactly two runs
    runs = sum(1 for j in range(len(labels)) if labels[j] != -100 and (j == 0 or labels[j - 1] == -100))
    assert runs == 2
    system = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    ds2, _ = tokenize_sft(_records([{"messages": system}]), tok, SftConfig(format="chat", system_prompt="Be kind."), [], 0)
    assert "Be kind." in tok.decode(ds2[0]["input_ids"])


@pytest.mark.parametrize("config", [
    LlamaConfig(vocab_size=700, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2),
    GPT2Config(vocab_size=700, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0),
], ids=["llama", "gpt2"])
def test_padding_free_packing_equals_examples_alone(config, tok):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).train()  # train mode: use_cache stays on in the config
    rows = [{"prompt": "The if statement", "completion": " selects a suite."},
            {"prompt": "Open", "completion": " a file for reading and writing."},
            {"prompt": "x", "completion": " y"}]
    cfg = SftConfig(format="prompt_completion")
    from hfkit.tasks.sft import recipe_templates

    ds, _ = tokenize_sft(_records(rows), tok, cfg, recipe_templates(cfg), seed=0)
    feats = [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in ds]
    lens = [len(f["input_ids"]) for f in feats]
    one_row = PaddingFreeCollator(return_position_ids=True, separator_id=-100)(feats)
    assert one_row["input_ids"].shape == (1, sum(lens))  # no padding at all
    rows = PaddingFreeCollator(return_position_ids=True, separator_id=-100, max_row_tokens=lens[0] + lens[1] - 1)(feats)
    assert rows["input_ids"].shape == (2, max(lens[0], lens[1] + lens[2]))  # rows [f0], [f1 f2]
    for batch, placement in ((one_row, [(0, 0), (0, lens[0]), (0, lens[0] + lens[1])]),
                             (rows, [(0, 0), (1, 0), (1, lens[1])])):
        out = model(**batch)
        nll, count = 0.0, 0
        for f, (r, start) in zip(feats, placement):
            n = len(f["input_ids"])
            alone = model(input_ids=torch.tensor([f["input_ids"]]), labels=torch.tensor([f["labels"]]), use_cache=False)
            assert torch.allclose(out.logits[r, start:start + n], alone.logits[0], atol=1e-4)
            k = sum(1 for x in f["labels"][1:] if x != -100)
            nll += alone.loss.item() * k
            count += k
        # the packed loss is the token-weighted loss of the examples run one by one (filler carries no labels)
        assert out.loss.item() == pytest.approx(nll / count, rel=1e-5)
    check_padding_free(model)  # the run-time self-check agrees


def test_unsupported_attention_for_padding_free_is_refused():
    model = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2))
    model.config._attn_implementation = "paged|sdpa"
    with pytest.raises(HfkitError, match="does not support attn_implementation 'paged|sdpa'"):
        check_padding_free(model)


def test_truncation_never_cuts_the_prompt(tok):
    rows = [{"prompt": "word " * 60, "completion": " answer"}, {"prompt": "short", "completion": " long " * 50}]
    cfg = SftConfig(format="prompt_completion", max_length=32)
    from hfkit.tasks.sft import recipe_templates

    ds, dropped = tokenize_sft(_records(rows), tok, cfg, recipe_templates(cfg), seed=0)
    assert dropped == 1 and len(ds) == 1
    ex = ds[0]
    assert len(ex["input_ids"]) == 32
    assert ex["labels"][: len(tok("short")["input_ids"])] == [-100] * len(tok("short")["input_ids"])
    assert sum(1 for x in ex["labels"] if x != -100) == 32 - len(tok("short")["input_ids"])


def test_template_round_trip_and_mixing():
    t = Template("Q: {{ question }}\nA:", " The answer is {{ answer }}.", "qa")
    prompt, target = t.render({"question": "2+2?", "answer": "4"})
    assert prompt == "Q: 2+2?\nA:" and target == " The answer is 4."
    assert t.extract_answer(target) == "4"
    assert t.extract_answer("The answer is forty two. And more text") == "forty two"
    plain = Template("{{ source }}", "{{ target }}")
    assert plain.extract_answer("  Datei öffnen \n") == "Datei öffnen"
    from hfkit.data.templates import choose_template

    ts = [Template("a{{x}}", "{{y}}", "a"), Template("b{{x}}", "{{y}}", "b")]
    picks = [choose_template(ts, i, seed=1).name for i in range(200)]
    assert picks == [choose_template(ts, i, seed=1).name for i in range(200)]  # deterministic
    assert 70 < picks.count("a") < 130  # both used
    with pytest.raises(HfkitError, match="template 'qa' references an unknown field"):
        t.render({"question": "x"}, 3)


def write_mo(path, entries: dict, charset="UTF-8", raw: dict | None = None):
    """A GNU .mo catalog (what msgfmt writes): header, then sorted msgid/msgstr tables."""
    entries = {"": f"Content-Type: text/plain; charset={charset}\n", **entries}
    items = sorted((k.encode(), v.encode() if isinstance(v, str) else v) for k, v in entries.items())
    if raw:
        items = sorted(items + list(raw.items()))
    ids = b"".join(k + b"\0" for k, _ in items)
    strs = b"".join(v + b"\0" for _, v in items)
    n = len(items)
    start = 7 * 4 + 16 * n
    koffs, voffs, o = [], [], 0
    for k, _ in items:
        koffs += [len(k), start + o]
        o += len(k) + 1
    o2 = 0
    for _, v in items:
        voffs += [len(v), start + len(ids) + o2]
        o2 += len(v) + 1
    header = struct.pack("Iiiiiii", 0x950412DE, 0, n, 7 * 4, 7 * 4 + n * 8, 0, 0)
    path.write_bytes(header + struct.pack(f"{2 * n}i", *koffs) + struct.pack(f"{2 * n}i", *voffs) + ids + strs)


def test_gettext_builder_gives_exactly_the_catalog_pairs(tmp_path):
    folder = tmp_path / "de" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    write_mo(folder / "alpha.mo", {"Open file": "Datei öffnen", "%s: %s": "%s : %s", "Cancel": "Abbrechen",
                                   "Same": "Same", "Untranslated": "", "menu\x04Quit": "Beenden"})
    write_mo(folder / "beta.mo", {"Cancel": "Stornieren", "Save %s as...": "%s speichern unter..."})
    write_mo(folder / "broken.mo", {}, raw={b"Bad": b"\xff\xfe kaputt"})
    ds, report = gettext_pairs("de", str(tmp_path))
    assert ds.to_list() == [
        {"source": "Cancel", "target": "Abbrechen", "catalog": "alpha"},
        {"source": "Open file", "target": "Datei öffnen", "catalog": "alpha"},
        {"source": "Quit", "target": "Beenden", "catalog": "alpha"},
        {"source": "Save %s as...", "target": "%s speichern unter...", "catalog": "beta"},
    ]
    assert report["duplicates"] == 1 and report["format_only"] == 1 and report["untranslated"] == 2
    assert report["catalogs_skipped"] == ["broken.mo: UnicodeDecodeError"]
    assert is_format_only("%s: %d") and is_format_only("{0} - <b>%(name)s</b>") and not is_format_only("%s files")
    with pytest.raises(HfkitError, match="no gettext catalogs for language 'xx'"):
        gettext_pairs("xx", str(tmp_path))


MEMO = [{"instruction": f"What is the code word number {i}?", "output": w}
        for i, w in enumerate(["apple tree", "blue river", "cold stone", "dark forest", "empty glass", "fast horse"])]


def _sft_overrides(data_path, out, extra=()):
    return ["model.hidden_size=64", "model.num_layers=2", "model.num_heads=2", "model.max_position_embeddings=256",
            "tokenizer.vocab_size=300", "data.sources.0.kind=json", f"data.sources.0.path={data_path}",
            "data.validation_fraction=0", "sft.max_length=256", f"output_dir={out}", "learning_rate=3e-3",
            "warmup_steps=0", "logging_steps=10", "save_strategy=no", "generate.prompts=[]",
            "per_device_train_batch_size=6", *extra]


@pytest.mark.parametrize("packing", ["padding_free", "padded"])
def test_tiny_model_learns_instructions_and_reproduces_a_memorised_answer(packing, tmp_path):
    import hfkit
    from hfkit.data.templates import ALPACA_PROMPT
    from hfkit.inference.generation import generate

    data = tmp_path / "memo.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in MEMO))
    m = hfkit.train("sft", _sft_overrides(data, tmp_path / "run", ["max_steps=150", f"sft.padding_free={packing == 'padding_free'}"]),
                    quiet=True)
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < losses[0] / 5
    assert m["data"]["trained_tokens"] < m["data"]["train_tokens"] / 3  # the prompt is not trained
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run")
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(tmp_path / "run")
    prompt = Template(ALPACA_PROMPT, "{{ output }}").render({**MEMO[3], "input": ""})[0]
    out = generate(model, t, [prompt], max_new_tokens=20, add_special_tokens=True)[0][0]
    assert out.strip() == "dark forest"


BAD_SFT = [
    ([{"instruction": "a", "output": "b"}, {"instruction": "c", "output": None}], [], "record 1: field 'output' is missing"),
    ([{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "  "}], [], "record 1: empty answer"),
    ([{"question": "a", "output": "b"}], [], "record 0 is missing field 'instruction'"),
    ([{"question": "a", "answer": "b"}], ["sft.fields.instruction=quest", "sft.fields.output=answer"],
     "mapped field 'quest' (sft.fields) not found"),
    ([{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}], ["sft.format=chat"],
     "record 0: chat roles out of order at message 1 (expected 'assistant', got 'user')"),
    ([{"q": "a", "a": "b"}], ["sft.templates=[{prompt: '{{ q }} {{ nope }}', answer: '{{ a }}', name: t1}]"],
     "record 0 is missing field 'nope'"),
    ([{"q": "a", "a": "b"}], ["sft.templates=[{prompt: '{{ q }', answer: '{{ a }}', name: t1}]"],
     "template 't1': Jinja syntax error"),
]


@pytest.mark.parametrize("rows, extra, message", BAD_SFT, ids=[m[:25] for _, _, m in BAD_SFT])
def test_bad_sft_input_exits_2_with_one_line(rows, extra, message, tmp_path, capsys):
    from hfkit.cli import main

    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    rc = main(["train", "sft", *_sft_overrides(data, tmp_path / "out", ["max_steps=2", *extra])])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_recipe_template_config_parses():
    from hfkit.recipe import load_recipe

    r = load_recipe("sft_translate", ["max_steps=1"])
    assert r.task == "sft" and [t.name for t in r.task_config.templates] == ["instruction", "pair"]
    assert isinstance(r.task_config.templates[0], TemplateConfig) and r.eval.metrics == ["bleu", "chrf"]


def test_chat_format_training_and_the_chat_command(tmp_path):
    import subprocess
    import sys

    import hfkit

    data = tmp_path / "chats.jsonl"
    data.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": r["instruction"]},
                                                       {"role": "assistant", "content": r["output"]}]})
                              for r in MEMO))
    hfkit.train("sft", _sft_overrides(data, tmp_path / "chat", ["max_steps=150", "sft.format=chat"]), quiet=True)
    saved = json.loads((tmp_path / "chat" / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in json.dumps(saved) or (tmp_path / "chat" / "chat_template.jinja").exists()
    p = subprocess.run([sys.executable, "-m", "hfkit", "chat", str(tmp_path / "chat"), "--max-new-tokens", "20"],
                       input=f"{MEMO[2]['instruction']}\n/reset\n{MEMO[4]['instruction']}\n\n",
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    replies = [line.split("model> ", 1)[1].strip() for line in p.stdout.splitlines() if "model> " in line]
    assert replies == ["cold stone", "empty glass"]
    # `hfkit eval` rebuilds the chat prompts (template, generation prompt, stop tokens) from the run
    from hfkit.cli import main

    assert main(["eval", "match", "--model", str(tmp_path / "chat"), "--data", str(data), "--max-new-tokens", "20",
                 "--output", str(tmp_path / "match.json")]) == 0
    rep = json.loads((tmp_path / "match.json").read_text())
    assert rep["metrics"]["n"] == len(MEMO) and round(rep["metrics"]["accuracy"] * len(MEMO) / 100) >= 5


def test_data_gettext_command_writes_jsonl(tmp_path, capsys):
    from hfkit.cli import main

    folder = tmp_path / "fr" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    write_mo(folder / "app.mo", {"Open file": "Ouvrir le fichier", "Close": "Fermer"})
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "gettext", "--lang", "fr", "--locale-dir", str(tmp_path), "--output", str(out), "--json"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["source"], r["target"]) for r in rows] == [("Close", "Fermer"), ("Open file", "Ouvrir le fichier")]
    assert json.loads(capsys.readouterr().out)["pairs"] == 2


def test_best_fit_rows_never_overflow_lose_no_example_and_fill_rows():
    import random

    from hfkit.data.packing import best_fit_rows

    assert sorted(map(sorted, best_fit_rows([6, 5, 4, 3, 2], 10))) == [[0, 2], [1, 3, 4]]  # 6+4, 5+3+2: 2 full rows
    rng = random.Random(0)
    lengths = [min(256, max(4, int(rng.lognormvariate(3.4, 0.8)))) for _ in range(3000)]
    rows = best_fit_rows(lengths, 256)
    assert sorted(i for r in rows for i in r) == list(range(3000))  # every example exactly once
    assert max(sum(lengths[i] for i in r) for r in rows) <= 256
    fill = sum(lengths) / (256 * len(rows))
    assert fill > 0.95  # filler below 5% (consecutive filling of the same examples: see below)
    greedy, used = 1, 0
    for n in lengths:  # rows filled in order, as the batch strategy does
        if used + n > 256:
            greedy, used = greedy + 1, 0
        used += n
    assert len(rows) < greedy


def test_best_fit_packed_rows_equal_examples_alone(tok):
    from hfkit.data.packing import pack_examples
    from hfkit.tasks.sft import PackedRowsCollator, recipe_templates

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(
        vocab_size=700, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2)).train()
    rows = [{"prompt": "The if statement", "completion": " selects a suite."},
            {"prompt": "Open", "completion": " a file for reading and writing."},
            {"prompt": "x", "completion": " y"}, {"prompt": "A class", "completion": " bundles data."}]
    cfg = SftConfig(format="prompt_completion")
    ds, _ = tokenize_sft(_records(rows), tok, cfg, recipe_templates(cfg), seed=0)
    ds = ds.remove_columns([c for c in ds.column_names if c not in ("input_ids", "labels")])
    lens = [len(x) for x in ds["input_ids"]]
    packed, stats = pack_examples(ds, max(lens) + min(lens))
    assert stats["examples"] == 4 and stats["rows"] < 4 and sum(map(len, packed["input_ids"])) == sum(lens)
    batch = PackedRowsCollator(0)([packed[i] for i in range(len(packed))])
    out = model(**batch)
    nll, count, seen = 0.0, 0, 0
    for r in range(len(packed)):
        pos = packed[r]["position_ids"]
        starts = [j for j, p in enumerate(pos) if p == 0]
        for a, b in zip(starts, starts[1:] + [len(pos)]):
            ids = packed[r]["input_ids"][a:b]
            i = ds["input_ids"].index(ids)  # which example this segment is
            alone = model(input_ids=torch.tensor([ids]), labels=torch.tensor([ds[i]["labels"]]), use_cache=False)
            assert torch.allclose(out.logits[r, a:b], alone.logits[0], atol=1e-4)
            k = sum(1 for x in ds[i]["labels"][1:] if x != -100)
            nll, count, seen = nll + alone.loss.item() * k, count + k, seen + 1
    assert seen == 4
    assert out.loss.item() == pytest.approx(nll / count, rel=1e-5)  # the packed loss: the examples' token-weighted loss


def test_the_sft_recipe_trains_on_best_fit_rows_and_reports_their_fill(tmp_path):
    import hfkit
    from conftest import TINY_MODEL

    over = [o for o in TINY_MODEL if not o.startswith(("data.block_size", "model.max_position"))]
    m = hfkit.train("sft", over + ["model.max_position_embeddings=512", "sft.max_length=512", "max_steps=6",
                                   "per_device_train_batch_size=2", "sft.packing_strategy=bfd",
                                   f"output_dir={tmp_path / 'run'}"], quiet=True)
    p = m["data"]["packing"]
    assert p["strategy"] == "bfd" and p["row_fill"] > 0.9 and p["rows"] < p["examples"]
    # every token trained on is an example's: the filler (padding to the longest row) is not counted
    assert 6 * 2 * 512 * 0.9 < m["train"]["train_tokens"] <= 6 * 2 * 512
    assert m["eval_after"]["eval_loss"] < m["eval_before"]["eval_loss"]


def test_best_fit_rows_cut_the_filler_the_data_report_states(tmp_path):
    from conftest import TINY_MODEL
    from hfkit.job import prepare_data

    over = [o for o in TINY_MODEL if not o.startswith(("data.block_size", "model.max_position"))]
    over += ["model.max_position_embeddings=512", "sft.max_length=512", f"output_dir={tmp_path / 'r'}"]
    _, batch = prepare_data("sft", over + ["per_device_train_batch_size=16"])
    _, bfd = prepare_data("sft", over + ["per_device_train_batch_size=3", "sft.packing_strategy=bfd"])
    assert bfd.stats["filler_fraction"] < 0.1 < batch.stats["filler_fraction"]
    assert bfd.stats["filler_fraction"] <= 1 - bfd.stats["packing"]["row_fill"] + 0.05


def test_record_pipeline_keeps_a_field_named_text_and_splits_each_source_deterministically(tmp_path):
    """A template may read a field called `text` (the pipeline's dedup key never takes its name); exact
    duplicates go, each source keeps its own validation share, and the split repeats for the seed."""
    from hfkit.recipe import load_recipe
    from hfkit.tasks.sft import load_sft_records

    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    rows_a = [{"text": f"sentence {i}", "answer": f"A{i}"} for i in range(20)] + [{"text": "sentence 3", "answer": "A3"}]
    rows_b = [{"text": f"line {i}", "answer": f"B{i}"} for i in range(10)]
    a.write_text("".join(json.dumps(r) + "\n" for r in rows_a))
    b.write_text("".join(json.dumps(r) + "\n" for r in rows_b))
    over = ["data.sources=[{kind: json, path: " + str(a) + "}, {kind: json, path: " + str(b) + "}]",
            "data.validation_fraction=0.2", f"output_dir={tmp_path / 'out'}",
            "sft.templates=[{prompt: 'Say {{ text }}: ', answer: '{{ answer }}', name: t}]"]
    recipe = load_recipe("sft", over)
    got = load_sft_records(recipe, 7)
    again = load_sft_records(recipe, 7)
    assert got.stats["removed_duplicates"] == 1
    train = {k: sorted(v["text"]) for k, v in got.train.items()}
    assert [len(v) for v in train.values()] == [16, 8] and len(got.validation) == 4 + 2
    assert set(got.validation["text"]) | {t for v in train.values() for t in v} == {r["text"] for r in rows_a + rows_b}
    assert not set(got.validation["text"]) & {t for v in train.values() for t in v}
    assert train == {k: sorted(v["text"]) for k, v in again.train.items()}
    assert list(got.validation["text"]) == list(again.validation["text"])


def test_stdlib_summarization_and_code_records_match_the_sources_they_come_from():
    """python_summaries: each summary is the first line of the object's docstring as `inspect` reads it,
    the document the rest; python_code: prompt + completion parse back to the very function."""
    import ast
    import importlib
    import inspect

    from hfkit.data.code_tokens import stdlib_files
    from hfkit.data.docstrings import code_records, summarization_records

    summaries = summarization_records(40)
    checked = 0
    for r in summaries:
        try:
            obj = importlib.import_module(r["module"])
            for part in r["name"].split("."):
                obj = getattr(obj, part)
        except Exception:
            continue  # a name the module does not export (defined under a condition)
        python = inspect.isfunction(obj) or (inspect.isclass(obj) and any(map(inspect.isfunction, vars(obj).values())))
        if not python or getattr(obj, "__qualname__", None) != r["name"]:
            continue  # a C implementation that replaced the Python one (datetime), or an alias
        doc = inspect.getdoc(obj).splitlines()
        assert doc[0].strip() == r["summary"] and "\n".join(doc[2:]).strip() == r["document"]
        checked += 1
    assert checked >= 20 and len(set(summaries["module"])) >= 10
    code = code_records(40)
    files = {p.stem: p for p in stdlib_files(40)}
    for r in code.select(range(0, len(code), max(1, len(code) // 60))):
        fn = ast.parse(r["prompt"] + r["completion"]).body[0]
        original = [n for n in ast.walk(ast.parse(files[r["module"]].read_text(encoding="utf-8", errors="replace")))
                    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == r["name"].split(".")[-1]]
        # the same arguments, statements and (cleaned) docstring; a method's docstring loses its indent
        same = [o for o in original if ast.dump(o.args) == ast.dump(fn.args)
                and [ast.dump(x) for x in o.body[1:]] == [ast.dump(x) for x in fn.body[1:]]
                and ast.get_docstring(o).split() == ast.get_docstring(fn).split()]
        assert same, (r["module"], r["name"])
        assert ast.get_docstring(fn) and len(fn.body) >= 2


def test_sft_group_field_holds_whole_modules_out(tmp_path):
    from hfkit.recipe import load_recipe
    from hfkit.tasks.sft import load_sft_records

    over = ["data.sources=[{kind: python_summaries, max_records: 30}]", "data.validation_fraction=0.2",
            "sft.group_field=module", f"output_dir={tmp_path / 'out'}",
            "sft.templates=[{prompt: 'Summarize: {{ document }} Summary:', answer: ' {{ summary }}', name: s}]"]
    got = load_sft_records(load_recipe("sft", over), 3)
    train = next(iter(got.train.values()))
    held, kept = set(got.validation["module"]), set(train["module"])
    assert held and kept and not held & kept
    assert got.stats["split_by"] == "module" and got.stats["validation_groups"] == len(held)
    src = next(iter(got.stats["sources"].values()))
    assert src["train"] == len(train) and src["validation"] == len(got.validation)
    assert 0.1 < len(got.validation) / (len(train) + len(got.validation)) < 0.35
    with pytest.raises(HfkitError, match="field 'nope' \\(sft.group_field\\) not found"):
        load_sft_records(load_recipe("sft", over + ["sft.group_field=nope"]), 3)
