"""Kafka around the Engine: clients, the publisher, topics, the embedded broker.

* :mod:`~streamlabel.kafka.io` — consumers, the delivery-checked publisher, lag,
  the class changelog reader;
* :mod:`~streamlabel.kafka.topics` — the deployment's topics and their creation;
* :mod:`~streamlabel.kafka.broker` — tansu on 127.0.0.1 (no infrastructure);
* :mod:`~streamlabel.kafka.broker_watch` — notices a broker that lost its topics;
* :mod:`~streamlabel.kafka.client` — producing items and feedback, reading
  labels back (the CLI, the benches, the tests).
"""
