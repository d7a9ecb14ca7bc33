"""The lean BERT forward against transformers' own, on small random BERT models.

* padded batches, packed sequences (block-diagonal masks, own position ids)
  and ragged ones (no mask, attention per run of equal lengths) give
  transformers' last hidden states;
* a model it cannot read whole (another activation, relative positions, a
  decoder, not a BERT) gets no lean forward.
"""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel

from streamlabel.core.lean_bert import lean_bert


def bert(**config: object) -> BertModel:
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, **config,
    )  # fmt: skip
    return BertModel(cfg, add_pooling_layer=False).eval()


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_padded_batches_give_transformers_hidden_states(act: str) -> None:
    model = bert(hidden_act=act)
    lean = lean_bert(model)
    assert lean is not None
    ids = torch.randint(1, 50, (3, 9))
    keep = torch.ones(3, 9, dtype=torch.long)
    keep[1, 5:] = 0
    keep[2, 2:] = 0
    with torch.inference_mode():
        want = model(input_ids=ids, attention_mask=keep).last_hidden_state
        positions = torch.arange(9)[None].expand(3, 9)
        got = lean(ids, positions, keep.bool()[:, None, None, :])
    real = keep.bool()
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-4)


def test_a_packed_sequence_gives_each_text_its_own_hidden_states() -> None:
    model = bert()
    lean = lean_bert(model)
    assert lean is not None
    a, b = torch.randint(1, 50, (1, 4)), torch.randint(1, 50, (1, 6))
    ids = torch.cat([a, b], dim=1)
    positions = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3, 4, 5]])
    seg = torch.tensor([0] * 4 + [1] * 6)
    mask = (seg[:, None] == seg[None, :])[None, None]
    with torch.inference_mode():
        got = lean(ids, positions, mask)[0]
        torch.testing.assert_close(
            got[:4], model(input_ids=a).last_hidden_state[0], atol=1e-5, rtol=1e-4
        )
        torch.testing.assert_close(
            got[4:], model(input_ids=b).last_hidden_state[0], atol=1e-5, rtol=1e-4
        )


@pytest.mark.parametrize("lengths", [[6, 6, 4, 1], [3, 5, 3], [7]])
def test_ragged_texts_each_give_their_own_hidden_states(lengths: list[int]) -> None:
    """Runs of equal lengths share one attention call; an unsorted order still works."""
    model = bert()
    lean = lean_bert(model)
    assert lean is not None
    texts = [torch.randint(1, 50, (1, n)) for n in lengths]
    ids = torch.cat(texts, dim=1)[0]
    positions = torch.cat([torch.arange(n) for n in lengths])
    with torch.inference_mode():
        got = lean.ragged(ids, positions, lengths)
        want = torch.cat([model(input_ids=t).last_hidden_state[0] for t in texts])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_ragged_lengths_must_cover_the_ids() -> None:
    lean = lean_bert(bert())
    assert lean is not None
    with pytest.raises(ValueError, match="sum to 5 tokens, ids hold 6"):
        lean.ragged(torch.ones(6, dtype=torch.long), torch.arange(6), [3, 2])


@pytest.mark.parametrize(
    "config", [{"hidden_act": "relu"}, {"position_embedding_type": "relative_key"},
               {"is_decoder": True}],
)  # fmt: skip
def test_a_model_it_cannot_read_whole_gets_none(config: dict[str, object]) -> None:
    assert lean_bert(bert(**config)) is None


def test_a_model_that_is_not_bert_gets_none() -> None:
    cfg = DistilBertConfig(vocab_size=50, dim=32, n_layers=1, n_heads=4, hidden_dim=64)
    assert lean_bert(DistilBertModel(cfg)) is None
