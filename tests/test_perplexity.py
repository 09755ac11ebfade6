import math

import pytest
import torch
import torch.nn.functional as F

from hfkit.data.pydoc import default_corpus_documents
from hfkit.inference.scoring import conditional_perplexity, perplexity, sliding_windows

TEXTS = default_corpus_documents()[100:103]


def _stream(tok, texts):
    s = []
    for t in texts:
        s += tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    return s


@torch.no_grad()
def _token_logprobs(model, ids):
    """log p(ids[i] | ids[:i]) for i >= 1, computed directly from the logits."""
    logits = model(torch.tensor([ids])).logits[0, :-1]
    return F.log_softmax(logits.double(), -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]


def test_perplexity_is_exp_mean_nll_in_one_window(tiny_model):
    model, tok = tiny_model
    text = ["The if statement is used for conditional execution."]
    ids = _stream(tok, text)
    assert len(ids) < 64
    res = perplexity(model, tok, text, block_size=64, stride=64)
    ref = math.exp(-_token_logprobs(model, ids).mean().item())
    assert res["perplexity"] == pytest.approx(ref, rel=1e-5)
    assert res["tokens_scored"] == len(ids) - 1
    # and it agrees with the model's own loss
    loss = model(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
    assert res["perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)


def test_stride_equal_block_is_the_non_overlapping_computation(tiny_model):
    model, tok = tiny_model
    ids = _stream(tok, TEXTS)
    block = 32
    nll, n = 0.0, 0
    for start in range(0, len(ids), block):  # independent blocks, first token of each unscored
        chunk = ids[start:start + block]
        if len(chunk) > 1:
            lp = _token_logprobs(model, chunk)
            nll -= lp.sum().item()
            n += len(lp)
    res = perplexity(model, tok, TEXTS, block_size=block, stride=block, batch_size=5)
    assert res["tokens_scored"] == n
    assert res["perplexity"] == pytest.approx(math.exp(nll / n), rel=1e-5)


def test_sliding_window_scores_every_token_once_with_context(tiny_model):
    model, tok = tiny_model
    ids = _stream(tok, TEXTS)
    block, stride = 32, 8
    inputs, labels = sliding_windows(ids, block, stride)
    scored = []
    for start_idx, (inp, lab) in enumerate(zip(inputs, labels)):
        begin = start_idx * stride
        for j, label in enumerate(lab):
            if label != -100 and j > 0:
                scored.append(begin + j)
                if begin > 0:
                    assert j >= block - stride  # at least block - stride tokens of context
    assert scored == list(range(1, len(ids)))  # every token after the first, exactly once
    # reference: each token's log-prob with the context its window gives it
    nll = 0.0
    for start_idx, inp in enumerate(inputs):
        lp = _token_logprobs(model, inp)
        keep = torch.tensor([lab != -100 for lab in labels[start_idx][1:]])
        nll -= lp[keep].sum().item()
    res = perplexity(model, tok, TEXTS, block_size=block, stride=stride, batch_size=3)
    assert res["perplexity"] == pytest.approx(math.exp(nll / len(scored)), rel=1e-5)
    # more context helps a trained model: overlapping windows give lower perplexity
    assert res["perplexity"] < perplexity(model, tok, TEXTS, block_size=block, stride=block)["perplexity"]


def test_conditional_perplexity_scores_only_the_continuation(tiny_model):
    model, tok = tiny_model
    pairs = [("The if statement is used", " for conditional execution."), ("", "The while statement"),
             ("Exceptions", " are raised by the raise statement.")]
    res = conditional_perplexity(model, tok, pairs, batch_size=2)
    nll, n = 0.0, 0
    for prefix, cont in pairs:
        p = tok(prefix, add_special_tokens=False)["input_ids"]
        c = tok(cont, add_special_tokens=False)["input_ids"]
        lp = _token_logprobs(model, [tok.eos_token_id] + p + c)[-len(c):]
        nll -= lp.sum().item()
        n += len(c)
    assert res["tokens_scored"] == n
    assert res["perplexity"] == pytest.approx(math.exp(nll / n), rel=1e-5)
    # the prefix tokens are context, not scored: the whole-sequence perplexity is a different number
    whole = conditional_perplexity(model, tok, [("", p + c) for p, c in pairs])
    assert whole["tokens_scored"] > n and whole["perplexity"] != pytest.approx(res["perplexity"], rel=1e-3)
