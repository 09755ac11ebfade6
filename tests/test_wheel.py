"""The built wheel, installed into a fresh virtual environment outside the checkout, carries its
recipes: `hfkit recipes` lists them, `hfkit recipes cp` copies one, `hfkit train NAME` runs one."""
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_in_a_fresh_venv_lists_copies_and_trains_shipped_recipes(tmp_path):
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for f in files:  # a copy of the tree, so the build leaves nothing in the checkout
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            (src / f).write_bytes((ROOT / f).read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("hfkit-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the dependencies (torch, transformers, ...) come from this environment; hfkit only from the wheel
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": ""}
    hfkit = str(venv / "bin" / "hfkit")

    def run(*argv):
        p = subprocess.run([hfkit, *argv], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        return p.stdout

    where = subprocess.run([str(py), "-c", "import hfkit; print(hfkit.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(venv))  # not the checkout
    listed = json.loads(run("recipes", "--json"))
    assert {"clm_pretrain", "sft", "lora_sft", "minilm_mlm"} <= set(listed)
    assert listed["sft"]["task"] == "sft" and listed["sft"]["path"].startswith(str(venv))
    run("recipes", "cp", "sft", "my_sft.yaml")
    assert (work / "my_sft.yaml").read_text() == (ROOT / "recipes" / "sft.yaml").read_text()
    out = json.loads(run("train", "sft", "--json", "max_steps=2", "output_dir=run", "model.hidden_size=32",
                         "model.num_layers=1", "model.num_heads=2", "tokenizer.vocab_size=400", "eval_steps=100",
                         "generate.prompts=[]"))
    assert out["train"]["train_loss"] > 0 and (work / "run" / "model.safetensors").is_file()


def test_the_packages_listed_in_pyproject_are_the_packages_in_the_tree():
    """pyproject.toml names the packages (so that the top-level recipes/ can be mapped as hfkit.recipes):
    every folder of hfkit with an __init__.py is listed, and nothing else but hfkit.recipes."""
    import tomllib

    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = sorted(str(p.parent.relative_to(ROOT)).replace("/", ".") for p in (ROOT / "hfkit").rglob("__init__.py"))
    assert sorted(listed) == sorted([*found, "hfkit.recipes"])
    assert (ROOT / "recipes" / "sft.yaml").is_file() and not (ROOT / "hfkit" / "recipes").exists()
