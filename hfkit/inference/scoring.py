"""Scoring text with a causal LM: corpus perplexity by sliding window, perplexity of a continuation
given a prefix, and log-likelihoods of (context, continuation) pairs for in-context evaluation.

Sliding window (the method of the transformers perplexity guide): windows of `block_size` tokens
start every `stride` tokens; in each window only the tokens not scored by an earlier window count,
so every token after the first is scored exactly once, with at least `block_size - stride` tokens
of context (except near the start). Perplexity = exp(total NLL / scored tokens).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from ..errors import HfkitError
from ..models import max_positions, require_causal
from .encoding import doc_start_token_id, seq2seq_ids


def right_padded_batches(seqs: list[list[int]], batch_size: int, fill: int = 0):
    """Batches of similar length (longest first), right-padded: yields (indices, input_ids, mask).
    Right padding leaves every real position's causal context as it is."""
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        ids = torch.full((len(idx), max(len(seqs[i]) for i in idx)), fill, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, i in enumerate(idx):
            ids[r, :len(seqs[i])] = torch.as_tensor(seqs[i])
            mask[r, :len(seqs[i])] = 1
        yield idx, ids, mask


@torch.no_grad()
def score_sequences(model: PreTrainedModel, inputs: list[list[int]], labels: list[list[int]],
                    batch_size: int = 8, progress: bool = False) -> tuple[float, int]:
    """Sum of next-token NLL over label positions != -100, and their count, in right-padded batches."""
    require_causal(model, "perplexity")
    model.eval()
    total, count = 0.0, 0
    batches = right_padded_batches(inputs, batch_size)
    for idx, ids, mask in tqdm(batches, total=math.ceil(len(inputs) / batch_size), desc="perplexity",
                               disable=not progress, unit="batch"):
        lab = torch.full_like(ids, -100)
        for r, i in enumerate(idx):
            lab[r, :len(labels[i])] = torch.as_tensor(labels[i])
        ids, lab, mask = ids.to(model.device), lab.to(model.device), mask.to(model.device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target = lab[:, 1:]
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100,
                              reduction="sum")
        total += nll.item()
        count += int((target != -100).sum())
    return total, count


def _result(total: float, count: int, **extra) -> dict:
    if count == 0:
        raise HfkitError("nothing to score: the data has fewer than two tokens")
    mean = total / count
    return {"perplexity": math.exp(mean), "nll": mean, "tokens_scored": count, **extra}


def sliding_windows(stream: list[int], block_size: int, stride: int) -> tuple[list[list[int]], list[list[int]]]:
    """Windows over a token stream and their labels (-100 on context already scored)."""
    if not 0 < stride <= block_size:
        raise HfkitError(f"stride must be in 1..block_size ({block_size}), got {stride}")
    inputs, labels = [], []
    prev_end = 0
    for begin in range(0, len(stream), stride):
        end = min(begin + block_size, len(stream))
        trg_len = end - prev_end  # tokens not yet scored
        window = stream[begin:end]
        inputs.append(window)
        labels.append([-100] * (len(window) - trg_len) + window[len(window) - trg_len:])
        prev_end = end
        if end == len(stream):
            break
    return inputs, labels


def perplexity(model: PreTrainedModel, tokenizer, texts: list[str], block_size: int | None = None,
               stride: int | None = None, batch_size: int = 8, progress: bool = False) -> dict:
    """Corpus perplexity: documents joined with EOS (as in training), scored by sliding window."""
    limit = max_positions(model.config)
    block_size = block_size or limit or 1024
    if limit is not None and block_size > limit:
        raise HfkitError(f"--block-size {block_size} exceeds the model's maximum positions ({limit})")
    stride = stride or block_size // 2 or 1
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        if eos is not None:
            stream.append(eos)
    inputs, labels = sliding_windows(stream, block_size, stride)
    total, count = score_sequences(model, inputs, labels, batch_size, progress)
    return _result(total, count, block_size=block_size, stride=stride, windows=len(inputs), tokens=len(stream))


def conditional_perplexity(model: PreTrainedModel, tokenizer, pairs: list[tuple[str, str]],
                           batch_size: int = 8, progress: bool = False) -> dict:
    """Perplexity of each continuation given its prefix: only continuation tokens are scored.

    Prefix and continuation are tokenized separately and joined (as lm-evaluation-harness does), so
    the continuation's tokens are the same whatever the prefix. Sequences start with the document
    start token so that a continuation's first token is scored even after an empty prefix.
    """
    if getattr(model.config, "is_encoder_decoder", False):
        return _seq2seq_conditional(model, tokenizer, pairs, batch_size, progress)
    start = doc_start_token_id(tokenizer)
    limit = max_positions(model.config)
    inputs, labels = [], []
    for i, (prefix, cont) in enumerate(pairs):
        p = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
        c = tokenizer(cont, add_special_tokens=False)["input_ids"]
        if not c:
            raise HfkitError(f"record {i}: the continuation is empty")
        seq = [start] + p + c
        lab = [-100] * (1 + len(p)) + c
        if limit is not None and len(seq) > limit:  # keep the continuation, drop the oldest context
            if len(c) + 1 > limit:
                raise HfkitError(f"record {i}: continuation of {len(c)} tokens exceeds the model's {limit} positions")
            seq, lab = seq[-limit:], lab[-limit:]
        inputs.append(seq)
        labels.append(lab)
    total, count = score_sequences(model, inputs, labels, batch_size, progress)
    return _result(total, count, examples=len(pairs))


@torch.no_grad()
def _seq2seq_conditional(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int, progress: bool) -> dict:
    """An encoder-decoder reads the prefix and is scored on producing the continuation: the encoder's
    input and the target are formatted as the model trains on them (`seq2seq_ids`); only the
    continuation's own tokens count (not the target's <s>/</s>)."""

    model.eval()
    special = {tokenizer.bos_token_id, tokenizer.eos_token_id}
    encs, targets = [], []
    for i, (prefix, cont) in enumerate(pairs):
        t = seq2seq_ids(tokenizer, model.config, cont)
        if all(x in special for x in t):
            raise HfkitError(f"record {i}: the continuation is empty")
        encs.append(seq2seq_ids(tokenizer, model.config, prefix))
        targets.append(t)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total, count = 0.0, 0
    for idx, enc, enc_mask in tqdm(right_padded_batches(encs, batch_size, pad), total=math.ceil(len(encs) / batch_size),
                                   desc="perplexity", disable=not progress, unit="batch"):
        width = max(len(targets[i]) for i in idx)
        full = torch.full((len(idx), width), pad, dtype=torch.long)
        scored = torch.full((len(idx), width), -100, dtype=torch.long)
        for r, i in enumerate(idx):
            t = torch.as_tensor(targets[i])
            full[r, :len(t)] = t
            keep = torch.tensor([x not in special for x in targets[i]])
            scored[r, :len(t)] = torch.where(keep, t, torch.full_like(t, -100))
        dec_in = model.prepare_decoder_input_ids_from_labels(labels=full)  # from the whole target, <s> included
        logits = model(input_ids=enc.to(model.device), attention_mask=enc_mask.to(model.device),
                       decoder_input_ids=dec_in.to(model.device)).logits.float()
        scored = scored.to(model.device)
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), scored.reshape(-1), ignore_index=-100,
                                 reduction="sum").item()
        count += int((scored != -100).sum())
    return _result(total, count, examples=len(pairs))


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-evaluation-harness's `_encode_pair`: trailing spaces of the context move to the
    continuation; the whole string is encoded and split where the context's encoding ends."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    return ctx, whole[len(ctx):]


@torch.no_grad()
def loglikelihoods(model, tokenizer, requests: list[tuple[str, str]], batch_size: int = 8,
                   progress: bool = False) -> list[tuple[float, bool]]:
    """(sum of log-probabilities of the continuation given the context, whether greedy decoding
    would produce it) for every (context, continuation) pair, batched with right padding."""
    limit = max_positions(model.config)
    seqs, conts = [], []
    for ctx, cont in requests:
        if ctx:
            c, k = encode_pair(tokenizer, ctx, cont)
        else:
            c, k = [doc_start_token_id(tokenizer)], tokenizer(cont, add_special_tokens=False)["input_ids"]
        if not k:
            raise HfkitError(f"continuation {cont!r} encodes to no tokens")
        full = c + k
        if limit is not None and len(full) > limit + 1:  # keep the continuation, drop the oldest context
            if len(k) > limit:
                raise HfkitError(f"continuation of {len(k)} tokens exceeds the model's {limit} positions")
            full = full[-(limit + 1):]
        seqs.append(full[:-1])  # the last token is only a target
        conts.append(k)
    model.eval()
    out: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
    batches = right_padded_batches(seqs, batch_size)
    for idx, ids, mask in tqdm(batches, total=math.ceil(len(seqs) / batch_size), desc="loglikelihood",
                               disable=not progress, unit="batch"):
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float().cpu()
        for r, i in enumerate(idx):
            n, target = len(seqs[i]), torch.as_tensor(conts[i])
            rows = F.log_softmax(logits[r, n - len(target):n], dim=-1)  # the positions predicting the continuation
            ll = rows.gather(1, target.unsqueeze(1)).sum().item()
            out[i] = (ll, bool((rows.argmax(-1) == target).all()))
    return out
