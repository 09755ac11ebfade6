import pytest
from transformers import AutoTokenizer

from hfkit.data.pydoc import default_corpus_documents
from hfkit.data.tokenizer import SPECIAL, train_tokenizer

DOCS = default_corpus_documents()
SAMPLE = DOCS[3][:600] + "\n\nTwo  spaces and\ttabs."


@pytest.mark.parametrize("kind, vocab", [("char", 200), ("bpe", 800), ("unigram", 800)])
def test_lossless_kinds_round_trip(kind, vocab, tmp_path):
    tok = train_tokenizer(DOCS + [SAMPLE], kind, vocab)
    ids = tok(SAMPLE, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == SAMPLE
    # saved as a PreTrainedTokenizerFast that AutoTokenizer loads with the same behaviour
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(SAMPLE, add_special_tokens=False)["input_ids"] == ids
    for attr, token in SPECIAL.items():
        assert getattr(again, attr) == token
        assert again.convert_tokens_to_ids(token) != again.unk_token_id or attr == "unk_token"


def test_char_tokens_are_characters():
    tok = train_tokenizer(["abc abd"], "char", 50)
    assert tok.convert_ids_to_tokens(tok("abd", add_special_tokens=False)["input_ids"]) == ["a", "b", "d"]


def test_word_level_round_trips_known_words_and_maps_unknown_to_unk():
    tok = train_tokenizer(["the cat sat on the mat.\nthe dog sat."] * 3, "word", 100, min_frequency=1)
    text = "the dog sat on the mat.\nthe cat sat."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    # words keep their leading space (byte-level 'Ġ'), punctuation and newlines are tokens of their own
    assert tok.convert_ids_to_tokens(ids) == ["the", "Ġdog", "Ġsat", "Ġon", "Ġthe", "Ġmat", ".", "Ċ",
                                              "the", "Ġcat", "Ġsat", "."]
    assert tok("the zebra", add_special_tokens=False)["input_ids"][-1] == tok.unk_token_id


def test_wordpiece_round_trips_up_to_bert_spacing():
    tok = train_tokenizer(DOCS, "wordpiece", 1500)
    text = "The if statement is used for conditional execution."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert any(t.startswith("##") for t in tok.convert_ids_to_tokens(tok("conditionally unhashable")["input_ids"]))
    assert tok.decode(ids) == text  # the WordPiece decoder re-attaches punctuation


def test_bigger_vocab_gives_shorter_sequences():
    short = train_tokenizer(DOCS, "bpe", 300)(SAMPLE, add_special_tokens=False)["input_ids"]
    long_ = train_tokenizer(DOCS, "bpe", 3000)(SAMPLE, add_special_tokens=False)["input_ids"]
    assert len(long_) < 0.7 * len(short)
