"""Task heads (classification, token classification, extractive QA): sub-token label alignment, QA
windows and answer mapping, last-token pooling of decoders, the metrics against hand counts and
seqeval, the built-in labelled sets, and a tiny classifier that learns a separable set."""
import json

import numpy as np
import pytest
import torch

from conftest import TINY_MODEL


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from hfkit.data.tokenizer import load_tokenizer
    from hfkit.hub import MINILM_ID, seed_minilm

    seed_minilm()
    return load_tokenizer(MINILM_ID)


# ---------------------------------------------------------------------------------------- token labels


def test_first_sub_token_carries_the_word_label_and_the_rest_are_ignored(minilm_tokenizer):
    from hfkit.tasks.token_classification import align_labels

    tok = minilm_tokenizer
    words = ["Tokenization", "of", "hyperparameters", "is", "straightforward"]
    tags = [3, 0, 4, 0, 5]
    pieces = [len(tok(w, add_special_tokens=False)["input_ids"]) for w in words]  # each word alone
    assert max(pieces) >= 3  # words really split into several sub-tokens
    enc = tok(words, is_split_into_words=True)
    labels = align_labels(enc.word_ids(), tags)
    expected = [-100]  # [CLS]
    for tag, n in zip(tags, pieces):
        expected += [tag] + [-100] * (n - 1)
    expected += [-100]  # [SEP]
    assert labels == expected
    # label_all_tokens: every sub-token carries the tag, B- turned into I- after the first
    all_labels = align_labels(enc.word_ids(), tags, label_all_tokens=True, b_to_i={3: 6})
    expected_all = [-100]
    for tag, n in zip(tags, pieces):
        expected_all += [tag] + [{3: 6}.get(tag, tag)] * (n - 1)
    assert all_labels == expected_all + [-100]


def test_seqeval_scores_equal_a_hand_count():
    from hfkit.tasks.token_classification import seqeval_scores

    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-LOC"]]
    # entities gold: PER(0-1), LOC(3), ORG(0) = 3; predicted: PER(0-1), ORG(3), ORG(0), LOC(1) = 4; correct: 2
    s = seqeval_scores(pred, gold)
    p, r = 2 / 4, 2 / 3
    assert s["precision"] == pytest.approx(100 * p)
    assert s["recall"] == pytest.approx(100 * r)
    assert s["f1"] == pytest.approx(100 * 2 * p * r / (p + r))
    assert s["accuracy"] == pytest.approx(100 * 4 / 6)  # tokens right: 3 of 4 + 1 of 2
    # per type: PER 1/1 found, 1/1 right -> 100; LOC: 0 right of 1 gold, 1 predicted -> 0; ORG: 1 of 1 gold, 2 predicted
    assert s["f1_per"] == 100 and s["f1_loc"] == 0 and s["f1_org"] == pytest.approx(100 * 2 * 0.5 * 1 / 1.5)


def test_code_tokens_are_tagged_by_pythons_tokenizer():
    from hfkit.data.code_tokens import tag_source

    tagged = [(t, g) for _, t, g in tag_source("def f(x):  # note\n    return len(x) + 1.5 or 'a'\n")]
    assert tagged == [("def", "KEYWORD"), ("f", "NAME"), ("(", "OP"), ("x", "NAME"), (")", "OP"), (":", "OP"),
                      ("# note", "COMMENT"), ("return", "KEYWORD"), ("len", "BUILTIN"), ("(", "OP"), ("x", "NAME"),
                      (")", "OP"), ("+", "OP"), ("1.5", "NUMBER"), ("or", "KEYWORD"), ("'a'", "STRING")]


# ---------------------------------------------------------------------------------------- extractive QA


def _qa_cfg(**kw):
    from hfkit.tasks.question_answering import QaConfig

    return QaConfig(**{"max_length": 48, "doc_stride": 16, "max_answer_length": 30, **kw})


def _features(tok, question, context, answers, cfg, for_eval=True):
    from datasets import Dataset

    from hfkit.tasks.question_answering import qa_features

    batch = {"question": [question], "context": [context], "answers": [answers], "_example": [0]}
    return Dataset.from_dict(qa_features(batch, tok, cfg, keep_types=True, for_eval=for_eval))


def test_qa_answer_in_a_later_window_maps_back_to_its_exact_text(minilm_tokenizer):
    from hfkit.tasks.question_answering import postprocess_qa_predictions

    tok, cfg = minilm_tokenizer, _qa_cfg()
    filler = " ".join(f"Sentence number {i} says nothing in particular." for i in range(12))
    answer = 'if_stmt ::= "if" assignment_expression ":" suite'
    context = f"{filler} The rule is {answer} and that is all. {filler}"
    start = context.index(answer)
    feats = _features(tok, "What is the syntax of if_stmt?", context, {"text": [answer], "answer_start": [start]}, cfg)
    assert len(feats) >= 4  # the context needs several windows
    holding = [i for i in range(len(feats)) if feats[i]["start_positions"] != 0]
    assert holding and holding[0] >= 1  # not in the first window
    for i in range(len(feats)):
        s, e, offsets = feats[i]["start_positions"], feats[i]["end_positions"], feats[i]["offset_mapping"]
        if i in holding:
            assert context[offsets[s][0]:offsets[e][1]] == answer  # the positions cover exactly the answer
        else:
            assert s == e == 0  # windows without the whole answer point at [CLS]
    # post-processing: logits peaked at the answer's tokens in one window recover the text exactly
    n, width = len(feats), len(feats[0]["input_ids"])
    start_logits, end_logits = np.zeros((n, width)), np.zeros((n, width))
    i = holding[0]
    start_logits[i, feats[i]["start_positions"]] = 10
    end_logits[i, feats[i]["end_positions"]] = 10
    assert postprocess_qa_predictions([context], feats, start_logits, end_logits) == [answer]
    # SQuAD 2.0: when the null score beats the best span by more than the threshold, no answer
    start_logits[:, 0] = end_logits[:, 0] = 12
    assert postprocess_qa_predictions([context], feats, start_logits, end_logits, version_2_with_negative=True) == [""]
    assert postprocess_qa_predictions([context], feats, start_logits, end_logits, version_2_with_negative=True,
                                      null_score_diff_threshold=5.0) == [answer]


def test_qa_question_without_answer_points_every_window_at_cls(minilm_tokenizer):
    tok, cfg = minilm_tokenizer, _qa_cfg(version_2_with_negative=True)
    context = " ".join(f"Line {i} of a long context without the answer." for i in range(15))
    feats = _features(tok, "What is the syntax of while_stmt?", context, {"text": [], "answer_start": []}, cfg)
    assert len(feats) > 1
    assert set(feats["start_positions"]) == set(feats["end_positions"]) == {0}
    assert all(tok.convert_ids_to_tokens(ids[0]) == "[CLS]" for ids in feats["input_ids"])


def test_squad_scores_equal_a_hand_count():
    from hfkit.tasks.question_answering import squad_scores

    preds = ["The Cat sat", "on the mat", "", "dog"]
    gold = [["the cat sat"], ["sat on a mat", "mat"], [], ["cat"]]
    s = squad_scores(preds, gold)
    # EM: 1, 0, 1 (no answer, none predicted), 0. F1 of "on mat" (articles dropped): vs "sat on mat" P 1 R 2/3,
    # vs "mat" P 1/2 R 1 -> the better one counts
    f1_2 = max(2 * 1 * (2 / 3) / (1 + 2 / 3), 2 * (1 / 2) * 1 / (1 / 2 + 1))
    assert s["exact_match"] == pytest.approx(100 * 2 / 4)
    assert s["f1"] == pytest.approx(100 * (1 + f1_2 + 1 + 0) / 4)
    assert s["no_answer_accuracy"] == 100.0 and s["has_answer_exact_match"] == pytest.approx(100 / 3)


def test_grammar_qa_answers_are_exact_spans_and_nested_squad_json_flattens(tmp_path):
    from datasets import load_dataset

    from hfkit.data.pydoc_grammar import grammar_qa_records
    from hfkit.tasks.question_answering import flatten_squad

    ds = grammar_qa_records()
    answered = [r for r in ds if r["answers"]["text"]]
    assert len(answered) > 150 and len(ds) > len(answered)
    for r in answered:
        (text,), (start,) = r["answers"]["text"], r["answers"]["answer_start"]
        assert r["context"][start:start + len(text)] == text and "::=" in text
        assert text.split()[0] == r["production"] and f" {r['production']}" in f" {r['question']}"
    for r in ds:
        if not r["answers"]["text"]:
            assert f" {r['production']}" in f" {r['question']}"
            assert not any(f"{r['production']} ::=" in " ".join(line.split()) for line in r["context"].splitlines())
    squad = {"version": "v2.0", "data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "q1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]},
        {"id": "q2", "question": "Where is Rome?", "answers": [], "is_impossible": True}]}]}]}
    (tmp_path / "squad.json").write_text(json.dumps(squad))
    flat = flatten_squad(load_dataset("json", data_files=str(tmp_path / "squad.json"), split="train"), "squad.json")
    assert flat["question"] == ["Where is Paris?", "Where is Rome?"]
    assert flat["answers"] == [{"text": ["France"], "answer_start": [12]}, {"text": [], "answer_start": []}]


# ---------------------------------------------------------------------------------------- classification


@pytest.mark.parametrize("side", ["right", "left"])
def test_decoder_classifier_pools_the_last_real_token_with_either_padding(side, tiny_model):
    from transformers import GPT2ForSequenceClassification

    from hfkit.tasks.classification import ClassificationCollator

    base, tok = tiny_model
    tok = type(tok).from_pretrained(tok.name_or_path)
    tok.padding_side = side
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(base.config.__class__(**{**base.config.to_dict(), "num_labels": 3,
                                                                    "pad_token_id": tok.pad_token_id})).eval()
    texts = ["The for statement", "A much longer sentence about the while statement and loops"]
    feats = [tok(t) for t in texts]
    batch = ClassificationCollator(tok)([dict(f) for f in feats])
    assert batch["input_ids"].shape[1] > len(feats[0]["input_ids"])  # the first row is padded
    with torch.no_grad():
        padded = model(**batch).logits
        alone = torch.cat([model(input_ids=torch.tensor([f["input_ids"]])).logits for f in feats])
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-4)


def test_classification_metrics_equal_a_hand_count():
    from transformers import EvalPrediction

    from hfkit.tasks.classification import classification_metrics

    logits = np.array([[2, 0, 0], [0, 2, 0], [0, 2, 0], [0, 0, 2]])
    labels = np.array([0, 1, 0, 2])
    s = classification_metrics(EvalPrediction(logits, labels), False, 3)
    # class 0: P 1/1 R 1/2 F 2/3; class 1: P 1/2 R 1 F 2/3; class 2: F 1
    assert s["accuracy"] == 75.0 and s["macro_f1"] == pytest.approx(100 * (2 / 3 + 2 / 3 + 1) / 3)
    r = classification_metrics(EvalPrediction(np.array([[1.0], [2.0], [4.0]]), np.array([1.0, 3.0, 4.0])), True, 1)
    assert r["mse"] == pytest.approx(1 / 3) and r["spearman"] == pytest.approx(1.0)


def test_gettext_labelled_sets_split_by_catalog_and_pair_negatives_are_real_translations():
    from hfkit.data.corpus import DataConfig
    from hfkit.data.gettext_pairs import pair_match_records
    from hfkit.data.records import load_labelled_records
    from hfkit.data.catalog import make_source as SourceConfig

    data = DataConfig(sources=[SourceConfig(kind="gettext_language", languages=["de", "fr"], max_records=300)],
                      validation_fraction=0.2)
    rec = load_labelled_records(data, ["text", "label"], seed=1, group_field="catalog")
    assert set(rec.train["catalog"]).isdisjoint(rec.validation["catalog"])
    assert 0.1 < len(rec.validation) / (len(rec.train) + len(rec.validation)) < 0.4
    assert set(rec.train["label"]) == {"de", "fr"}
    pairs = pair_match_records("de", max_records=400)
    targets = {r["text_pair"] for r in pairs if r["label"] == "match"}
    negatives = [r for r in pairs if r["label"] == "no_match"]
    assert len(negatives) == len(pairs) // 2 and all(r["text_pair"] in targets for r in negatives)
    truth = {r["text"]: r["text_pair"] for r in pairs if r["label"] == "match"}
    assert all(truth[r["text"]] != r["text_pair"] for r in negatives)


def test_a_tiny_classifier_learns_a_separable_csv_set_and_reports_before_and_after(tmp_path):
    import random

    import hfkit

    rng = random.Random(0)
    rows = ["text,label"]
    for i in range(240):
        label = rng.choice(["loop", "branch"])
        words = ["for", "while", "range"] if label == "loop" else ["if", "elif", "else"]
        rows.append(f"{rng.choice(words)} {rng.choice(['x', 'y', 'z'])} {rng.choice(words)} number {i},{label}")
    (tmp_path / "set.csv").write_text("\n".join(rows) + "\n")
    tiny = [o for o in TINY_MODEL if not o.startswith(("data.block_size", "per_device", "learning_rate"))]
    m = hfkit.train("classify_language", tiny + [
        "model.name_or_path=null", "model.architecture=bert", "tokenizer.kind=wordpiece",
        "classification.max_length=32",
        f"data.sources=[{{kind: csv, path: {tmp_path / 'set.csv'}}}]", "classification.group_field=null",
        "data.validation_fraction=0.2", "max_steps=60", "per_device_train_batch_size=16", "learning_rate=3e-3",
        "eval_steps=60", f"output_dir={tmp_path / 'run'}"], quiet=True)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["eval_after"]["eval_accuracy"] == 100.0 and saved["eval_before"]["eval_accuracy"] < 80
    assert m["data"]["labels"] == ["branch", "loop"]
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run")
    assert model.config.id2label == {0: "branch", 1: "loop"}


def test_selective_and_lora_fine_tuning_keep_the_new_head_trainable(tmp_path):
    from safetensors.torch import load_file

    import hfkit
    from hfkit.recipe import load_recipe
    from hfkit.job import assemble

    tiny = TINY_MODEL + ["model.name_or_path=null", "model.architecture=bert", "tokenizer.kind=wordpiece",
                         "data.sources.0.max_records=40", f"output_dir={tmp_path / 'sel'}"]
    job = assemble(load_recipe("classify_language", tiny + ["adapter.method=selective", "adapter.train_head=true",
                                                            "adapter.trainable_last_layers=1"]))
    trainable = {n for n, p in job.model.named_parameters() if p.requires_grad}
    assert {"classifier.weight", "classifier.bias"} <= trainable
    assert trainable == {n for n, _ in job.model.named_parameters() if n.startswith("classifier.") or ".layer.1." in n}
    # LoRA on the real MiniLM: peft's SEQ_CLS task type saves the new head (modules_to_save) with the adapter
    out = tmp_path / "lora"
    m = hfkit.train("classify_language", ["adapter.method=lora", "adapter.r=4", "data.sources.0.max_records=40",
                                          "max_steps=3", "eval_steps=3", "save_strategy=no",
                                          "load_best_model_at_end=false", f"output_dir={out}"], quiet=True)
    assert m["data"]["parameters"]["trainable"] < 0.05 * m["data"]["parameters"]["total"]
    saved = load_file(out / "adapter_model.safetensors")
    head = [k for k in saved if "classifier" in k]
    assert head and any("lora_" in k for k in saved)
    from peft import AutoPeftModelForSequenceClassification

    labels = m["data"]["labels"]  # the base checkpoint has no head: its size and names come with the load
    loaded = AutoPeftModelForSequenceClassification.from_pretrained(out, num_labels=len(labels),
                                                                   id2label=dict(enumerate(labels)))
    weight = next(k for k in head if k.endswith("classifier.weight"))
    torch.testing.assert_close(loaded.base_model.model.classifier.modules_to_save["default"].weight, saved[weight])
    assert loaded.config.id2label[0] == "de"


def test_hub_style_class_label_columns_become_label_names(tmp_path):
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    from hfkit.data.corpus import DataConfig
    from hfkit.data.records import load_labelled_records
    from hfkit.data.catalog import make_source as SourceConfig

    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=["O", "B-PER"])),
                         "label": ClassLabel(names=["neg", "pos"])})
    ds = Dataset.from_dict({"tokens": [["Ada", "wrote"], ["it", "ran"]], "ner_tags": [[1, 0], [0, 0]], "label": [1, 0]},
                           features=features)
    ds.to_parquet(tmp_path / "set.parquet")  # keeps the ClassLabel features, as a Hub dataset's files do
    data = DataConfig(sources=[SourceConfig(kind="parquet", path=str(tmp_path / "set.parquet"))], validation_fraction=0)
    rec = load_labelled_records(data, ["tokens", "ner_tags", "label"], seed=0)
    assert rec.train["ner_tags"] == [["B-PER", "O"], ["O", "O"]] and rec.train["label"] == ["pos", "neg"]
