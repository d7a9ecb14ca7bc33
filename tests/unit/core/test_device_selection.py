"""Device and dtype selection of the real embedder, with CUDA's presence faked.

The CUDA branch cannot run on a machine without a GPU; these tests pin what it
picks: CUDA with bf16 where supported, fp16 otherwise, CPU fp32 when there is
no GPU or ``cpu`` is asked for, and a clear error when ``cuda`` is asked for
without one.
"""

from __future__ import annotations

import pytest
import torch

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


def test_cpu_is_fp32_whether_asked_for_or_the_only_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, present=True)
    assert resolve_device("cpu") == ("cpu", torch.float32)
    fake_cuda(monkeypatch, present=False)
    assert resolve_device("auto") == ("cpu", torch.float32)


def test_cuda_asked_for_without_a_gpu_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, present=False)
    with pytest.raises(EmbeddingError, match="no CUDA device"):
        resolve_device("cuda")
