"""Alerting in the worker: rules over closed metric windows and detections, notifications.

Every alert transition is published to ``llm.alerts`` and written to ``llm_alerts``
(at least once: a transition stays in the checkpointed state until both have it) and handed
to the notifier, which delivers in the background. Engine and notifier state are
checkpointed as JSON (``alerts/engine``, ``alerts/notifier``) and validated on restore, so a
restart neither re-announces a firing alert nor loses a resolution (docs/alerting.md,
"In the worker").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from alerting.engine import AlertEngine, Clock, utc_now
from alerting.inputs import Detection, MetricWindow
from alerting.notification import Receiver
from alerting.notifier import Notifier
from alerting.receivers import build_receivers
from alerting.rules_file import RulesFile, load_default_rules, load_rules_file
from alerting.silences import SilenceStore
from alerting.state import AlertState, AlertTransition
from streams.alert_delivery import (
    CountingReceiver,
    PendingOutput,
    Publish,
    RowSink,
    StateStore,
    summed,
)
from streams.alert_inputs import detection_input, metric_window
from streams.metrics import MetricRecord
from streams.rows import alert_row

if TYPE_CHECKING:
    from streams.detections_stage import DetectionRecord

log = logging.getLogger(__name__)

ENGINE_STATE = "alerts/engine"
NOTIFIER_STATE = "alerts/notifier"
STATE_VERSION = 1
_RESTORE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, RuntimeError)


class AlertsStage:
    """Owns the worker's `AlertEngine` and `Notifier` and everything around them.

    Parameters
    ----------
    rules, receivers, silences
        The rules file, its receivers by name, and where silences are kept.
    checkpoints
        Where state is saved and restored from.
    publish
        Coroutine that sends one record (key, JSON bytes) to ``llm.alerts`` and waits for it.
    sink
        The ``llm_alerts`` sink.
    clock
        Wall clock (UTC) for rule timers and notification timing.
    tick_period_s, delivery_period_s, checkpoint_interval_s
        After `start`, how often rule timers run, the notifier looks for due groups, and
        state is saved (also right after any transition).
    """

    def __init__(
        self,
        rules: RulesFile,
        receivers: Mapping[str, Receiver],
        silences: SilenceStore,
        checkpoints: StateStore,
        publish: Publish,
        sink: RowSink,
        *,
        clock: Clock = utc_now,
        tick_period_s: float = 0.25,
        delivery_period_s: float = 0.2,
        checkpoint_interval_s: float = 5.0,
    ) -> None:
        self.rules = rules
        self.silences = silences
        self.checkpoints = checkpoints
        self.publish = publish
        self.sink = sink
        self.tick_period_s = tick_period_s
        self.delivery_period_s = delivery_period_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self._clock = clock
        self.receivers = {name: CountingReceiver(r) for name, r in receivers.items()}
        self.engine = AlertEngine(rules, clock=clock)
        self.notifier = self._new_notifier()
        self._outputs: list[PendingOutput] = []
        self.transitions: Counter[str] = Counter()
        self.published = 0
        self.publish_failures = 0
        self.partial_records_skipped = 0
        self.checkpoint_failures = 0
        self.restore_errors: list[str] = []
        self.last_checkpoint_wall: float | None = None
        self._last_checkpoint = time.monotonic()
        self._dirty = False
        self._delivery_lock = asyncio.Lock()
        self._outputs_lock = asyncio.Lock()
        self._checkpoint_lock = asyncio.Lock()
        self._wake_delivery = asyncio.Event()
        self._wake_outputs = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._restore_started = False
        # Inputs that arrive before state is restored wait for it: the engine restores only
        # into an engine that has seen nothing.
        self._early: list[MetricWindow | Detection] | None = []
        self._notifier_state: dict[str, Any] | None = None
        self._notifier_save: asyncio.Task[None] | None = None

    @classmethod
    def from_rules_file(
        cls,
        rules_file: str | Path | None,
        silences: SilenceStore,
        checkpoints: StateStore,
        publish: Publish,
        sink: RowSink,
        *,
        env: Mapping[str, str] | None = None,
        slack_base_url: str | None = None,
        **options: Any,
    ) -> AlertsStage:
        """Build from a rules file (None: the shipped defaults), secrets from ``env``.

        Raises `alerting.rules_file.RulesError` for an invalid file and
        `alerting.notify_config.MissingSecretError` for a required receiver whose
        environment variable is unset.
        """
        rules = load_default_rules() if rules_file is None else load_rules_file(rules_file)
        receivers = build_receivers(rules, env=env, slack_base_url=slack_base_url)
        return cls(rules, receivers, silences, checkpoints, publish, sink, **options)

    def _new_notifier(self) -> Notifier:
        return Notifier(
            self.rules, self.receivers, self.silences, clock=self._clock,
            checkpoint=self._save_notifier,
        )  # fmt: skip

    # -- inputs ----------------------------------------------------------------------------
    def observe_metric(self, record: MetricRecord) -> None:
        """Evaluate the rules on one closed window; partial (live) records are skipped."""
        if record.closed_by is None:
            self.partial_records_skipped += 1
            return
        self._observe(metric_window(record))

    def observe_detection(self, record: DetectionRecord) -> None:
        self._observe(detection_input(record))

    def _observe(self, item: MetricWindow | Detection) -> None:
        if self._early is not None:
            self._early.append(item)
        elif isinstance(item, MetricWindow):
            self._accept(self.engine.observe_metrics(item))
        else:
            self._accept(self.engine.observe_detection(item))

    def _accept(self, transitions: Iterable[AlertTransition]) -> None:
        accepted = False
        for transition in transitions:
            self.notifier.ingest(transition)
            self._outputs.append(PendingOutput(transition))
            self.transitions[transition.state.value] += 1
            accepted = True
        if accepted:
            self._dirty = True
            self._wake_delivery.set()
            self._wake_outputs.set()

    # -- steps -----------------------------------------------------------------------------
    async def tick(self) -> list[AlertTransition]:
        """Run rule timers; without background tasks, also deliver, publish and checkpoint."""
        transitions = self.engine.tick()
        self._accept(transitions)
        if not self._tasks:
            await self.deliver()
            await self.flush_outputs()
            await self._checkpoint_if_due()
            await self._notifier_saved()
        return transitions

    async def deliver(self) -> int:
        """One notifier step (flush due groups, send what pacing allows); messages sent.

        Returns 0 at once if a step is already running, so a slow Slack never stalls a caller.
        """
        if self._delivery_lock.locked():
            return 0
        async with self._delivery_lock:
            return await self.notifier.tick()

    async def flush_outputs(self) -> None:
        """Queue rows for ``llm_alerts`` and publish to ``llm.alerts``, in transition order."""
        async with self._outputs_lock:
            for output in list(self._outputs):
                if not output.row_queued:
                    await self.sink.add(alert_row(output.transition), output)
                    output.row_queued = True
            for output in list(self._outputs):
                if output.published:
                    continue
                transition = output.transition
                try:
                    await self.publish(
                        transition.fingerprint.encode(), orjson.dumps(transition.to_dict())
                    )
                except Exception:
                    self.publish_failures += 1
                    log.exception("alert transition not published; retrying later")
                    break
                output.published = True
                self.published += 1
            self._outputs = [output for output in self._outputs if not output.done]

    async def checkpoint(self) -> None:
        """Save notifier state, then engine state with the outputs not yet published/stored.

        The notifier goes first: if the engine save then fails, the engine re-derives
        transitions the notifier already knows, and the notifier ignores them.
        """
        async with self._checkpoint_lock:
            engine = {
                "version": STATE_VERSION,
                "engine": self.engine.snapshot(),
                "outputs": [output.to_dict() for output in self._outputs],
            }
            dirty, self._dirty = self._dirty, False
            try:
                await self.checkpoints.save(NOTIFIER_STATE, orjson.dumps(self.notifier.snapshot()))
                await self.checkpoints.save(ENGINE_STATE, orjson.dumps(engine))
            except Exception:
                self._dirty = self._dirty or dirty
                self.checkpoint_failures += 1
                log.exception("alert state checkpoint failed; retrying later")
                return
            self._last_checkpoint = time.monotonic()
            self.last_checkpoint_wall = time.time()

    async def _checkpoint_if_due(self) -> None:
        if self._dirty or time.monotonic() - self._last_checkpoint >= self.checkpoint_interval_s:
            await self.checkpoint()

    async def _save_notifier(self, state: dict[str, Any]) -> None:
        # The notifier calls this right after each accepted message, to keep the
        # resend-after-crash gap small. The save runs beside delivery, not in its way: a
        # slow state topic must not hold back Slack. Saves in a burst coalesce.
        self._notifier_state = state
        if self._notifier_save is None or self._notifier_save.done():
            self._notifier_save = asyncio.create_task(self._write_notifier_state())

    async def _write_notifier_state(self) -> None:
        async with self._checkpoint_lock:
            while self._notifier_state is not None:
                state, self._notifier_state = self._notifier_state, None
                try:
                    await self.checkpoints.save(NOTIFIER_STATE, orjson.dumps(state))
                except Exception:
                    self.checkpoint_failures += 1
                    log.exception("notifier state checkpoint failed")

    async def _notifier_saved(self) -> None:
        if self._notifier_save is not None:
            await asyncio.shield(self._notifier_save)

    # -- lifecycle -------------------------------------------------------------------------
    async def restore(self) -> None:
        """Load saved state (validated); what cannot be restored starts fresh, and says so."""
        if self._restore_started:
            return
        self._restore_started = True
        saved = await self.checkpoints.load([ENGINE_STATE, NOTIFIER_STATE])
        now = self._clock()
        if NOTIFIER_STATE in saved:
            try:
                self.notifier.restore(orjson.loads(saved[NOTIFIER_STATE]))
            except _RESTORE_ERRORS as exc:
                self._restore_failed(NOTIFIER_STATE, exc)
                self.notifier = self._new_notifier()
        if ENGINE_STATE in saved:
            try:
                data = orjson.loads(saved[ENGINE_STATE])
                if data.get("version") != STATE_VERSION:
                    raise ValueError(f"version {data.get('version')!r} is not {STATE_VERSION}")
                outputs = [PendingOutput.from_dict(item) for item in data["outputs"]]
                orphans = self.engine.restore(data["engine"], now)
            except _RESTORE_ERRORS as exc:
                self._restore_failed(ENGINE_STATE, exc)
                self.engine = AlertEngine(self.rules, clock=self._clock)
            else:
                self._outputs = outputs + self._outputs
                for output in outputs:  # the notifier ignores what it already has
                    self.notifier.ingest(output.transition)
                self._accept(orphans)
        self.engine.resume(now)
        early, self._early = self._early or [], None
        for item in early:
            self._observe(item)

    def _restore_failed(self, name: str, exc: BaseException) -> None:
        message = f"{name}: {type(exc).__name__}: {str(exc)[:300]}"
        self.restore_errors.append(message)
        log.error("alert state %s cannot be restored, starting fresh: %s", name, message)

    async def start(self, background: bool = True) -> None:
        """Restore state, then (``background``) run timers, delivery and outputs as tasks."""
        await self.restore()
        if background and not self._tasks:
            self._stopping.clear()
            self._tasks = [
                asyncio.create_task(self._loop(self._tick_step, None, self.tick_period_s)),
                asyncio.create_task(
                    self._loop(self.deliver, self._wake_delivery, self.delivery_period_s)
                ),
                asyncio.create_task(self._loop(self._outputs_step, self._wake_outputs, 1.0)),
            ]

    async def stop(self, grace_s: float = 10.0) -> None:
        """Let the background steps finish, publish and store what is pending, save state."""
        self._stopping.set()
        self._wake_delivery.set()
        self._wake_outputs.set()
        if self._tasks:
            _, running = await asyncio.wait(self._tasks, timeout=grace_s)
            for task in running:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
        # Each step is bounded; what does not finish stays in the saved state for next time.
        for step in (self.flush_outputs, self.sink.flush, self.flush_outputs, self._notifier_saved):
            try:
                await asyncio.wait_for(step(), grace_s)
            except TimeoutError:
                log.warning("alerts: %s did not finish in %.0fs", step.__name__, grace_s)
        try:
            await asyncio.wait_for(self.checkpoint(), grace_s)
        except TimeoutError:
            log.error("alerts: final checkpoint did not finish in %.0fs", grace_s)

    async def _tick_step(self) -> None:
        self._accept(self.engine.tick())

    async def _outputs_step(self) -> None:
        await self.flush_outputs()
        await self._checkpoint_if_due()

    async def _loop(
        self, step: Callable[[], Awaitable[Any]], wake: asyncio.Event | None, period: float
    ) -> None:
        waiter = wake if wake is not None else self._stopping
        while not self._stopping.is_set():
            if wake is not None:
                wake.clear()  # a wake-up set during the step runs it again at once
            try:
                await step()
            except Exception:
                log.exception("alerts step %s failed; retrying", getattr(step, "__name__", step))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), period)

    # -- health ----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        instances = Counter(inst.state.value for inst in self.engine.instances())
        stats = {name: r.stats for name, r in self.receivers.items()}
        slack = [s for s in stats.values() if s.kind == "slack"]
        now = self._clock()
        return {
            "rules": sum(len(group.rules) for group in self.rules.groups),
            "instances": {state.value: instances.get(state.value, 0) for state in AlertState},
            "transitions": dict(self.transitions),
            "published": self.published,
            "publish_failures": self.publish_failures,
            "outputs_pending": len(self._outputs),
            "partial_records_skipped": self.partial_records_skipped,
            "notifications": {
                "sent": sum(s.sent for s in stats.values()),
                "failed": sum(s.failed for s in stats.values()),
                "queued": self.notifier.queued,
                "dead_letters": len(self.notifier.dead_letters),
            },
            "receivers": {name: s.to_dict() for name, s in stats.items()},
            "slack": summed(slack),
            "silences_active": sum(s.active(now) for s in self.silences.silences()),
            "checkpoint_age_s": (
                None
                if self.last_checkpoint_wall is None
                else round(time.time() - self.last_checkpoint_wall, 3)
            ),
            "checkpoint_failures": self.checkpoint_failures,
            "restore_errors": list(self.restore_errors),
        }
