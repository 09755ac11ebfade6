"""Self-Instruct (Wang et al., 2023, "Self-Instruct: Aligning Language Models with Self-Generated
Instructions"): a model writes new tasks from a pool of seed tasks, and the new tasks that pass the
filters join the pool and the training data.

Each round builds prompts of `tasks_per_prompt` tasks from the pool (`machine_tasks` of them from the
generated ones once there are any, the rest from the seeds, as the paper's 6 + 2), numbered as
"Task k / Instruction / Input / Output", ending with the next number's "Instruction:"; the model
continues (sampling), and every complete task it writes is a candidate. Candidates are dropped, the
reason counted, when they are:

- `malformed`: not "Instruction: ... Input: ... Output: ...", or an empty instruction or output, or the
  last task of a generation cut off by `max_new_tokens`;
- `length`: an instruction of fewer than 3 or more than 150 words;
- `unsuitable`: the paper's keywords a text model cannot act on (image, graph, file, draw, ...);
- `format`: an instruction starting with punctuation or not with a letter/digit;
- `near_duplicate`: ROUGE-L (`rouge-score`, as the paper) above `rouge_threshold` (0.7) against any
  instruction already in the pool (seeds, kept ones, and the ones kept earlier in the same round).

The kept ones go to the output JSONL in the SFT `instruction` format (instruction, input, output). The
run is resumable: after every round the output and a state/report file (`OUTPUT.self_instruct.json`)
are written, and a run started again with the same settings continues from the last finished round,
with the same draws as an uninterrupted run.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import HfkitError

SEED_TASKS = Path(__file__).resolve().parent.parent / "configs" / "self_instruct" / "seed_tasks.jsonl"
# the paper's filter (its generate_instances step): tasks a language model cannot do in text
UNSUITABLE = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps", "draw",
              "plot", "go to", "video", "audio", "music", "flowchart", "diagram")
REASONS = ("malformed", "length", "unsuitable", "format", "near_duplicate")
HEADER = "Come up with a series of tasks:\n\n"
_TASK_HEADER = re.compile(r"\n*Task \d+\s*\n")
_FIELDS = re.compile(r"^\s*Instruction:(.*?)\nInput:(.*?)\nOutput:(.*)$", re.DOTALL)


@dataclass
class SelfInstructTask:
    instruction: str
    input: str
    output: str

    def record(self) -> dict:
        return asdict(self)


@dataclass
class SelfInstructConfig:
    num_instructions: int = 50  # stop when this many are kept
    tasks_per_prompt: int = 8
    machine_tasks: int = 2  # of them, drawn from the generated tasks once there are enough
    prompts_per_round: int = 8
    rouge_threshold: float = 0.7
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 0.95
    seed: int = 0
    max_rounds: int = 100
    batch_size: int = 8

    def problems(self) -> list[tuple[str, str]]:
        out = []
        for key in ("num_instructions", "tasks_per_prompt", "prompts_per_round", "max_new_tokens", "max_rounds",
                    "batch_size"):
            if getattr(self, key) < 1:
                out.append((key, f"must be >= 1, got {getattr(self, key)}"))
        if not 0 <= self.machine_tasks < self.tasks_per_prompt:
            out.append(("machine_tasks", f"must be >= 0 and below tasks_per_prompt ({self.tasks_per_prompt})"))
        if not 0 < self.rouge_threshold <= 1:
            out.append(("rouge_threshold", f"must be in (0, 1], got {self.rouge_threshold}"))
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            out.append(("temperature", "must be > 0 (and top_p in (0, 1])"))
        return out


def load_seed_tasks(path: str | Path | None = None, what: str = "--seed-tasks") -> list[SelfInstructTask]:
    """Seed tasks: JSONL of {instruction, input, output}, or the paper's seed_tasks.jsonl layout
    ({instruction, instances: [{input, output}]}); default: hfkit's 24 for its built-in tasks."""
    from ..io import read_jsonl_objects

    path = Path(path) if path else SEED_TASKS
    tasks = []
    for n, rec in read_jsonl_objects(path, what):
        inst = rec.get("instances")
        if isinstance(inst, list) and inst and isinstance(inst[0], dict):
            rec = {"instruction": rec.get("instruction"), **inst[0]}
        for key in ("instruction", "output"):
            if not isinstance(rec.get(key), str) or not rec[key].strip():
                raise HfkitError(f"{path} line {n}: a seed task needs a non-empty '{key}'")
        tasks.append(SelfInstructTask(rec["instruction"].strip(), str(rec.get("input") or "").strip(),
                                      rec["output"].strip()))
    if not tasks:
        raise HfkitError(f"{path}: no seed tasks")
    return tasks


def encode_prompt(tasks: list[SelfInstructTask]) -> str:
    """The prompt: the tasks numbered, then the next number's "Instruction:" for the model to continue."""
    text = HEADER
    for i, t in enumerate(tasks, 1):
        text += f"Task {i}\nInstruction: {t.instruction}\nInput: {t.input or '<noinput>'}\nOutput: {t.output}\n\n"
    return text + f"Task {len(tasks) + 1}\nInstruction:"


def parse_generation(text: str, complete: bool) -> list[SelfInstructTask | None]:
    """The tasks a generation wrote (None for a malformed one). `complete`: the model stopped by itself,
    so its last task is whole; otherwise the last one is cut off and counted malformed."""
    chunks = _TASK_HEADER.split("Instruction:" + text)
    out: list[SelfInstructTask | None] = []
    for i, chunk in enumerate(chunks):
        if not chunk.strip():
            continue
        m = _FIELDS.match(chunk)
        last = i == len(chunks) - 1
        if m is None or (last and not complete):
            out.append(None)
            continue
        instruction, inp, output = (g.strip() for g in m.groups())
        inp = "" if inp.lower() in ("<noinput>", "<no input>", "none", "") else inp
        out.append(SelfInstructTask(instruction, inp, output) if instruction and output else None)
    return out


class Pool:
    """The instructions a candidate is compared with (ROUGE-L, the paper's filter)."""

    def __init__(self, tasks: list[SelfInstructTask]):
        from rouge_score import rouge_scorer

        self.scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        self.instructions = [t.instruction for t in tasks]

    def most_similar(self, instruction: str) -> float:
        return max((self.scorer.score(p, instruction)["rougeL"].fmeasure for p in self.instructions), default=0.0)

    def add(self, instruction: str) -> None:
        self.instructions.append(instruction)


def verdict(task: SelfInstructTask | None, pool: Pool, threshold: float) -> str | None:
    """Why a candidate is dropped (one of REASONS), or None to keep it."""
    if task is None:
        return "malformed"
    words = task.instruction.split()
    if not 3 <= len(words) <= 150:
        return "length"
    low = task.instruction.lower()
    if any(re.search(rf"\b{re.escape(w)}\b", low) for w in UNSUITABLE):
        return "unsuitable"
    if not task.instruction[0].isalnum() or not task.instruction[0].isascii():
        return "format"
    if pool.most_similar(task.instruction) > threshold:
        return "near_duplicate"
    return None


def _fingerprint(model: str, seeds: list[SelfInstructTask], cfg: SelfInstructConfig) -> dict:
    """What a resumed run must share with the run it continues (the target count may grow)."""
    digest = hashlib.sha256(json.dumps([t.record() for t in seeds]).encode()).hexdigest()[:16]
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("num_instructions", "max_rounds", "batch_size")}
    return {"model": model, "seed_tasks_sha256": digest, **settings}


def state_path(output: str | Path) -> Path:
    return Path(str(output) + ".self_instruct.json")


def self_instruct(model, tokenizer, model_name: str, seeds: list[SelfInstructTask], cfg: SelfInstructConfig,
                  output: str | Path, progress: bool = False) -> dict:
    """Generate, filter and write instructions until `cfg.num_instructions` are kept (or `max_rounds`);
    continues a run whose state file says it was started with the same settings. Returns the report."""
    from ..inference.generation import generate
    from ..io import atomic_write_text, write_json

    output, state_file = Path(output), state_path(output)
    fingerprint = _fingerprint(model_name, seeds, cfg)
    kept: list[SelfInstructTask] = []
    report = {"settings": fingerprint, "rounds": 0, "prompts": 0, "generated": 0, "kept": 0,
              "dropped": {r: 0 for r in REASONS}}
    if state_file.is_file():
        saved = json.loads(state_file.read_text())
        if saved.get("settings") != fingerprint:
            raise HfkitError(f"{state_file}: written by a self-instruct run with other settings; use another "
                             f"--output, or the same settings to continue it")
        report = saved
        lines = output.read_text(encoding="utf-8").splitlines() if output.is_file() else []
        if len(lines) < report["kept"]:
            raise HfkitError(f"{output}: holds {len(lines)} instructions, its state file says {report['kept']}")
        kept = [SelfInstructTask(**json.loads(x)) for x in lines[:report["kept"]]]  # a round cut short is redone
    pool = Pool(seeds + kept)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.num_instructions, initial=len(kept), desc="self-instruct (kept)")
    while len(kept) < cfg.num_instructions and report["rounds"] < cfg.max_rounds:
        rng = random.Random(cfg.seed * 1_000_003 + report["rounds"])
        prompts = []
        for _ in range(cfg.prompts_per_round):
            machine = rng.sample(kept, min(cfg.machine_tasks, len(kept)))
            human = rng.sample(seeds, min(cfg.tasks_per_prompt - len(machine), len(seeds)))
            prompts.append(encode_prompt(human + machine))
        outs = generate(model, tokenizer, prompts, batch_size=cfg.batch_size, seed=cfg.seed + report["rounds"],
                        do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p,
                        max_new_tokens=cfg.max_new_tokens)
        for (text,) in outs:
            complete = len(tokenizer(text, add_special_tokens=False)["input_ids"]) < cfg.max_new_tokens
            for task in parse_generation(text, complete):
                if len(kept) >= cfg.num_instructions:
                    break  # enough: the rest of this round is not looked at
                report["generated"] += 1
                why = verdict(task, pool, cfg.rouge_threshold)
                if why is None:
                    kept.append(task)
                    pool.add(task.instruction)
                    report["kept"] += 1
                    if bar:
                        bar.update(1)
                else:
                    report["dropped"][why] += 1
        report["rounds"] += 1
        report["prompts"] += len(prompts)
        atomic_write_text(output, "".join(json.dumps(t.record(), ensure_ascii=False) + "\n" for t in kept))
        write_json(state_file, report)  # after the output: a run killed between the two redoes this round
    if bar:
        bar.close()
    if not output.exists():
        atomic_write_text(output, "")
        write_json(state_file, report)
    return report
