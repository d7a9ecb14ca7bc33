"""Open-world metrics and the TSV reader."""

from __future__ import annotations

import pytest

from streamlabel.bench.openworld import split_protocol
from streamlabel.datasets import read_tsv
from streamlabel.errors import StreamlabelError
from streamlabel.scoring import hungarian_accuracy, open_world_scores


def test_hungarian_accuracy_is_invariant_to_cluster_names() -> None:
    y = ["a", "a", "b", "b", "c"]
    assert hungarian_accuracy(y, ["x", "x", "y", "y", "z"]) == 1.0
    assert hungarian_accuracy(y, ["z", "z", "x", "x", "y"]) == 1.0


def test_all_unknown_items_count_as_one_cluster() -> None:
    y = ["a", "a", "b", "b"]
    assert hungarian_accuracy(y, ["unknown"] * 4) == 0.5


def test_extra_clusters_left_unmatched_count_as_wrong() -> None:
    assert hungarian_accuracy(["a"] * 4, ["p", "q", "r", "s"]) == 0.25


def test_open_world_scores_split_known_and_novel() -> None:
    y_true = ["k1", "k1", "k2", "n1", "n1"]
    y_pred = ["k1", "k2", "k2", "novel-x", "novel-x"]
    s = open_world_scores(y_true, y_pred, {"k1", "k2"})
    assert s["known_acc"] == pytest.approx(100 * 2 / 3)
    assert s["novel_acc"] == 100.0
    assert s["acc"] == pytest.approx(80.0)
    assert 0 < s["nmi"] < 100


def test_split_protocol_is_seeded_and_never_labels_unknown_classes() -> None:
    labels = [c for c in "abcdefgh" for _ in range(20)]
    s1 = split_protocol(labels, known_ratio=0.75, labeled_ratio=0.1, seed=4)
    s2 = split_protocol(labels, known_ratio=0.75, labeled_ratio=0.1, seed=4)
    assert s1.known == s2.known
    assert len(s1.known) == 6
    assert {labels[i] for i in s1.labelled} == set(s1.known)
    assert len(s1.labelled) == 6 * 2
    assert sorted([*s1.labelled, *s1.stream]) == list(range(len(labels)))


def test_read_tsv_reads_rows_and_rejects_a_bad_header(tmp_path) -> None:
    good = tmp_path / "good.tsv"
    good.write_text('text\tlabel\nhow to "quote" things\tpython\nsecond\tjava\n')
    data = read_tsv(good)
    assert data.texts == ['how to "quote" things', "second"]
    assert data.labels == ["python", "java"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tintent\nx\ty\n")
    with pytest.raises(StreamlabelError, match="header"):
        read_tsv(bad)
    broken = tmp_path / "broken.tsv"
    broken.write_text("text\tlabel\nno label here\n")
    with pytest.raises(StreamlabelError, match=":2:"):
        read_tsv(broken)
    with pytest.raises(StreamlabelError, match="no such file"):
        read_tsv(tmp_path / "missing.tsv")
