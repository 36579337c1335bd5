"""Send what the enforcer's driver decided for one record: each command's records, the audit
records of the outcome, and the counters and histograms of issued, re-issued and confirmed
commands (docs/metrics.md). Everything goes through the worker's producer (`Outputs`) and is
delivered before `issue` returns, so the consumer commits the record only after that."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from faust.types import Message

from lethe.agents.outputs import Outputs
from lethe.faust_store import FaustStore
from lethe.metrics import ACTIONS, Children, WorkerMetrics
from policy import audit
from policy.command_records import records_for
from policy.driver import Outcome
from policy.engine import Engine
from policy.envelope import rejection_of_bug
from policy.outcome_audit import Where, outcome_audits
from policy.sink_records import OutboundRecord, Refusal
from policy.state import Command

log = logging.getLogger("lethe.agents.enforce")


class Issuer:
    """The enforcer's output of commands and audit records, with their metrics."""

    def __init__(
        self,
        engine: Engine,
        store: FaustStore,
        out: Outputs,
        metrics: WorkerMetrics,
        audit_hash_key: bytes,
    ) -> None:
        self.engine = engine
        self.store = store
        self.out = out
        self.audit_hash_key = audit_hash_key
        self.due_to_issued = Children(metrics.due_to_issued)
        self.issued_to_confirmed = Children(metrics.issued_to_confirmed)
        self.issued = Children(metrics.commands_issued)
        self.reissued = Children(metrics.commands_reissued)
        self.confirmed = Children(metrics.commands_confirmed)
        for table in engine.plans:  # at 0 from the start: a rate sees the first command
            for action in ACTIONS:
                for children in (
                    self.issued,
                    self.reissued,
                    self.confirmed,
                    self.due_to_issued,
                    self.issued_to_confirmed,
                ):
                    children(table, action)

    async def issue(
        self, outcome: Outcome, letter: Callable[[], Message], where: Where | None
    ) -> None:
        """Send each command's records and the outcome's audit records, and wait until the
        broker has them all; a refused command's dead letter holds the record `letter()`."""
        hash_key = self.audit_hash_key
        sent: list[tuple[Command, list[tuple[OutboundRecord, Any]]]] = []
        audits: list[audit.AuditRecord] = []
        for command in outcome.commands:
            try:
                row = self.store.row((command.subject, command.table, command.key))
                records = records_for(
                    self.engine.policy, command, row.values if row is not None else {}
                )
            except Exception as exc:
                log.exception("Building the records of command %s failed", command.command_id)
                bug = rejection_of_bug(exc, command.table)
                await self.out.refuse(command, bug.reason.value, bug.detail, letter())
                continue
            if isinstance(records, Refusal):
                await self.out.refuse(command, records.reason.value, records.detail, letter())
                continue
            sent.append((command, [(record, await self.out.send(record)) for record in records]))
            if command.reissued_at is None:
                audits.append(audit.issued(command, hash_key=hash_key))
            else:
                audits.append(audit.reissued(command, at=command.reissued_at, hash_key=hash_key))
        audits += outcome_audits(outcome, where, hash_key)
        audited = [await self.out.send_audit(record) for record in audits]
        for command, deliveries in sent:
            for record, pending in deliveries:
                await self.out.delivered(
                    pending, self.out.topic(record.topic), record.key, record.value
                )
            labels = (command.table, command.action.value)
            if command.reissued_at is None:
                self.issued(*labels).inc()
                self.due_to_issued(*labels).observe(
                    max(0, command.issued_at - command.due_at) / 1e6
                )
                log.info(
                    "issued %s %s command_id=%s",
                    command.action.value,
                    command.table,
                    command.command_id,
                )
            else:
                self.reissued(*labels).inc()
                log.warning(
                    "reissued %s %s command_id=%s attempt=%d: not confirmed yet",
                    command.action.value,
                    command.table,
                    command.command_id,
                    command.attempt,
                )
        for key, value, pending in audited:
            await self.out.delivered(pending, self.out.audit, key, value)
        for confirmation in outcome.confirmations:
            command = confirmation.command
            self.confirmed(command.table, command.action.value).inc()
            self.issued_to_confirmed(command.table, command.action.value).observe(
                max(0, confirmation.at - command.issued_at) / 1e6
            )
            log.info(
                "confirmed %s %s command_id=%s",
                command.action.value,
                command.table,
                command.command_id,
            )
