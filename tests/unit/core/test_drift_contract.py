"""Contract suite for the drift detectors, parametrised over every detector.

Modelled on river's ``river/checks``: every detector built by :func:`default_detectors`
must stay silent on a stationary stream, raise exactly one alert within its
``detection_bound`` after a shift of the kind it targets, survive copy/pickle, replay
identically (seed, reset, batch size) and shrug off empty batches.

The synthetic stream: 20 classes, each a random unit-vector centre in d=384 plus
isotropic Gaussian noise (cosine to the centre ≈ 0.7), re-normalised; class frequencies
∝ 1/sqrt(rank); 10% unknown items drawn around 5 extra centres; labels from the nearest
class centre; scores the cosine to that centre.
"""

from __future__ import annotations

import copy
import doctest
import pickle
from collections.abc import Callable, Iterator
from functools import cache, lru_cache

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import streamlabel.core.drift as drift
from streamlabel.core.drift import (
    ConfidenceDropDetector,
    DriftDetector,
    DriftObservation,
    DriftSignal,
    EmbeddingMMDDetector,
    Hysteresis,
    LabelMixDetector,
    PageHinkley,
    PrototypeShiftDetector,
    UnknownRateDetector,
    default_detectors,
)
from streamlabel.core.drift import page_hinkley as page_hinkley_module

N_ITEMS = 10_000
SHIFT_AT = 5_000
DIM = 384
N_CLASSES = 20
N_NOVEL = 5
BASE_UNKNOWN_RATE = 0.10
BASE_NOISE = 1.0

# Shift magnitudes, one per kind (applied again for a second shift).
EMBEDDING_TRANSLATION = 0.3  # every centre moves towards one common random direction
UNKNOWN_RATE_JUMP = 0.30  # 10% -> 40% (-> 70%)
PROTOTYPE_MOVE = 0.4  # class c00's centre moves by this much (before re-normalising)
CONFIDENCE_NOISE = 1.6  # noise scale: mean cosine to the centre 0.71 -> 0.53

Shifts = tuple[tuple[int, str], ...]
CLASS_NAMES = np.array([f"c{k:02d}" for k in range(N_CLASSES)], dtype=object)
DETECTOR_TYPES = [
    EmbeddingMMDDetector,
    UnknownRateDetector,
    LabelMixDetector,
    PrototypeShiftDetector,
    ConfidenceDropDetector,
]
IDS = [t.__name__ for t in DETECTOR_TYPES]


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    """Small matrix products are slower, not faster, with several BLAS threads."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@lru_cache(maxsize=8)
def make_stream(seed: int, shifts: Shifts = (), n: int = N_ITEMS) -> DriftObservation:
    """A seeded labelled stream of ``n`` items, with shifts ``(at_item, kind)`` applied."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((N_CLASSES + N_NOVEL, DIM)))
    weights = 1.0 / np.sqrt(np.arange(1, N_CLASSES + 1))
    weights /= weights.sum()
    unknown_rate, noise = BASE_UNKNOWN_RATE, BASE_NOISE
    parts: list[DriftObservation] = []
    start = 0
    for at, kind in [*sorted(shifts), (n, "")]:
        m = at - start
        if m > 0:
            unknown = rng.random(m) < unknown_rate
            source = np.where(
                unknown,
                N_CLASSES + rng.integers(0, N_NOVEL, m),
                rng.choice(N_CLASSES, m, p=weights),
            )
            jitter = rng.standard_normal((m, DIM), dtype=np.float32) / np.sqrt(DIM)
            x = _unit(centres[source] + noise * jitter)
            sims = x @ centres[:N_CLASSES].T
            labels = CLASS_NAMES[sims.argmax(axis=1)].copy()
            labels[unknown] = "unknown"
            parts.append(DriftObservation(x, labels, unknown, sims.max(axis=1)))
        start = at
        if kind == "embedding":
            centres = _unit(centres + EMBEDDING_TRANSLATION * _unit(rng.standard_normal(DIM)))
        elif kind == "unknown_rate":
            unknown_rate += UNKNOWN_RATE_JUMP
        elif kind == "label_mix":
            weights = rng.permutation(weights) if weights[0] < weights[-1] else weights[::-1]
        elif kind == "prototype_shift":
            move = PROTOTYPE_MOVE * _unit(rng.standard_normal(DIM))
            centres[0] = _unit(centres[0] + move)
        elif kind == "confidence":
            noise *= CONFIDENCE_NOISE
    return DriftObservation.concat(parts)


def batches(stream: DriftObservation, size: int) -> Iterator[DriftObservation]:
    for i in range(0, len(stream), size):
        yield stream.slice(i, i + size)


def feed(detector: DriftDetector, stream: DriftObservation, size: int) -> list[DriftSignal]:
    signals: list[DriftSignal] = []
    for batch in batches(stream, size):
        signals.extend(detector.update(batch))
    return signals


def shifted(kind: str, seed: int = 0) -> DriftObservation:
    return make_stream(seed, ((SHIFT_AT, kind),))


@cache
def reference_run(detector_type: Callable[..., DriftDetector]) -> tuple[DriftSignal, ...]:
    """Signals of a seed-0 detector on the seed-0 stream shifted its way, in batches of 500."""
    detector = detector_type(seed=0)
    return tuple(feed(detector, shifted(detector.kind), 500))


# --- the stream generator itself -------------------------------------------------------


def test_stream_generator_has_the_advertised_shape_and_rates() -> None:
    s = make_stream(0)
    assert s.vectors.shape == (N_ITEMS, DIM)
    assert s.labels.dtype == object
    np.testing.assert_allclose(np.linalg.norm(s.vectors, axis=1), 1.0, atol=1e-5)
    assert 0.08 < s.is_unknown.mean() < 0.12
    assert set(s.labels[s.is_unknown].tolist()) == {"unknown"}
    assert 0.65 < s.scores[~s.is_unknown].mean() < 0.75


@pytest.mark.parametrize(
    ("kind", "before", "after"),
    [
        ("unknown_rate", 0.10, 0.40),
        ("confidence", 0.65, 0.50),
    ],
)
def test_stream_generator_applies_the_shift_at_the_given_item(
    kind: str, before: float, after: float
) -> None:
    s = shifted(kind)
    metric = s.is_unknown.astype(float) if kind == "unknown_rate" else s.scores
    assert abs(metric[:SHIFT_AT].mean() - before) < 0.05
    assert abs(metric[SHIFT_AT:].mean() - after) < 0.05


# --- the contract ------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [64, 500])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("detector_type", DETECTOR_TYPES, ids=IDS)
def test_no_alert_on_a_stationary_stream(
    detector_type: Callable[..., DriftDetector], seed: int, batch_size: int
) -> None:
    detector = detector_type(seed=seed)
    assert feed(detector, make_stream(100 + seed), batch_size) == []
    assert detector.n_seen == N_ITEMS


@pytest.mark.parametrize(("seed", "batch_size"), [(0, 37), (1, 500), (2, 64)])
@pytest.mark.parametrize("detector_type", DETECTOR_TYPES, ids=IDS)
def test_exactly_one_alert_within_the_detection_bound_after_a_targeted_shift(
    detector_type: Callable[..., DriftDetector], seed: int, batch_size: int
) -> None:
    detector = detector_type(seed=seed)
    signals = feed(detector, shifted(detector.kind, seed), batch_size)
    assert len(signals) == 1, [s.detail for s in signals]
    delay = signals[0].at_item - SHIFT_AT
    assert 0 <= delay <= detector.detection_bound
    assert signals[0].kind == detector.kind


@pytest.mark.parametrize(
    "detector_type",
    [EmbeddingMMDDetector, UnknownRateDetector, LabelMixDetector, ConfidenceDropDetector],
    ids=lambda t: t.__name__,
)
def test_a_second_later_shift_raises_a_second_alert_after_re_referencing(
    detector_type: Callable[..., DriftDetector],
) -> None:
    detector = detector_type(seed=0)
    second = 8_000
    kind = detector.kind
    stream = make_stream(3, ((SHIFT_AT, kind), (second, kind)), n=11_000)
    signals = feed(detector, stream, 250)
    assert [s.at_item >= second for s in signals] == [False, True], [s.at_item for s in signals]
    assert 0 <= signals[0].at_item - SHIFT_AT <= detector.detection_bound
    assert 0 <= signals[1].at_item - second <= detector.detection_bound


def test_prototype_shift_names_the_moved_class_only() -> None:
    detector = PrototypeShiftDetector()
    signals = feed(detector, shifted("prototype_shift"), 500)
    assert [s.affected_classes for s in signals] == [("c00",)]


def test_label_mix_names_the_labels_whose_share_changed_most() -> None:
    detector = LabelMixDetector()
    (signal,) = feed(detector, shifted("label_mix"), 500)
    # Reversing the ranking moves the shares of the most and least frequent classes most.
    assert 1 <= len(signal.affected_classes) <= 3
    assert set(signal.affected_classes) <= {"c00", "c01", "c02", "c17", "c18", "c19"}
    assert "c00" in signal.affected_classes


@pytest.mark.parametrize("detector_type", DETECTOR_TYPES, ids=IDS)
def test_deepcopy_and_pickle_mid_stream_give_identical_subsequent_signals(
    detector_type: Callable[..., DriftDetector],
) -> None:
    detector = detector_type(seed=0)
    stream = shifted(detector.kind)
    head, tail = stream.slice(0, 4_537), stream.slice(4_537, N_ITEMS)
    assert feed(detector, head, 300) == []
    copied = copy.deepcopy(detector)
    restored = pickle.loads(pickle.dumps(detector))
    expected = feed(detector, tail, 300)
    assert expected, "the tail holds a targeted shift, so the original must alert"
    assert feed(copied, tail, 300) == expected
    assert feed(restored, tail, 300) == expected
    assert copied.n_seen == restored.n_seen == detector.n_seen == N_ITEMS


@pytest.mark.parametrize("detector_type", DETECTOR_TYPES, ids=IDS)
def test_same_seed_same_stream_and_reset_replay_give_identical_signals(
    detector_type: Callable[..., DriftDetector],
) -> None:
    stream = shifted(detector_type(seed=0).kind)
    first = detector_type(seed=0)
    expected = feed(first, stream, 200)
    assert expected
    assert feed(detector_type(seed=0), stream, 200) == expected
    first.reset()
    assert first.n_seen == 0
    assert feed(first, stream, 200) == expected


@pytest.mark.parametrize("detector_type", DETECTOR_TYPES, ids=IDS)
def test_batch_size_does_not_change_the_signals(
    detector_type: Callable[..., DriftDetector],
) -> None:
    stream = shifted(detector_type(seed=0).kind)
    expected = list(reference_run(detector_type))
    assert expected
    assert feed(detector_type(seed=0), stream, 37) == expected
    # Irregular batch sizes, down to single items.
    detector, signals, pos = detector_type(seed=0), [], 0
    rng = np.random.default_rng(0)
    while pos < len(stream):
        size = int(rng.choice([1, 2, 3, 50, 333]))
        signals.extend(detector.update(stream.slice(pos, pos + size)))
        pos += size
    assert signals == expected


@pytest.mark.parametrize("detector_type", DETECTOR_TYPES, ids=IDS)
def test_empty_batches_are_harmless(detector_type: Callable[..., DriftDetector]) -> None:
    stream = shifted(detector_type(seed=0).kind)
    expected = list(reference_run(detector_type))
    detector = detector_type(seed=0)
    assert detector.update(DriftObservation.empty(DIM)) == []
    assert detector.update(DriftObservation.empty()) == []
    assert detector.n_seen == 0
    signals: list[DriftSignal] = []
    for batch in batches(stream, 400):
        signals.extend(detector.update(batch))
        signals.extend(detector.update(DriftObservation.empty(DIM)))
        signals.extend(detector.update(stream.slice(0, 0)))
    assert signals == expected
    assert detector.n_seen == N_ITEMS


@pytest.mark.parametrize("detector_type", DETECTOR_TYPES, ids=IDS)
def test_signals_carry_sane_fields(detector_type: Callable[..., DriftDetector]) -> None:
    detector = detector_type(seed=0)
    signals = reference_run(detector_type)
    assert signals
    for s in signals:
        assert s.kind == detector.kind
        assert s.threshold > 0.0
        assert s.statistic > s.threshold
        assert s.window > 0
        assert s.reference > 0
        assert 0 <= s.at_item < N_ITEMS
        assert s.p_value is None or 0.0 <= s.p_value <= 1.0
        assert s.severity in ("warning", "critical")
        assert (s.severity == "critical") == (s.statistic >= 2.0 * s.threshold)
        assert all(isinstance(c, str) for c in s.affected_classes)
        assert s.detail.endswith(".")
        assert len(s.detail) > 20


@pytest.mark.parametrize("detector_type", DETECTOR_TYPES, ids=IDS)
def test_detectors_follow_the_protocol_and_state_their_bound(
    detector_type: Callable[..., DriftDetector],
) -> None:
    detector = detector_type(seed=0)
    assert isinstance(detector, DriftDetector)
    assert detector.n_seen == 0
    assert detector.detection_bound > 0
    bound = str(detector.detection_bound)
    assert bound in (type(detector).__doc__ or "")
    row = next(
        line
        for line in (drift.__doc__ or "").splitlines()
        if line.startswith(type(detector).__name__)
    )
    assert bound in row.split()


def test_default_detectors_builds_one_detector_of_each_kind() -> None:
    detectors = default_detectors(seed=3)
    assert sorted(d.kind for d in detectors) == sorted(
        ["embedding", "unknown_rate", "label_mix", "prototype_shift", "confidence"]
    )


# --- building blocks -------------------------------------------------------------------


def test_hysteresis_needs_patience_consecutive_exceedances_then_cools_down() -> None:
    h = Hysteresis(patience=3, cooldown=10)
    assert [h.observe(o) for o in (True, True, False, True, True)] == [False] * 5
    assert h.observe(True)
    assert h.skip(4) == 4
    assert h.skip(100) == 6
    assert h.skip(5) == 0
    assert not h.observe(True)


def test_page_hinkley_docstring_example_runs() -> None:
    result = doctest.testmod(page_hinkley_module)
    assert result.attempted >= 1
    assert result.failed == 0


@pytest.mark.parametrize("direction", ["up", "down", "both"])
def test_page_hinkley_batch_updates_match_item_updates_exactly(direction: str) -> None:
    rng = np.random.default_rng(0)
    sign = -1.0 if direction == "down" else 1.0
    xs = np.concatenate([rng.normal(0.0, 1.0, 700), rng.normal(sign * 2.0, 1.0, 700)] * 2)
    one = PageHinkley(delta=0.05, threshold=20.0, direction=direction)  # type: ignore[arg-type]
    by_item = [i for i, x in enumerate(xs) if one.update(float(x))]
    many = PageHinkley(delta=0.05, threshold=20.0, direction=direction)  # type: ignore[arg-type]
    by_batch, pos = [], 0
    while pos < len(xs):
        hit = many.update_many(xs[pos : pos + 97])
        pos = pos + hit + 1 if hit is not None else pos + 97
        if hit is not None:
            by_batch.append(pos - 1)
    assert by_item == by_batch
    assert len(by_item) >= 2
    assert one.statistic == many.statistic


def test_page_hinkley_only_watches_the_requested_direction() -> None:
    xs = np.concatenate([np.zeros(200), np.full(200, -5.0)])
    up = PageHinkley(threshold=10.0, direction="up")
    down = PageHinkley(threshold=10.0, direction="down")
    assert up.update_many(xs) is None
    hit = down.update_many(xs)
    assert hit is not None
    assert 200 <= hit < 210
    assert down.detected_direction == "down"


def test_observation_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="same length"):
        DriftObservation(
            np.zeros((3, 4)), np.array(["a"] * 2, dtype=object), np.zeros(3), np.zeros(3)
        )


def test_observation_coerces_labels_to_object_dtype() -> None:
    obs = DriftObservation(
        np.zeros((2, 4)), np.array(["a", "unknown"]), np.array([0, 1]), np.array([0.5, 0.1])
    )
    assert obs.labels.dtype == object
    assert obs.vectors.dtype == np.float32
    assert obs.is_unknown.dtype == bool


def test_window_must_be_a_multiple_of_stride() -> None:
    with pytest.raises(ValueError, match="multiple"):
        ConfidenceDropDetector(window=300, stride=70)


def test_mmd_detector_rejects_vectors_of_another_dimension() -> None:
    detector = EmbeddingMMDDetector()
    feed(detector, make_stream(0).slice(0, 600), 600)
    with pytest.raises(ValueError, match="dimension"):
        detector.update(
            DriftObservation(
                np.zeros((50, 8)), np.array(["a"] * 50), np.zeros(50, bool), np.zeros(50)
            )
        )


def test_prototype_detector_caps_the_number_of_tracked_classes() -> None:
    detector = PrototypeShiftDetector(max_classes=5)
    feed(detector, make_stream(0).slice(0, 2_000), 500)
    assert detector.n_tracked == 5
    assert detector.n_untracked > 0
