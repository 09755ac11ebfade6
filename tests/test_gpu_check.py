"""bench/gpu_check.sh's wiring, on the CPU at tiny sizes (`--cpu`): every step runs through hfkit and
reports figures; on a GPU the same script gives the README's GPU table."""
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_check_runs_every_step_on_the_cpu_and_writes_its_table():
    p = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--cpu"], capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads((ROOT / "bench" / "out" / "gpu_check.json").read_text())
    assert report["device"] == "cpu"
    rows = {(r["what"], r["setting"]): r for r in report["rows"]}
    settings = [s for _, s in rows]
    assert {"eager", "sdpa", "padding-free rows", "padded batches", "lora", "qlora", "one at a time",
            "2 concurrent"} <= set(settings), settings
    for r in report["rows"]:
        assert not r.get("error"), r
        figures = [v for k, v in r.items() if k in ("tokens_per_s", "peak_memory_gb", "requests_per_s")]
        assert figures and all(v > 0 for v in figures), r
        assert r.get("errors", 0) == 0
    assert "gpu_check on cpu" in p.stdout and p.stdout.count("\n") > len(report["rows"])
