"""What applying one change event decided (`Step`), and how the engine builds one cheaply.

`Step` is a frozen dataclass; `make_step` fills one without the frozen dataclass's
per-field `object.__setattr__`, which the engine would otherwise pay on every event.
"""

from __future__ import annotations

from dataclasses import dataclass

from policy.confirmation import NO_CONFIRMATIONS
from policy.instants import Instant
from policy.state import Confirmation, RowState, SubjectState


@dataclass(frozen=True, slots=True)
class Step:
    """The result of applying one change event."""

    row: RowState | None
    """The new row state; None when the row is gone (op d) or its table keeps no state."""
    subject: SubjectState | None
    """The new subject state; None for a row without subject."""
    next_due: Instant | None
    """When the row's next stage falls due; None: nothing pending (or the subject is held)."""
    reevaluate_subject: bool
    """The subject's activity or holds changed: re-arm its other rows with `next_due`."""
    subject_key: str | None
    """The subject the row belongs to now (`customer:42`), or None."""
    holds_changed: bool = False
    """The subject's open holds changed (a hold placed or released): re-arm every row of
    the subject, not only those reading its activity."""
    moved: bool = False
    """The event moved the row to another subject (from or to none included): the driver
    deletes the row's state under its old key, (`left_subject`, table, key)."""
    left_subject: str | None = None
    """The subject the row belonged to before it moved (None: it had none, or did not move)."""
    left_state: SubjectState | None = None
    """The new state of `left_subject` (a hold the row was is released there)."""
    reevaluate_left: bool = False
    """`left_subject`'s holds changed: re-arm its rows with `next_due`."""
    confirmed: tuple[Confirmation, ...] = ()
    """The row's unconfirmed commands this event shows applied."""


_new = object.__new__
(
    _set_step_row,
    _set_step_subject,
    _set_step_due,
    _set_step_reevaluate,
    _set_step_key,
    _set_step_holds_changed,
    _set_step_moved,
    _set_step_left,
    _set_step_left_state,
    _set_step_reevaluate_left,
    _set_step_confirmed,
) = (
    Step.__dict__[name].__set__
    for name in (
        "row",
        "subject",
        "next_due",
        "reevaluate_subject",
        "subject_key",
        "holds_changed",
        "moved",
        "left_subject",
        "left_state",
        "reevaluate_left",
        "confirmed",
    )
)


def make_step(
    row: RowState | None,
    subject: SubjectState | None,
    upcoming: Instant | None,
    reevaluate: bool,
    subject_key: str | None,
    holds_changed: bool = False,
    moved: bool = False,
    left_subject: str | None = None,
    left_state: SubjectState | None = None,
    reevaluate_left: bool = False,
    confirmed: tuple[Confirmation, ...] = NO_CONFIRMATIONS,
) -> Step:
    """`Step(...)` without the frozen dataclass's per-field `object.__setattr__` cost."""
    step: Step = _new(Step)
    _set_step_row(step, row)
    _set_step_subject(step, subject)
    _set_step_due(step, upcoming)
    _set_step_reevaluate(step, reevaluate)
    _set_step_key(step, subject_key)
    _set_step_holds_changed(step, holds_changed)
    _set_step_moved(step, moved)
    _set_step_left(step, left_subject)
    _set_step_left_state(step, left_state)
    _set_step_reevaluate_left(step, reevaluate_left)
    _set_step_confirmed(step, confirmed)
    return step
