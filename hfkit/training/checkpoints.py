"""Finding the checkpoint to resume from."""
from __future__ import annotations

from pathlib import Path


def latest_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint-N. Checkpoints are staged and renamed when complete
    (`CausalLMTrainer`); a folder without trainer_state.json (copied, or written by another tool
    and cut short) is still never picked."""
    found = []
    for d in output_dir.glob("checkpoint-*"):
        step = d.name.split("-", 1)[1]
        if d.is_dir() and step.isdigit() and (d / "trainer_state.json").is_file():
            found.append((int(step), d))
    return max(found)[1] if found else None
