"""Reading data files: quoted TSV datasets (``read_tsv``), the item files
``streamlabel produce`` sends (``read_items``: TSV, JSON Lines, plain text) and
the records made from them (``to_records``)."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from streamlabel.errors import StreamlabelError

with warnings.catch_warnings():  # kafka-python loads its protocol files with a deprecated API
    warnings.simplefilter("ignore", DeprecationWarning)
    from streamlabel.datasets import (
        ItemRow,
        JsonFields,
        infer_format,
        plan_demo,
        read_items,
        read_tsv,
        to_records,
    )
    from streamlabel.schemas import Feedback, Item

REPO = Path(__file__).resolve().parents[2]

TRICKY = [
    ("a title\nspanning two lines", "python"),
    ('how to "quote" a word', "java"),
    ("a\ttab inside", "sql"),
    ('"""quoted""" at the start, a tab\tand a newline\n', "bash"),
    ("plain text", "python"),
]


def write_tsv(path: Path, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> Path:
    """Writes rows as ``csv``/pandas do: quoting only the fields that need it."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, dialect="excel-tab")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


# ------------------------------------------------------------------ read_tsv
def test_read_tsv_reads_back_what_csv_writes_quoted_newlines_tabs_and_doubled_quotes(
    tmp_path: Path,
) -> None:
    data = read_tsv(write_tsv(tmp_path / "q.tsv", TRICKY, ("text", "label")))
    assert data.texts == [t for t, _ in TRICKY]
    assert data.labels == [label for _, label in TRICKY]


def test_read_tsv_reads_a_hand_written_quoted_multi_line_field(tmp_path: Path) -> None:
    path = tmp_path / "hand.tsv"
    path.write_text('text\tlabel\n"first line\nsecond ""line"""\tnotes\nnext\tother\n')
    data = read_tsv(path)
    assert data.texts == ['first line\nsecond "line"', "next"]
    assert data.labels == ["notes", "other"]


def test_read_tsv_keeps_quotes_inside_an_unquoted_field_and_skips_blank_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "plain.tsv"
    path.write_text('text\tlabel\r\nsay "hi" twice\tgreet\r\n\r\nbye\t  farewell \r\n')
    data = read_tsv(path)
    assert data.texts == ['say "hi" twice', "bye"]
    assert data.labels == ["greet", "farewell"]


def test_read_tsv_names_the_line_of_a_bad_row_after_a_multi_line_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text('text\tlabel\n"two\nlines"\tok\nno label here\n')
    with pytest.raises(StreamlabelError, match=r"bad\.tsv:4: expected 'text<TAB>label'"):
        read_tsv(path)


def test_read_tsv_rejects_text_after_a_closing_quote_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "stray.tsv"
    path.write_text('text\tlabel\nfine\tok\n"quoted" then more\tok\n')
    with pytest.raises(StreamlabelError, match=r"stray\.tsv:3: .*doubles the quotes"):
        read_tsv(path)


def test_read_tsv_names_the_line_where_an_unclosed_quote_starts(tmp_path: Path) -> None:
    path = tmp_path / "open.tsv"
    path.write_text('text\tlabel\nfine\tok\n"never closed\tok\nmore\tok\n')
    with pytest.raises(StreamlabelError, match=r"open\.tsv:3: "):
        read_tsv(path)


def test_read_tsv_rejects_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.tsv"
    path.write_bytes("text\tlabel\ncaf\xe9\tfood\n".encode("latin-1"))
    with pytest.raises(StreamlabelError, match="not UTF-8"):
        read_tsv(path)


def test_read_tsv_unquotes_the_quoted_rows_of_the_bundled_datasets() -> None:
    """data/ was written by a quoting writer: row counts are those of data/README.md,
    and a quoted row reads as its text (no surrounding quotes, quotes undoubled)."""
    snips = read_tsv(REPO / "data" / "snips" / "train.tsv")
    assert len(snips) == 13084
    assert 'add kenneth c "jethro" burns songs in my playlist soundscapes for gaming' in (
        snips.texts
    )
    assert len(read_tsv(REPO / "data" / "stackoverflow" / "dev.tsv")) == 2000
    assert len(read_tsv(REPO / "data" / "hwu64" / "dev.tsv")) == 1076


def test_the_demo_and_chaos_stream_plans_from_a_quoted_dataset(tmp_path: Path) -> None:
    """The demo, the chaos suite and the benches read their splits with ``read_tsv``."""
    rows = [(f'row {i} "{c}"\nline two\t(tab)', c) for i in range(12) for c in "abcd"]
    train = read_tsv(write_tsv(tmp_path / "train.tsv", rows, ("text", "label")))
    test = read_tsv(write_tsv(tmp_path / "test.tsv", rows, ("text", "label")))
    plan = plan_demo(train, test, n_items=20, seed=1)
    assert sorted(plan.known + plan.held_back) == ["a", "b", "c", "d"]
    assert all(it.text is not None and "\nline two\t" in it.text for it in plan.items)
    assert all(fb.text is not None and fb.text.startswith("row ") for fb in plan.feedback)


# ---------------------------------------------------------------- read_items
@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.tsv", "tsv"), ("a.jsonl", "jsonl"), ("a.json", "jsonl"), ("a.TXT", "text")],
)
def test_infer_format_goes_by_the_suffix(name: str, fmt: str) -> None:
    assert infer_format(name) == fmt


def test_an_unknown_suffix_asks_for_the_format(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "items.csv", ["x"])
    with pytest.raises(StreamlabelError, match=r"cannot tell the format.*tsv, jsonl, text"):
        read_items(path)
    assert [r.text for r in read_items(path, format="text")] == ["x"]


def test_tsv_items_keep_their_labels_and_get_row_index_ids(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "rows.tsv", [*TRICKY[:2], ("no label", "")], ("text", "label"))
    rows = read_items(path)
    assert [r.id for r in rows] == ["rows-0", "rows-1", "rows-2"]
    assert [r.text for r in rows] == [TRICKY[0][0], TRICKY[1][0], "no label"]
    assert [r.label for r in rows] == ["python", "java", None]
    assert [r.line for r in rows] == [2, 4, 5]


def test_a_tsv_with_only_a_text_column_gives_unlabelled_items(tmp_path: Path) -> None:
    path = tmp_path / "texts.tsv"
    path.write_text('text\n"two\nlines"\none\n')
    rows = read_items(path)
    assert [(r.id, r.text, r.label) for r in rows] == [
        ("texts-0", "two\nlines", None),
        ("texts-1", "one", None),
    ]
    with pytest.raises(StreamlabelError, match="header 'text<TAB>label'"):
        read_tsv(path)  # a dataset needs its labels


def test_a_tsv_item_without_text_is_an_error_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.tsv"
    path.write_text("text\tlabel\nfine\tok\n\tok\n")
    with pytest.raises(StreamlabelError, match=r"rows\.tsv:3: expected 'text'"):
        read_items(path)


def test_jsonl_items_with_the_default_fields(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "items.jsonl",
        [
            json.dumps({"id": "a1", "text": "sort a list", "label": "python"}),
            "",
            json.dumps({"text": "no id, no label", "label": None}),
            json.dumps({"id": 7, "vector": [1, 0, 0.5]}),
            json.dumps({"id": "v", "text": "both", "vector": [0.25, 1], "label": " sql "}),
        ],
    )
    rows = read_items(path)
    assert rows == [
        ItemRow("a1", 1, text="sort a list", label="python"),
        ItemRow("items-3", 3, text="no id, no label"),
        ItemRow("7", 4, vector=(1.0, 0.0, 0.5)),
        ItemRow("v", 5, text="both", vector=(0.25, 1.0), label="sql"),
    ]


def test_jsonl_fields_can_be_mapped_to_other_keys(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "tickets.json",
        [json.dumps({"ticket": "T-1", "body": "printer jammed", "tag": "hw", "emb": [1, 2]})],
    )
    fields = JsonFields(id="ticket", text="body", label="tag", vector="emb")
    assert read_items(path, fields=fields) == [
        ItemRow("T-1", 1, text="printer jammed", vector=(1.0, 2.0), label="hw")
    ]
    with pytest.raises(StreamlabelError, match=r"tickets\.json:1: no 'text' or 'vector'"):
        read_items(path)  # the default keys are not there


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": "unclosed', "not JSON"),
        ('["a", "list"]', "expected a JSON object, got list"),
        ('{"label": "x"}', "no 'text' or 'vector'"),
        ('{"text": "   "}', "no 'text' or 'vector'"),
        ('{"vector": ["a"]}', "'vector': vector is not numeric"),
        ('{"text": "t", "label": 3}', "'label' must be a string, got int"),
        ('{"text": 12}', "'text' must be a string, got int"),
        ('{"text": "t", "id": ""}', "'id' must be a non-empty string or an integer"),
    ],
)
def test_a_bad_jsonl_line_is_an_error_naming_the_line(
    tmp_path: Path, line: str, message: str
) -> None:
    path = write_lines(tmp_path / "items.jsonl", ['{"text": "fine"}', line])
    with pytest.raises(StreamlabelError, match=rf"items\.jsonl:2: .*{message}"):
        read_items(path)


def test_plain_text_is_one_item_a_line_with_line_number_ids(tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text('first item\n\n  \nsecond "item"\tkeeps its tab\r\n')
    assert read_items(path) == [
        ItemRow("lines-1", 1, text="first item"),
        ItemRow("lines-4", 4, text='second "item"\tkeeps its tab'),
    ]


def test_a_file_without_items_or_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StreamlabelError, match="no items"):
        read_items(write_lines(tmp_path / "empty.txt", ["", " "]))
    with pytest.raises(StreamlabelError, match="no such file"):
        read_items(tmp_path / "absent.jsonl")


# ---------------------------------------------------------------- to_records
ROWS = [ItemRow(f"r-{i}", i + 1, text=f"text {i}", label="a" if i % 2 else None) for i in range(40)]


def test_without_a_feedback_fraction_every_row_is_an_item() -> None:
    items, feedback = to_records("f.jsonl", ROWS)
    assert feedback == []
    assert items == [Item(id=r.id, text=r.text) for r in ROWS]


def test_labelled_rows_become_feedback_with_the_fraction_drawn_once_per_row() -> None:
    """The draw ``streamlabel produce`` has always made: one per row, in order, from the seed."""
    items, feedback = to_records("f.jsonl", ROWS, feedback_fraction=0.5, seed=3)
    draws = np.random.default_rng(3).random(len(ROWS)) < 0.5
    chosen = [r for r, d in zip(ROWS, draws, strict=True) if d and r.label is not None]
    assert feedback == [Feedback(text=r.text, label="a", source="produce") for r in chosen]
    assert [it.id for it in items] == [r.id for r in ROWS if r not in chosen]
    everything, _ = to_records("f.jsonl", ROWS, feedback_fraction=1.0)
    assert all(it.id in {r.id for r in ROWS if r.label is None} for it in everything)


def test_vectors_travel_on_items_and_feedback() -> None:
    rows = [ItemRow("v", 1, vector=(1.0, 0.0), label="a"), ItemRow("w", 2, vector=(0.0, 1.0))]
    items, feedback = to_records("v.jsonl", rows, feedback_fraction=1.0)
    assert feedback == [Feedback(vector=(1.0, 0.0), label="a", source="produce")]
    assert items == [Item(id="w", vector=(0.0, 1.0))]


def test_a_row_that_is_not_a_valid_record_names_the_file_and_line() -> None:
    rows = [ItemRow("x", 9, text="t", label="unknown")]
    with pytest.raises(StreamlabelError, match=r"f\.tsv:9: .*reserved"):
        to_records("f.tsv", rows, feedback_fraction=1.0)
