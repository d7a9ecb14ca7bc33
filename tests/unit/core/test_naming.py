"""Names of discovered classes: c-TF-IDF keywords of their members' texts."""

from __future__ import annotations

import doctest

import streamlabel.core.naming as naming
from streamlabel.core.naming import class_keywords, name_from_keywords

KAFKA = [
    "how do I reduce the kafka consumer lag",
    "kafka consumer lag keeps growing, what is the error",
    "why is my kafka consumer lag so high with python",
    "monitor kafka consumer lag in python",
]
PANDAS = [
    "how do I merge two pandas dataframes",
    "pandas dataframe merge gives an error in python",
    "what is the fastest pandas dataframe merge",
    "python pandas dataframe merge on index",
]
DOCKER = [
    "docker container cannot reach the network",
    "why does my docker container exit with an error",
    "docker container network mode host in python",
    "how do I restart a docker container",
]


def test_keywords_are_the_distinctive_words_of_each_cluster() -> None:
    """Each cluster is named by the words frequent in it and absent from the others."""
    out = class_keywords([KAFKA, PANDAS, DOCKER], n=3)
    assert set(out[0]) == {"kafka", "consumer", "lag"}
    assert set(out[1]) == {"pandas", "dataframe", "merge"}
    assert set(out[2]) == {"docker", "container", "network"}


def test_words_common_to_all_clusters_are_not_keywords() -> None:
    """Words in every text of every cluster lose to each cluster's own words, however frequent."""
    clusters = [[f"python error {text}" for text in c] for c in (KAFKA, PANDAS, DOCKER)]
    out = class_keywords(clusters, n=3)
    assert set(out[0]) == {"kafka", "consumer", "lag"}
    assert set(out[1]) == {"pandas", "dataframe", "merge"}
    assert set(out[2]) == {"docker", "container", "network"}


def test_a_word_frequent_everywhere_loses_to_a_rarer_distinctive_word() -> None:
    """Within a cluster, a word shared with all clusters ranks below the cluster's own word."""
    clusters = [
        ["alpha shared shared"] * 3,
        ["beta shared shared"] * 3,
        ["gamma shared shared"] * 3,
    ]
    out = class_keywords(clusters, n=2)
    assert [k[0] for k in out] == ["alpha", "beta", "gamma"]


def test_stop_words_are_never_keywords() -> None:
    """English stop words ('how', 'do', 'the', 'is'...) are dropped before scoring."""
    out = class_keywords([KAFKA, PANDAS, DOCKER], n=50)
    stop = {"how", "do", "i", "the", "is", "what", "why", "my", "with", "in", "a", "so", "an"}
    for keywords in out:
        assert not stop & set(keywords)


def test_background_words_score_low() -> None:
    """A word frequent in the background (the other unknowns) does not name the cluster."""
    cluster = ["spark job", "spark memory", "spark slow"]
    alone = class_keywords([cluster], n=1)
    with_background = class_keywords(
        [cluster], background=["spark cluster", "spark shell", "spark ui", "spark submit"] * 5, n=1
    )
    assert alone == [("spark",)]
    assert with_background == [("job",)]


def test_ties_are_broken_alphabetically() -> None:
    """Equal scores are ordered by the word, so names are deterministic."""
    assert class_keywords([["zeta alpha mu"]], n=3) == [("alpha", "mu", "zeta")]


def test_programming_tokens_survive_tokenisation() -> None:
    """'c#' and 'c++' are words; numbers alone are not."""
    out = class_keywords(
        [["c# linq 2024", "c# linq"], ["c++ templates 2024", "c++ templates"]], n=5
    )
    assert set(out[0]) == {"c#", "linq"}
    assert set(out[1]) == {"c++", "templates"}


def test_clusters_with_only_stop_words_or_no_text_get_no_keywords() -> None:
    """No usable words gives empty keyword tuples, one per cluster."""
    assert class_keywords([["the and of"], ["is it"]]) == [(), ()]
    assert class_keywords([[""], []]) == [(), ()]
    assert class_keywords([]) == []


def test_keywords_come_one_tuple_per_cluster_with_at_most_n_words() -> None:
    """A cluster with fewer distinct words than ``n`` gets only those words."""
    out = class_keywords([KAFKA, ["rust borrow"]], n=4)
    assert len(out) == 2
    assert len(out[0]) == 4
    assert set(out[1]) == {"rust", "borrow"}


def test_name_joins_keywords_or_falls_back() -> None:
    """A name is the keywords joined by '-', or the fallback when there are none."""
    assert name_from_keywords(("kafka", "consumer", "lag"), "novel-1") == "kafka-consumer-lag"
    assert name_from_keywords((), "novel-1") == "novel-1"


def test_docstring_example_runs() -> None:
    """The module's example stays true."""
    result = doctest.testmod(naming, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0


def test_question_filler_words_never_become_keywords() -> None:
    clusters = [
        ["how does oracle sql join work", "oracle sql does not use the index", "best way oracle"],
        ["how does matlab plot work", "matlab matrix does not plot", "best way matlab"],
    ]
    for keywords in class_keywords(clusters, n=3):
        assert not {"does", "best", "way", "work", "use"} & set(keywords)
