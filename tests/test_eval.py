"""The evaluation suite: sacrebleu/rouge-score agreement, matching metrics, in-context evaluation
(lm-eval's scoring), self-consistency, reports and compare, bad input."""
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hfkit.cli import main


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
    """References: real sentences of the built-in corpus; predictions: the same sentences with words
    dropped, swapped and replaced (deterministically), plus a second reference set."""
    from hfkit.data.pydoc import default_corpus_documents

    d = tmp_path_factory.mktemp("text")
    sents = [s.strip() for doc in default_corpus_documents()[:60] for s in " ".join(doc.split()).split(". ")
             if 6 <= len(s.split()) <= 30][:120]
    rng = random.Random(0)
    preds, refs2 = [], []
    for s in sents:
        w = s.split()
        if rng.random() < 0.5:
            del w[rng.randrange(len(w))]
        if rng.random() < 0.5:
            i = rng.randrange(len(w) - 1)
            w[i], w[i + 1] = w[i + 1], w[i]
        if rng.random() < 0.3:
            w[rng.randrange(len(w))] = "something"
        preds.append(" ".join(w))
        refs2.append(" ".join(reversed(s.split())) if rng.random() < 0.2 else s.lower())
    (d / "refs.txt").write_text("\n".join(sents) + "\n")
    (d / "refs2.txt").write_text("\n".join(refs2) + "\n")
    (d / "preds.txt").write_text("\n".join(preds) + "\n")
    return d


def _sacrebleu_cli(refs, preds, metrics, extra=()):
    p = subprocess.run([sys.executable, "-m", "sacrebleu", *map(str, refs), "-i", str(preds), "-m", *metrics,
                        "-f", "json", "-w", "10", *extra], capture_output=True, text=True, check=True)
    out = json.loads(p.stdout)
    return out if isinstance(out, list) else [out]


@pytest.mark.parametrize("nrefs", [1, 2])
def test_bleu_chrf_ter_equal_the_sacrebleu_cli(text_files, nrefs, capsys):
    refs = [text_files / "refs.txt", text_files / "refs2.txt"][:nrefs]
    rc, out, _ = run(["eval", "bleu", "--predictions", text_files / "preds.txt",
                      *[a for r in refs for a in ("--references", r)], "--metrics", "bleu,chrf,ter", "--json"], capsys)
    assert rc == 0
    rep = json.loads(out)
    cli = _sacrebleu_cli(refs, text_files / "preds.txt", ["bleu", "chrf", "ter"])
    for name, res in zip(("bleu", "chrf", "ter"), cli):
        assert abs(rep["metrics"][name] - res["score"]) < 1e-6, name
        assert rep["signatures"][name] == res["signature"]
    assert 20 < rep["metrics"]["bleu"] < 95 and rep["metrics"]["n"] == 120
    assert rep["data"]["predictions"]["sha256"] and len(rep["data"]["references"]) == nrefs


def test_hand_checked_bleu_ter_and_matching():
    from hfkit.evaluation.text_metrics import classification_report, corpus_metrics, token_f1

    # n-gram precisions 5/6, 3/5, 2/4, 1/3, same length (BP 1): BLEU = (1/12)^(1/4)
    s = corpus_metrics(["the cat sat on the mat"], ["the cat sat on a mat"], ("bleu", "ter", "exact_match", "accuracy"))
    assert abs(s["bleu"] - 100 * (1 / 12) ** 0.25) < 1e-9
    assert abs(s["ter"] - 100 / 6) < 1e-9  # one substitution over six reference words
    assert s["exact_match"] == 100.0 and s["accuracy"] == 0.0  # SQuAD normalisation drops the articles
    assert abs(token_f1("the Eiffel Tower", "Eiffel tower in Paris") - 2 / 3) < 1e-12  # P 1, R 1/2
    assert token_f1("Paris", "London") == 0.0
    rep = classification_report(["pos", "pos", "neg", "neg", "pos"], ["pos", "neg", "neg", "neg", "pos"])
    assert rep["accuracy"] == 80.0
    assert rep["per_class"]["pos"] == {"precision": pytest.approx(200 / 3), "recall": 100.0,
                                       "f1": pytest.approx(80.0), "support": 2}
    assert rep["per_class"]["neg"]["recall"] == pytest.approx(200 / 3) and rep["per_class"]["neg"]["precision"] == 100.0
    assert rep["macro_f1"] == pytest.approx(80.0)


def test_rouge_equals_rouge_score(text_files, capsys):
    from rouge_score import rouge_scorer

    preds = (text_files / "preds.txt").read_text().splitlines()
    refs = (text_files / "refs.txt").read_text().splitlines()
    refs2 = (text_files / "refs2.txt").read_text().splitlines()
    for stem in (False, True):
        argv = ["eval", "rouge", "--predictions", text_files / "preds.txt", "--references", text_files / "refs.txt",
                "--references", text_files / "refs2.txt", "--json"] + (["--rouge-stemmer"] if stem else [])
        rc, out, _ = run(argv, capsys)
        got = json.loads(out)["metrics"]
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=stem)
        for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
            best = [max(scorer.score(r1, p)[key].fmeasure, scorer.score(r2, p)[key].fmeasure)
                    for p, r1, r2 in zip(preds, refs, refs2)]
            assert abs(got[key] - 100 * sum(best) / len(best)) < 1e-9


def test_metrics_as_evaluate_modules_offline(text_files):
    import evaluate

    from hfkit.evaluation.evaluate_modules import MODULES, module_path
    from hfkit.evaluation.text_metrics import corpus_metrics

    preds = (text_files / "preds.txt").read_text().splitlines()[:30]
    refs = (text_files / "refs.txt").read_text().splitlines()[:30]
    for name in MODULES:
        m = evaluate.load(module_path(name))
        got = m.compute(predictions=preds, references=[[r] for r in refs])
        want = corpus_metrics(preds, refs, (name,))
        assert got == want, name
    assert evaluate.load(module_path("bleu")).compute(predictions=preds, references=refs)["bleu"] == \
        corpus_metrics(preds, refs, ("bleu",))["bleu"]


# --- in-context evaluation ------------------------------------------------------------------------

def _mc_task(path: Path, n: int = 24, seed: int = 0) -> list[dict]:
    """Multiple choice from real text: which continuation follows this opening? (the true one vs three
    continuations of other sections of the built-in corpus)."""
    from hfkit.data.pydoc import default_corpus_documents

    docs = [d.split() for d in default_corpus_documents() if len(d.split()) > 40][:n + 10]
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        opening, true = " ".join(docs[i][:4]), " ".join(docs[i][4:7])
        others = [" ".join(docs[j][4:7]) for j in rng.sample([k for k in range(len(docs)) if k != i], 3)]
        choices = others[:]
        gold = rng.randrange(4)
        choices.insert(gold, true)
        rows.append({"question": opening, "choices": choices, "answer": gold})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_multiple_choice_picks_the_highest_independent_loglikelihood(tiny_model, tmp_path):
    import torch

    from hfkit.evaluation.icl import IclConfig, evaluate_icl, load_task

    model, tok = tiny_model
    rows = _mc_task(tmp_path / "mc.jsonl", n=8)
    res = evaluate_icl(model, tok, load_task(tmp_path / "mc.jsonl"), IclConfig(batch_size=3))
    for row, s in zip(rows, res["samples"]):
        prompt = f"Question: {row['question']}\nAnswer:"
        independent = []
        for choice in row["choices"]:
            ctx = tok(prompt, add_special_tokens=False)["input_ids"]
            whole = tok(prompt + " " + choice, add_special_tokens=False)["input_ids"]
            assert len(whole) <= model.config.n_positions  # short enough to need no truncation
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), -1)
            independent.append(sum(logp[t - 1, whole[t]].item() for t in range(len(ctx), len(whole))))
        assert s["loglikelihoods"] == pytest.approx(independent, abs=1e-3)
        assert s["prediction"] == max(range(4), key=independent.__getitem__)
        norm = [ll / len(c) for ll, c in zip(independent, row["choices"])]
        assert s["prediction_norm"] == max(range(4), key=norm.__getitem__)
    acc = 100 * sum(s["prediction"] == r["answer"] for s, r in zip(res["samples"], rows)) / len(rows)
    assert res["metrics"]["acc"] == acc


@pytest.mark.parametrize("shots", [0, 2])
def test_lm_evaluation_harness_agrees_with_hfkit(tiny_run, tmp_path, capsys, shots):
    """A model saved by hfkit, evaluated by lm-eval's `hf` backend on a local task, gets the same
    accuracy (and per-choice log-likelihoods) as `hfkit eval icl`; with the same seed the few-shot
    prompts are the same strings."""
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    run_dir, _ = tiny_run
    _mc_task(tmp_path / "mc.jsonl", n=24)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "hfkit_mc.yaml").write_text(
        "task: hfkit_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tmp_path / 'mc.jsonl'}\ntest_split: test\nfewshot_split: test\noutput_type: multiple_choice\n"
        "doc_to_text: \"Question: {{question}}\\nAnswer:\"\ndoc_to_choice: \"{{choices}}\"\ndoc_to_target: answer\n"
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={run_dir},dtype=float32", tasks=["hfkit_mc"],
                                  task_manager=TaskManager(include_path=str(tmp_path / "tasks")), device="cpu",
                                  batch_size=4, log_samples=True, num_fewshot=shots, fewshot_random_seed=1234)
    theirs = out["results"]["hfkit_mc"]
    rc, stdout, _ = run(["eval", "icl", "--model", run_dir, "--data", tmp_path / "mc.jsonl", "--json", "--shots", shots,
                         "--seed", 1234, "--log-samples", tmp_path / "samples.jsonl", "--output", tmp_path / "icl.json"],
                        capsys)
    ours = json.loads(stdout)["metrics"]
    assert rc == 0
    assert ours["acc"] == pytest.approx(100 * theirs["acc,none"], abs=1e-9)
    assert ours["acc_norm"] == pytest.approx(100 * theirs["acc_norm,none"], abs=1e-9)
    their_samples = sorted(out["samples"]["hfkit_mc"], key=lambda s: s["doc_id"])
    our_samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [s["loglikelihoods"] for s in our_samples] == \
        [pytest.approx([float(r[0][0]) for r in s["resps"]], abs=1e-4) for s in their_samples]
    their_prompts = [s["arguments"]["gen_args_0"]["arg_0"] if isinstance(s["arguments"], dict)
                     else s["arguments"][0][0] for s in their_samples]
    assert [s["prompt"] for s in our_samples] == their_prompts


def test_few_shot_prompts_are_deterministic_and_never_show_the_answer_itself(tmp_path):
    from hfkit.evaluation.icl import IclConfig, build_prompts, load_task

    rows = [{"question": f"What is {a} plus {b}?", "answer": str(a + b)} for a, b in
            [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)]]
    rows.append({"question": "What is the capital of France?", "answer": "Paris"})
    rows.append({"question": "What is the capital of Italy?", "answer": "Rome"})
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ex = load_task(tmp_path / "t.jsonl")
    a = build_prompts(ex, None, IclConfig(shots=3, seed=7))
    assert a == build_prompts(ex, None, IclConfig(shots=3, seed=7))  # same seed, same prompts
    assert a != build_prompts(ex, None, IclConfig(shots=3, seed=8))
    for p, r in zip(a, rows):
        parts = p.split("\n\n")
        assert len(parts) == 4 and parts[-1] == f"Question: {r['question']}\nAnswer:"
        assert f"Question: {r['question']}\nAnswer: {r['answer']}" not in parts[:-1]  # never itself
    sim = build_prompts(ex, None, IclConfig(shots=1, select="similar"))
    assert sim[6].split("\n\n")[0] == "Question: What is the capital of Italy?\nAnswer: Rome"
    cot_rows = [{**r, "rationale": f"Adding gives {r['answer']}."} for r in rows[:3]]
    (tmp_path / "cot.jsonl").write_text("".join(json.dumps(r) + "\n" for r in cot_rows))
    cot = build_prompts(load_task(tmp_path / "cot.jsonl"), None, IclConfig(shots=2, cot=True))
    assert "Let's think step by step. Adding gives 3. The answer is 3." in cot[1] or \
           "Let's think step by step. Adding gives 7. The answer is 7." in cot[0]
    assert cot[0].endswith("Answer: Let's think step by step.")


def test_self_consistency_majority_vote_and_extraction():
    from hfkit.evaluation.icl import extract_answer, majority_vote

    assert extract_answer("5 + 3 = 8, so the answer is 8.\nNext", None, cot=True) == "8"
    assert extract_answer("no conclusion here", None, cot=True) is None
    assert extract_answer("\n  Paris\nRome", None, cot=False) == "Paris"
    assert majority_vote(["8", "7", "8", None, "the 8"]) == "8"  # 'the 8' normalises to '8': 3 votes
    assert majority_vote(["7", "9", "9", "7"]) == "7"  # a tie goes to the answer seen first
    assert majority_vote([None, None]) is None


def test_self_consistency_end_to_end_votes_over_sampled_paths(tiny_model, tmp_path):
    from hfkit.evaluation.icl import IclConfig, evaluate_icl, load_task, majority_vote
    from hfkit.evaluation.text_metrics import normalize_answer

    model, tok = tiny_model
    (tmp_path / "g.jsonl").write_text("".join(json.dumps({"question": q, "answer": "statement"}) + "\n"
                                              for q in ["The if", "The while", "The for"]))
    cfg = IclConfig(self_consistency=5, temperature=1.0, max_new_tokens=6, answer_regex=r"(\w+)")
    res = evaluate_icl(model, tok, load_task(tmp_path / "g.jsonl"), cfg)
    assert res["metrics"]["paths"] == 5 and res["settings"]["mode"] == "generate"
    for s in res["samples"]:
        assert len(s["generations"]) == 5 and s["prediction"] == (majority_vote(s["answers"]) or "")
    em = 100 * sum(normalize_answer(s["prediction"]) == "statement" for s in res["samples"]) / 3
    assert res["metrics"]["exact_match"] == em


def test_generation_eval_of_a_model_writes_a_report_and_compare_lists_every_metric(tiny_run, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hfkit.inference.generation import generate
    from hfkit.evaluation.text_metrics import corpus_metrics

    run_dir, _ = tiny_run
    model_dir = tmp_path / "model"
    shutil.copytree(run_dir, model_dir, ignore=shutil.ignore_patterns("checkpoint-*", "runs"))
    rows = [{"source": "The if statement", "target": "is used for conditional execution"},
            {"source": "A function definition", "target": "defines a user-defined function object"},
            {"source": "The while statement", "target": "is used for repeated execution"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc, out, _ = run(["eval", "bleu", "--model", model_dir, "--data", tmp_path / "d.jsonl", "--template",
                      "{{source}}", "--metrics", "bleu,chrf,rouge", "--max-new-tokens", "8", "--json"], capsys)
    assert rc == 0
    rep = json.loads(out)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    preds = [o[0].strip() for o in generate(model, tok, [r["source"] for r in rows], max_new_tokens=8)]
    want = corpus_metrics(preds, [r["target"] for r in rows], ("bleu", "chrf", "rouge"))
    assert rep["metrics"]["bleu"] == want["bleu"] and rep["metrics"]["rougeL"] == want["rougeL"]
    assert rep["model"]["sha256"] and rep["data"]["sha256"] and rep["signatures"]["bleu"].startswith("nrefs:1")
    assert rep["name"] == "bleu_d"  # named after its data (and max examples, beams when set)
    assert json.loads((model_dir / "eval" / "bleu_d.json").read_text())["metrics"] == rep["metrics"]  # default output
    # compare: a training run folder, the evaluated model folder (metrics.json + eval/*.json), one report
    (tmp_path / "other.json").write_text(json.dumps({"kind": "icl", "metrics": {"acc": 50.0, "acc_norm": 75.0}}))
    rc, out, _ = run(["eval", "compare", run_dir, model_dir, tmp_path / "other.json", "--png", tmp_path / "cmp.png",
                      "--json"], capsys)
    cmp = json.loads(out)
    assert rc == 0 and cmp["runs"] == ["run", "model", "other"]
    names = set(cmp["metrics"])
    assert {"eval_after.eval_loss", "eval_after.eval_perplexity", "train_loss", "bleu_d.bleu", "bleu_d.rougeL",
            "icl.acc", "icl.acc_norm"} <= names
    assert cmp["metrics"]["bleu_d.bleu"] == [None, rep["metrics"]["bleu"], None]
    assert cmp["metrics"]["icl.acc"] == [None, None, 50.0]
    assert (tmp_path / "cmp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, out, _ = run(["eval", "compare", run_dir, model_dir, "--png", tmp_path / "cmp2.png"], capsys)
    for name in names - {"icl.acc", "icl.acc_norm"}:  # the table lists every metric of every run
        assert name in out


@pytest.fixture
def bad_eval(tmp_path):
    (tmp_path / "p3.txt").write_text("a\nb\nc\n")
    (tmp_path / "r2.txt").write_text("a\nb\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "nofield.jsonl").write_text('{"question": "q", "answer": "a"}\n{"prompt": "q2", "answer": "b"}\n')
    (tmp_path / "three.jsonl").write_text("".join(json.dumps({"question": f"q{i}", "answer": "a"}) + "\n"
                                                  for i in range(3)))
    (tmp_path / "badmc.jsonl").write_text('{"question": "q", "choices": ["x", "y"], "answer": 5}\n')
    return tmp_path


BAD_EVAL = [
    (["bleu", "--predictions", "{d}/p3.txt", "--references", "{d}/r2.txt"], "p3.txt has 3 lines but {d}/r2.txt has 2"),
    (["chrf", "--predictions", "{d}/p3.txt", "--references", "{d}/empty.txt"], "empty.txt: the references are empty"),
    (["match", "--predictions", "{d}/p3.txt", "--references", "{d}/r2.txt", "--per-class"], "has 3 lines but"),
    (["bleu", "--predictions", "{d}/p3.txt"], "--predictions and --references go together"),
    (["bleu", "--predictions", "{d}/p3.txt", "--references", "{d}/r2.txt", "--metrics", "bleu,meteor"],
     "unknown metric 'meteor'"),
    (["rouge", "--model", "{d}/nomodel"], "give --predictions FILE --references FILE, or --model DIR --data SRC"),
    (["icl", "--model", "{d}/nomodel", "--data", "{d}/nofield.jsonl"], "nofield.jsonl line 2: missing field 'question'"),
    (["icl", "--model", "{d}/nomodel", "--data", "{d}/three.jsonl", "--shots", "5"],
     "--shots 5 but only 2 demonstrations are available"),
    (["icl", "--model", "{d}/nomodel", "--data", "{d}/three.jsonl", "--shots", "4", "--demos", "{d}/three.jsonl"],
     "--shots 4 but only 3 demonstrations are available in {d}/three.jsonl"),
    (["icl", "--model", "{d}/nomodel", "--data", "{d}/badmc.jsonl"], "answer index 5 out of range for 2 choices"),
    (["icl", "--model", "{d}/nomodel", "--data", "{d}/missing.jsonl"], "no such file"),
    (["compare", "{d}/p3.txt"], "compare needs at least two runs"),
    (["compare", "{d}/p3.txt", "{d}/nowhere"], "not valid JSON"),
]


@pytest.mark.parametrize("argv, message", BAD_EVAL, ids=[m[:30] for _, m in BAD_EVAL])
def test_bad_eval_input_exits_2_with_one_line(argv, message, bad_eval, capsys):
    rc, out, err = run(["eval", *[a.format(d=bad_eval) for a in argv]], capsys)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("hfkit: error: "), err
    assert message.format(d=bad_eval) in err
    assert not list(bad_eval.glob("*.png"))


def test_sft_run_eval_block_and_eval_command_use_the_runs_own_prompt_format(tmp_path, capsys):
    """`eval:` in a recipe scores held-out generations at the end of training with any text metric;
    `hfkit eval match --model RUN --data FILE` rebuilds prompts from the run's saved sft recipe."""
    import hfkit
    from hfkit.evaluation.text_metrics import corpus_metrics
    from test_sft import MEMO, _sft_overrides

    data = tmp_path / "memo.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in MEMO))
    m = hfkit.train("sft", _sft_overrides(data, tmp_path / "short", [
        "max_steps=10", "data.validation_fraction=0.34", "eval.metrics=[bleu,ter,rouge,exact_match,token_f1]",
        "eval.max_new_tokens=6"]), quiet=True)
    after = m["generation_after"]
    assert {"bleu", "ter", "rouge1", "rougeL", "exact_match", "token_f1", "bleu_signature"} <= set(after)
    ex = after["examples"]
    assert after["n"] == len(ex) >= 1
    again = corpus_metrics([e["prediction"] for e in ex], [e["reference"] for e in ex], ("bleu", "rouge", "token_f1"))
    assert after["bleu"] == again["bleu"] and after["rougeL"] == again["rougeL"] and after["token_f1"] == again["token_f1"]

    hfkit.train("sft", _sft_overrides(data, tmp_path / "memo", ["max_steps=150"]), quiet=True)
    capsys.readouterr()  # Trainer's log lines
    rc, out, _ = run(["eval", "match", "--model", tmp_path / "memo", "--data", data, "--max-new-tokens", "20",
                      "--save-predictions", tmp_path / "preds.jsonl", "--json"], capsys)
    rep = json.loads(out)
    assert rc == 0 and rep["metrics"]["n"] == len(MEMO)
    preds = [json.loads(x) for x in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert [p["reference"] for p in preds] == [r["output"] for r in MEMO]
    # the memorised answers come back: counted, not compared as floats (100 * 5 / 6 rounds differently)
    assert round(rep["metrics"]["exact_match"] * len(MEMO) / 100) >= 5


def test_recipe_eval_icl_block_runs_before_and_after_training(tmp_path, capsys):
    import hfkit
    from conftest import TINY_MODEL
    from hfkit.evaluation.icl import IclConfig, evaluate_icl, load_task

    _mc_task(tmp_path / "mc.jsonl", n=12)
    out = tmp_path / "run"
    m = hfkit.train("clm_pretrain", TINY_MODEL + [f"output_dir={out}", "max_steps=30",
                                                  f"eval.icl=[{{path: {tmp_path / 'mc.jsonl'}, shots: 1}}]"], quiet=True)
    assert set(m["icl_before"]) == set(m["icl_after"]) == {"mc"}
    assert m["icl_after"]["mc"]["n"] == 12
    from transformers import AutoModelForCausalLM, AutoTokenizer

    again = evaluate_icl(AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out),
                         load_task(tmp_path / "mc.jsonl"), IclConfig(shots=1))["metrics"]
    assert again["acc"] == m["icl_after"]["mc"]["acc"] and again["acc_norm"] == m["icl_after"]["mc"]["acc_norm"]
    capsys.readouterr()  # Trainer's log lines
    rc, stdout, _ = run(["eval", "compare", out, out, "--png", tmp_path / "c.png", "--json"], capsys)
    assert "icl_after.mc.acc" in json.loads(stdout)["metrics"]
    rc, _, err = run(["train", "clm_pretrain", *TINY_MODEL, f"output_dir={tmp_path / 'bad'}",
                      f"eval.icl=[{{path: {tmp_path / 'mc.jsonl'}, shots: 20}}]"], capsys)
    assert rc == 2 and "--shots 20 but only 11 demonstrations" in err and not (tmp_path / "bad").exists()


def test_seq2seq_model_is_evaluated_by_generation_and_refused_by_loglikelihood_scores(tiny_model, tmp_path, capsys):
    from conftest import tiny_bart

    from hfkit.inference.generation import generate
    from hfkit.evaluation.text_metrics import corpus_metrics

    _, tok = tiny_model
    model = tiny_bart(tok)
    model.save_pretrained(tmp_path / "bart")
    tok.save_pretrained(tmp_path / "bart")
    rows = [{"source": "The if statement", "target": "if"}, {"source": "A while loop repeats", "target": "while"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc, out, err = run(["eval", "chrf", "--model", tmp_path / "bart", "--data", tmp_path / "d.jsonl", "--input-field",
                        "source", "--max-new-tokens", "4", "--json"], capsys)
    assert rc == 0, err
    preds = [o[0].strip() for o in generate(model.eval(), tok, [r["source"] for r in rows], max_new_tokens=4)]
    assert json.loads(out)["metrics"]["chrf"] == corpus_metrics(preds, [r["target"] for r in rows], ("chrf",))["chrf"]
    (tmp_path / "t.jsonl").write_text(json.dumps({"question": "q", "choices": ["a", "b"], "answer": 0}) + "\n")
    rc, _, err = run(["eval", "icl", "--model", tmp_path / "bart", "--data", tmp_path / "t.jsonl"], capsys)
    assert rc == 2 and "in-context evaluation scores a decoder-only (causal) LM" in err
    rc, _, err = run(["eval", "perplexity", "--model", tmp_path / "bart", "--data", "default"], capsys)
    assert rc == 2 and "perplexity scores a decoder-only (causal) LM" in err


def test_per_class_report_from_label_files(tmp_path, capsys):
    (tmp_path / "pred.txt").write_text("pos\npos\nneg\nneg\npos\n")
    (tmp_path / "gold.txt").write_text("pos\nneg\nneg\nneg\npos\n")
    rc, out, _ = run(["eval", "match", "--predictions", tmp_path / "pred.txt", "--references", tmp_path / "gold.txt",
                      "--per-class", "--json"], capsys)
    rep = json.loads(out)
    assert rc == 0 and rep["metrics"]["accuracy"] == 80.0 and rep["metrics"]["n"] == 5
    assert rep["metrics"]["per_class"]["neg"] == {"precision": 100.0, "recall": pytest.approx(200 / 3),
                                                  "f1": pytest.approx(80.0), "support": 3}
    assert json.loads((tmp_path / "pred.match.json").read_text())["metrics"]["accuracy"] == 80.0  # default report


def test_every_public_name_resolves():
    import hfkit

    for name in hfkit.__all__:
        assert getattr(hfkit, name) is not None, name
    assert hfkit.corpus_metrics(["a b c d"], ["a b c d"], ("bleu",))["bleu"] == pytest.approx(100.0)


def test_reports_are_named_by_their_settings_and_compare_aligns_folder_and_file(tiny_run, tmp_path, capsys,
                                                                                monkeypatch):
    """Two ICL evaluations that differ only in seed land in two reports; `eval compare` lines up the same
    report read from a run folder and from a file; no chart unless --png; counts are never charted."""
    from hfkit.evaluation.compare import compare, plot_comparison

    run_dir, _ = tiny_run
    model_dir = tmp_path / "model"
    shutil.copytree(run_dir, model_dir, ignore=shutil.ignore_patterns("checkpoint-*", "runs", "eval"))
    _mc_task(tmp_path / "mc.jsonl", n=10)
    for seed in (1, 2):
        rc, _, _ = run(["eval", "icl", "--model", model_dir, "--data", tmp_path / "mc.jsonl", "--shots", 1,
                        "--seed", seed, "--json"], capsys)
        assert rc == 0
    assert sorted(p.name for p in (model_dir / "eval").glob("*.json")) == [
        "icl_mc_1shot_seed1.json", "icl_mc_1shot_seed2.json"]
    shutil.copy(model_dir / "eval" / "icl_mc_1shot_seed2.json", tmp_path / "report.json")
    cmp = compare([str(model_dir), str(tmp_path / "report.json")])
    acc = cmp["metrics"]["icl_mc_1shot_seed2.acc"]
    assert acc[0] == acc[1] is not None  # the same metric, one row, from the folder and from the file
    assert cmp["metrics"]["icl_mc_1shot_seed2.n"] == [10.0, 10.0]
    monkeypatch.chdir(tmp_path)
    rc, out, _ = run(["eval", "compare", model_dir, tmp_path / "report.json"], capsys)
    assert rc == 0 and "icl_mc_1shot_seed2.acc" in out and not list(tmp_path.glob("*.png"))  # no chart unless asked
    charted = plot_comparison(cmp, tmp_path / "c.png")
    assert "icl_mc_1shot_seed2.acc" in charted and not any(n.endswith((".n", ".paths")) for n in charted)
