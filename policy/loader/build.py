"""Build the frozen `Policy` from the parsed document, checking what a schema cannot say.

`Builder.build` walks the purposes, the parameters (each value within its cap) and the
sources (columns, primary key, subject, activity feeds, anonymisation, rules and their
stages, holds), reports every problem at its line, and returns the `Policy` only when
there is none. It also refuses a rule whose archive or anonymise stage surely falls due at
or after its delete (the row would be gone first), and a rule that only archives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from policy.loader.clocks import ClockBuilder
from policy.loader.columns import SourceColumns
from policy.loader.context import LoadContext, mapping, sequence, unknown_hint
from policy.loader.yaml_positions import Path
from policy.model import (
    Action,
    ActivityFeed,
    After,
    Anonymiser,
    ChangeTime,
    Clock,
    ColumnInstant,
    ColumnType,
    Earliest,
    Empty,
    FieldAnonymisation,
    HoldSpec,
    Latest,
    LegalBasis,
    Parameter,
    PeriodRef,
    Policy,
    Purpose,
    Rule,
    Source,
    Stage,
    SubjectActivity,
    SubjectKey,
    When,
)
from policy.periods import Period

_COLUMN_TYPES = frozenset(t.value for t in ColumnType)
_ACTIONS = frozenset(a.value for a in Action)


class Builder(LoadContext):
    """Walks the parsed document, reports what is wrong, and builds the model when nothing is."""

    def build(self) -> Policy | None:
        data = self.doc.data
        if not isinstance(data, dict):
            return None
        self.purposes_known = isinstance(data.get("purposes"), dict)
        self.parameters_known = isinstance(data.get("parameters", {}), dict)
        purposes = self._purposes(mapping(data.get("purposes")))
        parameters = self._parameters(mapping(data.get("parameters")))
        prefix = data.get("topic_prefix")
        sources_data = mapping(data.get("sources"))
        for spec in sources_data.values():
            feeds = mapping(spec).get("activity", [])
            for feed in feeds if isinstance(feeds, list) else [None]:
                activity = mapping(feed).get("activity")
                if isinstance(activity, str):
                    self.activities_fed.add(activity)
                else:
                    self.activities_known = False  # the schema has reported it
        sources: dict[str, Source] = {}
        topics: dict[str, str] = {}
        for table, spec in sources_data.items():
            source = self._source(str(table), mapping(spec), prefix)
            if source is None:
                continue
            if source.topic in topics:
                self.error(
                    ("sources", table),
                    f"{table} and {topics[source.topic]} read the same topic {source.topic!r}",
                    "give one of them its own topic:",
                    key=True,
                )
            topics[source.topic] = table
            sources[source.table] = source
        name = data.get("policy")
        if self.errors or not isinstance(name, str) or purposes is None or parameters is None:
            return None
        return Policy(name=name, purposes=purposes, parameters=parameters, sources=sources)

    # purposes and parameters

    def _purposes(self, data: Mapping[Any, Any]) -> dict[str, Purpose] | None:
        purposes: dict[str, Purpose] = {}
        ok = True
        for pid, spec in data.items():
            self.purpose_ids.add(str(pid))
            spec = mapping(spec)
            try:
                bases = tuple(LegalBasis(b) for b in sequence(spec.get("legal_basis")))
                row = spec.get("row")
                purposes[str(pid)] = Purpose(
                    id=str(pid),
                    title=str(spec["title"]),
                    legal_basis=bases,
                    data_categories=tuple(str(c) for c in sequence(spec["data_categories"])),
                    recipients=tuple(str(r) for r in sequence(spec["recipients"])),
                    seed_section=str(spec["section"]),
                    retention=str(spec["retention"]),
                    kept_for_legal_claims=spec.get("kept_for_legal_claims") is True,
                    schedule_row=row
                    if isinstance(row, int) and not isinstance(row, bool)
                    else None,
                )
            except (KeyError, ValueError, TypeError):
                ok = False  # the schema has reported it
        return purposes if ok else None

    def _parameters(self, data: Mapping[Any, Any]) -> dict[str, Parameter] | None:
        parameters: dict[str, Parameter] = {}
        ok = True
        for name, spec in data.items():
            self.parameter_names.add(str(name))
            spec = mapping(spec)
            path: Path = ("parameters", name)
            default = self.period((*path, "default"), spec.get("default"))
            value = self.period((*path, "value"), spec.get("value"))
            cap = self.period((*path, "max"), spec.get("max"))
            if default is None:
                ok = False
                continue
            if cap is not None:
                for field, period in (("default", default), ("value", value)):
                    if period is not None and not _period_fits(period, cap):
                        self.error(
                            (*path, field),
                            f"parameter {name} {field} {period} is longer than its cap max: {cap}",
                            f"set {field} to at most {cap}, or raise max if the privacy "
                            "policy allows it",
                            key=True,
                        )
            parameters[str(name)] = Parameter(
                name=str(name),
                value=value if value is not None else default,
                default=default,
                cap=cap,
                description=str(spec.get("description", "")),
            )
        return parameters if ok else None

    def _source(self, table: str, spec: Mapping[Any, Any], prefix: Any) -> Source | None:
        path: Path = ("sources", table)
        raw_columns = spec.get("columns")
        columns: dict[str, ColumnType] = {}
        untyped: set[str] = set()
        for column, kind in mapping(raw_columns).items():
            if isinstance(kind, str) and kind in _COLUMN_TYPES:
                columns[str(column)] = ColumnType(kind)
            else:
                untyped.add(str(column))  # the schema has reported its type
        ctx = SourceColumns(self, table, path, columns)
        ctx.untyped = untyped
        ctx.columns_known = isinstance(raw_columns, dict) and bool(raw_columns)
        ctx.failed = bool(untyped) or not ctx.columns_known
        raw_key = sequence(spec.get("primary_key"))
        primary_key = tuple(c for c in raw_key if isinstance(c, str))
        if len(primary_key) != len(raw_key):
            ctx.failed = True  # the schema has reported it
        for i, column in enumerate(primary_key):
            ctx.column((*path, "primary_key", i), column, "primary key")
        subject = self._subject(ctx, spec.get("subject"))
        activity = []
        for i, feed in enumerate(sequence(spec.get("activity"))):
            feed = mapping(feed)
            column = feed.get("column")
            name = feed.get("activity")
            fpath: Path = (*path, "activity", i, "column")
            if (
                isinstance(column, str)
                and isinstance(name, str)
                and ctx.instant_column(fpath, column, f"activity {name!r}")
            ):
                activity.append(ActivityFeed(activity=name, column=column))
        anonymise = []
        for column, method in mapping(spec.get("anonymise")).items():
            apath: Path = (*path, "anonymise", column)
            built = ctx.field(apath, str(column), method)
            if built is not None:
                anonymise.append(built)
        methods = {f.column: f.method for f in anonymise}
        rules = []
        seen_purposes: dict[str, int] = {}
        raw_rules = sequence(spec.get("rules"))
        for i, raw_rule in enumerate(raw_rules):
            rule = self._rule(ctx, (*path, "rules", i), mapping(raw_rule), methods)
            if rule is None:
                continue
            if rule.purpose in seen_purposes:
                self.error(
                    (*path, "rules", i, "purpose"),
                    f"{table} has two rules for purpose {rule.purpose!r} "
                    f"(rules {seen_purposes[rule.purpose] + 1} and {i + 1})",
                    "merge them into one rule with several stages",
                    key=True,
                )
            seen_purposes.setdefault(rule.purpose, i)
            rules.append(rule)
        hold = self._hold(ctx, spec, subject, raw_rules)
        if "rules" not in spec and "hold" not in spec and "columns" in spec:
            self.error(
                path,
                f"{table} has no rules, so its rows would be kept forever",
                "add rules: with one rule per purpose the table serves, or remove the source",
                key=True,
            )
        topic = spec.get("topic")
        if not isinstance(topic, str):
            topic = f"{prefix}.{table}"
        if ctx.failed:
            return None
        return Source(
            table=table,
            topic=topic,
            primary_key=primary_key,
            columns=columns,
            subject=subject,
            rules=tuple(rules),
            anonymise=tuple(anonymise),
            activity=tuple(activity),
            hold=hold,
        )

    def _subject(self, ctx: SourceColumns, raw: Any) -> tuple[SubjectKey, ...]:
        if not isinstance(raw, list):
            return ()
        keys = []
        for i, item in enumerate(raw):
            item = mapping(item)
            column, kind = item.get("column"), item.get("kind")
            if not isinstance(column, str) or not isinstance(kind, str):
                ctx.failed = True
                continue
            if ctx.column((*ctx.path, "subject", i, "column"), column, "subject"):
                keys.append(SubjectKey(kind=kind, column=column, lower=item.get("lower") is True))
        return tuple(keys)

    def _hold(
        self,
        ctx: SourceColumns,
        spec: Mapping[Any, Any],
        subject: tuple[SubjectKey, ...],
        raw_rules: list[Any],
    ) -> HoldSpec | None:
        if "hold" not in spec:
            return None
        raw = mapping(spec.get("hold"))
        path: Path = (*ctx.path, "hold")
        if raw_rules:
            self.error(
                (*ctx.path, "rules"),
                f"{ctx.table} is a hold source and has rules; holds are not retained data",
                "remove rules: from the hold source, or remove hold: to retain its rows",
                key=True,
            )
        if spec.get("subject") == "none":
            self.error(
                (*ctx.path, "subject"),
                f"hold source {ctx.table} has no subject, so its holds would suspend nobody",
                "name the subject the holds apply to, e.g. [{kind: customer, column: customer_id}]",
                key=True,
            )
        released = raw.get("released")
        purpose = raw.get("purpose")
        if isinstance(purpose, str) and self.unknown_purpose(purpose):
            self.error(
                (*path, "purpose"),
                f"hold of {ctx.table} names unknown purpose {purpose!r}",
                unknown_hint(purpose, self.purpose_ids, "purposes:"),
                key=True,
            )
        if not isinstance(released, str):
            return None
        if not ctx.column((*path, "released"), released, "hold release"):
            return None
        return HoldSpec(
            released_column=released, purpose=purpose if isinstance(purpose, str) else None
        )

    def _rule(
        self,
        ctx: SourceColumns,
        path: Path,
        raw: Mapping[Any, Any],
        methods: Mapping[str, Anonymiser],
    ) -> Rule | None:
        purpose = raw.get("purpose")
        ok = isinstance(purpose, str)
        if isinstance(purpose, str) and self.unknown_purpose(purpose):
            self.error(
                (*path, "purpose"),
                f"rule of {ctx.table} names unknown purpose {purpose!r}",
                unknown_hint(purpose, self.purpose_ids, "purposes:"),
                key=True,
            )
            ok = False
        needs = []
        for i, column in enumerate(sequence(raw.get("needs"))):
            if isinstance(column, str) and ctx.column((*path, "needs", i), column, "needs"):
                needs.append(column)
        stages = []
        actions: dict[Action, int] = {}
        raw_stages = sequence(raw.get("stages"))
        for i, raw_stage in enumerate(raw_stages):
            stage = self._stage(ctx, (*path, "stages", i), mapping(raw_stage), methods)
            if stage is None:
                ok = False
                continue
            if stage.action in actions:
                self.error(
                    (*path, "stages", i, "action"),
                    f"rule {purpose} of {ctx.table} has two {stage.action} stages",
                    "keep one stage per action; combine their clocks with earliest: or latest:",
                    key=True,
                )
            actions.setdefault(stage.action, i)
            stages.append(stage)
        every_stage_read = bool(stages) and len(stages) == len(raw_stages)
        if every_stage_read and set(actions) == {Action.ARCHIVE}:
            self.error(
                path,
                f"rule {purpose} of {ctx.table} only archives, so its rows are kept forever",
                "add a delete (or anonymise) stage after the archive stage",
            )
        if every_stage_read and isinstance(purpose, str):
            self._stage_order(ctx, path, purpose, stages, actions)
        if not ok or not isinstance(purpose, str) or not stages:
            return None
        return Rule(purpose=purpose, stages=tuple(stages), needs=tuple(needs))

    def _stage_order(
        self,
        ctx: SourceColumns,
        path: Path,
        purpose: str,
        stages: Sequence[Stage],
        actions: Mapping[Action, int],
    ) -> None:
        """Report an archive or anonymise stage that surely falls due at or after the delete:
        the engine deletes the row then, and the earlier stage would never happen."""
        if Action.DELETE not in actions:
            return
        delete = _offset(stages[actions[Action.DELETE]].due)
        for action in (Action.ARCHIVE, Action.ANONYMISE):
            if action not in actions or delete is None:
                continue
            index = actions[action]
            offset = _offset(stages[index].due)
            if offset is None or offset[0] != delete[0]:
                continue
            period, delete_period = offset[1], delete[1]
            if period == delete_period or (
                isinstance(period, Period)
                and isinstance(delete_period, Period)
                and _surely_not_before(period, delete_period)
            ):
                start = _show_start(offset[0])
                self.error(
                    (*path, "stages", index, "due"),
                    f"rule {purpose} of {ctx.table}: the {action} stage falls due "
                    f"{_show_period(period)} after {start}, not before the delete stage "
                    f"({_show_period(delete_period)} after it), so the row would be deleted "
                    f"and never {'archived' if action is Action.ARCHIVE else 'anonymised'}",
                    f"give the {action} stage a period shorter than the delete's "
                    f"{_show_period(delete_period)}, or remove it; were the two swapped?",
                    key=True,
                )

    def _stage(
        self,
        ctx: SourceColumns,
        path: Path,
        raw: Mapping[Any, Any],
        methods: Mapping[str, Anonymiser],
    ) -> Stage | None:
        raw_action = raw.get("action")
        if not isinstance(raw_action, str) or raw_action not in _ACTIONS:
            return None  # the schema has reported it
        action = Action(raw_action)
        due = ClockBuilder(self, ctx).clock((*path, "due"), raw.get("due"))
        fields: list[FieldAnonymisation] = []
        raw_fields = raw.get("fields")
        if action is Action.ANONYMISE:
            if raw_fields is None and "fields" in raw:
                return None  # the schema has reported it
            if raw_fields is None:
                self.error(
                    path,
                    f"anonymise stage of {ctx.table} lists no fields",
                    "add fields: [...] naming the columns to anonymise",
                )
                return None
            if isinstance(raw_fields, list):
                for i, column in enumerate(raw_fields):
                    if not isinstance(column, str):
                        continue
                    method = methods.get(column, Empty())
                    built = ctx.field((*path, "fields", i), column, method)
                    if built is not None:
                        fields.append(built)
            elif isinstance(raw_fields, dict):
                for column, method in raw_fields.items():
                    built = ctx.field((*path, "fields", column), str(column), method)
                    if built is not None:
                        fields.append(built)
        elif raw_fields is not None:
            self.error(
                (*path, "fields"),
                f"{action} stage of {ctx.table} has fields, but only anonymise stages take fields",
                "remove fields:, or make it an anonymise stage",
                key=True,
            )
            return None
        if due is None or ctx.failed:
            return None
        return Stage(action=action, due=due, fields=tuple(fields))


def _period_fits(period: Period, cap: Period) -> bool:
    """True when `period` can never be longer than `cap`, whatever the calendar."""
    if period.months <= cap.months and period.days <= cap.days and period.seconds <= cap.seconds:
        return True
    return period.upper_bound_days() <= cap.lower_bound_days()


def _offset(clock: Clock) -> tuple[Clock, Period | PeriodRef] | None:
    """A clock as (start, period after it): `x` is (x, PT0S); None when not that simple."""
    if isinstance(clock, After):
        return clock.start, clock.period
    if isinstance(clock, When | Earliest | Latest):
        return None
    return clock, Period()


def _surely_not_before(period: Period, other: Period) -> bool:
    """True when `period` after any instant is never earlier than `other` after it."""
    fieldwise = (
        period.months >= other.months
        and period.days >= other.days
        and period.seconds >= other.seconds
    )
    return fieldwise or period.lower_bound_days() >= other.upper_bound_days()


def _show_period(period: Period | PeriodRef) -> str:
    return str(period) if isinstance(period, Period) else f"parameter {period.parameter}"


def _show_start(clock: Clock) -> str:
    if isinstance(clock, ColumnInstant):
        return clock.column
    if isinstance(clock, SubjectActivity):
        return f"the subject's last {clock.activity}"
    if isinstance(clock, ChangeTime):
        return "the change"
    return "the same start"
