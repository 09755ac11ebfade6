"""Hostile input, one test per class of defect found from outside (issue 24): each runs the command as a
user would, and checks its exit status, its one line, and the files before and after."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hfkit.cli import main


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str, *fragments: str) -> None:
    """Exactly one `hfkit: error:` line (no traceback) that names every fragment."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("hfkit: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in errors[0], (f, errors[0])


def files(folder: Path) -> dict:
    """Every file under `folder` with its content hash: what "the files before and after" compares."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file() and not p.is_symlink()}


# ----------------------------------------------------------------------------- 1. templates run in Jinja's sandbox

EVIL_TEMPLATES = [
    "{{ cycler.__init__.__globals__.os.popen('touch PWNED').read() }}{{ question }}",
    "{{ question.__class__.__mro__[1].__subclasses__() }}",
    "{{ lipsum.__globals__['os'].system('touch PWNED') }}",
    "{% set x = question.append(1) %}{{ question }}",
]


@pytest.mark.parametrize("template", EVIL_TEMPLATES)
def test_a_template_cannot_reach_python_objects_or_run_commands(template, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.yaml").write_text(json.dumps({"name": "evil", "description": "x", "template": template}))
    before = files(tmp_path)
    rc, out, err = cli(capsys, "prompts", "render", "evil.yaml", "--record", json.dumps({"question": ["q"]}))
    assert rc == 2
    one_line(err, "template", "may only read the record's fields")
    assert files(tmp_path) == before and not (tmp_path / "PWNED").exists()


def test_an_sft_template_in_a_recipe_is_sandboxed_too(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"say {i}", "output": f"{i}"}) + "\n" for i in range(20)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""base: sft
data: {{sources: [{{kind: json, path: {data}}}]}}
sft:
  templates:
    - {{prompt: "{{{{ cycler.__init__.__globals__.os.popen('touch PWNED').read() }}}}{{{{ instruction }}}}", answer: "{{{{ output }}}}"}}
training: {{output_dir: {tmp_path / 'run'}}}
""")
    rc, _, err = cli(capsys, "data", "report", recipe)
    assert rc == 2
    one_line(err, "may only read the record's fields")
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- 4. YAML alias bombs

BOMB = "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
               for p, c in zip([None, *"abcdefgh"], "abcdefghi"))


@pytest.mark.parametrize("where", ["recipe", "base", "override", "prompt template", "accelerate config", "recursive"])
def test_nested_aliases_are_refused_in_every_yaml_hfkit_reads(where, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bomb.yaml").write_text("task: clm\n" + BOMB)
    argv = {"recipe": ["train", "bomb.yaml"],
            "base": ["train", "child.yaml"],
            "override": ["train", "clm_pretrain", "output_dir=out", "description=&a [1, *a]"],
            "prompt template": ["prompts", "render", "bomb.yaml", "--record", '{"question": "q"}'],
            "accelerate config": ["train", "clm_pretrain", "output_dir=out", "--accelerate-config", "bomb.yaml"],
            "recursive": ["train", "rec.yaml"]}[where]
    (tmp_path / "child.yaml").write_text("base: bomb.yaml\ndescription: child\n")
    (tmp_path / "rec.yaml").write_text("task: clm\ndescription: &x [1, *x]\n")
    before = files(tmp_path)
    rc, _, err = cli(capsys, *argv)
    assert rc == 2
    one_line(err, "recursive" if where in ("recursive", "override") else "nested anchors")
    assert files(tmp_path) == before


def test_a_document_with_many_plain_aliases_still_loads():
    from hfkit.schema import yaml_load

    text = "base: &b {lr: 1}\n" + "".join(f"run{i}: *b\n" for i in range(1000))
    assert yaml_load(text)["run999"] == {"lr": 1}
