"""The ``streamlabel`` command's parser and dispatch.

Every subcommand's arguments are declared here, so that parsing (``--help``,
``--version``, the generated reference) imports nothing heavy; each command
group's module runs its commands and is imported only when one is chosen:
:mod:`~streamlabel.cli.bench`, :mod:`~streamlabel.cli.chaos`,
:mod:`~streamlabel.cli.demo`, :mod:`~streamlabel.cli.runtime` (``run``,
``produce``, ``tail``, ``replay``, ``drain``, ``healthcheck``) and
:mod:`~streamlabel.cli.control` (``classes``, ``feedback``, ``unknowns``: a
running deployment's operator commands, which need Kafka only).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from streamlabel import __version__
from streamlabel.cli.progress import LOGS_HELP, RUN_OUTPUT_HELP
from streamlabel.errors import StreamlabelError

__all__ = ["DESCRIPTION", "build_parser", "main"]

DESCRIPTION = "The ``streamlabel`` command line."
"""The parser's description (the first line of ``streamlabel --help``)."""


def _seeds(value: str) -> list[int]:
    try:
        return [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds must be comma-separated integers, got {value!r}"
        ) from None


def _int_list(value: str) -> list[int]:
    try:
        out = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,2 got {value!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {value!r}")
    return out


def _ratio(value: str) -> float:
    x = float(value)
    if not 0.0 < x <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return x


TAIL_TOPICS = (
    "items", "labels", "feedback", "unknowns", "classes", "alerts", "dlq", "commands",
    "command_results",
)  # fmt: skip
"""Every topic ``tail`` reads (``kafka.topics.TOPIC_KINDS``; kept here so that parsing
the command line imports no Kafka client)."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="streamlabel", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True)
    ow = bench.add_parser("openworld", help="open-world accuracy on a labelled TSV dataset")
    ow.add_argument("--train", required=True, help="TSV with header text<TAB>label")
    ow.add_argument("--test", required=True, help="TSV with header text<TAB>label")
    ow.add_argument("--known-ratio", type=_ratio, default=0.75)
    ow.add_argument("--labeled-ratio", type=_ratio, default=0.1)
    ow.add_argument("--seeds", type=_seeds, default=[0, 1, 2])
    ow.add_argument("--batch-size", type=int, default=64)
    ow.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ow.add_argument("--quiet", action="store_true", help="no progress lines")
    ow.add_argument(
        "--mode",
        choices=["engine", "kafka", "both"],
        default="engine",
        help="engine: the Engine in-process; kafka: through the embedded broker and Ray actors",
    )
    ow.add_argument("--workers", type=int, default=None, help="stream workers (kafka mode)")
    os_ = bench.add_parser(
        "openset", help="open intent detection: known classes fully labelled, the rest is open"
    )
    os_.add_argument("--train", required=True, help="TSV with header text<TAB>label")
    os_.add_argument("--test", required=True, help="TSV with header text<TAB>label")
    os_.add_argument("--known-ratio", type=_ratio, default=0.75)
    os_.add_argument("--seeds", type=_seeds, default=[0, 1, 2])
    os_.add_argument("--json", action="store_true", help="print one JSON object as the last line")

    rb = bench.add_parser("runtime", help="end-to-end items/s vs bare encode, rebalance, memory")
    rb.add_argument("--train", default="data/stackoverflow/train.tsv", help="feedback source")
    rb.add_argument("--test", default="data/stackoverflow/test.tsv", help="texts to stream")
    rb.add_argument("--items", type=int, default=3000)
    rb.add_argument("--workers", type=_int_list, default=[1, 2], help="e.g. 1,2")
    rb.add_argument("--no-rebalance", action="store_true")
    rb.add_argument("--json", action="store_true", help="print one JSON object as the last line")

    tp = bench.add_parser(
        "throughput", help="e2e items/s vs the bare model, latency p50/p99, per-stage breakdown"
    )
    tp.add_argument("--data", default="data/stackoverflow/test.tsv", help="texts to stream (TSV)")
    tp.add_argument("--train", default="data/stackoverflow/train.tsv", help="feedback source")
    tp.add_argument("--items", type=_positive, default=6000, help="texts per backlog/bare run")
    tp.add_argument("--workers", type=_positive, default=2)
    tp.add_argument("--paced-s", type=float, default=20.0, help="seconds of each latency stream")
    tp.add_argument("--tick-ms", type=float, default=10.0, help="latency stream send ticks")
    tp.add_argument("--loads", default="0.5", help="shares of the e2e rate, e.g. 0.1,0.5,0.9")
    tp.add_argument(
        "--console", action="store_true",
        help="serve the web console with a headless browser on it (what the console costs)",
    )  # fmt: skip
    tp.add_argument("--json", action="store_true", help="print one JSON object as the last line")

    sc = bench.add_parser("scale", help="store cost vs classes, discovery cost vs buffer size")
    sc.add_argument("--classes", type=_int_list, default=[10, 1000, 100000])
    sc.add_argument("--buffers", type=_int_list, default=[500, 1000, 2000, 5000])
    sc.add_argument(
        "--event-classes",
        type=_int_list,
        default=[1000, 10000, 100000],
        help="store sizes at which one class event is timed (leader and replica)",
    )
    sc.add_argument("--events", type=_positive, default=40, help="class events timed per size")
    sc.add_argument(
        "--embed-ms", type=float, default=None,
        help="the model's ms per item (bench throughput: stages.embed) to express "
        "classification as a share of embedding",
    )  # fmt: skip
    sc.add_argument("--json", action="store_true", help="print one JSON object as the last line")

    chaos = sub.add_parser("chaos", help="fault injection on a real deployment: prove no loss")
    chaos.add_argument(
        "--scenarios", type=_names, default=None,
        help="comma-separated subset of: worker_kill, rebalance_churn, learner_crash, poison, "
        "learner_poison, feedback_by_id, unpublishable, corrupt_snapshot, two_learners, "
        "crash_loop, stall, "
        "deterministic_replay, settings, topic_recreate, broker_restart (default: all)",
    )  # fmt: skip
    chaos.add_argument("--cycles", type=int, default=10, help="kill/churn cycles per fault point")
    chaos.add_argument("--items", type=int, default=400, help="items produced per cycle")
    chaos.add_argument("--workers", type=int, default=2, help="stream workers")
    chaos.add_argument("--dataset", default="data/stackoverflow", help="dir with train/test.tsv")
    chaos.add_argument("--seed", type=int, default=0)
    chaos.add_argument("--json", action="store_true", help="print the report as the last line")

    replay = sub.add_parser("replay", help="relabel an offset range against a pinned snapshot")
    replay.add_argument("--snapshot", required=True, help="a learner snapshot file")
    replay.add_argument("--partition", type=int, required=True)
    replay.add_argument("--from", dest="start", type=int, required=True, help="first offset")
    replay.add_argument("--to", dest="end", type=int, required=True, help="last offset + 1")
    _common(replay)

    demo = sub.add_parser(
        "demo",
        help="the whole system on a dataset, no infrastructure needed",
        description=LOGS_HELP,
    )
    demo.add_argument("--dataset", default="data/stackoverflow", help="dir with train/test.tsv")
    demo.add_argument("--workers", type=int, default=None, help="stream workers (default 2)")
    demo.add_argument("--items", type=int, default=3000, help="items to stream")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    _common(demo)

    run = sub.add_parser(
        "run",
        help="run the deployment (settings from a file and env vars)",
        description=RUN_OUTPUT_HELP,
    )
    run.add_argument("--workers", type=int, default=None, help="override supervisor.workers")
    run.add_argument(
        "--progress-every", type=float, default=10.0, help="seconds between progress readings"
    )
    run.add_argument(
        "--embedded-port", type=int, default=None,
        help="the embedded broker's port (without kafka.bootstrap_servers); a free one if unset",
    )  # fmt: skip
    run.add_argument(
        "--ui", action="store_true",
        help="serve the web console (ui.*; prints 'console: URL' once serving)",
    )  # fmt: skip
    _common(run)

    report = sub.add_parser(
        "report", help="write the console's classes, map, unknowns and drift as one HTML file"
    )
    report.add_argument("--out", default="report.html", help="the file to write")
    _common(report)

    broker = sub.add_parser(
        "broker", help="run the embedded broker alone (prints 'bootstrap: HOST:PORT'; Ctrl-C stops)"
    )
    broker.add_argument("--port", type=int, default=None, help="a free port when not given")

    produce = sub.add_parser(
        "produce",
        help="send a file's items to the items topic (some labelled ones as feedback)",
        description=(
            "Sends the items of a TSV, JSON Lines or plain text file to the items topic. "
            "Labels are optional: with --feedback-fraction F, each labelled item is sent "
            "as a feedback example instead with probability F (seeded); the rest are "
            "items. Ids: STEM-I for a TSV's row I (from 0), the id field or else "
            "STEM-LINE for JSON Lines, STEM-LINE for plain text (STEM: the file name "
            "without its suffix)."
        ),
    )
    source = produce.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "file", nargs="?", default=None, metavar="FILE",
        help="TSV (header text or text<TAB>label; standard quoting: a quoted field may "
        "hold tabs, newlines and doubled quotes), JSON Lines (one object a line), or "
        "plain text (one item a line)",
    )  # fmt: skip
    source.add_argument("--tsv", default=None, help="a TSV file: the same as FILE --format tsv")
    produce.add_argument(
        "--format", choices=["tsv", "jsonl", "text"], default=None,
        help="FILE's format; by default from its suffix (.tsv; .jsonl or .json; .txt)",
    )  # fmt: skip
    produce.add_argument("--id-field", default="id", help="JSON Lines: the key of the item id")
    produce.add_argument("--text-field", default="text", help="JSON Lines: the key of the text")
    produce.add_argument(
        "--label-field", default="label", help="JSON Lines: the key of the label (optional)"
    )
    produce.add_argument(
        "--vector-field", default="vector",
        help="JSON Lines: the key of a pre-computed vector (an item needs a text or a vector)",
    )  # fmt: skip
    produce.add_argument(
        "--feedback-fraction", type=_fraction, default=0.0,
        help="share of the labelled items sent as feedback instead (default 0)",
    )  # fmt: skip
    produce.add_argument("--limit", type=int, default=None, help="items to send (the first N)")
    produce.add_argument("--seed", type=int, default=0, help="seed of the feedback draw")
    _common(produce)

    tail = sub.add_parser(
        "tail", help="print a topic's records as they arrive (one line each; --json: JSON lines)"
    )
    tail.add_argument("topic", choices=TAIL_TOPICS)
    tail.add_argument(
        "--from-beginning", action="store_true",
        help="read the topic from its beginning (default: only what arrives from now on)",
    )  # fmt: skip
    tail.add_argument("--limit", type=int, default=None, help="stop after N records")
    tail.add_argument("--idle-exit", type=float, default=None, help="stop after S idle seconds")
    tail.add_argument("--json", action="store_true", help="print each record as one JSON object")
    _common(tail)

    drain = sub.add_parser(
        "drain", help="ask the actor or driver behind a local endpoint to stop (a preStop hook)"
    )
    drain.add_argument("--port", type=int, required=True, help="its metrics.port (+ role offset)")
    drain.add_argument("--host", default="127.0.0.1")
    drain.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it")
    drain.add_argument(
        "--span", type=_positive, default=1, help="drain ports PORT..PORT+SPAN-1 at once (a pod "
        "holding several stream workers)",
    )  # fmt: skip

    health = sub.add_parser("healthcheck", help="exit 0 when a local endpoint is healthy")
    health.add_argument("--port", type=int, default=9464, help="default: the driver's port")
    health.add_argument("--host", default="127.0.0.1")
    health.add_argument("--path", default="/healthz", choices=["/healthz", "/readyz"])
    _control(sub)
    return parser


CONTROL_EPILOG = (
    "exit status: 0 applied, 1 rejected by the learner (its reason on stderr), 2 an error "
    "(settings, broker), 3 no answer from the learner within --timeout"
)


def _control(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``classes``, ``feedback`` and ``unknowns``: commands to a running deployment."""
    classes = sub.add_parser(
        "classes", help="list, show and change a running deployment's classes"
    ).add_subparsers(dest="verb", required=True)
    listing = classes.add_parser("list", help="every class: id, name, status, origin, count")
    listing.add_argument("--all", action="store_true", help="retired and merged ones too")
    _reading(listing)
    show = classes.add_parser("show", help="a class's state, exemplar texts and history")
    show.add_argument("id", metavar="ID", help="its id, name or an alias")
    _reading(show)
    cls = ("id", "ID", "the class: its id, name or an alias")
    verbs: list[tuple[str, str, list[tuple[str, str, str]]]] = [
        ("rename", "rename a class (its id stays; the old name becomes an alias)",
         [cls, ("name", "NAME", "its new name")]),
        ("merge", "fold class SRC into class DST (SRC's id and names become aliases)",
         [("source", "SRC", "the class merged away"), ("target", "DST", "the class kept")]),
        ("retire", "stop predicting a class (a later example revives it)", [cls]),
        ("add", "add a zero-shot class from a name and a description",
         [("name", "NAME", "the new class's name")]),
        ("split", "move the given items of a class to a new class", [cls]),
        ("threshold", "fix a class's open-set threshold", [cls, ("value", "VALUE",
         "a similarity in [-1, 1]: items less similar to the class are not labelled with it")]),
    ]  # fmt: skip
    for verb, text, positionals in verbs:
        p = classes.add_parser(
            verb, help=text, description=text[0].upper() + text[1:] + ".", epilog=CONTROL_EPILOG
        )
        for dest, metavar, what in positionals:
            kind = _similarity if dest == "value" else str
            p.add_argument(dest, metavar=metavar, type=kind, help=what)
        if verb == "add":
            p.add_argument("--description", required=True, help="what the class is about")
        if verb == "split":
            p.add_argument("--items", type=_names, required=True, help="item ids: ID,ID")
            p.add_argument("--name", required=True, help="the new class's name")
        _commanding(p)

    feedback = sub.add_parser(
        "feedback",
        help="teach labels: one item (by id) or text, or a file of them",
        description="Teaches the learner examples of a label, each as a teach command it "
        "answers (applied, or rejected with a reason). --file: JSON Lines (item_id or text, "
        "and label) or a TSV (header text<TAB>label). --no-wait sends them as feedback "
        "records instead, answered by nobody (for large files).",
        epilog=CONTROL_EPILOG,
    )
    example = feedback.add_mutually_exclusive_group(required=True)
    example.add_argument("--item", default=None, help="the id of an item already produced")
    example.add_argument("--text", default=None, help="an example text")
    example.add_argument("--file", default=None, help="a .jsonl or .tsv file of examples")
    feedback.add_argument("--label", default=None, help="the class (name or id); not with --file")
    feedback.add_argument(
        "--no-wait", action="store_true",
        help="send feedback records on the feedback topic; wait for no answer",
    )  # fmt: skip
    _commanding(feedback)

    unknowns = sub.add_parser("unknowns", help="what the deployment cannot label yet")
    sample = unknowns.add_subparsers(dest="verb", required=True).add_parser(
        "sample", help="the items most recently labelled unknown, with their nearest classes"
    )
    sample.add_argument("--n", type=_positive, default=20, help="how many (default 20)")
    _reading(sample)


def _reading(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    _common(p)


def _commanding(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--timeout", type=_seconds, default=30.0, help="seconds to wait for the learner's answer"
    )
    p.add_argument("--issued-by", default=None, help="who asks (default: the OS user)")
    _reading(p)


def _seconds(value: str) -> float:
    x = float(value)
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return x


def _similarity(value: str) -> float:
    x = float(value)
    if not -1.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [-1, 1], got {value}")
    return x


def _names(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return names


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return n


def _fraction(value: str) -> float:
    x = float(value)
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return x


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="settings file (TOML or JSON)")
    p.add_argument("--bootstrap-servers", default=None, help="Kafka host:port[,host:port]")
    p.add_argument("--topic-prefix", default=None, help="topic name prefix (default 'sl.')")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamlabel`` console script."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "bench":
            from streamlabel.cli.bench import cmd_bench

            return cmd_bench(args)
        if args.command == "chaos":
            from streamlabel.cli.chaos import cmd_chaos

            return cmd_chaos(args)
        if args.command == "demo":
            from streamlabel.cli.demo import cmd_demo

            return cmd_demo(args)
        if args.command == "report":
            from streamlabel.cli.report import cmd_report

            return cmd_report(args)
        if args.command == "broker":
            from streamlabel.cli.broker import cmd_broker

            return cmd_broker(args)
        if args.command in ("classes", "feedback", "unknowns"):
            from streamlabel.cli.control import cmd_classes, cmd_feedback, cmd_unknowns

            control_handlers = {
                "classes": cmd_classes,
                "feedback": cmd_feedback,
                "unknowns": cmd_unknowns,
            }
            return control_handlers[args.command](args)
        from streamlabel.cli import runtime as commands

        handlers = {
            "run": commands.cmd_run,
            "produce": commands.cmd_produce,
            "tail": commands.cmd_tail,
            "replay": commands.cmd_replay,
            "drain": commands.cmd_endpoint,
            "healthcheck": commands.cmd_endpoint,
        }
        return handlers[args.command](args)
    except StreamlabelError as exc:
        print(f"streamlabel: error: {exc}", file=sys.stderr)
        return 2
