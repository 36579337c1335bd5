"""Confirmation and re-issue of the commands a row's stages sent (pure, as `policy.engine`).

Every anonymise and delete command the engine issues is kept in the row state as
`Unconfirmed` until the change stream shows it applied: the row's delete event confirms every
unconfirmed command of the row; a change event whose image holds, in every column an
anonymise command empties, coarsens, buckets or sets to a constant, exactly the value the
command writes (`policy.anonymise`) confirms that command. Archive is never kept. With
`Engine.confirm_after` = T set, a command still unconfirmed is sent again with the same id T
after it was sent, then 2T, 4T, 8T after the send before, and every 16T after that
(`reissue_due`). `policy.engine` calls these from `apply` and `due`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from policy.anonymise import anonymise_value, method_for
from policy.events import ChangeEvent, Op, Value
from policy.instants import EPOCH, EPOCH_ORDINAL, US_PER_DAY, Instant, from_datetime
from policy.model import Action, Bucket, Coarsen
from policy.plans import DELETE_STAGE, Engine, SourcePlan
from policy.state import Command, Confirmation, RowState, StateValue, Unconfirmed

NO_CONFIRMATIONS: Final[tuple[Confirmation, ...]] = ()
BACKOFF_CAP: Final = 16
"""Re-issues wait T, 2T, 4T, 8T, then 16T each (T: `Engine.confirm_after`)."""
_ENDED_PREFIX: Final = "ended:"
_ANONYMISE_PREFIX: Final = "anonymise:"
_DELETE_OP: Final = Op.DELETE
_NO_IMAGE: Final[Mapping[str, Value]] = MappingProxyType({})
_PLAIN_TYPES: Final = (str, bool, int, float)


def state_value(value: Value) -> StateValue:
    """A column value as the row state keeps it (instants as µs since the epoch)."""
    if value is None or isinstance(value, _PLAIN_TYPES):
        return value
    if isinstance(value, datetime):
        return from_datetime(value)
    if isinstance(value, date):
        return (value.toordinal() - EPOCH_ORDINAL) * US_PER_DAY
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return None


def reissue_due(confirm_after: int, unconfirmed: Unconfirmed) -> Instant:
    """When the command is sent again if still unconfirmed: `confirm_after` (T) after it was
    first sent, then 2T, 4T, 8T after the send before, and 16T after each send from then on."""
    backoff = min(1 << min(unconfirmed.attempts - 1, 8), BACKOFF_CAP)
    return unconfirmed.sent_at + confirm_after * backoff


def next_reissue(engine: Engine, unconfirmed: tuple[Unconfirmed, ...]) -> Instant | None:
    confirm_after = engine.confirm_after
    if confirm_after is None or not unconfirmed:
        return None
    return min(reissue_due(confirm_after, entry) for entry in unconfirmed)


def earliest(first: Instant | None, second: Instant | None) -> Instant | None:
    if first is None:
        return second
    if second is None or first <= second:
        return first
    return second


def reissue(
    engine: Engine,
    plan: SourcePlan,
    row: RowState,
    now: Instant,
    sent_at: Instant,
    commands: list[Command],
) -> tuple[Unconfirmed, ...]:
    """Append the re-issues due by `now`, sent at `sent_at`, to `commands`; return the
    unconfirmed commands after them."""
    confirm_after = engine.confirm_after
    assert confirm_after is not None
    kept: list[Unconfirmed] = []
    for entry in row.unconfirmed:
        if reissue_due(confirm_after, entry) <= now:
            attempts = entry.attempts + 1
            commands.append(sent(plan, row, entry, attempts, sent_at))
            entry = replace(entry, attempts=attempts, sent_at=sent_at)
        kept.append(entry)
    return tuple(kept)


def awaiting(
    unconfirmed: tuple[Unconfirmed, ...], commands: list[Command], sent_at: Instant
) -> tuple[Unconfirmed, ...]:
    """The unconfirmed commands once `commands` (first sends) are sent at `sent_at`: archive
    needs no confirmation."""
    sent = [
        Unconfirmed(c.stage, c.due_at, c.issued_at, 1, sent_at, c.fields)
        for c in commands
        if c.action is not Action.ARCHIVE
    ]
    if not sent:
        return unconfirmed
    stages = {entry.stage for entry in sent}
    return tuple(entry for entry in unconfirmed if entry.stage not in stages) + tuple(sent)


def sent(
    plan: SourcePlan,
    row: RowState,
    entry: Unconfirmed,
    attempt: int = 1,
    reissued_at: Instant | None = None,
) -> Command:
    """The command `entry` records, as the row's stage issued it (the `attempt`-th send)."""
    return Command(
        entry.issued_at,
        entry.due_at,
        Action.DELETE if entry.stage == DELETE_STAGE else Action.ANONYMISE,
        entry.stage,
        row.table,
        row.key,
        row.subject,
        stage_purposes(plan, entry.stage),
        entry.fields,
        attempt,
        reissued_at,
    )


def stage_purposes(plan: SourcePlan, stage: str) -> tuple[str, ...]:
    """The purposes a stage id names, in the order of the source's rules."""
    if stage == DELETE_STAGE:
        return plan.purposes
    if stage.startswith(_ENDED_PREFIX):
        ended = set(stage[len(_ENDED_PREFIX) :].split(","))
        return tuple(purpose for purpose in plan.purposes if purpose in ended)
    return (stage[len(_ANONYMISE_PREFIX) :].rsplit(":", 1)[0],)


def confirmed_by(engine: Engine, row: RowState, event: ChangeEvent) -> tuple[Confirmation, ...]:
    """The row's unconfirmed commands that `event` (a change of this row) shows applied."""
    if not row.unconfirmed:
        return NO_CONFIRMATIONS
    deleting = event.op is _DELETE_OP
    image = None if deleting else (event.after or _NO_IMAGE)
    return confirm(engine, engine.plans[row.table], row, image, event.ts)[1]


def confirm(
    engine: Engine,
    plan: SourcePlan,
    row: RowState,
    image: Mapping[str, Value] | None,
    now: Instant,
) -> tuple[tuple[Unconfirmed, ...], tuple[Confirmation, ...]]:
    """(still unconfirmed, confirmed) after a change of the row: its delete (`image` None)
    confirms them all, an image holding an anonymise command's values confirms that one."""
    kept: list[Unconfirmed] = []
    confirmed: list[Confirmation] = []
    for entry in row.unconfirmed:
        command = sent(plan, row, entry)
        if image is None or (
            command.action is Action.ANONYMISE
            and shows_anonymised(engine, command, row.values, image)
        ):
            confirmed.append(Confirmation(command, now, entry.attempts))
        else:
            kept.append(entry)
    if not confirmed:
        return row.unconfirmed, NO_CONFIRMATIONS
    return tuple(kept), tuple(confirmed)


def shows_anonymised(
    engine: Engine, command: Command, kept: Mapping[str, StateValue], image: Mapping[str, Value]
) -> bool:
    """Whether every column of the anonymise command holds what the command writes: the
    coarsened or bucketed value of the one the row state kept, else a value the method
    leaves as it is (null for empty, the constant)."""
    for column in command.fields:
        if column not in image:
            return False
        value = image[column]
        method = method_for(engine.policy, command, column)
        original = kept.get(column)
        if isinstance(method, Coarsen | Bucket) and original is not None:
            if isinstance(method, Coarsen) and type(original) is int:
                before: Value = EPOCH + timedelta(microseconds=original)
            else:
                before = original
            if state_value(anonymise_value(method, before)) != state_value(value):
                return False
        elif anonymise_value(method, value) != value:
            return False
    return True
