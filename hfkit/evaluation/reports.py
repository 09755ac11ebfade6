"""Evaluation reports: the JSON every `hfkit eval` writes (metrics, settings, package versions,
SHA-256 fingerprints of the model and the data, sacrebleu signatures), its name and its table."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ..errors import HfkitError


# --- fingerprints ---------------------------------------------------------------------------------

def _sha256_files(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _identifies_model(f: Path) -> bool:
    """Weights (not the pickled training_args.bin), config and tokenizer: what makes the model what it is."""
    if f.name in ("config.json", "adapter_config.json", "tokenizer.json"):
        return True
    return f.suffix in (".safetensors", ".bin") and f.name != "training_args.bin"


def model_fingerprint(path: str) -> dict:
    """SHA-256 over a model folder's config and weights (safetensors/bin), or the Hub id as given."""
    p = Path(path)
    if p.is_dir():
        files = [f for f in p.iterdir() if f.is_file() and _identifies_model(f)]
        return {"path": str(p.resolve()), "sha256": _sha256_files(files), "files": sorted(f.name for f in files)}
    return {"hub_id": path}


def data_fingerprint(spec: str, records=None) -> dict:
    """SHA-256 of the data file(s) as bytes, or of the loaded records for built-in/Hub sources."""
    p = Path(spec)
    if p.is_file():
        return {"path": str(p.resolve()), "sha256": _sha256_files([p])}
    if p.is_dir():
        files = [f for f in p.rglob("*") if f.is_file()]
        return {"path": str(p.resolve()), "sha256": _sha256_files(files), "files": len(files)}
    h = hashlib.sha256()
    for r in records or []:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False, default=str).encode())
    return {"source": spec, "sha256": h.hexdigest()}


# --- reports --------------------------------------------------------------------------------------

def report_name(kind: str, *parts) -> str:
    """A report's name from its kind and the settings that distinguish it (data, shots, seed, block
    size, ...), so that evaluations with different settings never overwrite each other:
    `icl_mc_3shot_seed1234`, `perplexity_default_validation_block128_stride64`."""
    words = [kind] + [str(p) for p in parts if p not in (None, "", False)]
    return re.sub(r"[^\w.=-]+", "-", "_".join(words)).strip("-")


def data_stem(spec: str | None) -> str:
    """How a data argument appears in a report name: a file's stem, a Hub id's name, `default`."""
    if not spec:
        return ""
    return Path(spec.removeprefix("hub:")).stem


def report(kind: str, metrics: dict, settings: dict, model: str | None = None, data: dict | None = None,
           name: str | None = None) -> dict:
    import importlib.metadata as md

    out = {"kind": kind, "name": name or kind, "metrics": {k: v for k, v in metrics.items() if not k.endswith("_signature")},
           "signatures": {k[: -len("_signature")]: v for k, v in metrics.items() if k.endswith("_signature")},
           "settings": settings, "versions": {}}
    for pkg in ("hfkit", "transformers", "torch", "sacrebleu", "rouge-score"):
        try:
            out["versions"][pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    if model:
        out["model"] = model_fingerprint(model)
    if data:
        out["data"] = data
    if not out["signatures"]:
        del out["signatures"]
    return out


def print_report(rep: dict) -> None:
    from ..display import print_table

    rows = [(k, v) for k, v in rep["metrics"].items() if not isinstance(v, (dict, list))]
    rows += [(f"{k} signature", v) for k, v in rep.get("signatures", {}).items()]
    if "model" in rep:
        rows.append(("model", rep["model"].get("path") or rep["model"].get("hub_id")))
    print_table(f"hfkit eval {rep['kind']}", rows)
    per_class = rep["metrics"].get("per_class")
    if per_class:
        from ..display import print_grid

        print_grid("per class", ["label", "precision", "recall", "f1", "support"],
                   [[label, f"{m['precision']:.2f}", f"{m['recall']:.2f}", f"{m['f1']:.2f}", str(m["support"])]
                    for label, m in per_class.items()], right=(1, 2, 3, 4))




def default_output(model: str | None, name: str) -> Path | None:
    """Reports go into the folder of an hfkit run (`eval/NAME.json`), where `eval compare` and the
    model card find them. A model folder hfkit did not write, or cannot write, gets none (the report
    is printed; --output writes it elsewhere)."""
    from ..outputs import read_marker

    if model and Path(model).is_dir() and read_marker(model) is not None:
        return if_writable(Path(model) / "eval" / f"{name}.json")
    return None


def if_writable(path: Path) -> Path | None:
    """`path` when a report may go there: writable, and new or a report hfkit wrote."""
    from ..io import check_writable_file
    from ..outputs import is_hfkit_file

    try:
        check_writable_file(path, "report")
    except HfkitError:
        return None
    return path if not path.exists() or is_hfkit_file(path) else None
