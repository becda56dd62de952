"""A multivariate anomaly score per call (Half-Space Trees), and a detector of anomaly bursts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Self

from detectors._river import anomaly, preprocessing, stats
from detectors.adwin import AdwinDetector
from detectors.base import SignalDetector, check_in_range, check_positive_int
from detectors.detection import Detection, ParamValue

__all__ = ["HalfSpaceTreesDetector", "HalfSpaceTreesScorer", "QuantileThreshold"]

# Standardized features are mapped onto the trees' range [-LIMIT, LIMIT]; beyond it a
# value simply lands in the outermost cell.
_LIMIT = 4.0
_isfinite = math.isfinite


class HalfSpaceTreesScorer:
    """River's ``HalfSpaceTrees`` on standardized features: ``score_one`` is high for outliers.

    Parameters
    ----------
    features
        Names of the features, fixed up front so the trees know their range.
    n_trees, height, window_size
        Passed to ``river.anomaly.HalfSpaceTrees``. Smaller than river's defaults
        (10, 8, 250) to cut cost per call and memory per key.
    seed
        Seed of the random trees.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> scorer = HalfSpaceTreesScorer(["a", "b"], seed=1)
    >>> for _ in range(1000):
    ...     scorer.learn_one({"a": rng.gauss(0, 1), "b": rng.gauss(5, 1)})
    >>> scorer.score_one({"a": 0.0, "b": 5.0}) < scorer.score_one({"a": 6.0, "b": -3.0})
    True

    """

    def __init__(
        self,
        features: Sequence[str],
        *,
        n_trees: int = 5,
        height: int = 6,
        window_size: int = 250,
        seed: int = 0,
    ) -> None:
        if not features or len(set(features)) != len(features):
            raise ValueError(f"features must be a non-empty list of distinct names: {features!r}")
        check_positive_int("n_trees", n_trees)
        check_positive_int("height", height)
        check_positive_int("window_size", window_size, minimum=10)
        self.features = tuple(features)
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.seed = seed
        self._scaler = preprocessing.StandardScaler()
        self._trees = anomaly.HalfSpaceTrees(
            n_trees=n_trees,
            height=height,
            window_size=window_size,
            limits={name: (-_LIMIT, _LIMIT) for name in self.features},
            seed=seed,
        )

    def score_one(self, x: Mapping[str, float]) -> float:
        """Anomaly score in [0, 1]; 0 until a first window has been learned."""
        return self._score_known({k: x[k] for k in self.features if k in x})

    def learn_one(self, x: Mapping[str, float]) -> None:
        self._learn_known({k: x[k] for k in self.features if k in x})

    # The detector picks the known features once per call for both of these.
    def _score_known(self, known: dict[str, float]) -> float:
        return float(self._trees.score_one(self._scaler.transform_one(known)))

    def _learn_known(self, known: dict[str, float]) -> None:
        self._scaler.learn_one(known)
        self._trees.learn_one(self._scaler.transform_one(known))


class QuantileThreshold:
    """Turns scores into yes/no: a score is anomalous when above the ``q``-quantile.

    The quantile is river's streaming estimate (``stats.Quantile``) of all scores seen.

    Examples
    --------
    >>> threshold = QuantileThreshold(q=0.9)
    >>> for s in range(100):
    ...     threshold.update(s / 100)
    >>> threshold.classify(0.5), threshold.classify(0.95)
    (False, True)

    """

    def __init__(self, q: float = 0.99) -> None:
        check_in_range("q", q, 0.0, 1.0)
        self.q = q
        self._quantile = stats.Quantile(q)

    def classify(self, score: float) -> bool:
        threshold = self._quantile.get()
        # Strictly above: tree scores are coarse, and ties with the quantile are common.
        return threshold is not None and score > threshold

    def update(self, score: float) -> None:
        self._quantile.update(score)


class HalfSpaceTreesDetector(SignalDetector):
    """Per-call anomaly scores, reported when the share of anomalous calls jumps.

    Each call is scored by :class:`HalfSpaceTreesScorer` and judged by
    :class:`QuantileThreshold`; calls judged anomalous are not learned from. A single
    odd call is expected (``1 - q`` of calls are flagged by construction), so what is
    reported is a rise in the rate of flagged calls, found by ADWIN on the 0/1 flag.
    The last call's score and verdict are in ``last_score`` and ``last_anomalous``.

    Parameters
    ----------
    features
        Feature names to score on (e.g. log-latency, log-TTFT, log-tokens, log-cost).
    signal
        Name put in detections.
    q
        Quantile of the scores above which a call is anomalous.
    n_trees, height, window_size, seed
        See :class:`HalfSpaceTreesScorer`.
    delta
        ADWIN's significance level on the anomalous-call flag.
    warm_up
        Calls learned from before anything is reported (at least two tree windows).

    Examples
    --------
    Calls become slow *and* long at index 3000:

    >>> import random
    >>> rng = random.Random(5)
    >>> def call(shift):
    ...     return {"latency": rng.gauss(6 + shift, 0.4), "tokens": rng.gauss(5 + shift, 0.5)}
    >>> detector = HalfSpaceTreesDetector(["latency", "tokens"])
    >>> for i in range(4000):
    ...     if (d := detector.update(call(0.0 if i < 3000 else 1.0))) is not None:
    ...         print(d.index, round(d.before_mean, 2), round(d.after_level, 2))
    3066 0.02 0.28

    """

    name = "half_space_trees"

    def __init__(
        self,
        features: Sequence[str],
        *,
        signal: str = "anomaly",
        q: float = 0.99,
        n_trees: int = 5,
        height: int = 6,
        window_size: int = 250,
        seed: int = 0,
        delta: float = 0.002,
        warm_up: int = 1000,
    ) -> None:
        check_positive_int("warm_up", warm_up, minimum=2 * window_size)
        super().__init__(signal=signal, warm_up=warm_up)
        self._scorer = HalfSpaceTreesScorer(
            features, n_trees=n_trees, height=height, window_size=window_size, seed=seed
        )
        self._threshold = QuantileThreshold(q)
        self._rate = AdwinDetector(signal=signal, delta=delta, warm_up=0, direction="up")
        self.last_score = math.nan
        self.last_anomalous = False

    @property
    def params(self) -> dict[str, ParamValue]:
        scorer = self._scorer
        return {
            "features": ",".join(scorer.features),
            "q": self._threshold.q,
            "n_trees": scorer.n_trees,
            "height": scorer.height,
            "window_size": scorer.window_size,
            "seed": scorer.seed,
            "delta": self._rate.delta,
            "warm_up": self._warm_up,
        }

    def clone(self) -> Self:
        kwargs: dict[str, Any] = dict(self.params)
        features = str(kwargs.pop("features")).split(",")
        return type(self)(features, signal=self.signal, **kwargs)

    def update(self, x: Mapping[str, float]) -> Detection | None:
        """Score, judge and (if not anomalous) learn one call's features."""
        scorer = self._scorer
        # The finite values of the scorer's features, in its order (what it would pick).
        known = {k: v for k in scorer.features if k in x and _isfinite(v := x[k])}
        if not known and not any(_isfinite(v) for v in x.values()):
            return None  # no finite value at all
        self._n_seen += 1
        if self._n_seen <= scorer.window_size:
            # Scores are all 0 until the trees have learned a first window.
            scorer._learn_known(known)
            return None
        score = scorer._score_known(known)
        anomalous = self._threshold.classify(score)
        self.last_score, self.last_anomalous = score, anomalous
        self._threshold.update(score)
        if not anomalous:
            scorer._learn_known(known)
        detection = self._rate.update(float(anomalous))
        if detection is None or self._n_seen <= self._warm_up:
            return None
        return Detection(
            signal=self.signal,
            detector=self.name,
            score=score,
            params=self.params,
            before_mean=detection.before_mean,
            before_quantile=detection.before_quantile,
            after_level=detection.after_level,
            index=self._n_seen,
        )
