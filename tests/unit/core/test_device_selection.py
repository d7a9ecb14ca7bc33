"""Device and dtype selection of the real embedder, with CUDA's presence faked.

The CUDA branch cannot run on a machine without a GPU; these tests pin what it
picks: CUDA with bf16 where supported, fp16 otherwise; on a CPU bf16 only where
it computes bf16 natively (AVX512-BF16/AMX, faked here too), fp32 elsewhere; an
explicit dtype wins; and a clear error when ``cuda`` is asked for without one.
"""

from __future__ import annotations

import pytest
import torch

import streamlabel.core.embedder as embedder_module
from streamlabel.core.embedder import resolve_device
from streamlabel.errors import EmbeddingError


def fake_cuda(monkeypatch: pytest.MonkeyPatch, *, present: bool, bf16: bool = True) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: present)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)


@pytest.mark.parametrize("asked", ["auto", "cuda"])
def test_a_gpu_runs_the_model_in_bf16(monkeypatch: pytest.MonkeyPatch, asked: str) -> None:
    fake_cuda(monkeypatch, present=True)
    assert resolve_device(asked) == ("cuda", torch.bfloat16)  # type: ignore[arg-type]


def test_a_gpu_without_bf16_runs_the_model_in_fp16(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, present=True, bf16=False)
    assert resolve_device("auto") == ("cuda", torch.float16)


def fake_cpu_bf16(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(embedder_module, "cpu_has_bf16", lambda: native)


@pytest.mark.parametrize(("native", "dtype"), [(False, torch.float32), (True, torch.bfloat16)])
def test_a_cpu_runs_bf16_only_where_it_computes_it_natively(
    monkeypatch: pytest.MonkeyPatch, native: bool, dtype: torch.dtype
) -> None:
    fake_cpu_bf16(monkeypatch, native)
    fake_cuda(monkeypatch, present=True)
    assert resolve_device("cpu") == ("cpu", dtype)
    fake_cuda(monkeypatch, present=False)
    assert resolve_device("auto") == ("cpu", dtype)


@pytest.mark.parametrize("native", [True, False])
def test_an_explicit_dtype_wins(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    fake_cpu_bf16(monkeypatch, native)
    fake_cuda(monkeypatch, present=False)
    assert resolve_device("auto", "float32") == ("cpu", torch.float32)
    assert resolve_device("cpu", "bfloat16") == ("cpu", torch.bfloat16)
    fake_cuda(monkeypatch, present=True)
    assert resolve_device("auto", "float32") == ("cuda", torch.float32)


def test_the_cpu_probe_answers_a_bool() -> None:
    assert isinstance(embedder_module.cpu_has_bf16(), bool)


def test_cuda_asked_for_without_a_gpu_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, present=False)
    with pytest.raises(EmbeddingError, match="no CUDA device"):
        resolve_device("cuda")
