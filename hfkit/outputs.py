"""Where hfkit may write: folders and files that are new, empty, or its own.

A folder hfkit creates carries a marker, `.hfkit.json` (`{"kind": "train" | "tokenizer" | "merge",
...}`). A later command writes into a folder only when it is new or empty, or an hfkit folder of
the same kind that the command resumes or is told to replace (`overwrite_output_dir=true`,
`--overwrite`); it never writes into one of its own inputs. Replacing writes into a sibling staging
folder and swaps it in only once the work is complete, so a failed run leaves the earlier one as it
was. A lock (`.hfkit.lock`, held with flock, so the kernel releases it when a process dies) keeps a
second run out of a folder a run is using.

A single output file is written when it is new, when hfkit wrote it (a report or chart that carries
hfkit's mark), or when the user passes --overwrite; never over one of the command's inputs.
"""
from __future__ import annotations

import contextlib
import datetime
import fnmatch
import json
import os
import shutil
import signal
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .errors import HfkitError, Interrupted

MARKER = ".hfkit.json"
LOCK = ".hfkit.lock"
STAGING = ".{name}.hfkit-new"  # sibling folder a replacement is built in
OLD = ".{name}.hfkit-old"  # where the replaced folder waits to be deleted, for a moment

# what hfkit itself writes into a folder of each kind (besides the files the marker lists)
OWN_ENTRIES = {
    "train": ["recipe.yaml", "log.jsonl", "metrics.json", "loss.png", "checkpoint-*", ".incomplete", "runs", "eval",
              "merged", "README.md", "training_args.bin", "*.safetensors", "*.safetensors.index.json", "config.json",
              "generation_config.json", "adapter_config.json", "tokenizer*", "special_tokens_map.json",
              "chat_template.jinja", "vocab.*", "merges.txt", "added_tokens.json", "spiece.model"],
    "tokenizer": ["tokenizer*", "special_tokens_map.json", "hfkit_tokenizer.json", "vocab.*", "merges.txt",
                  "added_tokens.json", "chat_template.jinja"],
    "sweep": ["comparison.json", "comparison.md", "comparison.png", "scaling_fit.json", "scaling_fit.png"],  # + its runs' folders (listed in the marker)
    "merge": ["*.safetensors", "*.safetensors.index.json", "config.json", "generation_config.json", "tokenizer*",
              "special_tokens_map.json", "chat_template.jinja", "vocab.*", "merges.txt", "added_tokens.json"],
}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The marker of a folder hfkit wrote, or None. Run folders of hfkit versions before the marker
    (recipe.yaml next to checkpoints or metrics.json) count as training runs."""
    folder = Path(folder)
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        if isinstance(data, dict) and "kind" in data:
            return data
    except (OSError, ValueError):
        pass
    if (folder / "recipe.yaml").is_file() and ((folder / "metrics.json").is_file() or any(folder.glob("checkpoint-*"))):
        return {"kind": "train", "legacy": True}
    return None


def write_marker(folder: Path, kind: str, **info) -> None:
    from .io import write_json

    old = read_marker(folder) or {}
    write_json(folder / MARKER, {**{k: v for k, v in old.items() if k != "legacy"}, "kind": kind, **info})


def foreign_entries(folder: Path, kind: str) -> list[str]:
    """Entries of an hfkit folder that hfkit did not write (a user's notes, data, ...)."""
    marker = read_marker(folder) or {}
    listed = set(marker.get("files", []))
    patterns = OWN_ENTRIES.get(kind, [])
    out = []
    for entry in sorted(os.listdir(folder)):
        if entry in (MARKER, LOCK) or entry in listed or any(fnmatch.fnmatch(entry, p) for p in patterns):
            continue
        out.append(entry)
    return out


def _same_or_inside(path: Path, other: Path) -> bool:
    return path == other or other in path.parents


def _resolved(p: str | os.PathLike) -> Path:
    return Path(p).expanduser().resolve()


def check_not_an_input(target: Path, inputs: dict[str, str | None], what: str) -> None:
    """Refuse a target folder that is one of the command's inputs or holds one."""
    t = _resolved(target)
    for name, value in inputs.items():
        if not value or not Path(value).exists():
            continue
        inp = _resolved(value)
        if inp == t or _same_or_inside(inp, t):
            rel = "is" if inp == t else "holds"
            raise HfkitError(f"{what} '{target}' {rel} the {name} '{value}': hfkit never writes over its own inputs")


# ----------------------------------------------------------------------------- folders


@dataclass
class OutputPlan:
    """Where a command's folder output goes and how: a new folder, a run resumed in place, or a
    replacement built in a staging sibling and swapped in at the end."""
    final: Path
    kind: str
    mode: str  # new | resume | replace
    existed: bool  # the final folder existed (empty, or the run resumed/replaced)
    info: dict = field(default_factory=dict)  # written into the marker
    previous: dict | None = None  # the marker of the run resumed, as it was before this command
    changed: bool = False  # this command has written into a resumed run (its marker aside)
    done: dict = field(default_factory=dict)  # what the work ended at, written into the marker at finish

    @property
    def workdir(self) -> Path:
        return staging_path(self.final) if self.mode == "replace" else self.final


def staging_path(final: Path) -> Path:
    return _sibling(final, STAGING)


def _sibling(folder: Path, pattern: str) -> Path:
    """A hidden sibling of `folder` (`.`, `runs/x/..` and the like resolved first, so it is never inside it)."""
    folder = Path(os.path.abspath(folder))
    return folder.parent / pattern.format(name=folder.name)


def _holds_cwd(folder: Path) -> bool:
    """`folder` is the working directory or holds it: it cannot be swapped for another folder under
    the user's feet."""
    here = Path(os.getcwd()).resolve()
    target = Path(folder).resolve()
    return target == here or target in here.parents


def plan_output(folder: str | os.PathLike, kind: str, what: str, *, resume: bool = False, overwrite: bool = False,
                inputs: dict[str, str | None] | None = None, replace_hint: str = "--overwrite",
                resume_hint: str | None = None) -> OutputPlan:
    """Decide how a command may write `folder` (read-only: nothing is created here)."""
    from .io import check_writable_dir

    final = Path(folder)
    check_writable_dir(final, what)
    check_not_an_input(final, inputs or {}, what)
    if not final.exists():
        return OutputPlan(final, kind, "new", existed=False)
    check_unlocked(final, what)  # a run using it now: say so, whatever else holds
    if not any(final.iterdir()):
        return OutputPlan(final, kind, "new", existed=True)
    marker = read_marker(final)
    if marker is None:
        entries = sorted(os.listdir(final))
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        raise HfkitError(f"{what} '{final}' is not empty and was not written by hfkit ({shown}): "
                         f"hfkit writes only into a new or empty folder or its own; choose another")
    if marker["kind"] != kind:
        raise HfkitError(f"{what} '{final}' holds an hfkit {marker['kind']} folder, not a {kind} output: choose another")
    if resume:
        return OutputPlan(final, kind, "resume", existed=True)
    if overwrite:
        if _holds_cwd(final):
            raise HfkitError(f"{what} '{final}' is the folder you are working in (or holds it): hfkit replaces a folder "
                             f"by swapping in a new one; run from another folder or choose another output")
        foreign = foreign_entries(final, kind)
        if foreign:
            raise HfkitError(f"{what} '{final}' also holds files hfkit did not write ({', '.join(foreign[:4])}): "
                             f"they would be lost by replacing it; move them away first")
        return OutputPlan(final, kind, "replace", existed=True)
    state = "a finished" if marker.get("state", "finished") == "finished" and not marker.get("legacy") else "an"
    hints = ([resume_hint] if resume_hint else []) + [f"replace it with {replace_hint}"]
    raise HfkitError(f"{what} '{final}' already holds {state} hfkit {kind} output: "
                     f"{', '.join(hints)}, or choose another folder")


def begin(plan: OutputPlan, **info) -> None:
    """Create the folder this command writes (the staging sibling when replacing) and mark it."""
    work = plan.workdir
    if plan.mode == "replace" and work.exists() and not plan.info.get("resume_staging"):
        _remove_own(work)  # debris of an earlier replacement that did not finish
    work.mkdir(parents=True, exist_ok=True)
    if plan.mode == "resume":
        plan.previous = read_marker(work)
    write_marker(work, plan.kind, state="running", hfkit=_version(), started=_now(), **info)


def finish(plan: OutputPlan, **info) -> None:
    """Record what was written; a replacement is swapped in now, and the replaced folder deleted."""
    work = plan.workdir
    files = sorted(e for e in os.listdir(work) if e not in (MARKER, LOCK))
    write_marker(work, plan.kind, state="finished", finished=_now(), files=files, **info)
    if plan.mode != "replace":
        return
    old = _sibling(plan.final, OLD)
    if old.exists():
        _remove_own(old)
    os.replace(plan.final, old)
    os.replace(work, plan.final)
    _remove_own(old)


def abort(plan: OutputPlan) -> bool:
    """After a failure: remove what this command wrote unless it is a checkpoint to resume from.
    An earlier run (resumed or being replaced) is left as it was: a resumed run this command never
    wrote into gets its marker back as it was; a folder kept to resume is marked `interrupted`
    (never left `running`). Returns whether the work folder is kept."""
    work = plan.workdir
    if not work.exists() or read_marker(work) is None:
        return False  # this run never got to write anything there
    if plan.mode == "resume" and not plan.changed and plan.previous is not None:
        from .io import write_json

        write_json(work / MARKER, plan.previous)
        return True
    if plan.mode == "resume" or any(work.glob("checkpoint-*")):
        write_marker(work, plan.kind, state="interrupted", stopped=_now())
        return True
    if plan.mode == "new" and plan.existed:  # the user's empty folder: empty it again
        for entry in os.listdir(work):
            p = work / entry
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        return False
    _remove_own(work)
    return False


class _Signalled(BaseException):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise():
    """SIGTERM/SIGINT raise inside the block (where nothing else handles them), so that it ends
    through its failure path."""
    def handler(signum, frame):
        raise _Signalled(signum)

    saved = {}
    if threading.current_thread() is threading.main_thread():
        saved = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, h in saved.items():
            signal.signal(sig, h)


@contextlib.contextmanager
def claim(plan: OutputPlan, what: str, resume_hint: str, after_move=None, **marker):
    """The output folder for the life of a command, as one step: locked (by rank 0 of a launched
    run; the other ranks write where the plan says), begun (marked `running`, with `marker`); when
    the block ends, finished (marked with `plan.done`; a replacement swapped in, then
    `after_move(final, staging)`); when it fails, aborted (debris removed, a folder kept to resume
    marked `interrupted`, a resumed run this command never wrote into as it was). SIGTERM and
    SIGINT stop the block through that path: Interrupted, saying what was kept."""
    from .io import is_main_rank

    main = is_main_rank()
    lock = None
    if main:
        plan.final.mkdir(parents=True, exist_ok=True)
        lock = FolderLock(plan.final, what)
    try:
        with _signals_raise():
            if main:
                begin(plan, **marker)
            yield plan
            if main:
                finish(plan, **plan.done)
                if plan.mode == "replace" and after_move is not None:
                    after_move(plan.final, plan.workdir)
    except BaseException as e:
        kept = abort(plan) if main else True  # checkpoints stay to resume; a new folder without one is debris
        if isinstance(e, _Signalled):
            if kept and plan.mode != "replace":
                left = f"'{plan.final}' is kept, marked interrupted; {resume_hint}"
            else:
                left = "nothing of it was kept" + (", the earlier output is as it was" if plan.mode != "new" else "")
            raise Interrupted(f"interrupted by {signal.Signals(e.signum).name} before it was finished: {left}",
                              128 + e.signum) from None
        raise
    finally:
        if lock is not None:
            lock.release()


def _remove_own(folder: Path) -> None:
    """Delete a folder hfkit made (it carries the marker); refuse anything else."""
    if read_marker(folder) is None:
        raise HfkitError(f"'{folder}' was not written by hfkit: not deleting it")
    shutil.rmtree(folder)


def _version() -> str:
    from .version import __version__

    return __version__


def write_folder(dest: str | os.PathLike, kind: str, what: str, write, overwrite: bool = False,
                 inputs: dict[str, str | None] | None = None, **info) -> Path:
    """Build a whole output folder with `write(folder)` in a staging sibling, mark it, and move it
    into place (replacing an hfkit folder of the same kind only when `overwrite`)."""
    plan = plan_output(dest, kind, what, overwrite=overwrite, inputs=inputs)
    final = plan.final
    stage = staging_path(final)
    if stage.exists():
        _remove_own(stage)
    stage.mkdir(parents=True)
    write_marker(stage, kind, state="running", hfkit=_version(), started=_now(), **info)
    try:
        write(stage)
        files = sorted(e for e in os.listdir(stage) if e not in (MARKER, LOCK))
        write_marker(stage, kind, state="finished", finished=_now(), files=files)
        if final.exists():
            if plan.mode == "new":  # the user's empty folder (perhaps the working directory): filled in place
                for entry in os.listdir(stage):
                    os.replace(stage / entry, final / entry)
                stage.rmdir()
            else:
                old = _sibling(final, OLD)
                os.replace(final, old)
                os.replace(stage, final)
                _remove_own(old)
        else:
            os.replace(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return final


# ----------------------------------------------------------------------------- a run's README.md

CARD_MARK = "<!-- model card written by hfkit -->"
# huggingface_hub's empty model-card template, which peft's `save_pretrained` fills in next to an adapter
_TEMPLATE_STUB = "<!-- Provide a quick summary of what the model is/does. -->"


def replaceable_card(text: str) -> bool:
    """A README.md hfkit may replace: its own card, or the stub peft wrote during hfkit's run."""
    return CARD_MARK in text or (_TEMPLATE_STUB in text and "library_name: peft" in text)


def drop_library_card(folder: Path) -> None:
    """peft's `save_pretrained` writes a README.md stub naming the local base folder; a run's card is
    written by `hfkit push` (from the recipe and metrics), so the stub is not left in the run."""
    card = Path(folder) / "README.md"
    if card.is_file() and (Path(folder) / "adapter_config.json").is_file():
        text = card.read_text(encoding="utf-8", errors="replace")
        if replaceable_card(text) and CARD_MARK not in text:
            card.unlink()  # huggingface_hub's empty template, as peft fills it in


# ----------------------------------------------------------------------------- the lock


class FolderLock:
    """An exclusive lock on a folder for the life of this process (flock on `.hfkit.lock`)."""

    def __init__(self, folder: Path, what: str, record: bool = True):
        import fcntl

        self.path = Path(folder) / LOCK
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self.fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(self.fd)
            raise HfkitError(f"{what} '{folder}' is in use by another hfkit run ({holder}): "
                             f"wait for it to finish, or choose another folder") from None
        self.record = record
        if not record:
            return
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()} on {socket.gethostname()}, since {_now()}\n".encode(), 0)

    def release(self) -> None:
        import fcntl

        if self.fd is not None:
            if self.record:
                os.ftruncate(self.fd, 0)  # the holder is named only while it holds the folder
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def check_unlocked(folder: Path, what: str) -> None:
    """Fail now if a run holds `folder` (the lock is taken and given back at once)."""
    if (Path(folder) / LOCK).is_file():
        FolderLock(folder, what, record=False).release()


# ----------------------------------------------------------------------------- files


def is_hfkit_file(path: Path) -> bool:
    """A report or chart hfkit wrote: JSON carrying hfkit's version, or a PNG it signed."""
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            return isinstance(data, dict) and ("hfkit" in data.get("versions", {}) or "hfkit" in data)
        if path.suffix == ".png":
            with open(path, "rb") as f:
                return b"Software\x00hfkit" in f.read(4096)
    except (OSError, ValueError):
        return False
    return False


def check_output_file(path: str | os.PathLike | None, flag: str, inputs: dict[str, str | None] | None = None,
                      overwrite: bool = False) -> None:
    """Before any work: `path` may be written (new, hfkit's own, or --overwrite; never an input)."""
    from .io import check_writable_file

    if not path:
        return
    p = Path(path)
    target = _resolved(p)
    for name, value in (inputs or {}).items():
        for v in ([value] if isinstance(value, (str, os.PathLike)) else (value or [])):
            if v and Path(v).exists():
                inp = _resolved(v)
                if inp == target or (p.exists() and inp.is_dir() and inp in target.parents
                                     and not is_hfkit_file(p)):
                    raise HfkitError(f"{flag} '{path}' is {'the' if inp == target else 'a file in the'} {name} "
                                     f"'{v}': hfkit never writes over its own inputs")
    if p.exists() and not p.is_dir() and not is_hfkit_file(p) and not overwrite:
        raise HfkitError(f"{flag} '{path}' exists and was not written by hfkit: choose another path, "
                         f"or pass --overwrite to replace it")
    check_writable_file(p, flag)
