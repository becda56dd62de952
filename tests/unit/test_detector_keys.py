"""KeyDetectors end to end, its configuration, and feature extraction."""

from __future__ import annotations

import math
import pickle
import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from detectors import (
    DetectorConfig,
    KeyDetectors,
    SignalConfig,
    StandardizedPageHinkley,
    extract_features,
)


def calls(seed: int, n: int, *, factor_from: int | None = None, factor: float = 2.0) -> list[Any]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        slow = factor if factor_from is not None and i >= factor_from else 1.0
        failed = rng.random() < 0.02
        out.append(
            {
                "latency_ms": rng.lognormvariate(math.log(800), 0.4) * slow,
                "ttft_ms": rng.lognormvariate(math.log(300), 0.4),
                "output_tokens": int(rng.lognormvariate(math.log(200), 0.5)),
                "cost_usd": rng.lognormvariate(math.log(0.002), 0.5),
                "status": "error" if failed else "ok",
                "error_type": "timeout" if failed else None,
                "finish_reason": None if failed else "stop",
                "scores": {"faithfulness": rng.betavariate(8, 2)},
                "model": "gpt-4o-mini",
            }
        )
    return out


def test_a_x2_latency_shift_is_detected_quickly() -> None:
    key = KeyDetectors()
    found = [
        (i, d)
        for i, call in enumerate(calls(1, 5000, factor_from=3000))
        for d in key.update_call(call)
    ]
    latency = [(i, d) for i, d in found if d.signal == "latency"]
    assert latency, found
    i, detection = latency[0]
    assert 3000 <= i < 3200
    assert detection.before_mean == pytest.approx(800, rel=0.1)  # geometric mean, in ms
    assert detection.after_level == pytest.approx(1600, rel=0.25)
    assert detection.params["transform"] == "log1p"
    assert all(i >= 3000 for i, _ in found), found


def test_a_stationary_stream_raises_at_most_one_false_detection() -> None:
    key = KeyDetectors()
    found = [d for call in calls(2, 100_000) for d in key.update_call(call)]
    assert len(found) <= 1, found


def test_state_survives_pickling_without_re_warming() -> None:
    stream = calls(3, 4000, factor_from=3000)
    key = KeyDetectors()
    for call in stream[:2000]:
        key.update_call(call)
    restored = pickle.loads(pickle.dumps(key))
    assert [d for c in stream[2000:] for d in restored.update_call(c)] == [
        d for c in stream[2000:] for d in key.update_call(c)
    ]


def test_score_and_feedback_detectors_are_created_lazily_and_capped() -> None:
    key = KeyDetectors(DetectorConfig(max_score_names=2))
    for name in ("a", "b", "c"):
        key.update({f"score.{name}": 0.5, f"feedback.{name}": 1.0, "unknown": 1.0})
    names = set(key.detectors)
    assert {"score.a", "score.b", "feedback.a", "feedback.b"} <= names
    assert "score.c" not in names and "feedback.c" not in names
    assert key.n_ignored == 2 + 3  # score.c, feedback.c, and "unknown" three times


def test_a_new_model_and_a_new_error_type_are_reported() -> None:
    key = KeyDetectors(DetectorConfig(anomaly_features=()))
    for _ in range(200):
        key.update({}, categorical={"model": "gpt-4o", "error_type": "timeout"})
    assert key.update({}, categorical={"model": "gpt-4o"}) == []
    (new_model,) = key.update({}, categorical={"model": "o3"})
    assert (new_model.signal, new_model.params["value"]) == ("model", "o3")
    surge = [key.update({}, categorical={"error_type": "context_length"}) for _ in range(3)]
    assert [len(found) for found in surge] == [0, 0, 1]


def test_config_can_choose_another_detector_per_signal() -> None:
    config = DetectorConfig(
        signals={"latency": SignalConfig("page_hinkley", {"direction": "up"}, "log1p")},
        anomaly_features=("latency",),
    )
    key = KeyDetectors(config)
    assert isinstance(key.detectors["latency"], StandardizedPageHinkley)
    assert set(key.detectors) == {"latency", "anomaly", "model", "error_type"}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SignalConfig("arima"), "detector must be one of"),
        (lambda: SignalConfig(transform="sqrt"), "transform must be one of"),
        (lambda: SignalConfig(scale=0), "scale must be a finite number > 0"),
        (lambda: SignalConfig(params={"delta": 5.0}), "delta must be in"),
        (lambda: SignalConfig(params={"colour": "red"}), "bad parameters for adwin"),
        (lambda: DetectorConfig(max_score_names=-1), "max_score_names must be an integer"),
        (lambda: DetectorConfig(anomaly_features=("gpu",)), "anomaly_features not in signals"),
        (lambda: DetectorConfig(anomaly_params={"q": 2.0}), "q must be in"),
        (
            lambda: DetectorConfig(new_values={"model": {"size": 3}}),
            "bad anomaly_params or new_values",
        ),
    ],
)
def test_invalid_configuration_raises_clear_errors(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


@dataclass
class Call:
    latency_ms: float | None = 812.0
    ttft_ms: float | None = 95.0
    output_tokens: int | None = 120
    cost_usd: float | None = 0.0021
    status: str | None = "ok"
    finish_reason: str | None = "stop"
    error_type: str | None = None
    model: str | None = "gpt-4o-mini"
    scores: dict[str, float] = field(default_factory=lambda: {"toxicity": 0.01})


def test_features_are_extracted_from_objects_with_attributes() -> None:
    features, categorical = extract_features(Call())
    assert features == {
        "latency": 812.0,
        "ttft": 95.0,
        "output_tokens": 120.0,
        "cost": 0.0021,
        "error": 0.0,
        "refusal": 0.0,
        "score.toxicity": 0.01,
    }
    assert categorical == {"model": "gpt-4o-mini"}


@pytest.mark.parametrize(
    ("call", "error", "refusal"),
    [
        (Call(status="error", finish_reason=None, error_type="timeout"), 1.0, None),
        (Call(status="OK", finish_reason="content_filter"), 0.0, 1.0),
        (Call(status=None, error_type="rate_limit", finish_reason="refusal"), 1.0, 1.0),
        (Call(status=None, error_type=None, finish_reason="length"), None, 0.0),
    ],
)
def test_error_and_refusal_flags(call: Call, error: float | None, refusal: float | None) -> None:
    features, _ = extract_features(call)
    assert features.get("error") == error
    assert features.get("refusal") == refusal


def test_missing_and_non_numeric_fields_are_left_out() -> None:
    features, categorical = extract_features(
        {"latency_ms": "n/a", "ttft_ms": math.nan, "output_tokens": True, "scores": {"x": None}}
    )
    assert features == {}
    assert categorical == {}


@pytest.mark.parametrize(
    "fields",
    [
        {"latency_ms": "12.5", "ttft_ms": 3, "output_tokens": True, "cost_usd": -1.0},
        {"latency_ms": 800.0, "ttft_ms": 10**400},
        {"latency_ms": math.inf, "status": "SUCCESS", "error_type": "", "model": ""},
        {"status": None, "error_type": "timeout", "finish_reason": "Refusal", "model": 7},
        {"scores": {"a": 1, "b": "x", 3: 0.5}, "feedback": {"thumbs": 1.0, "n": None}},
        {"scores": [("a", 1.0)], "feedback": "no", "finish_reason": None},
    ],
)
def test_features_are_the_same_from_a_mapping_and_from_attributes(fields: dict[str, Any]) -> None:
    @dataclass
    class Bare:  # only the attributes given, like a partial schema object
        pass

    bare = Bare()
    for name, value in fields.items():
        setattr(bare, name, value)
    try:
        expected = extract_features(fields)
    except OverflowError:  # float(10**400), as before: not caught
        with pytest.raises(OverflowError):
            extract_features(bare)
        return
    assert extract_features(bare) == expected


def test_update_is_update_transformed_of_the_transformed_features() -> None:
    config = DetectorConfig(max_score_names=1)
    direct, shared = KeyDetectors(config), KeyDetectors(config)
    for call in calls(4, 4000, factor_from=2500):
        features, categorical = extract_features(call)
        features["score.extra"] = 0.5  # over the cap: ignored and counted by both
        transformed = config.transform(features)
        assert direct.update(features, categorical=categorical) == shared.update_transformed(
            transformed, categorical=categorical
        )
    assert (direct.n_seen, direct.n_ignored) == (shared.n_seen, shared.n_ignored) == (4000, 4000)
