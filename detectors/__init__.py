"""Online change and anomaly detection on per-key LLM call signals (pure statistics, river)."""

from __future__ import annotations

from detectors.adwin import AdwinDetector
from detectors.base import BaselineStats, ChangeDetector, UnivariateDetector
from detectors.binary_rate import BinaryRateDetector
from detectors.detection import Detection, ParamValue
from detectors.features import extract_features
from detectors.half_space_trees import (
    HalfSpaceTreesDetector,
    HalfSpaceTreesScorer,
    QuantileThreshold,
)
from detectors.key_detectors import DetectorConfig, KeyDetectors, SignalConfig, default_signals
from detectors.kswin import KswinDetector
from detectors.new_value import NewValueDetector
from detectors.page_hinkley import StandardizedPageHinkley

__all__ = [
    "AdwinDetector",
    "BaselineStats",
    "BinaryRateDetector",
    "ChangeDetector",
    "Detection",
    "DetectorConfig",
    "HalfSpaceTreesDetector",
    "HalfSpaceTreesScorer",
    "KeyDetectors",
    "KswinDetector",
    "NewValueDetector",
    "ParamValue",
    "QuantileThreshold",
    "SignalConfig",
    "StandardizedPageHinkley",
    "UnivariateDetector",
    "default_signals",
    "extract_features",
]
