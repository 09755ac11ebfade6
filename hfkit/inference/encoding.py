"""How text becomes the token sequences models see, in one place below scoring and generation: where a
document starts (BOS or the EOS packing put before it) and an encoder-decoder's sequences."""
from __future__ import annotations

from ..errors import HfkitError


def doc_start_token_id(tokenizer) -> int:
    """The token a document starts after: BOS if the tokenizer adds one, else EOS (packed training
    puts EOS between documents, so that is what the model has seen before a document starts)."""
    probe = tokenizer("a")["input_ids"]
    if tokenizer.bos_token_id is not None and probe and probe[0] == tokenizer.bos_token_id:
        return tokenizer.bos_token_id
    if tokenizer.eos_token_id is None:
        raise HfkitError("tokenizer has neither a BOS it adds nor an EOS token to start a sequence with")
    return tokenizer.eos_token_id


def seq2seq_ids(tokenizer, config, text: str) -> list[int]:
    """An encoder-decoder's sequence for `text`, as it trains on them: the tokenizer's own special
    tokens when it adds them (pretrained T5/BART tokenizers), else `text </s>` (T5 family) or
    `<s> text </s>` (BART family: the decoder starts from </s>)."""
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    if ids and ids[-1] == tokenizer.eos_token_id:
        return ids
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bart_like = config.decoder_start_token_id == config.eos_token_id and tokenizer.bos_token_id is not None
    return ([tokenizer.bos_token_id] if bart_like else []) + ids + [tokenizer.eos_token_id]
