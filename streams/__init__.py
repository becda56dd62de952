"""llmpulse workers: the faust app, its agents and the ClickHouse sink."""
