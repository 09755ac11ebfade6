"""Recipes: a YAML file (optionally `base:` another recipe) plus dotted `key=value` overrides,
validated up front into the sections their owners define.

Sections, in workflow order: `model` (hfkit.models), `tokenizer` (hfkit.data.tokenizer), `data`
(hfkit.data.corpus), the task's own section named after it (`sft:`, `mlm:`; hfkit.tasks), `adapter`
(hfkit.adapters: peft's names), `training` (transformers.TrainingArguments' names), `generate`
(hfkit.inference.generation) and `eval` (hfkit.evaluation.during_training). Unknown keys, wrong types,
renamed keys and missing files are `HfkitError`s naming the key.
"""
from __future__ import annotations

import dataclasses
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from .errors import HfkitError
from .hub import RECIPES, check_model_ref
from .models import preset_positions
from .schema import build_dataclass, coerce, Mismatch, type_name, unknown_key, refuse_non_finite, yaml_load, YamlTooLarge
from .sections import SECTIONS, Recipe, plain  # noqa: F401 (the recipe as data, re-exported)
from .tasks import DEFAULT_TASK, TASKS, Task, get_task
from .training.arguments import take_secrets, validate_training_args

RECIPES_DIR = RECIPES

# Bare override keys every recipe accepts, mapped to where they live (other bare
# TrainingArguments names work too, see _canonical_key).
ALIASES = {"output_dir": "training.output_dir", "max_steps": "training.max_steps"}
# the sections every recipe has, in workflow order, and the class that owns each
# ----------------------------------------------------------------------------- finding and reading recipe files


def resolve_recipe_path(name: str | Path) -> Path:
    """A path, or the name of a shipped recipe (`clm_pretrain` or `clm_pretrain.yaml`)."""
    p = Path(name)
    if p.is_file():
        return p
    for cand in (RECIPES_DIR / p.name, RECIPES_DIR / f"{p.name}.yaml"):
        if not p.parent.parts and cand.is_file():
            return cand
    raise HfkitError(f"recipe file not found: {name} (shipped recipes: {', '.join(list_recipes()) or 'none'})")


def list_recipes() -> dict[str, dict]:
    """Shipped recipes: {name: {task, path, description (the first line of the header comment)}}."""
    out = {}
    for p in sorted(RECIPES_DIR.glob("*.yaml")):
        text = p.read_text(encoding="utf-8")
        first = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("#")), "")
        tree = _read_tree(p, set())
        out[p.stem] = {"task": tree.get("task", DEFAULT_TASK), "path": str(p), "description": first}
    return out


def copy_recipe(name: str, dest: str | Path) -> Path:
    """`hfkit recipes cp NAME DEST.yaml`: a shipped recipe's file, to edit (never over an existing file)."""
    src = resolve_recipe_path(name)
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / src.name
    if dest.exists():
        raise HfkitError(f"'{dest}' already exists: hfkit does not overwrite it; choose another name")
    from .io import check_writable_file

    check_writable_file(dest, "destination")
    shutil.copyfile(src, dest)
    return dest


def _read_yaml(p: Path) -> dict:
    try:
        tree = yaml_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise HfkitError(f"{p}: invalid YAML{where}: {getattr(e, 'problem', e)}") from None
    except UnicodeDecodeError:
        raise HfkitError(f"{p}: recipe is not UTF-8 text") from None
    except IsADirectoryError:
        raise HfkitError(f"{p}: is a folder, not a recipe file") from None
    if not isinstance(tree, dict):
        raise HfkitError(f"{p}: a recipe must be a YAML mapping of sections, got {type(tree).__name__}")
    return tree


def _read_tree(p: Path, seen: set[Path]) -> dict:
    """A recipe file's mapping with its `base:` chain merged in (the file's own keys win)."""
    tree = _read_yaml(p)
    base = tree.pop("base", None)
    if base is None:
        return tree
    if not isinstance(base, str):
        raise HfkitError(f"{p}: 'base' must name a recipe (a shipped name or a path)")
    local = (p.parent / base)
    base_path = resolve_recipe_path(local if local.is_file() else base)
    if base_path.resolve() in seen | {p.resolve()}:
        raise HfkitError(f"{p}: 'base: {base}' makes a cycle of recipes")
    base_tree = _read_tree(base_path, seen | {p.resolve()})
    adapter = tree.get("adapter")
    if isinstance(adapter, dict) and "method" in adapter:  # the base's fields of another method are not this one's
        _switch_adapter(base_tree, adapter["method"], set(adapter))
    return deep_merge(base_tree, tree)


def _switch_source_kind(tree: dict, index: int, kind: Any, given: set[str]) -> None:
    """Source `index` of `tree` as a source of `kind`: the fields the old kind had and the new one
    lacks are dropped (they configured what is no longer read, as the one-size source config ignored
    them before each kind had its own); fields given with the new kind are kept, and checked."""
    from .data.sources import KINDS

    sources = (tree.get("data") or {}).get("sources") if isinstance(tree.get("data"), dict) else None
    if not isinstance(sources, list) or not 0 <= index < len(sources) or not isinstance(sources[index], dict):
        return
    old = sources[index]
    if kind not in KINDS or old.get("kind", "default") == kind:
        return
    keep = {f.name for f in dataclasses.fields(KINDS[kind])} | given
    sources[index] = {k: v for k, v in old.items() if k in keep}


def _switch_adapter(tree: dict, method: Any, given: set[str]) -> None:
    """`tree`'s adapter section as it would be under `method` (hfkit.adapters.switch_method), saying what changed."""
    from .adapters import switch_method

    section = tree.get("adapter")
    if not isinstance(section, dict) or section.get("method", "full") == method or not isinstance(method, str):
        return
    new, notes = switch_method({**section, "method": method}, section.get("method"), given)
    tree["adapter"] = {**new, "method": section.get("method", "full")}  # the method itself comes from the caller
    if notes:
        from .io import is_main_rank

        if is_main_rank():
            print("hfkit: note: " + " ".join(notes), file=sys.stderr)


def flat_keys(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} and {"a.b": 1} alike -> {"a.b": 1} (lists are values)."""
    out = {}
    for k, v in tree.items():
        out.update(flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def deep_merge(base: dict, over: dict) -> dict:
    """Mappings merge key by key; any other value (lists included) is replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# ----------------------------------------------------------------------------- overrides


def parse_overrides(overrides: list[str] | dict | None) -> dict[str, Any]:
    """`["a.b=1", "c=x"]` -> {"a.b": 1, "c": "x"}; values are parsed as YAML scalars/lists."""
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    out = {}
    for item in overrides:
        if "=" not in item:
            raise HfkitError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise HfkitError(f"override '{item}' has an empty key")
        try:
            value = yaml_load(raw) if raw.strip() else ""
        except YamlTooLarge as e:
            raise HfkitError(f"override '{key}': {e.problem}") from None
        except yaml.YAMLError:
            value = raw
        out[key] = value
    return out


def _canonical_key(key: str) -> str:
    """Bare TrainingArguments names (`max_steps`, `learning_rate`) are shorthand for `training.<name>`."""
    if key in ALIASES:
        return ALIASES[key]
    if "." not in key and key not in {f.name for f in dataclasses.fields(Recipe)} and key not in _section_names():
        from .training.arguments import RENAMED, training_keys

        if key in training_keys() or key in RENAMED:  # a renamed one is then named with its new name
            return f"training.{key}"
    return key


def _section_names() -> set[str]:
    return {t.section for t in TASKS.values() if t.section}


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = _canonical_key(key).split(".")
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            node = _list_slot(node, part, key)
            continue
        if not isinstance(node.get(part), (dict, list)):
            node[part] = [] if nxt.isdigit() else {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        idx = int(last) if last.isdigit() else -1
        if not 0 <= idx < len(node):
            raise HfkitError(f"override '{key}': index {last} is out of range (list has {len(node)} items)")
        node[idx] = value
    else:
        node[last] = value


def _list_slot(node: list, part: str, key: str) -> Any:
    if not part.isdigit() or int(part) >= len(node):
        raise HfkitError(f"override '{key}': '{part}' is not a valid index (list has {len(node)} items)")
    if not isinstance(node[int(part)], dict):
        node[int(part)] = {}
    return node[int(part)]


# ----------------------------------------------------------------------------- loading


def load_recipe(path: str | Path | None, overrides: list[str] | dict | None = None) -> Recipe:
    """Read a recipe file (or start empty when `path` is None), apply overrides, validate."""
    tree: dict = _read_tree(resolve_recipe_path(path), set()) if path is not None else {}
    given = {_canonical_key(k): v for k, v in parse_overrides(overrides).items()}
    if "adapter.method" in given:  # the recipe's fields of another method are not the new one's
        _switch_adapter(tree, given["adapter.method"], {k.split(".", 1)[1] for k in given if k.startswith("adapter.")})
    for key, kind in given.items():  # likewise a source whose kind changes keeps only the new kind's fields
        m = re.fullmatch(r"data\.sources\.(\d+)\.kind", key)
        if m:
            _switch_source_kind(tree, int(m.group(1)), kind,
                                {k.rsplit(".", 1)[1] for k in given if k.startswith(f"data.sources.{m.group(1)}.")})
    for key, value in given.items():
        _set_dotted(tree, key, value)
    tree.pop("base", None)  # `base` in an override has no file to be relative to
    return build_recipe(tree)


_TOKEN_VALUE = re.compile(r"hf_[A-Za-z0-9]{20,}")


def _refuse_secrets(node: Any, key: str = "") -> None:
    """A value that looks like a Hugging Face token anywhere in a recipe is refused (without echoing
    it): recipes are written to disk with every run."""
    if isinstance(node, dict):
        for k, v in node.items():
            _refuse_secrets(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _refuse_secrets(v, f"{key}.{i}")
    elif isinstance(node, str) and _TOKEN_VALUE.search(node):
        raise HfkitError(f"recipe key '{key}' holds what looks like a Hugging Face token: tokens never go into "
                         f"a recipe (hfkit writes it to disk); set HF_TOKEN or run `hf auth login`")


def build_recipe(tree: dict) -> Recipe:
    """Compose the sections of a recipe mapping and check them, each by its owner, then across."""
    training = tree.get("training")
    if isinstance(training, dict) and take_secrets(training):
        from .io import is_main_rank

        if is_main_rank():
            print("hfkit: warning: training.hub_token is kept in memory for this run (as HF_TOKEN) and never "
                  "written to recipe.yaml, training_args.bin or logs; set HF_TOKEN yourself next time",
                  file=sys.stderr)
    _refuse_secrets(tree)
    refuse_non_finite(tree)
    try:
        task_name = coerce(tree.get("task", DEFAULT_TASK), str, "task")
    except Mismatch:
        raise HfkitError(f"recipe key 'task' expects {type_name(str)}, got {tree.get('task')!r}") from None
    task = get_task(task_name)
    kwargs: dict = {"task": task_name}
    for key, value in tree.items():
        if key == "task":
            continue
        if key == "description":
            kwargs[key] = "" if value is None else str(value)
        elif key in SECTIONS:
            cls = SECTIONS[key]
            kwargs[key] = build_dataclass(cls, value, key) if cls else value
        elif task.section and key == task.section:
            kwargs["task_config"] = build_dataclass(task.config_class, value, key)
        elif key == "sweep":
            raise HfkitError("recipe key 'sweep': this recipe is a sweep (several runs, hfkit.sweep); run it with "
                             "`hfkit train`, or take one run's folder under its output_dir")
        elif key in _section_names():
            owner = next(t.name for t in TASKS.values() if t.section == key)
            raise HfkitError(f"recipe key '{key}' is the section of task {owner}; this recipe's task is {task_name}")
        else:
            raise unknown_key(key, ["task", "description", *SECTIONS, *([task.section] if task.section else [])],
                              "recipe")
    if not isinstance(kwargs.get("training", {}), dict):
        raise HfkitError(f"recipe key 'training' expects dict, got {type(kwargs['training']).__name__} "
                         f"{kwargs['training']!r}")
    if task.section and "task_config" not in kwargs:
        kwargs["task_config"] = build_dataclass(task.config_class, {}, task.section)
    recipe = Recipe(**kwargs, task_section=task.section)
    recipe.training = validate_training_args(recipe.training)
    _check_recipe(recipe, task)
    return recipe


def saved_recipe(folder: str | Path) -> dict:
    """A run's saved recipe (`recipe.yaml`: resolved, every field written) as plain data, without
    building it (a run's data may have moved since, an older hfkit may have written it); {} when the
    folder has none or it cannot be read. The one reader for what describes a run (the model card,
    `hfkit push`, `hfkit eval`); `load_run_recipe` builds and checks it."""
    saved = Path(folder) / "recipe.yaml"
    try:
        tree = yaml_load(saved.read_text(encoding="utf-8")) if saved.is_file() else {}
    except (OSError, ValueError, yaml.YAMLError, YamlTooLarge):
        return {}
    return tree if isinstance(tree, dict) else {}


def load_run_recipe(folder: str | Path) -> Recipe | None:
    """The resolved recipe a run saved in its folder (`recipe.yaml`), or None."""
    saved = Path(folder) / "recipe.yaml"
    return load_recipe(saved) if saved.is_file() else None


def _check_recipe(r: Recipe, task: Task) -> None:
    """Checks across sections that need no heavy work: files exist, the model fits the task and the
    sequence length, the adapter has a base; then the task's own checks."""
    for key, val in (("tokenizer.path", r.tokenizer.path), ("model.name_or_path", r.model.name_or_path)):
        if val:  # a folder that exists, or a Hub id that can be had (offline: in the cache)
            check_model_ref(val, f"recipe key '{key}'", r.model.revision)
    if r.model.name_or_path is None and r.model.architecture not in task.architectures:
        raise HfkitError(f"recipe key 'model.architecture'={r.model.architecture} does not fit task {r.task} "
                         f"(it builds: {', '.join(task.architectures)})")
    if r.adapter.is_peft and not r.model.name_or_path:
        raise HfkitError(f"adapter.method={r.adapter.method} needs a pretrained base: set model.name_or_path "
                         f"(a run folder such as runs/clm_pretrain, or a Hub id)")
    if r.model.quantization and not r.adapter.is_peft:
        raise HfkitError("recipe key 'model.quantization' loads the base in 4/8 bits, whose weights cannot be trained: "
                         "train an adapter on it (adapter.method=lora: QLoRA)")
    if r.eval.metrics and not task.generates:
        raise HfkitError(f"recipe key 'eval.metrics' scores generations of held-out records, which task {r.task} "
                         f"does not make")
    if r.eval.icl and not task.causal:
        raise HfkitError(f"recipe key 'eval.icl': in-context evaluation needs a causal LM; task {r.task} trains "
                         f"{task.auto_class.removeprefix('AutoModelFor')}")
    length, key = task.sequence_length(r)
    limit = preset_positions(r.model)
    if r.model.name_or_path is None and limit is not None and length > limit:
        raise HfkitError(f"recipe key '{key}'={length} exceeds the model's maximum positions "
                         f"(model.max_position_embeddings={r.model.max_position_embeddings})")
    task.check(r)
