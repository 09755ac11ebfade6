"""Instruction data as the notes teach it: task definitions (Natural Instructions) in SFT templates and
in `eval icl`."""
import json

import pytest

from hfkit.errors import HfkitError

# a task file in Super-NaturalInstructions' own layout (v2): the definition is a list of strings and the
# examples explain themselves with "explanation"
SNI_TASK = {
    "Contributors": ["a"], "Source": ["b"], "Categories": ["Question Answering"],
    "Definition": ["Answer the arithmetic question with a number."],
    "Positive Examples": [{"input": "What is 2+2?", "output": "4", "explanation": "The sum."},
                          {"input": "What is 3+1?", "output": "4", "explanation": "Also the sum."}],
    "Negative Examples": [{"input": "What is 2+2?", "output": "four", "explanation": "A word, not a number."}],
    "Instances": [{"id": "t-1", "input": "What is 5+5?", "output": ["10"]}],
}


def tk_instruct(definition, positives, negatives, task_input):
    """Tk-Instruct's encoding written out by hand (the reference the renderer is checked against)."""
    text = f"Definition: {definition}\n\n"
    for kind, examples in (("Positive", positives), ("Negative", negatives)):
        for i, (inp, out, why) in enumerate(examples, 1):
            text += f"{kind} Example {i} -\nInput: {inp}\nOutput: {out}\nExplanation: {why}\n\n"
    return text + f"Now complete the following example -\nInput: {task_input}\nOutput: "


def test_a_definition_renders_as_tk_instruct_encodes_it_from_either_natural_instructions_layout(tmp_path):
    from hfkit.data.task_definitions import definition_template, load_definition
    from hfkit.data.templates import Template

    path = tmp_path / "task001.json"
    path.write_text(json.dumps(SNI_TASK))
    defn = load_definition(str(path), "definition")
    prompt, answer = Template(definition_template(defn, "{{ question }}", 1, 1), "{{ answer }}").render(
        {"question": "What is 5+5?", "answer": "10"})
    assert prompt == tk_instruct("Answer the arithmetic question with a number.", [("What is 2+2?", "4", "The sum.")],
                                 [("What is 2+2?", "four", "A word, not a number.")], "What is 5+5?")
    assert answer == "10"
    # Natural Instructions v1: title, prompt, emphasis, things to avoid, examples nested under "Examples"
    v1 = {"Title": "Sums", "Prompt": "Add.", "Definition": "Add the numbers.", "Emphasis & Caution": "Digits only.",
          "Things to Avoid": "Words.", "Examples": {"Positive Examples": [{"input": "1 1", "output": "2", "reason": "1+1"}],
                                                    "Negative Examples": []}}
    text = load_definition(v1, "x").render(positives=1)
    assert text == ("Title: Sums\nPrompt: Add.\nDefinition: Add the numbers.\nEmphasis & Caution: Digits only.\n"
                    "Things to Avoid: Words.\n\nPositive Example 1 -\nInput: 1 1\nOutput: 2\nExplanation: 1+1\n\n")
    # braces in a definition are text, never Jinja
    braces = load_definition({"definition": "Fill {{ this }} in {% if %}."}, "x")
    assert "Fill {{ this }} in {% if %}." in Template(definition_template(braces, "{{ q }}", 0), "{{ a }}").render(
        {"q": "?", "a": "!"})[0]
    with pytest.raises(HfkitError, match="3 positive examples asked for, it has 2"):
        defn.render(positives=3)
    with pytest.raises(HfkitError, match="needs 'definition'"):
        load_definition({"title": "no definition"}, "x")
    with pytest.raises(HfkitError, match="shipped: answer_pydoc, complete_function, summarize_docstring"):
        load_definition("nope", "x")


def test_sft_templates_take_a_definition_and_train_on_the_answer_only(tmp_path):
    from conftest import TINY_MODEL
    from hfkit.data.task_definitions import load_definition
    from hfkit.job import prepare_data

    over = [o for o in TINY_MODEL if not o.startswith(("data.block_size", "model.max_position"))]
    over += ["data.sources=[{kind: python_summaries, max_records: 3}]", "sft.format=prompt_completion",
             "sft.templates=[{prompt: '{{ document }}', answer: '{{ summary }}', definition: summarize_docstring, "
             "positive_examples: 1, negative_examples: 1}]", "sft.max_length=4096",
             "model.max_position_embeddings=4096", "data.validation_fraction=0", f"output_dir={tmp_path / 'r'}"]
    tok, prepared = prepare_data("sft", over)
    header = load_definition("summarize_docstring", "x").render(1, 1)
    ex = prepared.train[0]
    text = tok.decode(ex["input_ids"])
    assert text.startswith(header + "Now complete the following example -\nInput: ")
    answer = tok.decode([t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != -100])
    assert answer.rstrip(tok.eos_token).strip() and "Definition:" not in answer  # the loss is on the summary only
    assert answer.replace(tok.eos_token, "") in text.split("\nOutput: ")[-1]
    from hfkit.recipe import load_recipe

    bad = over[:-1] + ["sft.templates.0.positive_examples=5"]
    with pytest.raises(HfkitError, match="recipe key 'sft.templates.0.definition'.*5 positive examples asked for"):
        load_recipe("sft", bad)


@pytest.fixture(scope="module")
def long_model(tmp_path_factory):
    """A tiny GPT-2 with room for a definition's examples (1024 positions), its tokenizer trained here."""
    import pydoc_data.topics as t
    from transformers import GPT2Config, GPT2LMHeadModel

    from hfkit.data.tokenizer import train_tokenizer

    folder = tmp_path_factory.mktemp("long")
    tok = train_tokenizer(iter(list(t.topics.values())), "bpe", 600, 2, False, [])
    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=1024, vocab_size=len(tok),
                               eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_eval_icl_puts_the_definition_in_front_of_every_prompt(long_model, tmp_path, capsys):
    from hfkit.cli import main
    from hfkit.data.task_definitions import load_definition

    run_dir = long_model
    path = tmp_path / "task001.json"
    path.write_text(json.dumps(SNI_TASK))
    task = tmp_path / "icl.jsonl"
    task.write_text("".join(json.dumps({"question": f"What is {i}+{i}?", "answer": str(2 * i)}) + "\n" for i in range(3)))
    log = tmp_path / "samples.jsonl"
    rc = main(["eval", "icl", "--model", str(run_dir), "--data", str(task), "--definition", str(path),
               "--positive-examples", "2", "--template", "{{ question }}", "--max-new-tokens", "2",
               "--log-samples", str(log), "--json", "--output", str(tmp_path / "r.json")])
    assert rc == 0, capsys.readouterr().err
    header = load_definition(str(path), "x").render(2, 0)
    prompts = [json.loads(line)["prompt"] for line in log.read_text().splitlines()]
    assert prompts == [header + f"Now complete the following example -\nInput: What is {i}+{i}?\nOutput: "
                       for i in range(3)]
    rep = json.loads((tmp_path / "r.json").read_text())
    assert "definition" in rep["data"]


# --- Self-Instruct --------------------------------------------------------------------------------

def test_self_instruct_filters_drop_near_duplicates_malformed_and_unsuitable_tasks():
    from rouge_score import rouge_scorer

    from hfkit.prompting.self_instruct import (Pool, SelfInstructTask, encode_prompt, load_seed_tasks,
                                               parse_generation, verdict)

    seeds = load_seed_tasks()
    assert len(seeds) == 24 and all(t.instruction and t.output for t in seeds)
    prompt = encode_prompt(seeds[:2])
    assert prompt.startswith("Come up with a series of tasks:\n\nTask 1\nInstruction: ")
    assert prompt.endswith("Output: " + seeds[1].output + "\n\nTask 3\nInstruction:")
    generation = (" Translate the word into Italian.\nInput: Open\nOutput: Apri\n\n"  # new: kept
                  "Task 4\nInstruction: Translate the menu entry into Italian.\nInput: Save\nOutput: Salva\n\n"  # near dup
                  "Task 5\nInstruction: Draw a picture of a cat.\nInput: <noinput>\nOutput: ok\n\n"  # unsuitable
                  "Task 6\nInstruction: Sum.\nInput: 1 2\nOutput: 3\n\n"  # too short
                  "Task 7\nInstruction: - list the keywords of Python.\nInput:\nOutput: if, else\n\n"  # format
                  "Task 8\nInstruction: Say hello\nOutput missing\n\n"  # malformed
                  "Task 9\nInstruction: Count the words in the sentence.\nInput: a b\nOutput: 2")  # cut off: malformed
    tasks = parse_generation(generation, complete=False)
    assert tasks[0] == SelfInstructTask("Translate the word into Italian.", "Open", "Apri")
    assert tasks[2].input == ""  # <noinput>
    pool = Pool(seeds)
    got = [verdict(t, pool, 0.7) for t in tasks]
    assert got == [None, "near_duplicate", "unsuitable", "length", "format", "malformed", "malformed"]
    # the ROUGE-L is rouge-score's own, against the closest seed
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    ref = max(scorer.score(s.instruction, tasks[1].instruction)["rougeL"].fmeasure for s in seeds)
    assert pool.most_similar(tasks[1].instruction) == ref > 0.7
    assert parse_generation(generation, complete=True)[-1].instruction == "Count the words in the sentence."


def test_self_instruct_run_reports_every_candidate_and_resumes_as_if_uninterrupted(long_model, tmp_path, capsys):
    from hfkit.cli import main

    seeds = tmp_path / "seeds.jsonl"  # the paper's own layout: instruction + instances
    seeds.write_text("".join(json.dumps({"instruction": f"Add the numbers number {i}.", "instances": [
        {"input": f"{i} {i}", "output": str(2 * i)}]}) + "\n" for i in range(6)))
    common = ["data", "self-instruct", "--model", str(long_model), "--seed-tasks", str(seeds), "--tasks-per-prompt", "3",
              "--prompts-per-round", "2", "--max-new-tokens", "24", "--num-instructions", "50", "--json"]

    def run(out, rounds):
        rc = main(common + ["--output", str(out), "--max-rounds", str(rounds)])
        assert rc == 0, capsys.readouterr().err
        return json.loads(capsys.readouterr().out)

    first = run(tmp_path / "a.jsonl", 2)
    assert first["rounds"] == 2 and first["prompts"] == 4
    assert first["generated"] == first["kept"] + sum(first["dropped"].values()) > 0
    resumed = run(tmp_path / "a.jsonl", 3)  # continues: one more round
    straight = run(tmp_path / "b.jsonl", 3)
    assert resumed["rounds"] == 3 and {k: v for k, v in resumed.items() if k != "output"} == \
        {k: v for k, v in straight.items() if k != "output"}
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    for line in (tmp_path / "a.jsonl").read_text().splitlines():
        assert set(json.loads(line)) == {"instruction", "input", "output"}  # the sft `instruction` format
    # another setting on the same output is refused; a file it did not write is never replaced
    rc = main(common + ["--output", str(tmp_path / "a.jsonl"), "--temperature", "0.5"])
    assert rc == 2 and "written by a self-instruct run with other settings" in capsys.readouterr().err
    (tmp_path / "mine.jsonl").write_text("my data\n")
    rc = main(common + ["--output", str(tmp_path / "mine.jsonl")])
    assert rc == 2 and "exists and was not written by hfkit" in capsys.readouterr().err
    assert (tmp_path / "mine.jsonl").read_text() == "my data\n"


# --- the instruct_mixture recipe: a task held out entirely -----------------------------------------

def test_instruct_mixture_holds_the_unseen_task_out_whole_in_every_run(tmp_path):
    from hfkit.sweep import load_sweep
    from hfkit.tasks.sft import load_sft_records

    from hfkit.data.catalog import InstructionMixture

    _, _, runs = load_sweep("instruct_mixture", [f"output_dir={tmp_path}", "data.sources.0.max_records=40"])
    records = InstructionMixture(tasks=["summarize_docstring"], max_records=40, max_chars=300).load()
    distinct = len({(r["input"], r["output"]) for r in records})  # what exact dedup leaves of the task
    tasks = {}
    for run in runs:
        got = load_sft_records(run.recipe, run.recipe.seed)
        trained = {t for ds in got.train.values() for t in ds["task"]}
        tasks[run.name] = trained
        assert set(got.validation["task"]) == {"summarize_docstring"}  # the unseen task, and only it
        assert "summarize_docstring" not in trained
        assert len(got.validation) == distinct > 30  # all of it: validation_fraction plays no part
        assert all(i.startswith("You are given the description part of a Python docstring")
                   for i in got.validation["instruction"])  # its definition is its instruction
    assert tasks == {"mixture": {"complete_function", "translate_de", "answer_pydoc"}, "single_task": {"translate_de"}}
    from hfkit.errors import HfkitError
    from hfkit.recipe import load_recipe

    with pytest.raises(HfkitError, match="validation group 'nope' has no records"):
        run = load_recipe("sft", ["data.sources=[{kind: instruction_mixture, max_records: 5}]", "sft.group_field=task",
                                  "sft.validation_groups=[nope]", f"output_dir={tmp_path / 'x'}"])
        load_sft_records(run, 0)
    with pytest.raises(HfkitError, match="sft.validation_groups' names groups of sft.group_field"):
        load_recipe("sft", ["sft.validation_groups=[a]", f"output_dir={tmp_path / 'y'}"])
