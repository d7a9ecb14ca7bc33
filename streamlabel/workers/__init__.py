"""Ray actors and Kafka I/O around the Engine (stream workers, learner, supervisor).

The distributed runtime lands with the next issue; the Engine in
:mod:`streamlabel.pipeline` already does all the work for one batch.
"""
