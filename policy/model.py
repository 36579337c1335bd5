"""The retention policy as frozen dataclasses: purposes, sources, rules, stages.

This is the contract between the policy file loader (`policy.loader`), the
engine (`policy.engine`) and the agents. Everything here is immutable and
holds no I/O. A `Policy` is built once at start-up from `config/policy.yaml`.

Vocabulary:
- purpose: a processing purpose of the privacy policy, with its legal basis.
- source: a table of a business database whose rows carry personal data.
- subject: the person a row is about (`customer:42`, `email:a@b.example`).
- rule: how long one purpose keeps the rows of one source: its stages.
- stage: one timed action of a rule (archive, anonymise fields, delete) and
  the clock expression that says when it falls due.
- clock expression: an instant computed from the row's columns, the subject's
  latest activity, periods and conditions; `None` means the clock is not
  running (the row is kept).
- hold: a row of a hold source (legal_holds) that suspends every command for
  its subject while it is open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from policy.periods import Period


class LegalBasis(StrEnum):
    """GDPR Art. 6.1 legal bases, by their letter."""

    CONSENT = "6.1a"
    CONTRACT = "6.1b"
    LEGAL_OBLIGATION = "6.1c"
    VITAL_INTEREST = "6.1d"
    PUBLIC_TASK = "6.1e"
    LEGITIMATE_INTEREST = "6.1f"


class Action(StrEnum):
    """What a command asks the database to do with a row."""

    ARCHIVE = "archive"
    ANONYMISE = "anonymise"
    DELETE = "delete"


class ColumnType(StrEnum):
    """Column types the engine needs to decode Debezium values without a schema."""

    BIGINT = "bigint"
    INTEGER = "integer"
    TEXT = "text"
    BOOLEAN = "boolean"
    TIMESTAMPTZ = "timestamptz"
    DATE = "date"
    NUMERIC = "numeric"


@dataclass(frozen=True, slots=True)
class Purpose:
    """A processing purpose of the privacy policy (one row of the retention schedule)."""

    id: str
    title: str
    legal_basis: tuple[LegalBasis, ...]
    data_categories: tuple[str, ...]
    recipients: tuple[str, ...]
    seed_section: str
    retention: str
    """The retention period in the privacy policy's own words."""
    kept_for_legal_claims: bool = False
    """True when the data is kept as evidence or for legal claims (payment defaults)."""
    schedule_row: int | None = None
    """The row of the retention schedule this purpose encodes (1-24 in the default policy)."""


@dataclass(frozen=True, slots=True)
class Parameter:
    """A configurable period ("set by regulation", "set by risk analysis, at most 5 years")."""

    name: str
    value: Period
    default: Period
    cap: Period | None = None
    description: str = ""


# --- clock expressions -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnInstant:
    """The instant in a timestamptz or date column of the row; None while it is null."""

    column: str


@dataclass(frozen=True, slots=True)
class SubjectActivity:
    """The subject's latest instant of an activity (e.g. `contact`), fed by several tables."""

    activity: str


@dataclass(frozen=True, slots=True)
class ChangeTime:
    """The time of the change event that brought the row's current version ("at once")."""


@dataclass(frozen=True, slots=True)
class PeriodRef:
    """A configurable period, by parameter name."""

    parameter: str


@dataclass(frozen=True, slots=True)
class After:
    """`period` after `start`; None while `start` is None."""

    start: Clock
    period: Period | PeriodRef


@dataclass(frozen=True, slots=True)
class Earliest:
    """The earliest of the operands that are running; None when none is."""

    operands: tuple[Clock, ...]


@dataclass(frozen=True, slots=True)
class Latest:
    """The latest of the operands that are running; None when none is."""

    operands: tuple[Clock, ...]


@dataclass(frozen=True, slots=True)
class When:
    """`then` while `condition` holds, else `otherwise` (None: not running)."""

    condition: Condition
    then: Clock | None
    otherwise: Clock | None = None


Clock = ColumnInstant | SubjectActivity | ChangeTime | After | Earliest | Latest | When


# --- conditions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IsSet:
    """The column is not null."""

    column: str


@dataclass(frozen=True, slots=True)
class Equals:
    """The column equals a constant (a boolean, a text or a number)."""

    column: str
    value: bool | str | int


@dataclass(frozen=True, slots=True)
class Not:
    condition: Condition


@dataclass(frozen=True, slots=True)
class AllOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    conditions: tuple[Condition, ...]


Condition = IsSet | Equals | Not | AllOf | AnyOf


# --- anonymisation ------------------------------------------------------------------------


class TimeUnit(StrEnum):
    DAY = "day"
    MONTH = "month"
    YEAR = "year"


@dataclass(frozen=True, slots=True)
class Empty:
    """Set the field to null."""


@dataclass(frozen=True, slots=True)
class Coarsen:
    """Truncate a timestamp or date to the start of its day, month or year (UTC)."""

    unit: TimeUnit


@dataclass(frozen=True, slots=True)
class Bucket:
    """Round a number down to a multiple of `width` (42 with width 10 becomes 40)."""

    width: int


@dataclass(frozen=True, slots=True)
class Constant:
    """Replace the field by a constant (never derived from the value: no hashes, no tokens)."""

    value: str | int | bool


Anonymiser = Empty | Coarsen | Bucket | Constant


@dataclass(frozen=True, slots=True)
class FieldAnonymisation:
    column: str
    method: Anonymiser


# --- rules and sources --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stage:
    """One timed action of a rule; `fields` only for anonymise."""

    action: Action
    due: Clock
    fields: tuple[FieldAnonymisation, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """How long one purpose keeps the rows of one source.

    `needs` lists the columns the purpose uses (empty: all). When several rules
    apply to one row, the row is deleted only once every rule's delete stage is
    due; columns needed only by rules that are over may be anonymised earlier.
    """

    purpose: str
    stages: tuple[Stage, ...]
    needs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SubjectKey:
    """One way to name a row's subject: `<kind>:<column value>` (lower-cased if asked)."""

    kind: str
    column: str
    lower: bool = False


@dataclass(frozen=True, slots=True)
class ActivityFeed:
    """This source's column feeds the subject's latest `activity` instant."""

    activity: str
    column: str


@dataclass(frozen=True, slots=True)
class HoldSpec:
    """Rows of this source are legal holds on their subject while `released_column` is null."""

    released_column: str
    purpose: str | None = None
    """The purpose the holds serve (evidence in litigation); informative, no clock."""


@dataclass(frozen=True, slots=True)
class Source:
    """A table of a business database and the rules that retain its rows."""

    table: str
    """Schema-qualified table name, e.g. `public.support_tickets`."""
    topic: str
    """The Debezium change topic, e.g. `hosting.public.support_tickets`."""
    primary_key: tuple[str, ...]
    columns: Mapping[str, ColumnType]
    subject: tuple[SubjectKey, ...] = ()
    """Tried in order; the first whose column is set names the subject. Empty: no subject."""
    rules: tuple[Rule, ...] = ()
    anonymise: tuple[FieldAnonymisation, ...] = ()
    """How each column is anonymised when a purpose that needed it is over."""
    activity: tuple[ActivityFeed, ...] = ()
    hold: HoldSpec | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """A whole retention policy: purposes, configurable periods and sources."""

    name: str
    purposes: Mapping[str, Purpose]
    parameters: Mapping[str, Parameter]
    sources: Mapping[str, Source]
    """By schema-qualified table name."""
    sources_by_topic: Mapping[str, Source] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.sources_by_topic:
            object.__setattr__(
                self, "sources_by_topic", {s.topic: s for s in self.sources.values()}
            )

    def period(self, period: Period | PeriodRef) -> Period:
        """Resolve a period or a parameter reference to a period."""
        if isinstance(period, PeriodRef):
            return self.parameters[period.parameter].value
        return period
