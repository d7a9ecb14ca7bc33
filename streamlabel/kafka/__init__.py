"""Kafka around the Engine: clients, the publisher, offsets, the changelog, topics, the broker.

* :mod:`~streamlabel.kafka.io` — consumers, the delivery-checked publisher, lag;
* :mod:`~streamlabel.kafka.offsets` — commits, refused commits kept, rewinds,
  fences and resets of a group consumer; the learner's own positions;
* :mod:`~streamlabel.kafka.changelog` — the ``classes`` changelog reader;
* :mod:`~streamlabel.kafka.protocols` — what the actors need from their consumer,
  publisher, changelog reader and clock (the fakes of ``streamlabel.testing.kafka``
  implement them too);
* :mod:`~streamlabel.kafka.topics` — the deployment's topics and their creation;
* :mod:`~streamlabel.kafka.broker` — tansu on 127.0.0.1 (no infrastructure);
* :mod:`~streamlabel.kafka.broker_watch` — notices a broker that lost its topics;
* :mod:`~streamlabel.kafka.client` — producing items and feedback, reading
  labels back (the CLI, the benches, the tests).
"""
