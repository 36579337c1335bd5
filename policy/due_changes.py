"""A row's next due as the audit tells it: `tracked` gives the first, `scheduled` each move.

`stage_due` is the due of the row's next stage (re-issues aside; None when nothing is pending
or the subject is held), `due_change` says whether a change of the row or its subject moved
it, working a due out only when what it depends on changed, and `next_purposes` names the
purposes of the stages falling due then. The driver (`policy.driver`) records each move in
its outcome (`Outcome.dues`).
"""

from __future__ import annotations

from policy.engine import Engine, subject_activity, upcoming_due
from policy.instants import Instant
from policy.state import RowState, SubjectState


def stage_due(engine: Engine, row: RowState, subject: SubjectState | None) -> Instant | None:
    """When the row's next stage falls due, its re-issues aside (what the audit calls its
    next due); None when nothing is pending or its subject is held."""
    if subject is not None and subject.holds:
        return None
    return upcoming_due(engine.plans[row.table], row, subject)


def due_change(
    engine: Engine,
    before: RowState,
    before_subject: SubjectState | None,
    after: RowState,
    after_subject: SubjectState | None,
) -> tuple[Instant | None, Instant | None] | None:
    """(previous, next) `stage_due` of a row whose state or subject state changed from
    `before` to `after`; None when its next due stayed the same. Works a due out only when
    what it is worked out from changed (the columns the rules read, the stages issued, the
    subject's activity for rows whose clocks read it, whether the subject is held)."""
    plan = engine.plans[after.table]
    held_before = before_subject is not None and bool(before_subject.holds)
    held_after = after_subject is not None and bool(after_subject.holds)
    same = (
        before.values == after.values
        and before.issued == after.issued
        and (
            not plan.reads_activity
            or subject_activity(before_subject) == subject_activity(after_subject)
        )
    )
    if same and held_before == held_after:
        return None
    upcoming = None if held_after else upcoming_due(plan, after, after_subject)
    if held_before:
        previous = None
    elif same and not held_after:
        previous = upcoming
    else:
        previous = upcoming_due(plan, before, before_subject)
    return None if previous == upcoming else (previous, upcoming)


def next_purposes(
    engine: Engine, row: RowState, subject: SubjectState | None, at: Instant
) -> tuple[str, ...]:
    """The purposes of the row's stages not issued yet that fall due at `at` (its next due),
    in the order of its rules."""
    plan = engine.plans[row.table]
    activity = subject_activity(subject) if plan.reads_activity else subject_activity(None)
    stages, _ = plan.stages(row.values, activity, row.issued)
    named = {purpose for stage in stages if stage[0] == at for purpose in stage[3]}
    return tuple(purpose for purpose in plan.purposes if purpose in named)
