"""The audit records of what one driver call decided, beyond its commands.

`outcome_audits(outcome, where, hash_key)`: a `confirmed` record per confirmation (proved by
the change record at `where`: topic, partition, offset), `held`/`released` per legal hold
opened or closed, and `tracked`/`scheduled` per row the outcome stored or whose next due it
moved, in the order the driver decided them. The `issued`/`reissued` records are the
caller's: only a command actually sent (not refused as unsafe) gets one.
"""

from __future__ import annotations

from policy import audit
from policy.driver import Outcome

Where = tuple[str, int, int]
"""(topic, partition, offset) of the change record being processed."""


def outcome_audits(
    outcome: Outcome, where: Where | None, hash_key: bytes
) -> list[audit.AuditRecord]:
    """The outcome's confirmations, holds and due changes as audit records (see module)."""
    return _confirmed_and_holds(outcome, where, hash_key) + _schedule_audits(outcome, hash_key)


def _confirmed_and_holds(
    outcome: Outcome, where: Where | None, hash_key: bytes
) -> list[audit.AuditRecord]:
    """The audit records of the outcome's confirmations (proved by the change record at
    `where`) and of the legal holds it opened or released."""
    topic, partition, offset = where if where is not None else (None, None, None)
    records = [
        audit.confirmed(
            command_id=confirmation.command.command_id,
            table=confirmation.command.table,
            key=confirmation.command.key,
            subject=confirmation.command.subject,
            at=confirmation.at,
            hash_key=hash_key,
            stage=confirmation.command.stage,
            action=confirmation.command.action,
            topic=topic,
            partition=partition,
            offset=offset,
        )
        for confirmation in outcome.confirmations
    ]
    for hold in outcome.holds:
        change = audit.held if hold.opened else audit.released
        records.append(
            change(table=hold.table, key=hold.key, subject=hold.subject, at=hold.at,
                   hash_key=hash_key)
        )  # fmt: skip
    return records


def _schedule_audits(outcome: Outcome, hash_key: bytes) -> list[audit.AuditRecord]:
    """The audit records of the rows the outcome stored (`tracked`) and whose next due it
    moved (`scheduled`), in the order the driver decided them."""
    records = []
    for change in outcome.dues:
        if change.first:
            records.append(
                audit.tracked(table=change.table, key=change.key, subject=change.subject,
                              purposes=change.purposes, next_due=change.due, at=change.at,
                              hash_key=hash_key)
            )  # fmt: skip
        else:
            records.append(
                audit.scheduled(table=change.table, key=change.key, subject=change.subject,
                                next_due=change.due, previous_due=change.previous, at=change.at,
                                hash_key=hash_key, purposes=change.purposes)
            )  # fmt: skip
    return records
