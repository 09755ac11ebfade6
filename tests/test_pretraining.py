"""Pretraining objectives, checked statistically and exactly: BERT's masking and next-sentence pairs,
T5's span corruption, BART's denoising; each tiny model's loss falls; bad input is one line."""
import json
import math
from collections import Counter

import pytest
import torch

from conftest import TINY_MODEL
from hfkit.cli import main


@pytest.fixture(scope="module")
def corpus():
    from hfkit.data.pydoc import default_corpus_documents

    return default_corpus_documents()


@pytest.fixture(scope="module")
def tok(corpus):
    from hfkit.data.tokenizer import train_tokenizer

    return train_tokenizer(corpus, "bpe", 2000, extra_special_tokens=[f"<extra_id_{i}>" for i in range(100)])


@pytest.fixture(scope="module")
def blocks(tok, corpus):
    """Every token of the corpus, documents joined by EOS, in blocks of 128."""
    stream = []
    for ids in tok(corpus, add_special_tokens=False)["input_ids"]:
        stream += ids + [tok.eos_token_id]
    return [stream[i:i + 128] for i in range(0, len(stream) - 127, 128)]


def _recipe(task: str, *overrides):
    from hfkit.recipe import load_recipe

    return load_recipe("clm_pretrain", TINY_MODEL + [f"task={task}", "output_dir=/tmp/unused", *overrides])


# --- BERT: masking -------------------------------------------------------------------------------------

def test_mlm_masking_rates_over_100k_tokens(tok, blocks):
    """15% of the non-special tokens selected (never a special one), of those 80% [MASK], 10% random,
    10% kept; labels the original token exactly where selected and -100 everywhere else."""
    from hfkit.tasks import get_task

    collator = get_task("mlm").collator(_recipe("mlm", "model.architecture=bert"), tok)
    special = torch.tensor(sorted(tok.all_special_ids))
    torch.manual_seed(0)
    counts = Counter()
    while counts["tokens"] < 100_000:
        for start in range(0, len(blocks), 64):
            orig = torch.tensor(blocks[start:start + 64])
            batch = collator([{"input_ids": b} for b in orig.tolist()])
            x, y = batch["input_ids"], batch["labels"]
            is_special = torch.isin(orig, special)
            selected = y != -100
            assert not (selected & is_special).any()  # never a special token (EOS separators included)
            assert torch.equal(y[selected], orig[selected])  # labels: the original token ...
            assert torch.equal(x[~selected], orig[~selected])  # ... and nothing else is touched
            counts["tokens"] += int((~is_special).sum())
            counts["selected"] += int(selected.sum())
            counts["mask"] += int((x[selected] == tok.mask_token_id).sum())
            counts["kept"] += int((x[selected] == orig[selected]).sum())
    rate = counts["selected"] / counts["tokens"]
    mask, kept = counts["mask"] / counts["selected"], counts["kept"] / counts["selected"]
    rand = 1 - mask - kept
    assert abs(rate - 0.15) < 0.005, rate
    assert abs(mask - 0.8) < 0.015 and abs(rand - 0.1) < 0.015 and abs(kept - 0.1) < 0.015, (mask, rand, kept)


def test_whole_word_masking_masks_every_piece_of_a_selected_word(tok, blocks):
    from hfkit.tasks import get_task
    from hfkit.tasks.mlm import word_start_table

    collator = get_task("mlm").collator(_recipe("mlm", "model.architecture=bert", "mlm.whole_word_mask=true"), tok)
    starts = torch.as_tensor(word_start_table(tok))
    torch.manual_seed(1)
    orig = torch.tensor(blocks[:200])
    selected = collator([{"input_ids": b} for b in orig.tolist()])["labels"] != -100
    special = torch.isin(orig, torch.tensor(sorted(tok.all_special_ids)))
    after_special = torch.roll(special, 1, dims=1)
    after_special[:, 0] = False
    word_id = torch.cumsum((starts[orig] | after_special).long(), dim=1)  # a special token ends a word
    multi = 0
    for r in range(len(orig)):
        for w in word_id[r][~special[r]].unique():
            at = (word_id[r] == w) & ~special[r]
            assert selected[r][at].all() or not selected[r][at].any()  # all of a word, or none of it
            multi += int(at.sum() > 1 and selected[r][at].all())
    assert multi > 50  # words of several pieces were selected whole
    rate = selected.float().mean().item()
    assert 0.10 < rate < 0.25  # 15% of words, counted in pieces


# --- BERT: next-sentence pairs ------------------------------------------------------------------------

def test_next_sentence_pairs_are_balanced_and_true_pairs_are_consecutive(tok, corpus):
    from hfkit.data.sentence_pairs import sentence_pairs, special_ids, split_sentences

    ds, stats = sentence_pairs(corpus, tok, 128, seed=3)
    assert stats.pairs == len(ds) > 1000 and abs(stats.is_next / stats.pairs - 0.5) < 0.04  # 3 sigma at n=1000
    cls, sep = special_ids(tok)
    docs = []
    for text in corpus:
        sents = [ids for ids in tok(split_sentences(text), add_special_tokens=False)["input_ids"] if ids]
        if sents:
            docs.append(",".join(map(str, [t for s in sents for t in s])) + ",")
    joined = "|".join("," + d for d in docs)  # ",1,2,3,|,4,5,": a match never spans two documents
    contiguous = lambda ids: "," + ",".join(map(str, ids)) + "," in joined  # noqa: E731
    checked, follows = Counter(), Counter()
    for row in ds.select(range(0, len(ds), 3)):
        ids, types = row["input_ids"], row["token_type_ids"]
        s1 = ids.index(sep)
        a, b = ids[1:s1], ids[s1 + 1:-1]
        assert ids[0] == cls and ids[-1] == sep and len(ids) <= 128
        assert types == [0] * (len(a) + 2) + [1] * (len(b) + 1)
        assert contiguous(a) and contiguous(b)  # both are real text of the corpus
        label = row["next_sentence_label"]
        checked[label] += 1
        follows[label] += contiguous(a + b)
    assert follows[0] == checked[0] > 100  # every true pair: B really follows A
    assert follows[1] < 0.02 * checked[1] and checked[1] > 100  # a random B (from another document) does not


# --- T5: span corruption ------------------------------------------------------------------------------

def test_t5_span_corruption_reconstructs_exactly_with_sentinels_in_order(tok, blocks):
    from hfkit.data.noising import t5_lengths
    from hfkit.tasks import get_task

    recipe = _recipe("t5_span", "model.architecture=t5", "data.block_size=128")
    task = get_task("t5_span")
    raw_len, target_len = t5_lengths(128, 0.15, 3.0)
    assert task.block_length(recipe) == raw_len and raw_len > 128
    collator = task.collator(recipe, tok)
    sentinels = tok.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(100)])
    stream = [t for b in blocks for t in b]
    raws = [stream[i:i + raw_len] for i in range(0, len(stream) - raw_len, raw_len)]
    torch.manual_seed(0)
    noise, total, span_lengths = 0, 0, []
    for start in range(0, len(raws), 32):
        batch = collator([{"input_ids": r} for r in raws[start:start + 32]])
        assert batch["input_ids"].shape[1] == 128 and batch["labels"].shape[1] == target_len  # T5's lengths
        for raw, x, y in zip(raws[start:start + 32], batch["input_ids"].tolist(), batch["labels"].tolist()):
            assert x[-1] == y[-1] == tok.eos_token_id
            in_s = [t for t in x if t in sentinels]
            out_s = [t for t in y if t in sentinels]
            assert in_s == out_s == sentinels[:len(in_s)]  # <extra_id_0>, <extra_id_1>, ... in order
            spans, cur = {}, None
            for t in y[:-1]:
                if t in sentinels:
                    cur = t
                    spans[cur] = []
                else:
                    spans[cur].append(t)
            rebuilt = [u for t in x[:-1] for u in (spans[t] if t in sentinels else [t])]
            assert rebuilt == raw  # inputs + targets give the original exactly
            noise += sum(len(s) for s in spans.values())
            total += len(raw)
            span_lengths += [len(s) for s in spans.values()]
    assert abs(noise / total - 0.15) < 0.005 and abs(sum(span_lengths) / len(span_lengths) - 3.0) < 0.3


# --- BART: denoising ----------------------------------------------------------------------------------

def test_bart_noise_is_undone_by_its_record_and_spans_follow_poisson_3(tok, blocks):
    from hfkit.data.noising import bart_noise
    from hfkit.tasks.seq2seq_pretrain import sentence_end_table

    is_end = sentence_end_table(tok)
    torch.manual_seed(0)
    lengths, zero, sentences = [], 0, 0
    for block in blocks:
        noised, record = bart_noise(block, tok.mask_token_id, is_end, 0.3, 3.0, True, 0.05)
        assert record.undo(noised) == block  # the bookkeeping undoes every step
        assert noised.count(tok.mask_token_id) == len(record.spans)  # one mask per span
        covered = sum(len(s) for _, s in record.spans)
        assert covered == round(0.3 * (len(block) - len(record.deleted)))  # exactly the masking budget
        lengths += [len(s) for _, s in record.spans[:-1]]  # the last span is cut to the budget
        zero += sum(1 for _, s in record.spans if not s)
        sentences += len(record.order)
    mean = sum(lengths) / len(lengths)
    assert abs(mean - 3.0) < 0.15, mean  # Poisson(3), zero-length spans (insertions) included
    assert abs(zero / len(lengths) - math.exp(-3)) < 0.02  # P(0) = e^-3
    assert sentences > 3 * len(blocks)  # blocks were cut into sentences and shuffled


# --- runs ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("task, overrides", [
    ("mlm", ["model.architecture=bert", "mlm.next_sentence_prediction=true", "data.block_size=64"]),
    ("t5_span", ["model.architecture=t5"]),
    ("bart_denoise", ["model.architecture=bart"]),
], ids=["bert_nsp", "t5", "bart"])
def test_each_objective_trains_a_tiny_model_whose_loss_falls(task, overrides, tmp_path, capsys):
    import hfkit

    out = tmp_path / task
    m = hfkit.train("clm_pretrain", TINY_MODEL + [f"task={task}", f"output_dir={out}", "max_steps=60",
                                                  "learning_rate=3e-3", *overrides], quiet=True)
    before, after = m["eval_before"], m["eval_after"]
    assert after["eval_loss"] < before["eval_loss"] - 0.5
    if task == "mlm":  # BertForPreTraining: both heads, reported separately
        assert {"eval_masked_accuracy", "eval_mlm_perplexity", "eval_nsp_accuracy"} <= set(after)
        assert "eval_perplexity" not in after  # exp(MLM + NSP loss) is no perplexity
        assert after["eval_mlm_perplexity"] < before["eval_mlm_perplexity"]
        assert before["eval_masked_tokens"] == after["eval_masked_tokens"]  # the same fixed masks
        return
    assert after["eval_perplexity"] == pytest.approx(math.exp(after["eval_loss"]), rel=1e-6)
    capsys.readouterr()  # (Trainer's own log lines)
    # the saved run generates, and is scored on a continuation given its input
    rc = main(["generate", "--model", str(out), "--prompt", "The if statement", "--max-new-tokens", "5", "--json"])
    assert rc == 0 and len(json.loads(capsys.readouterr().out)[0]["outputs"]) == 1
    rc = main(["eval", "perplexity", "--model", str(out), "--prefix", "The if statement is used",
               "--continuation", " for conditional execution", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0 and rep["settings"]["kind"] == "conditional" and rep["metrics"]["perplexity"] > 1


def test_seq2seq_conditional_perplexity_scores_only_the_continuation(tok):
    from conftest import tiny_bart

    from hfkit.inference.generation import seq2seq_ids
    from hfkit.inference.scoring import conditional_perplexity

    model = tiny_bart(tok)
    pairs = [("The if statement", " selects a suite"), ("A class", " defines objects of a kind")]
    res = conditional_perplexity(model, tok, pairs, batch_size=1)
    total, count = 0.0, 0
    for prefix, cont in pairs:  # one by one, by hand: labels <s> cont </s>, scored on cont alone
        x = torch.tensor([seq2seq_ids(tok, model.config, prefix)])
        full = torch.tensor([seq2seq_ids(tok, model.config, cont)])
        logits = model(input_ids=x, decoder_input_ids=model.prepare_decoder_input_ids_from_labels(labels=full)).logits
        logp = torch.log_softmax(logits[0], -1)
        for pos in range(1, full.shape[1] - 1):
            total -= logp[pos, full[0, pos]].item()
            count += 1
    assert res["tokens_scored"] == count and res["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-4)


@pytest.fixture(scope="module")
def plain_tokenizers(tmp_path_factory, tok):
    """A saved tokenizer without sentinels, and one without a mask token."""
    from hfkit.data.tokenizer import train_tokenizer
    from hfkit.data.pydoc import default_corpus_documents

    d = tmp_path_factory.mktemp("toks")
    plain = train_tokenizer(default_corpus_documents()[:50], "bpe", 400)
    plain.save_pretrained(d / "plain")
    plain.mask_token = None
    plain.save_pretrained(d / "nomask")
    return d


@pytest.mark.parametrize("overrides, message", [
    (["task=mlm", "model.architecture=bert", "tokenizer.path={d}/nomask"], "has no mask_token, needed for masked-LM"),
    (["task=t5_span", "model.architecture=t5", "tokenizer.path={d}/plain"], "has no sentinel tokens (<extra_id_0>"),
    (["task=t5_span", "model.architecture=t5", "data.block_size=4"], "blocks this short leave nothing to span corrupt"),
    (["task=bart_denoise", "model.architecture=bart", "data.block_size=4"], "blocks this short leave nothing"),
    (["task=bart_denoise", "model.architecture=bart", "bart_denoise.mask_ratio=0",
      "bart_denoise.permute_sentences=false"], "turns every noise off"),
    (["task=t5_span", "model.architecture=gpt2"], "does not fit task t5_span (it builds: t5)"),
    (["task=mlm", "model.architecture=bert", "mlm.mask_replace_prob=0.95"], "must not exceed 1"),
])
def test_bad_pretraining_input_is_one_line(overrides, message, plain_tokenizers, tmp_path, capsys):
    argv = ["train", "clm_pretrain", *TINY_MODEL, f"output_dir={tmp_path / 'out'}",
            *[o.format(d=plain_tokenizers) for o in overrides]]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
