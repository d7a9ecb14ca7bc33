"""``streamlabel broker``: the embedded broker alone, for development.

It prints ``bootstrap: 127.0.0.1:PORT`` on a line of its own once the broker
answers, then runs until SIGINT or SIGTERM. Anything that speaks Kafka can use
it: ``streamlabel run``/``produce``/``tail`` with ``--bootstrap-servers``, kcat,
a Kafka client in another language. It keeps everything in memory.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from streamlabel.kafka.broker import EmbeddedBroker

__all__ = ["cmd_broker"]


def cmd_broker(args: argparse.Namespace) -> int:
    """Runs the embedded broker on ``--port`` (a free one when not given) until stopped."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with EmbeddedBroker(port=args.port) as broker:
            print(f"bootstrap: {broker.bootstrap_servers}", flush=True)
            while not stop.wait(0.5):
                if not broker.running:
                    print("streamlabel: error: the embedded broker exited", flush=True)
                    return 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0
