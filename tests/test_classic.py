"""The classic LMs (hfkit.models.classic) as Hugging Face models: causal, trainable, saved and loaded
through AutoModelForCausalLM, generating, and trained by the clm recipe path."""
import pytest
import torch

from conftest import TINY_MODEL
from hfkit.models import CLASSIC

NEURAL = [n for n in CLASSIC if n != "ngram"]  # the n-gram model counts instead of training: its own tests


def _model(name, vocab=40):
    from transformers import AutoModelForCausalLM

    from hfkit.models import ModelConfig, model_config

    class Tok:  # the sizes a preset reads from a tokenizer
        bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

        def __len__(self):
            return vocab

    torch.manual_seed(0)
    cfg = model_config(ModelConfig(architecture=name, hidden_size=16, num_layers=2, extra={}), Tok())
    return AutoModelForCausalLM.from_config(cfg)


@pytest.mark.parametrize("name", NEURAL)
def test_changing_a_future_token_never_changes_earlier_logits(name):
    model = _model(name).eval()
    x = torch.randint(3, 40, (2, 12), generator=torch.Generator().manual_seed(1))
    y = x.clone()
    y[:, 7] = (x[:, 7] + 1) % 40
    with torch.no_grad():
        a, b = model(input_ids=x).logits, model(input_ids=y).logits
    torch.testing.assert_close(a[:, :7], b[:, :7])  # positions before the change see none of it
    assert not torch.allclose(a[:, 7], b[:, 7])  # the changed position itself is read


@pytest.mark.parametrize("name", NEURAL)
def test_loss_falls_and_save_load_gives_identical_logits_and_generation(name, tmp_path):
    from transformers import AutoModelForCausalLM

    model = _model(name)
    starts = torch.randint(0, 37, (8, 1), generator=torch.Generator().manual_seed(2))
    x = 3 + (starts + torch.arange(16)) % 37  # each next token follows from the last: learnable by all of them
    opt = torch.optim.Adam(model.parameters(), lr=5e-2)
    losses = []
    for _ in range(30):
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    model.eval().save_pretrained(tmp_path / name)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / name).eval()
    assert type(loaded) is type(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=x).logits, model(input_ids=x).logits, rtol=0, atol=0)
    out = loaded.generate(x[:2, :5], max_new_tokens=4, do_sample=False, pad_token_id=0)
    step = x[:2, :5]
    for _ in range(4):  # greedy decoding by hand: argmax of the last position, appended
        with torch.no_grad():
            step = torch.cat([step, loaded(input_ids=step).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, step)


def test_the_clm_recipe_trains_a_classic_model_and_its_perplexity_falls(tmp_path):
    import hfkit

    tiny = [o for o in TINY_MODEL if not o.startswith("model.")]
    m = hfkit.train("clm_pretrain", tiny + ["model.architecture=gru", "model.hidden_size=64", "model.num_layers=1",
                                            "max_steps=60", "eval_steps=60", f"output_dir={tmp_path / 'run'}"],
                    quiet=True)
    assert m["eval_after"]["eval_perplexity"] < 0.5 * m["eval_before"]["eval_perplexity"]


def test_kneser_ney_bigram_equals_a_hand_computation():
    import numpy as np

    from hfkit.models.classic import NGramConfig, NGramLM

    a, b, c = 0, 1, 2
    m = NGramLM(NGramConfig(order=2, discount=0.5, vocab_size=3)).fit_counts([[a, b, a, c], [b, a, b], [c, a]])
    # bigrams ab:2 ba:2 ac:1 ca:1. Continuation counts N1+(.w): a 2 (after b, c), b 1, c 1; total 4, 3 types:
    # P1(a) = (2-.5)/4 + .5*3/4 * 1/3 = .5, P1(b) = P1(c) = .25
    # P(.|a): counts b 2, c 1 (total 3, 2 types): P(b|a) = 1.5/3 + .5*2/3*.25 = 7/12, P(c|a) = .5/3 + 1/12 = 1/4, P(a|a) = 1/3*.5
    assert np.allclose(m.distribution((a,)), [1 / 6, 7 / 12, 1 / 4])
    assert np.allclose(m.distribution((c,)), [0.75, 0.125, 0.125])  # a:1 of 1: .5 + .5*P1
    assert np.allclose(m.distribution(()), [0.5, 0.25, 0.25])  # the first position: the unigram level
    add_k = NGramLM(NGramConfig(order=2, smoothing="add_k", add_k=1.0, vocab_size=3)).fit_counts([[a, b, a, c], [b, a, b]])
    assert np.allclose(add_k.distribution((a,)), [1 / 6, 3 / 6, 2 / 6])  # (c + 1) / (3 + 3)


@pytest.mark.parametrize("order, smoothing", [(1, "kneser_ney"), (2, "kneser_ney"), (3, "kneser_ney"), (3, "add_k")])
def test_ngram_distributions_sum_to_one_and_the_model_saves_loads_and_generates(order, smoothing, tmp_path):
    import numpy as np
    from transformers import AutoModelForCausalLM

    from hfkit.models.classic import NGramConfig, NGramLM

    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(0, 30, 60)) for _ in range(8)]
    m = NGramLM(NGramConfig(order=order, smoothing=smoothing, vocab_size=30)).fit_counts(seqs)
    for _ in range(25):  # sampled contexts, seen and unseen
        p = m.distribution(tuple(rng.integers(0, 30, order - 1)))
        assert abs(p.sum() - 1) < 1e-9 and (p > 0).all()
    m.save_pretrained(tmp_path / "ngram")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "ngram")
    x = torch.tensor([seqs[0][:20]])
    torch.testing.assert_close(loaded(input_ids=x).logits, m(input_ids=x).logits, rtol=0, atol=0)
    changed = x.clone()
    changed[0, 10] = (x[0, 10] + 1) % 30
    torch.testing.assert_close(m(input_ids=changed).logits[:, :10], m(input_ids=x).logits[:, :10])  # causal
    out = loaded.generate(x[:, :4], max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert out.shape == (1, 7)


def test_training_an_ngram_recipe_counts_saves_and_beats_the_unigram_floor(tmp_path):
    import json

    import hfkit

    tiny = [o for o in TINY_MODEL if not o.startswith("model.")]
    runs = {}
    for order in (1, 3):
        out = tmp_path / f"order{order}"
        runs[order] = hfkit.train("clm_pretrain", tiny + ["model.architecture=ngram", f"model.extra.order={order}",
                                                          f"output_dir={out}"], quiet=True)
        saved = json.loads((out / "metrics.json").read_text())
        assert saved["train"]["counted_ngrams"] > 0 and (out / "model.safetensors").is_file()
    vocab = 400  # tokenizer.vocab_size of the tiny recipe
    assert runs[1]["eval_after"]["eval_perplexity"] < vocab  # counted unigrams beat the uniform distribution
    assert runs[3]["eval_after"]["eval_perplexity"] < runs[1]["eval_after"]["eval_perplexity"]  # context helps


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_recurrent_generation_carries_its_state_and_equals_rereading_the_sequence(cell):
    """generate() with the recurrent state (one cell step per new token) gives the very tokens of
    generate() re-reading the whole sequence every step, greedy and with beam search."""
    model = _model(cell).eval()
    x = torch.randint(3, 40, (2, 5), generator=torch.Generator().manual_seed(3))
    widths = []
    hook = model.rnn.register_forward_hook(lambda mod, args, out: widths.append(args[0].shape[1]))
    for kw in ({"do_sample": False}, {"num_beams": 3, "do_sample": False}):
        widths.clear()
        cached = model.generate(x, max_new_tokens=10, min_new_tokens=10, use_cache=True, pad_token_id=0, **kw)
        assert widths[0] == 5 and set(widths[1:]) == {1}  # the prompt once, then one token per step
        widths.clear()
        reread = model.generate(x, max_new_tokens=10, min_new_tokens=10, use_cache=False, pad_token_id=0, **kw)
        assert widths == list(range(5, 15))
        assert torch.equal(cached, reread)
    hook.remove()
    a, b = model(input_ids=x, labels=x), model(input_ids=x, labels=x, use_cache=True)  # the loss either way
    assert b.cache is not None and torch.equal(a.loss, b.loss) and torch.equal(a.logits, b.logits)
