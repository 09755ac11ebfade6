"""Noising for sequence-to-sequence pretraining: T5's span corruption and BART's denoising.

T5 (Raffel et al. 2020; transformers' `run_t5_mlm_flax.py`): `noise_density` of a block's tokens are
dropped in spans of mean length `mean_noise_span_length`; each span is replaced by a sentinel in the
input, and the target lists the sentinels each followed by the span it stands for. Block lengths are
chosen so that the input is exactly `inputs_length` tokens (`t5_lengths`).

BART (Lewis et al. 2020, fairseq's DenoisingDataset): sentence permutation, token deletion, and
text infilling — span lengths drawn from Poisson(λ) until `mask_ratio` of the tokens is covered,
each span (zero-length ones too) replaced by a single mask token. The target is the original text.
Every step records what it did (`BartNoise`), so that the original can be rebuilt from the noised
text: that is how the tests check it.

Randomness comes from torch's global generator, which Trainer saves and restores with checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


# ----------------------------------------------------------------------------- T5 span corruption


def t5_lengths(inputs_length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(tokens per raw block, target length) such that a block's corrupted input has `inputs_length`
    tokens: kept tokens + one sentinel per span + EOS (T5's `compute_input_and_target_lengths`)."""

    def lengths(tokens_length: int) -> tuple[int, int]:
        num_noise = int(round(tokens_length * noise_density))
        num_spans = int(round(num_noise / mean_noise_span_length))
        return tokens_length - num_noise + num_spans + 1, num_noise + num_spans + 1

    tokens_length = inputs_length
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    _, targets_length = lengths(tokens_length)
    if noise_density == 0.5 and targets_length > inputs_length:
        tokens_length -= 1
        targets_length -= 1
    return tokens_length, targets_length


def _random_segmentation(num_items: int, num_segments: int) -> torch.Tensor:
    """Split `num_items` into `num_segments` non-empty parts at random; the parts' lengths."""
    bounds = torch.zeros(num_items - 1, dtype=torch.bool)
    bounds[: num_segments - 1] = True
    bounds = bounds[torch.randperm(num_items - 1)]
    segment_id = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), bounds.long()]), 0)
    return torch.bincount(segment_id, minlength=num_segments)


def span_noise_mask(length: int, noise_density: float, mean_noise_span_length: float) -> torch.Tensor:
    """A boolean mask of `length` with round(length * density) noise tokens in spans that alternate
    with kept spans, starting with a kept one (T5's `random_spans_noise_mask`)."""
    num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    num_spans = max(int(round(min(num_noise, length - num_noise) / mean_noise_span_length)), 1)
    noise_lengths = _random_segmentation(num_noise, num_spans)
    kept_lengths = _random_segmentation(length - num_noise, num_spans)
    mask = torch.zeros(length, dtype=torch.bool)
    pos = 0
    for kept, noise in zip(kept_lengths.tolist(), noise_lengths.tolist()):
        pos += kept
        mask[pos:pos + noise] = True
        pos += noise
    return mask


def span_corrupt(ids: list[int], mask: torch.Tensor, sentinels: list[int], eos: int) -> tuple[list[int], list[int]]:
    """(input, target): noise spans replaced by sentinels 0, 1, ... in the input; the target is each
    sentinel followed by its span, then EOS."""
    inputs, targets, k, prev = [], [], 0, False
    for tok, noisy in zip(ids, mask.tolist()):
        if noisy:
            if not prev:
                if k >= len(sentinels):
                    raise ValueError(f"more noise spans than sentinel tokens ({len(sentinels)})")
                inputs.append(sentinels[k])
                targets.append(sentinels[k])
                k += 1
            targets.append(tok)
        else:
            inputs.append(tok)
        prev = noisy
    return inputs + [eos], targets + [eos]


# ----------------------------------------------------------------------------- BART denoising


@dataclass
class BartNoise:
    """What the noising did, step by step, to rebuild the original (`undo`)."""
    order: list[list[int]] = field(default_factory=list)  # sentence permutation: the sentences, in new order
    deleted: list[tuple[int, int]] = field(default_factory=list)  # token deletion: (position, token), ascending
    spans: list[tuple[int, list[int]]] = field(default_factory=list)  # infilling: (mask position, span tokens)

    def undo(self, noised: list[int]) -> list[int]:
        out = list(noised)
        for pos, span in reversed(self.spans):  # each mask back to its span
            out[pos:pos + 1] = span
        for pos, tok in self.deleted:  # deleted tokens back in
            out.insert(pos, tok)
        if self.order:  # sentences back in their order
            lengths = [len(s) for s in self.order]
            pieces, start = [], 0
            for n in lengths:
                pieces.append(out[start:start + n])
                start += n
            original_order = sorted(range(len(self.order)), key=lambda i: self.order[i][0])
            out = [t for i in original_order for t in pieces[i]]
        return out


def sentences_of(ids: list[int], is_end: torch.Tensor) -> list[list[int]]:
    """Cut a token list after every sentence-ending token (`is_end[token]`)."""
    sents, cur = [], []
    for i, tok in enumerate(ids):
        cur.append(i)
        if is_end[tok]:
            sents.append(cur)
            cur = []
    if cur:
        sents.append(cur)
    return sents


def bart_noise(ids: list[int], mask_id: int, is_end: torch.Tensor, mask_ratio: float, poisson_lambda: float,
               permute_sentences: bool, deletion_ratio: float) -> tuple[list[int], BartNoise]:
    """Permute sentences, delete tokens, then infill spans (each step optional); returns the noised
    ids and the record of what was done."""
    record = BartNoise()
    seq = list(ids)
    if permute_sentences:
        sents = sentences_of(seq, is_end)  # as positions in the original
        perm = torch.randperm(len(sents)).tolist()
        record.order = [sents[p] for p in perm]
        seq = [ids[i] for p in perm for i in sents[p]]
    if deletion_ratio > 0:
        drop = (torch.rand(len(seq)) < deletion_ratio).tolist()
        record.deleted = [(i, t) for i, (t, d) in enumerate(zip(seq, drop)) if d]
        seq = [t for t, d in zip(seq, drop) if not d]
    if mask_ratio > 0 and seq:
        seq = _infill(seq, mask_id, mask_ratio, poisson_lambda, record)
    return seq, record


def _infill(seq: list[int], mask_id: int, mask_ratio: float, poisson_lambda: float, record: BartNoise) -> list[int]:
    budget = int(round(mask_ratio * len(seq)))
    if budget == 0:
        return seq
    lengths: list[int] = []
    while sum(lengths) < budget:  # Poisson span lengths until the budget is covered; zeros are insertions
        lengths += torch.poisson(torch.full((budget,), float(poisson_lambda))).long().tolist()
    cum, i = 0, 0
    while cum + lengths[i] < budget:
        cum += lengths[i]
        i += 1
    lengths = lengths[:i] + [budget - cum]  # the last span is cut to the budget
    if len(lengths) > budget:  # zero-length spans (insertions) beyond what the budget frees: the noised
        surplus = len(lengths) - budget  # input would grow past the block and be cut; the surplus is dropped
        zeros = [j for j, n in enumerate(lengths) if n == 0][-surplus:]
        lengths = [n for j, n in enumerate(lengths) if j not in set(zeros)]
    kept = len(seq) - budget
    if len(lengths) > kept + 1:  # more spans than gaps between kept tokens: merge the surplus into the last
        lengths = lengths[:kept] + [sum(lengths[kept:])]
    gaps = sorted(torch.randperm(kept + 1)[: len(lengths)].tolist())  # spans go into distinct gaps
    order = torch.randperm(len(lengths)).tolist()  # which span goes where
    out, src, g, span_i = [], 0, 0, 0
    for gap in range(kept + 1):
        if g < len(gaps) and gaps[g] == gap:
            n = lengths[order[span_i]]
            record.spans.append((len(out), seq[src:src + n]))
            out.append(mask_id)
            src += n
            g += 1
            span_i += 1
        if gap < kept:
            out.append(seq[src])
            src += 1
    return out
