"""Preference tuning through TRL: the data formats, the gettext preference set, a reward model, DPO
and GRPO, each checked against a figure computed here."""
import json
import re
import subprocess
import sys

import pytest
import torch
from datasets import Dataset

from hfkit.data.preferences import check_preferences, gettext_preference_records
from hfkit.errors import HfkitError

TINY = ["model.architecture=llama", "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
        "model.num_kv_heads=2", "model.max_position_embeddings=64", "model.dropout=0.0", "tokenizer.kind=char",
        "tokenizer.vocab_size=200", "warmup_steps=0", "save_strategy=no", "load_best_model_at_end=false",
        "bf16=false"]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


MSG = lambda role, text: {"role": role, "content": text}  # noqa: E731


@pytest.mark.parametrize("rows, kind, expected", [
    ([{"prompt": "2+2=", "chosen": " 4", "rejected": " 5"}], "paired", {"prompt": "explicit", "style": "standard"}),
    ([{"chosen": "2+2= 4", "rejected": "2+2= 5"}], "paired", {"prompt": "implicit", "style": "standard"}),
    ([{"prompt": [MSG("user", "2+2?")], "chosen": [MSG("assistant", "4")], "rejected": [MSG("assistant", "5")]}],
     "paired", {"prompt": "explicit", "style": "conversational"}),
    ([{"chosen": [MSG("user", "2+2?"), MSG("assistant", "4")], "rejected": [MSG("user", "2+2?"), MSG("assistant", "5")]}],
     "paired", {"prompt": "implicit", "style": "conversational"}),
    ([{"prompt": "2+2=", "answer": "4"}], "prompt_only", {"prompt": "only", "style": "standard"}),
    ([{"prompt": [MSG("system", "Be brief."), MSG("user", "2+2?")]}], "prompt_only",
     {"prompt": "only", "style": "conversational"}),
])
def test_every_trl_format_is_accepted(rows, kind, expected):
    assert check_preferences(Dataset.from_list(rows * 2), "f.jsonl", kind) == expected


@pytest.mark.parametrize("bad, message", [
    ({"prompt": "p", "rejected": " b"}, "no field 'chosen'"),
    ({"prompt": "p", "chosen": "  ", "rejected": " b"}, "record 1: field 'chosen' is empty"),
    ({"prompt": "p", "chosen": " a", "rejected": " a"}, "record 1: 'chosen' and 'rejected' are the same"),
    ({"prompt": "p", "chosen": [{"content": "a"}], "rejected": [MSG("assistant", "b")]},
     "record 1: field 'chosen' message 0 must be {role:"),
    ({"prompt": "p", "chosen": [MSG("assistant", "a")], "rejected": [MSG("assistant", "b")]},
     "record 1: mixes text and message lists"),
    ({"prompt": "p", "chosen": 3, "rejected": " b"}, "record 1: field 'chosen' must be text or a list of messages"),
])
def test_bad_preference_records_are_refused_naming_the_record(bad, message):
    good = {"prompt": "p", "chosen": " a", "rejected": " b"}
    rows = Rows([good, bad] if "chosen" in bad else [bad, bad])
    with pytest.raises(HfkitError) as e:
        check_preferences(rows, "prefs.jsonl", "paired")
    assert str(e.value).startswith("prefs.jsonl") and message in str(e.value), str(e.value)


class Rows(list):
    """Records as read (a plain sequence: Arrow could not hold a number and a text in one column)."""

    @property
    def column_names(self):
        return sorted({k for r in self for k in r})


def test_a_bad_record_in_a_file_fails_in_one_line_with_exit_2(tmp_path):
    rows = [{"prompt": "Q: 1+1?", "chosen": " 2", "rejected": " 3"}] * 3 + [{"prompt": "Q", "chosen": " x"}]
    path = _jsonl(tmp_path / "prefs.jsonl", rows)
    p = subprocess.run([sys.executable, "-m", "hfkit", "train", "dpo_translate", "model.name_or_path=null",
                        f"data.sources=[{{kind: json, path: {path}}}]", "dpo.max_length=32", f"output_dir={tmp_path / 'run'}", *TINY],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and "record 3: field 'rejected' must be text" in err[0] and "prefs.jsonl" in err[0], err
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_gettext_preferences_reject_a_same_catalog_translation_of_the_closest_length():
    ds = gettext_preference_records("de", "/usr/share/locale", max_chars=60, max_records=400, seed=0)
    assert len(ds) == 400
    by_catalog = {}
    for r in ds:
        by_catalog.setdefault(r["catalog"], set()).add(r["reference"])
    for r in ds:
        assert r["chosen"] == " " + r["reference"] and r["rejected"] != r["chosen"]
        assert r["prompt"] == f"Translate to German: {r['source']}\nGerman:"
        others = by_catalog[r["catalog"]] - {r["reference"]}
        if others:  # from the same program, and no other of its translations is closer in length
            assert r["rejected"][1:] in others
            assert abs(len(r["rejected"]) - len(r["chosen"])) == min(abs(len(o) - len(r["reference"])) for o in others)


def _toy_pairs(n=64, seed=0):
    """Separable: the chosen answer is a run of 'a's, the rejected one a run of 'b's."""
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        k = rng.randint(2, 6)
        q = "".join(rng.choice("xyz") for _ in range(4))
        rows.append({"prompt": f"{q}:", "chosen": " " + "a" * k, "rejected": " " + "b" * k})
    return rows


def test_reward_model_learns_a_separable_preference(tmp_path):
    import hfkit

    path = _jsonl(tmp_path / "toy.jsonl", _toy_pairs())
    m = hfkit.train("reward_model", TINY + ["model.name_or_path=null", "model.architecture=gpt2",
                                            f"data.sources=[{{kind: json, path: {path}}}]", "data.validation_fraction=0.25",
                                            "reward.max_length=32", "max_steps=30", "per_device_train_batch_size=8",
                                            "learning_rate=3e-3", "eval_steps=30", "logging_steps=5",
                                            f"output_dir={tmp_path / 'run'}"], quiet=True)
    logs = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [h["loss"] for h in logs if "loss" in h]
    assert losses[-1] < 0.5 * losses[0]
    assert m["eval_after"]["eval_accuracy"] == 1.0 and m["eval_before"]["eval_accuracy"] < 1.0
    # the saved head scores a chosen answer above its rejected one (checked here, not by TRL)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "run")
    with torch.no_grad():
        for r in _toy_pairs(8, seed=1):
            s = [model(**tok(r["prompt"] + r[k], return_tensors="pt")).logits.item() for k in ("chosen", "rejected")]
            assert s[0] > s[1]


def _completion_logp(model, tok, prompt: str, completion: str) -> float:
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]  # TRL ends completions with EOS
    ids = torch.tensor([p + c])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
    return sum(logp[len(p) - 1 + i, t].item() for i, t in enumerate(c))


def test_dpo_moves_the_chosen_rejected_log_ratio_the_right_way(tmp_path):
    """DPO's implicit reward margin beta * [(log pi/ref)(chosen) - (log pi/ref)(rejected)], computed here
    from the saved policy and the starting one, is 0 before, positive after, and equals TRL's."""
    import copy

    from hfkit.recipe import load_recipe
    from hfkit.job import assemble

    path = _jsonl(tmp_path / "toy.jsonl", _toy_pairs())
    beta = 0.5
    recipe = load_recipe("dpo_translate", TINY + ["model.name_or_path=null", f"data.sources=[{{kind: json, path: {path}}}]",
                                                  "data.validation_fraction=0.25", "eval.metrics=[]", f"dpo.beta={beta}",
                                                  "dpo.max_length=32", "max_steps=8", "per_device_train_batch_size=8",
                                                  "learning_rate=3e-3", f"output_dir={tmp_path / 'run'}"])
    job = assemble(recipe)
    start = copy.deepcopy(job.model).eval()
    trainer = job.task.make_trainer(job.model, job.args, job.prepared, job.tokenizer, [])
    trainer.train()
    policy = job.model.eval()

    def margin(model_a, model_b, rows):
        out = []
        for r in rows:
            lr = [_completion_logp(model_a, job.tokenizer, r["prompt"], r[k])
                  - _completion_logp(model_b, job.tokenizer, r["prompt"], r[k]) for k in ("chosen", "rejected")]
            out.append(beta * (lr[0] - lr[1]))
        return out

    held_out = [job.prepared.validation[i] for i in range(len(job.prepared.validation))]
    assert max(abs(x) for x in margin(start, start, held_out)) == 0.0
    after = margin(policy, start, held_out)
    assert sum(after) / len(after) > 0.05 and sum(x > 0 for x in after) / len(after) >= 0.9
    trl_eval = trainer.evaluate()
    assert trl_eval["eval_rewards/margins"] == pytest.approx(sum(after) / len(after), rel=0.02, abs=1e-3)


def test_grpo_calls_the_reward_with_completions_and_the_reward_rises(tmp_path, monkeypatch):
    import hfkit
    from hfkit.training import rewards

    calls = []
    real = rewards.REWARDS["chrf"]

    def recording(completions, **kwargs):
        calls.append((list(completions), dict(kwargs)))
        return real(completions, **kwargs)

    recording.__name__ = "chrf"
    monkeypatch.setitem(rewards.REWARDS, "chrf", recording)
    rows = [{"prompt": f"{q}:", "reference": "aaaa"} for q in ("xy", "yz", "zx", "xx", "yy", "zz", "xz", "zy")] * 4
    path = _jsonl(tmp_path / "toy.jsonl", rows)
    m = hfkit.train("grpo_translate", TINY + ["model.name_or_path=null", f"data.sources=[{{kind: json, path: {path}}}]",
                                              "data.validation_fraction=0", "data.dedup=none", "eval.metrics=[]",
                                              "grpo.num_generations=8", "grpo.max_completion_length=4",
                                              "max_steps=24", "per_device_train_batch_size=16", "learning_rate=1e-2",
                                              "logging_steps=1", f"output_dir={tmp_path / 'run'}"], quiet=True)
    completions, kwargs = calls[0]
    assert len(completions) == 16 and all(isinstance(c, str) for c in completions)
    assert kwargs["reference"] == ["aaaa"] * 16 and "prompts" in kwargs
    s = m["training_summary"]
    assert s["mean reward, last logs"] > s["mean reward, first logs"] + 0.1, s


def test_shipped_reward_functions_score_against_the_reference():
    from sacrebleu.metrics import CHRF

    from hfkit.training.rewards import REWARDS

    comps = ["Datei öffnen\nnoise", "datei Öffnen.", "Ordner"]
    refs = ["Datei öffnen"] * 3
    assert REWARDS["chrf"](comps, reference=refs) == pytest.approx(
        [CHRF().sentence_score(c.split("\n")[0], [r]).score / 100 for c, r in zip(comps, refs)])
    assert REWARDS["chrf"](comps, reference=refs)[0] == 1.0  # only the first line is the answer
    assert REWARDS["exact_match"](comps, answer=refs) == [1.0, 1.0, 0.0]  # case, spacing, final period aside
    assert REWARDS["length_penalty"](["abc", "abcdef", [{"role": "assistant", "content": "ab"}]],
                                     reference=["abcd"] * 3) == pytest.approx([-0.25, -0.5, -0.5])
    with pytest.raises(HfkitError, match="reward 'chrf' compares with a record field 'reference' or 'answer'"):
        REWARDS["chrf"](comps, source=refs)


def test_on_policy_rejections_are_the_policys_worst_sample(tiny_run):
    from sacrebleu.metrics import CHRF

    from hfkit.tasks.preference import on_policy_rejections

    run, _ = tiny_run
    ds = gettext_preference_records("de", "/usr/share/locale", max_chars=20, max_records=12, seed=0)
    out, report = on_policy_rejections(ds, str(run), num_samples=3, max_new_tokens=8, seed=0, progress=False)
    assert report["records"] == len(out) == len(ds) and report["on_policy"] > 0
    assert report["mean_chrf_worst_sample"] <= report["mean_chrf_best_sample"]
    # the same samples again (seeded): each rejected answer is the lowest-chrF sample of its prompt
    from hfkit.data.tokenizer import load_tokenizer
    from hfkit.inference.generation import generate
    from hfkit.models import load_model

    samples = generate(load_model(str(run)), load_tokenizer(str(run)), list(ds["prompt"]), batch_size=64,
                       max_new_tokens=8, do_sample=True, temperature=1.0, num_return_sequences=3, seed=0)
    by_prompt = dict(zip(ds["prompt"], zip(samples, ds["reference"])))
    for r, before in zip(out, ds):
        outs, ref = by_prompt[r["prompt"]]
        texts = [t for t in (s.split("\n")[0].strip() for s in outs) if t and t != ref.strip()]
        if not texts:
            assert r["rejected"] == before["rejected"]
            continue
        worst = min(CHRF().sentence_score(t, [ref]).score for t in texts)
        assert CHRF().sentence_score(r["rejected"].strip(), [ref]).score == worst
        assert r["chosen"] == " " + ref


def test_a_recipe_that_starts_from_a_missing_run_names_it(tmp_path):
    p = subprocess.run([sys.executable, "-m", "hfkit", "train", "dpo_translate", f"output_dir={tmp_path / 'r'}",
                        "model.name_or_path=runs/sft_translate_missing"], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert p.returncode == 2 and "runs/sft_translate_missing" in p.stderr and "train it first" in p.stderr
    p = subprocess.run([sys.executable, "-m", "hfkit", "train", "grpo_translate", f"output_dir={tmp_path / 'r'}"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)  # no runs/ here
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "runs/sft_translate" in p.stderr and "hfkit train sft_translate" in p.stderr


def test_eval_bleu_reads_a_preference_runs_prompt_format(tmp_path):
    """`hfkit eval bleu --model RUN` on a dpo run: the records' prompts, scored against their reference."""
    import hfkit

    rows = _toy_pairs(32)
    for r in rows:
        r["reference"] = r["chosen"].strip()
    path = _jsonl(tmp_path / "toy.jsonl", rows)
    hfkit.train("dpo_translate", TINY + ["model.name_or_path=null", f"data.sources=[{{kind: json, path: {path}}}]",
                                         "data.validation_fraction=0.25", "eval.metrics=[chrf]", "eval.max_examples=4",
                                         "eval.max_new_tokens=6", "dpo.max_length=32", "max_steps=2",
                                         "per_device_train_batch_size=8", f"output_dir={tmp_path / 'run'}"], quiet=True)
    preds = tmp_path / "preds.jsonl"
    p = subprocess.run([sys.executable, "-m", "hfkit", "eval", "chrf", "--model", str(tmp_path / "run"), "--data", path,
                        "--max-examples", "5", "--max-new-tokens", "6", "--save-predictions", str(preds), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["metrics"]["n"] == 5
    saved = [json.loads(x) for x in preds.read_text().splitlines()]
    assert [(s["prompt"], s["reference"]) for s in saved] == [(r["prompt"], r["reference"]) for r in rows[:5]]


def test_dpo_with_lora_uses_the_adapter_off_as_reference(tiny_run, tmp_path):
    """With a LoRA adapter TRL keeps no second model: the reference is the policy with its adapter
    disabled. Only the adapter trains; the margin moves the right way."""
    from hfkit.recipe import load_recipe
    from hfkit.job import assemble

    run, _ = tiny_run
    path = _jsonl(tmp_path / "toy.jsonl", _toy_pairs())
    recipe = load_recipe("dpo_translate", ["model.name_or_path=" + str(run), "adapter.method=lora", "adapter.r=4",
                                           f"data.sources=[{{kind: json, path: {path}}}]", "data.validation_fraction=0.25",
                                           "eval.metrics=[]", "dpo.max_length=32", "max_steps=6",
                                           "per_device_train_batch_size=8", "learning_rate=1e-2", "save_strategy=no",
                                           "warmup_steps=0", "bf16=false", f"output_dir={tmp_path / 'run'}"])
    job = assemble(recipe)
    assert "ref_model" not in job.prepared.trainer_kwargs
    base = {n: p.detach().clone() for n, p in job.model.named_parameters() if "lora_" not in n}
    trainer = job.task.make_trainer(job.model, job.args, job.prepared, job.tokenizer, [])
    assert trainer.ref_model is None
    before = trainer.evaluate()["eval_rewards/margins"]
    trainer.train()
    after = trainer.evaluate()
    assert before == pytest.approx(0.0, abs=1e-6) and after["eval_rewards/margins"] > 0.05
    assert all(torch.equal(p, base[n]) for n, p in job.model.named_parameters() if "lora_" not in n)


def test_conversational_preferences_train_through_a_chat_template(tmp_path):
    """Conversational records: the tokenizer trained here gets ChatML (as sft does) before TRL renders them."""
    from hfkit.recipe import load_recipe
    from hfkit.job import assemble

    rows = [{"prompt": [MSG("user", r["prompt"])], "chosen": [MSG("assistant", r["chosen"].strip())],
             "rejected": [MSG("assistant", r["rejected"].strip())]} for r in _toy_pairs(24)]
    path = _jsonl(tmp_path / "chat.jsonl", rows)
    recipe = load_recipe("dpo_translate", TINY + ["model.name_or_path=null", f"data.sources=[{{kind: json, path: {path}}}]",
                                                  "data.validation_fraction=0.25", "eval.metrics=[]", "dpo.max_length=48",
                                                  "max_steps=2", "per_device_train_batch_size=4",
                                                  f"output_dir={tmp_path / 'run'}"])
    job = assemble(recipe)
    assert "<|im_start|>" in job.tokenizer.chat_template and "<|im_end|>" in job.tokenizer.get_vocab()
    assert job.model.get_input_embeddings().num_embeddings >= len(job.tokenizer)
    trainer = job.task.make_trainer(job.model, job.args, job.prepared, job.tokenizer, [])
    out = trainer.train()
    assert out.global_step == 2 and out.training_loss > 0
    first = trainer.train_dataset[0]  # TRL rendered the chat: the prompt ends with the assistant header
    assert job.tokenizer.decode(first["prompt_ids"]).endswith("<|im_start|>assistant\n")


def test_on_policy_rejections_skip_empty_samples_and_the_reference(monkeypatch):
    import hfkit.tasks.preference as prefs
    import hfkit.data.tokenizer as tk
    import hfkit.inference.generation as gen
    import hfkit.models as models

    ds = Dataset.from_list([{"prompt": f"p{i}", "chosen": " Datei", "rejected": " x", "reference": "Datei"}
                            for i in range(3)])
    fixed = [["", " Ordner\nmore", "Dat"], ["", "Datei"], ["\n", " "]]
    monkeypatch.setattr(models, "load_model", lambda path: None)
    monkeypatch.setattr(tk, "load_tokenizer", lambda path: None)
    monkeypatch.setattr(gen, "generate", lambda *a, **k: fixed)
    out, report = prefs.on_policy_rejections(ds, "runs/any", num_samples=3, progress=False)
    # the lower chrF of "Ordner" and "Dat"; no usable sample: the record keeps its hard negative (and its place)
    assert out["prompt"] == ["p0", "p1", "p2"] and out["rejected"] == [" Ordner", " x", " x"]
    assert (report["on_policy"], report["kept_hard_negative"]) == (1, 2)


def test_ipo_is_a_loss_setting_and_a_bad_one_fails_before_any_data(tmp_path):
    from hfkit.recipe import load_recipe
    from hfkit.job import assemble

    path = _jsonl(tmp_path / "toy.jsonl", _toy_pairs(24))
    common = TINY + ["model.name_or_path=null", f"data.sources=[{{kind: json, path: {path}}}]", "eval.metrics=[]",
                     "dpo.max_length=32", "max_steps=2", "per_device_train_batch_size=8", f"output_dir={tmp_path / 'run'}"]
    job = assemble(load_recipe("dpo_translate", common + ["dpo.loss_type=[ipo]", "dpo.beta=0.5"]))
    assert job.args.loss_type == ["ipo"] and job.args.beta == 0.5
    trainer = job.task.make_trainer(job.model, job.args, job.prepared, job.tokenizer, [])
    # IPO's loss at the start (policy = reference): (0 - 1/(2 beta))^2 = 1.0 for beta 0.5
    assert trainer.evaluate()["eval_loss"] == pytest.approx(1.0, abs=1e-4)
    p = subprocess.run([sys.executable, "-m", "hfkit", "train", "dpo_translate", *common, "dpo.loss_type=[orpo]",
                        f"output_dir={tmp_path / 'bad'}"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "recipe key 'dpo.loss_type': unknown value 'orpo' (TRL's DPOConfig.loss_type: sigmoid, hinge, ipo" in p.stderr
    assert not (tmp_path / "bad").exists()


def test_trl_sections_take_every_trl_field_with_trls_defaults(tmp_path):
    """dpo:, grpo: and reward: pass every field of TRL's config through (checked against its class, as
    adapter: is against peft's), and what they declare has TRL's own defaults."""
    import dataclasses

    import trl

    from hfkit.errors import HfkitError
    from hfkit.job import assemble
    from hfkit.recipe import load_recipe
    from hfkit.tasks.preference import DpoSection, GrpoSection, RewardSection

    for section, config in [(DpoSection, trl.DPOConfig), (GrpoSection, trl.GRPOConfig), (RewardSection, trl.RewardConfig)]:
        theirs = {f.name: f for f in dataclasses.fields(config)}
        for f in dataclasses.fields(section):
            if f.name in section.HFKIT_FIELDS:
                continue
            mine = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            t = theirs[f.name]
            assert mine == (t.default if t.default is not dataclasses.MISSING else t.default_factory()), f.name
    path = _jsonl(tmp_path / "toy.jsonl", _toy_pairs(24))
    common = TINY + ["model.name_or_path=null", f"data.sources=[{{kind: json, path: {path}}}]", "eval.metrics=[]",
                     "max_steps=2", "per_device_train_batch_size=8", f"output_dir={tmp_path / 'run'}"]
    recipe = load_recipe("dpo_translate", common + ["dpo.max_length=48", "dpo.truncation_mode=keep_end",
                                                    "dpo.f_alpha_divergence_coef=0.5"])
    assert recipe.task_config.options == {"truncation_mode": "keep_end", "f_alpha_divergence_coef": 0.5}
    assert "truncation_mode: keep_end" in recipe.to_yaml()  # saved with the run as a field of the section
    args = assemble(recipe).args
    assert (args.truncation_mode, args.f_alpha_divergence_coef, args.max_length) == ("keep_end", 0.5, 48)
    for override, message in [("dpo.learning_rate=1e-3", "'dpo.learning_rate' is a TrainingArguments field, for every "
                                                         "task: set it as 'training.learning_rate'"),
                              ("dpo.truncation_mod=keep_end", "unknown recipe key 'dpo.truncation_mod'"),
                              ("dpo.f_alpha_divergence_coef=much", "recipe key 'dpo.f_alpha_divergence_coef' expects"),
                              ("dpo.trust_remote_code=true", "how the model loads is the model section's")]:
        with pytest.raises(HfkitError, match=re.escape(message)):
            load_recipe("dpo_translate", common + [override])


def test_dpo_translate_holds_out_exactly_the_pairs_sft_translate_held_out():
    """The preference runs start from sft_translate and are scored on pairs it never trained on."""
    from hfkit.recipe import load_recipe
    from hfkit.tasks import get_task

    sft = get_task("sft").load(load_recipe("sft_translate"), 42)
    for name in ("dpo_translate", "grpo_translate"):
        recipe = load_recipe(name, ["model.name_or_path=null"])  # the split does not need the SFT run itself
        pref = get_task(recipe.task).load(recipe, 42)
        assert sorted(pref.validation["source"]) == sorted(sft.validation["source"])
        assert len(pref.validation) > 250
