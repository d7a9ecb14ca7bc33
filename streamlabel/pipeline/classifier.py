"""The open-world classifier inside a user's own app: learn and predict, River-style.

:class:`OpenWorldClassifier` wraps one :class:`~.engine.Engine` (labeler and
curator in one process) behind ``learn_one``/``predict_one`` and their
``_many`` forms, no broker and no Ray. Predicting is the stream side: a text
no class accepts is ``unknown`` and is buffered for discovery, which runs by
itself every ``discovery.run_every`` unknowns (as in the Engine) or now, with
:meth:`~OpenWorldClassifier.discover`. The person's side (rename, merge,
retire, add a class from a description) goes through the same commands a
deployment's learner applies (:func:`~.commands.apply_command`): validated,
audited, and old names kept as aliases.

:meth:`~OpenWorldClassifier.save` writes the Engine's state (what a learner's
snapshot holds under ``engine``), the settings and the item counter to one
msgpack file; :meth:`~OpenWorldClassifier.load` also reads a learner's
snapshot file, so a deployment's classes can be examined in a notebook.

Not thread-safe: one call at a time (as the Engine).

Example:
    >>> from streamlabel.testing import HashEmbedder, ManualClock
    >>> clf = OpenWorldClassifier(embedder=HashEmbedder(), clock=ManualClock(0))
    >>> clf.learn_many(["python list sort", "java string split"], ["python", "java"])
    >>> clf.predict_one("sort a python list").label
    'python'
    >>> clf.rename("python", "Python").name
    'Python'
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from streamlabel.core.embedder import Embedder, SentenceTransformerEmbedder
from streamlabel.errors import EmbeddingError, SnapshotError, StoreError, StreamlabelError
from streamlabel.pipeline.commands import apply_command
from streamlabel.pipeline.engine import Engine
from streamlabel.pipeline.output import EngineOutput
from streamlabel.schemas import ClassState, Feedback, Item, LabelRecord
from streamlabel.schemas.commands import Command, CommandKind, CommandResult
from streamlabel.settings.engine import EngineSettings, ModelSettings, load_settings

__all__ = ["SAVED_KIND", "DiscoveryResult", "OpenWorldClassifier", "Prediction"]

SAVED_KIND = "streamlabel.OpenWorldClassifier"
"""The ``kind`` of a file :meth:`OpenWorldClassifier.save` writes."""


@dataclass(frozen=True)
class Prediction:
    """The label of one text.

    Attributes:
        item_id: the item's id (given, or ``item-N`` in the order predicted).
        label: the class id, or ``unknown``.
        name: the class's readable name (None when unknown).
        score: similarity to the chosen (or nearest) class.
        margin: best minus second-best class similarity.
        is_unknown: True when no class accepts the text.
        record: the full label record, as a deployment publishes it on ``labels``.
    """

    item_id: str
    label: str
    name: str | None
    score: float
    margin: float
    is_unknown: bool
    record: LabelRecord

    @classmethod
    def of(cls, record: LabelRecord) -> Prediction:
        """The prediction a label record carries."""
        return cls(
            item_id=record.item_id,
            label=record.label,
            name=record.class_name,
            score=record.score,
            margin=record.margin,
            is_unknown=record.is_unknown,
            record=record,
        )


@dataclass(frozen=True)
class DiscoveryResult:
    """What one discovery run found.

    Attributes:
        classes: the classes it created or extended, as they are now.
        relabelled: the predicted items it gave a class (their revised labels).
    """

    classes: tuple[ClassState, ...]
    relabelled: tuple[Prediction, ...]


class OpenWorldClassifier:
    """Open-world text classification in-process: learn, predict, discover, curate.

    Args:
        settings: validated settings; None builds them from ``overrides`` (and
            ``STREAMLABEL_*`` environment variables, see :func:`load_settings`).
        embedder: the text model; None loads the configured one (by default the
            bundled all-MiniLM-L6-v2) on first use.
        clock: epoch seconds; inject a settable clock in tests.
        issued_by: who the audit log names for this object's renames, merges...
        **overrides: settings sections, e.g. ``discovery={"run_every": 100}``.

    Raises:
        SettingsError: an override is invalid.
        ValueError: both ``settings`` and ``overrides`` were given.
    """

    def __init__(
        self,
        settings: EngineSettings | None = None,
        *,
        embedder: Embedder | None = None,
        clock: Callable[[], float] = time.time,
        issued_by: str = "python-api",
        **overrides: Any,
    ) -> None:
        if settings is not None and overrides:
            raise ValueError("pass settings or overrides, not both")
        self.settings = settings if settings is not None else load_settings(**overrides)
        self.issued_by = issued_by
        self._embedder = embedder
        self._clock = clock
        self._engine: Engine | None = None
        self._next_item = 0

    @property
    def engine(self) -> Engine:
        """The wrapped Engine (built, and the default model loaded, on first use)."""
        if self._engine is None:
            if self._embedder is None:
                self._embedder = _load_model(self.settings.model)
            self._engine = Engine(self.settings, self._embedder, clock=self._clock)
        return self._engine

    # ------------------------------------------------------------- predict
    def predict_one(self, text: str, *, item_id: str | None = None) -> Prediction:
        """The label of one text (see :meth:`predict_many`)."""
        return self.predict_many([text], item_ids=None if item_id is None else [item_id])[0]

    def predict_many(
        self, texts: Sequence[str], *, item_ids: Sequence[str] | None = None
    ) -> list[Prediction]:
        """The labels of some texts, in their order.

        An unknown text is buffered for discovery; when ``discovery.run_every``
        unknowns have accumulated, discovery runs now and the result carries the
        latest label of each text (a revision when discovery gave it a class).

        Args:
            texts: the texts.
            item_ids: their ids (default ``item-N``, counting every text predicted).

        Raises:
            ValueError: a text is longer than ``limits.max_text_chars`` (nothing
                was predicted), or ``item_ids`` does not match ``texts``.
            EmbeddingError: the model failed on a text (the others were predicted).
        """
        self._check_lengths(texts)
        if item_ids is None:
            item_ids = [f"item-{self._next_item + i}" for i in range(len(texts))]
        elif len(item_ids) != len(texts):
            raise ValueError(f"{len(item_ids)} item ids for {len(texts)} texts")
        self._next_item += len(texts)
        out = self.engine.process(
            [Item(id=i, text=t) for i, t in zip(item_ids, texts, strict=True)]
        )
        _raise_dead_letters(out)
        latest: dict[str, LabelRecord] = {}
        for record in out.labels:
            if record.supersedes(latest.get(record.item_id)):
                latest[record.item_id] = record
        return [Prediction.of(latest[i]) for i in item_ids]

    # ------------------------------------------------------------- learn
    def learn_one(self, text: str, label: str) -> None:
        """Learns that ``text`` belongs to ``label`` (a new label creates its class)."""
        self.learn_many([text], [label])

    def learn_many(self, texts: Sequence[str], labels: Sequence[str]) -> None:
        """Learns labelled examples; each label's class is updated once.

        Raises:
            ValueError: the lengths differ, a label is invalid (empty, ``unknown``)
                or a text is too long; nothing was learned.
            StoreError: the store refused a label (e.g. ``store.max_classes``
                reached); the other labels were learned.
            EmbeddingError: the model failed on a text; the others were learned.
        """
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts for {len(labels)} labels")
        self._check_lengths(texts)
        feedback = [
            Feedback(text=t, label=lab, source=self.issued_by)
            for t, lab in zip(texts, labels, strict=True)
        ]
        _raise_dead_letters(self.engine.learn(feedback))

    # ------------------------------------------------------------- discovery
    def discover(self) -> DiscoveryResult:
        """Runs discovery over the buffered unknowns now; returns what it found."""
        out = self.engine.discover()
        return DiscoveryResult(
            classes=tuple(e.state for e in out.class_events),
            relabelled=tuple(Prediction.of(r) for r in out.labels),
        )

    # ------------------------------------------------------------- classes
    def classes(self, *, include_retired: bool = False) -> list[ClassState]:
        """The classes, oldest first (retired and merged ones only when asked for)."""
        states = self.engine.curator.classes().values()
        kept = [s for s in states if include_retired or s.status != "retired"]
        return sorted(kept, key=lambda s: (s.created_version, s.class_id))

    def rename(self, class_ref: str, name: str) -> ClassState:
        """Gives a class (by id, name or alias) a new name; the old one stays an alias.

        Raises:
            StoreError: no active class answers to ``class_ref``, or ``name`` is taken.
        """
        return self._state(self._command("rename", class_id=class_ref, name=name))

    def merge(self, source_ref: str, target_ref: str) -> ClassState:
        """Folds one class into another; the source's id and names become the target's
        aliases. Returns the target.

        Raises:
            StoreError: either class is not active, or they are the same class.
        """
        target = self._command("merge", class_id=source_ref, target=target_ref).events[0]
        return self.engine.store.get(target.class_id)  # the merge's first event: the target

    def retire(self, class_ref: str) -> ClassState:
        """Stops predicting a class.

        Raises:
            StoreError: no active class answers to ``class_ref``.
        """
        return self._state(self._command("retire", class_id=class_ref))

    def add_class(self, name: str, description: str) -> ClassState:
        """Creates a class before its first example, from a description the model embeds.

        Raises:
            StoreError: a class already answers to ``name``, or the model failed.
        """
        return self._state(self._command("add_class", name=name, description=description))

    def _command(self, kind: CommandKind, **fields: Any) -> CommandResult:
        """Applies a command as the learner of a deployment would (validated, audited)."""
        now = self._clock()
        command = Command(
            command_id=uuid.uuid4().hex, kind=kind, issued_by=self.issued_by, issued_at=now,
            **fields,
        )  # fmt: skip
        result = apply_command(self.engine.curator, command, now=now)[1]
        if result.status != "applied":
            raise StoreError(f"{kind} refused: {result.reason}")
        return result

    def _state(self, result: CommandResult) -> ClassState:
        """The class an applied command changed, as it is now."""
        return self.engine.store.get(result.events[0].class_id)

    # ------------------------------------------------------------- save and load
    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the classifier to ``path`` (atomically: a crash leaves the file before).

        Raises:
            OSError: the file could not be written.
        """
        data = {
            "kind": SAVED_KIND,
            "engine": self.engine.state(),
            "settings": self.settings.model_dump(mode="json"),
            "next_item": self._next_item,
        }
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(msgpack.packb(data, use_bin_type=True))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        embedder: Embedder | None = None,
        settings: EngineSettings | None = None,
        clock: Callable[[], float] = time.time,
        issued_by: str = "python-api",
    ) -> OpenWorldClassifier:
        """A classifier saved by :meth:`save`, or the state in a learner's snapshot file.

        Args:
            path: the file.
            embedder: the model (it must be the one the state was learned with);
                None loads the configured one now.
            settings: replace the saved settings (a learner's snapshot has none:
                then the defaults and environment apply).
            clock: epoch seconds.
            issued_by: see :class:`OpenWorldClassifier`.

        Raises:
            SnapshotError: the file cannot be read, is not a saved classifier or a
                learner snapshot, or its state does not fit (another dimension).
        """
        try:
            data = msgpack.unpackb(Path(path).read_bytes(), raw=False, strict_map_key=False)
        except OSError as exc:
            raise SnapshotError(f"cannot read {str(path)!r}: {exc}") from exc
        except (msgpack.UnpackException, ValueError) as exc:
            raise SnapshotError(f"{str(path)!r} is corrupt: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("engine"), dict):
            raise SnapshotError(f"{str(path)!r} holds no engine state")
        if settings is None:
            saved = data.get("settings")
            settings = load_settings(**saved) if isinstance(saved, dict) else load_settings()
        clf = cls(settings, embedder=embedder, clock=clock, issued_by=issued_by)
        clf.engine.load_state(data["engine"])
        clf._next_item = int(data.get("next_item", 0))
        return clf

    # ------------------------------------------------------------- checks
    def _check_lengths(self, texts: Sequence[str]) -> None:
        limit = self.settings.limits.max_text_chars
        for i, text in enumerate(texts):
            if len(text) > limit:
                raise ValueError(
                    f"text {i} has {len(text)} characters; limits.max_text_chars is {limit}"
                )


def _load_model(model: ModelSettings) -> SentenceTransformerEmbedder:
    """The configured sentence-transformers model, in this process."""
    return SentenceTransformerEmbedder(model.path, **model.embedder_options())


def _raise_dead_letters(out: EngineOutput) -> None:
    """Raises for the first input the Engine dead-lettered (an in-process caller gets an
    exception where a deployment would publish a dead letter)."""
    if not out.dead_letters:
        return
    first = out.dead_letters[0]
    item = f" (item {first.key.decode(errors='replace')!r})" if first.key else ""
    more = f" and {len(out.dead_letters) - 1} more" if len(out.dead_letters) > 1 else ""
    message = f"{first.error}{item}{more}"
    if first.reason == "embedding":
        raise EmbeddingError(message)
    if first.reason == "rejected":
        raise StoreError(message)
    raise StreamlabelError(f"{first.reason}: {message}")
