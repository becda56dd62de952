"""River's namespaces typed as ``Any``: river ships ``py.typed`` but most of it is unannotated."""

from __future__ import annotations

from typing import Any

import river.anomaly
import river.drift
import river.drift.binary
import river.preprocessing
import river.stats

anomaly: Any = river.anomaly
drift: Any = river.drift
binary: Any = river.drift.binary
preprocessing: Any = river.preprocessing
stats: Any = river.stats
