"""Configuration sections as plain dataclasses, built from YAML mappings and checked key by key.

Every section of a recipe is a dataclass that lives with the module that uses it (`ModelConfig` in
`hfkit.models`, `SftConfig` in `hfkit.tasks.sft`, ...). `build_dataclass` turns a mapping into one:
unknown keys, wrong types and renamed keys are `HfkitError`s naming the dotted key. YAML is read
with YAML 1.2 scalars (`yaml_load`).
"""
from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import re
import types
import typing
from typing import Any, Literal, Union

import yaml

from .errors import HfkitError


# ----------------------------------------------------------------------------- YAML 1.2 scalars


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with 1.2 core-schema scalars, where PyYAML reads 1.1: only true/false are booleans
    (`save_strategy: no` stays the string 'no'), `3e-4` is a float, integers are decimal, `0o17` or
    `0x1f` (`0755` is 755, not 493) and `1:30` is the string '1:30' (not 90)."""


_DROP = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float", "tag:yaml.org,2002:int")
_Yaml12Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in _DROP] for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
# int before float: the float pattern also matches plain digits
_INT12 = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT12, list("-+0123456789"))
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def _construct_int12(loader, node):
    text = loader.construct_scalar(node)
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)


_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int12)


# a document whose aliases expand to more nodes than this is refused before it is built: nested
# anchors ("billion laughs") would otherwise take minutes and gigabytes to walk once loaded
MAX_YAML_NODES = 200_000


class YamlTooLarge(yaml.YAMLError):
    """A YAML document whose aliases expand beyond MAX_YAML_NODES (or refer to themselves)."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = None


def _expanded_size(root: yaml.Node) -> int:
    """Nodes in the document once every alias is expanded (memoised per node: linear in the text)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise YamlTooLarge("an alias refers to the node that contains it (a recursive document)")
        active.add(key)
        if isinstance(node, yaml.MappingNode):
            n = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            n = 1 + sum(size(v) for v in node.value)
        else:
            n = 1
        active.discard(key)
        sizes[key] = n
        if n > MAX_YAML_NODES:
            raise YamlTooLarge(f"its aliases expand to more than {MAX_YAML_NODES:,} values (nested anchors); "
                               f"write the values out, or use fewer nested aliases")
        return n

    return size(root)


def yaml_load(text: str, loader: type = _Yaml12Loader) -> Any:
    """One YAML document (YAML 1.2 scalars by default), refused when its aliases expand too far."""
    ld = loader(text)
    try:
        node = ld.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return ld.construct_document(node)
    finally:
        ld.dispose()


# ----------------------------------------------------------------------------- dataclasses from mappings


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp) if a is not type(None)) + " or null"
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    return getattr(tp, "__name__", str(tp))


class Mismatch(Exception):
    """A value does not fit its annotation."""


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Return `value` checked (and lightly coerced) against annotation `tp`; raise Mismatch."""
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise Mismatch
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, key)
            except Mismatch:
                continue
        raise Mismatch
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise Mismatch
    if origin in (list, tuple, set):
        inner = (typing.get_args(tp) or (Any,))[0]
        if not isinstance(value, (list, tuple)):
            raise Mismatch
        if dataclasses.is_dataclass(inner):
            return [build_dataclass(inner, v, f"{key}.{i}") for i, v in enumerate(value)]
        return [coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if isinstance(value, dict):
            return value
        raise Mismatch
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise Mismatch
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # a float written as a string by a tool that reads YAML 1.1
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise Mismatch
        if not math.isfinite(number):
            raise HfkitError(f"recipe key '{key}' must be a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise Mismatch
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp) or value in {m.value for m in tp}:
            return value
        raise Mismatch
    return value  # an annotation we do not model: the owning library checks it itself


def unknown_key(key: str, known: typing.Iterable[str], where: str, renamed: dict | None = None) -> HfkitError:
    """The error for a key a section does not have: a renamed key names its new place; a near miss
    gets a 'did you mean'."""
    leaf = key.rsplit(".", 1)[-1]
    prefix = key[: -len(leaf)]
    if renamed and leaf in renamed:
        new, note = renamed[leaf] if isinstance(renamed[leaf], tuple) else (renamed[leaf], "")
        new_key = new if "." in new else prefix + new
        return HfkitError(f"recipe key '{key}' was renamed: did you mean '{new_key}'?{' ' + note if note else ''}")
    known = sorted(known)
    close = difflib.get_close_matches(leaf, known, n=3, cutoff=0.75)
    hint = f" — did you mean {', '.join(repr(prefix + c) for c in close)}?" if close else ""
    listing = ", ".join(known) if len(known) <= 25 else f"{len(known)} fields"
    return HfkitError(f"unknown recipe key '{key}'{hint} (known in {where}: {listing})")


def build_dataclass(cls: type, data: Any, prefix: str) -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types by dotted name.

    A class with `variant(data, key)` is a tagged union: it names the subclass to build (data sources
    by `kind`), and `drop_unset_legacy(data)` what older saved recipes may still list. A class may declare `RENAMED = {old: new or (new, note)}` (old keys get a 'did you mean'), and `EXTRA_FIELD =
    "name"`: a dict field that collects the keys the class does not know, for a library's config
    class to check (see `hfkit.adapters`). `validate(self, prefix)`, if defined, runs last."""
    where = prefix or "recipe"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise HfkitError(f"recipe key '{where}' must be a mapping, got {type(data).__name__}")
    if hasattr(cls, "variant"):  # a tagged union (data sources by `kind`): the class the mapping names
        cls = cls.variant(data, where)
        data = cls.drop_unset_legacy(data)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    extra_field = getattr(cls, "EXTRA_FIELD", None)
    renamed = getattr(cls, "RENAMED", {})
    kwargs: dict = {}
    extra: dict = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k in renamed:
            raise unknown_key(key, known, where, renamed)
        if k not in known or k == extra_field:
            if extra_field and k != extra_field:
                extra[k] = v
                continue
            raise unknown_key(key, known, where, renamed)
        try:
            kwargs[k] = coerce(v, hints[k], key)
        except Mismatch:
            raise HfkitError(f"recipe key '{key}' expects {type_name(hints[k])}, got {type(v).__name__} {v!r}") from None
    if extra_field:
        kwargs[extra_field] = extra
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate(prefix)
    return obj


def check_fields(cls: type, values: dict, prefix: str, skip: typing.Collection[str] = (),
                 renamed: dict | None = None) -> dict:
    """Check `values` against the fields of a library's dataclass (TrainingArguments, a peft config):
    names and the types their annotations give. Returns the coerced values."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init and f.name not in skip}
    out = {}
    for k, v in values.items():
        key = f"{prefix}.{k}"
        if k not in known:
            renamed_here = {old: new for old, new in (renamed or {}).items() if new in known}
            raise unknown_key(key, known, f"{prefix} ({cls.__name__})", renamed_here)
        try:
            out[k] = coerce(v, hints.get(k, Any), key)
        except Mismatch:
            raise HfkitError(f"recipe key '{key}' expects {type_name(hints[k])}, got {type(v).__name__} {v!r}") from None
    return out


def refuse_non_finite(node: Any, key: str = "") -> None:
    """Infinity or NaN anywhere in a recipe mapping is refused, naming the key: no setting of hfkit or
    of the libraries it configures means anything with them."""
    if isinstance(node, dict):
        for k, v in node.items():
            refuse_non_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            refuse_non_finite(v, f"{key}.{i}")
    elif isinstance(node, float) and not math.isfinite(node):
        raise HfkitError(f"recipe key '{key}' must be a finite number, got {node}")


def one_line(e: BaseException, limit: int = 300) -> str:
    """A library's exception message as one line, for `HfkitError`s."""
    return " ".join(str(e).split())[:limit]
