"""The channel pipeline, sans-I/O: raw message → filters → transformers → what to deliver where.

Used by the runner (then recorded in the message store) and by ``ehrgate channel test`` (printed,
nothing delivered). A step that raises puts the message in ERROR with the step named; it is not
retried (steps are deterministic), but can be reprocessed after the channel is fixed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..fhir import jsonio  # exact decimals survive (json.dumps cannot write Decimal)
from ..hl7 import HL7Error, parse
from .config import ChannelConfig
from .errors import StepError
from .steps import ResolvedStep, Work, resolve_steps
from .tracing import StepRun

__all__ = ["Output", "Pipeline", "PipelineResult"]


@dataclass
class Output:
    """One message that leaves the pipeline, with its destinations."""

    raw: bytes
    destinations: list[str]
    bundle: bytes | None = None
    msg_type: str = ""
    control_id: str = ""
    sender: str = ""
    patient_ids: tuple[str, ...] = ()


@dataclass
class PipelineResult:
    status: str  # FILTERED | QUEUED | TRANSFORMED (split) | ERROR
    outputs: list[Output] = field(default_factory=list)
    error: str | None = None
    stages: list[tuple[str, str]] = field(default_factory=list)
    """(label, ER7 text or a note) after each step - what ``channel test`` prints."""


def _kind(msg: Any) -> str:
    return msg.message_type + ("^" + msg.trigger_event if msg.trigger_event else "")


class Pipeline:
    def __init__(self, cfg: ChannelConfig) -> None:
        self.cfg = cfg
        self.filters, self.transformers = resolve_steps(cfg)
        self.destinations = [d.name for d in cfg.destinations]

    def run(self, raw: bytes, *, trace: bool = False, message_id: int | None = None,
            received_at: int | None = None, on_step: Callable[[StepRun], Any] | None = None) -> PipelineResult:
        """``trace``: keep each stage's text (``channel test``); ``on_step``: called with a ``StepRun``
        (times, outputs, problem) after each step (the step spans of tracing)."""
        stages: list[tuple[str, str]] = []
        try:
            msg = parse(raw)
        except HL7Error as exc:
            return PipelineResult("ERROR", error=f"Message cannot be parsed: {exc.message}", stages=stages)
        works = [Work(msg, channel=self.cfg.name, message_id=message_id, received_at=received_at)]
        if trace:
            stages.append(("received", msg.to_er7()))
        for kind, steps in (("filter", self.filters), ("transform", self.transformers)):
            for n, step in enumerate(steps, start=1):
                start_ns = time.time_ns() if on_step is not None else 0
                works, problem = self._apply(step, works)
                if on_step is not None:
                    on_step(StepRun(kind, n, step.label, start_ns, time.time_ns(), len(works), problem))
                label = f"{kind} {n} ({step.label})"
                if problem:
                    return PipelineResult("ERROR", error=f"{label} failed: {problem}", stages=stages)
                if trace:
                    stages.append((label, "\n".join(w.message.to_er7() for w in works) if works else "(filtered out)"))
                if not works:
                    return PipelineResult("FILTERED", error=f"Filtered out by {label}", stages=stages)
        outputs = []
        texts = []  # trace: each output as text (its bytes are in its own MSH-18 character set)
        for w in works:
            dests = self.destinations if w.destinations is None else [d for d in self.destinations
                                                                      if d in w.destinations]
            try:
                body = w.message.to_bytes()
            except HL7Error as exc:
                return PipelineResult("ERROR", error=f"Transformed message cannot be encoded: {exc.message}",
                                      stages=stages)
            ids = tuple(dict.fromkeys(p.value[:128] for p in w.message.patient_identifiers if p.value))
            sender = w.message.sending_application + (
                "^" + w.message.sending_facility if w.message.sending_facility else "")
            outputs.append(Output(body, dests, jsonio.dumps(w.bundle) if w.bundle is not None else None,
                                  _kind(w.message)[:40], w.message.control_id[:64], sender[:128], ids))
            if trace:
                texts.append(w.message.to_er7())
        if trace:
            for i, (o, text) in enumerate(zip(outputs, texts, strict=True), start=1):
                stages.append((f"output {i} → {', '.join(o.destinations) or '(no destination)'}", text))
                if o.bundle is not None:
                    stages.append((f"output {i} FHIR bundle", o.bundle.decode()))
        if len(outputs) == 1 and not outputs[0].destinations:
            return PipelineResult("FILTERED", outputs, "No destination matched", stages)
        return PipelineResult("QUEUED" if len(outputs) == 1 else "TRANSFORMED", outputs, None, stages)

    @staticmethod
    def _apply(step: ResolvedStep, works: list[Work]) -> tuple[list[Work], str | None]:
        out: list[Work] = []
        for w in works:
            try:
                out.extend(step.run(w))
            except (StepError, HL7Error) as exc:
                return [], exc.message
            except Exception as exc:  # noqa: BLE001 - a user function's bug is this message's error
                return [], f"{type(exc).__name__}: {exc}"
        return out, None
