"""Structuring functions: records -> (prompt, answer) with Jinja templates, and answer extraction back.

Several templates can serve one task (FLAN-style); each record gets one, chosen deterministically
from its index and the seed. Templates see the record's fields by name; an unknown name is an
error, not an empty string (StrictUndefined). Every template a user gives is rendered in Jinja's
sandbox (`ImmutableSandboxedEnvironment`, as transformers renders chat templates): a template reads
the record's fields and cannot reach Python objects, attributes starting with `_`, or run anything.
"""
from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass

import jinja2
from jinja2 import meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import HfkitError

_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@functools.lru_cache(maxsize=64)
def compile_template(source: str) -> jinja2.Template:
    """A Jinja template in hfkit's sandboxed environment (StrictUndefined), compiled once per source string."""
    return _ENV.from_string(source)


def template_fields(source: str) -> set[str]:
    """The names a template reads (Jinja's undeclared variables)."""
    return meta.find_undeclared_variables(_ENV.parse(source))


def render_template(template: jinja2.Template, values: dict, where: str) -> str:
    """Render in the sandbox; what the sandbox refuses is one line naming `where`."""
    try:
        return template.render(**values)
    except SecurityError as e:
        raise HfkitError(f"{where}: the template tried something templates may not do ({e}); a template may "
                         f"only read the record's fields") from None

ALPACA_PROMPT = (
    "{% if input %}Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n### Instruction:\n{{ instruction }}"
    "\n\n### Input:\n{{ input }}\n\n### Response:\n{% else %}Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n### Instruction:\n{{ instruction }}\n\n"
    "### Response:\n{% endif %}"
)
# ChatML, with {% generation %} markers so `return_assistant_tokens_mask` works too
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>\n' }}{% endgeneration %}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CHATML_TOKENS = ["<|im_start|>", "<|im_end|>"]


@dataclass
class Template:
    """One way of turning a record into a prompt and an answer."""
    prompt: str
    answer: str
    name: str = "template"

    def __post_init__(self):
        try:
            self._prompt = _ENV.from_string(self.prompt)
            self._answer = _ENV.from_string(self.answer)
        except jinja2.TemplateSyntaxError as e:
            raise HfkitError(f"template '{self.name}': Jinja syntax error at line {e.lineno}: {e.message}") from None
        names = template_fields(self.answer)
        self.answer_field = next(iter(names)) if len(names) == 1 else None
        self.fields = template_fields(self.prompt) | names

    def render(self, record: dict, index: int | None = None) -> tuple[str, str]:
        where = f"record {index}: template '{self.name}'" if index is not None else f"template '{self.name}'"
        try:
            return render_template(self._prompt, record, where), render_template(self._answer, record, where)
        except jinja2.UndefinedError as e:
            where = f"record {index}: " if index is not None else ""
            raise HfkitError(f"{where}template '{self.name}' references an unknown field ({e.message}); "
                             f"record fields: {', '.join(sorted(record))}") from None

    def render_prompt(self, record: dict) -> str:
        """The prompt alone (a user's message at inference: there is no answer to render)."""
        try:
            return render_template(self._prompt, record, f"template '{self.name}'")
        except jinja2.UndefinedError as e:
            raise HfkitError(f"template '{self.name}' references an unknown field ({e.message})") from None

    def extract_answer(self, generated: str) -> str:
        """Inverse of the answer template: the answer field's value inside a generated text."""
        if self.answer_field is None:
            return generated.strip()
        sentinel = "\x00ANSWER\x00"
        try:
            rendered = self._answer.render(**{self.answer_field: sentinel})
        except (jinja2.UndefinedError, SecurityError):
            return generated.strip()
        before, _, after = rendered.partition(sentinel)
        pattern = re.escape(before.strip()) + r"\s*(.*?)\s*" + (re.escape(after.strip()) if after.strip() else r"$")
        m = re.search(pattern, generated, flags=re.DOTALL)
        return (m.group(1) if m else generated).strip()


def builtin_templates(fmt: str) -> list[Template]:
    if fmt == "instruction":
        return [Template(ALPACA_PROMPT, "{{ output }}", "alpaca")]
    if fmt == "prompt_completion":
        return [Template("{{ prompt }}", "{{ completion }}", "prompt_completion")]
    return []


def choose_template(templates: list[Template], index: int, seed: int) -> Template:
    """FLAN-style mixing: a record's template depends only on (seed, index)."""
    if len(templates) == 1:
        return templates[0]
    return templates[random.Random(seed * 1_000_003 + index).randrange(len(templates))]


def check_chat(messages, index: int) -> None:
    """Roles: optional system first, then user/assistant alternating, ending with assistant."""
    if not isinstance(messages, list) or not messages:
        raise HfkitError(f"record {index}: 'messages' must be a non-empty list of {{role, content}}")
    expected = "user"
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise HfkitError(f"record {index}: message {j} needs 'role' and 'content'")
        role = m["role"]
        if j == 0 and role == "system":
            continue
        if role != expected:
            raise HfkitError(f"record {index}: chat roles out of order at message {j} "
                             f"(expected '{expected}', got '{role}')")
        if role == "assistant" and not str(m["content"]).strip():
            raise HfkitError(f"record {index}: empty assistant answer at message {j}")
        expected = "assistant" if role == "user" else "user"
    if messages[-1]["role"] != "assistant":
        raise HfkitError(f"record {index}: the chat must end with an assistant message")


def setup_chat_template(tokenizer, model=None, chat_template: str | None = None) -> None:
    """Use `chat_template`, else the tokenizer's own, else ChatML (adding its two tokens, and rows to
    the model's embeddings when it has fewer than the tokenizer)."""
    if chat_template:
        tokenizer.chat_template = chat_template
    elif not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    if "<|im_start|>" in tokenizer.chat_template:
        missing = [t for t in CHATML_TOKENS if t not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing})
        if model is not None and model.get_input_embeddings().num_embeddings < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))


def chat_stop_ids(tokenizer) -> list[int]:
    """Tokens that end an assistant turn: EOS, and ChatML's <|im_end|> where the vocabulary has it."""
    ids = [tokenizer.eos_token_id]
    if "<|im_end|>" in tokenizer.get_vocab():
        ids.append(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    return ids
