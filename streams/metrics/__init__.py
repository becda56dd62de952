"""Rolling call metrics per key and event-time window: the Kafka-free core.

The worker keeps a `MetricsAggregator` per input partition in a `PartitionedMetrics`,
feeds it calls and feedback, and publishes the `MetricRecord` values that
`PartitionedMetrics.close_due` returns (one per key and window).
"""

from __future__ import annotations

from streams.metrics.config import DEFAULT_KEY_SETS, DIMENSIONS, MetricsConfig, key_set_name
from streams.metrics.events import CallEvent, FeedbackEvent
from streams.metrics.partitioned import PartitionedMetrics
from streams.metrics.pricing import ModelPrice, PricingError, PricingTable, normalise_model_name
from streams.metrics.quantiles import QuantileEstimator
from streams.metrics.record import MetricRecord
from streams.metrics.state import MetricsStateError
from streams.metrics.windows import MetricsAggregator

__all__ = [
    "DEFAULT_KEY_SETS",
    "DIMENSIONS",
    "CallEvent",
    "FeedbackEvent",
    "MetricRecord",
    "MetricsAggregator",
    "MetricsConfig",
    "MetricsStateError",
    "ModelPrice",
    "PartitionedMetrics",
    "PricingError",
    "PricingTable",
    "QuantileEstimator",
    "key_set_name",
    "normalise_model_name",
]
