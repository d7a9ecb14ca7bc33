"""The parser of ``streamlabel broker`` and ``run --embedded-port``."""

from __future__ import annotations

from streamlabel.cli import build_parser


def test_broker_takes_an_optional_port() -> None:
    parser = build_parser()
    assert parser.parse_args(["broker"]).port is None
    assert parser.parse_args(["broker", "--port", "9092"]).port == 9092


def test_run_takes_the_embedded_brokers_port() -> None:
    parser = build_parser()
    assert parser.parse_args(["run"]).embedded_port is None
    assert parser.parse_args(["run", "--embedded-port", "19092"]).embedded_port == 19092
