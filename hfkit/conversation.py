"""How a saved run converses (`hfkit chat`, serving): through its chat template when it has one (chat
runs save it with the tokenizer), else through its own single-turn prompt format (an instruction run
answers one message at a time, in the template it was tuned on), else not at all: a model that learnt
neither would answer with untrained tokens, so it is refused in one line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HfkitError


@dataclass
class Conversation:
    """Turns a conversation into the prompt the run expects, and its generated text into the reply."""
    tokenizer: Any
    prompt_format: Any = None  # hfkit.tasks.PromptFormat when the run has no chat template
    description: str = ""

    @property
    def multi_turn(self) -> bool:
        return self.prompt_format is None

    def prompt(self, messages: list[dict]) -> str:
        if self.prompt_format is None:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        last = next((m for m in reversed(messages) if m.get("role") == "user"), None)
        if last is None:
            raise HfkitError("the conversation has no user message to answer")
        return self.prompt_format.prompt(str(last["content"]))

    def reply(self, generated: str) -> str:
        text = generated if self.prompt_format is None else self.prompt_format.answer(generated)
        return text.strip()

    def generate_kwargs(self) -> dict:
        """What `hfkit.inference.generate` needs besides the settings: a chat template's text carries
        its own special tokens; a prompt format adds the tokenizer's (as in training); turns end at EOS
        (and ChatML's <|im_end|>)."""
        from .data.templates import chat_stop_ids

        return {"add_special_tokens": self.prompt_format is not None, "stop_token_ids": chat_stop_ids(self.tokenizer)}


def conversation_for(model_ref: str, tokenizer) -> Conversation:
    """The way the run at `model_ref` converses (see the module's docstring)."""
    if getattr(tokenizer, "chat_template", None):
        return Conversation(tokenizer, None, "its chat template")
    from .recipe import load_run_recipe
    from .tasks import get_task

    recipe = load_run_recipe(model_ref) if Path(model_ref).is_dir() else None
    fmt = get_task(recipe.task).prompt_format(recipe) if recipe is not None else None
    if fmt is None:
        what = f"a {recipe.task} run" if recipe is not None else "a model"
        raise HfkitError(f"'{model_ref}' is {what} with no chat template and no instruction prompt format of its own: "
                         f"it was not tuned to answer messages (a chat template added now would bring untrained "
                         f"tokens); train a chat run (`hfkit train sft_chat`) or use `hfkit generate`")
    return Conversation(tokenizer, fmt, f"its own prompt format (template '{fmt.template.name}', one message at a "
                                        f"time)")
