"""Load a policy file: YAML text in, a frozen `Policy` or every error found out.

The loader is pure: the caller reads the file and passes its text and name.
It parses the YAML keeping the line of every node, checks the structure
against the JSON Schema the caller passes in (the one shipped as
`policy/policy.schema.json`, read by `lethe.policy_file.policy_schema()`;
`config/policy.schema.json` links to it), then checks what a schema cannot say:
purposes, columns and their types, periods, caps, parameters, activities.
Nothing is half-loaded: either every check passes and a `Policy` comes out,
or the caller gets the whole list of `PolicyError`s, sorted by line.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from policy.model import (
    Action,
    ActivityFeed,
    After,
    AllOf,
    Anonymiser,
    AnyOf,
    Bucket,
    ChangeTime,
    Clock,
    Coarsen,
    ColumnInstant,
    ColumnType,
    Condition,
    Constant,
    Earliest,
    Empty,
    Equals,
    FieldAnonymisation,
    HoldSpec,
    IsSet,
    Latest,
    LegalBasis,
    Not,
    Parameter,
    PeriodRef,
    Policy,
    Purpose,
    Rule,
    Source,
    Stage,
    SubjectActivity,
    SubjectKey,
    TimeUnit,
    When,
)
from policy.periods import Period, PeriodSyntaxError

__all__ = [
    "PolicyError",
    "PolicyInvalid",
    "load_policy_text",
    "parse_policy",
]

Path = tuple[str | int, ...]

TEMPORAL = frozenset({ColumnType.TIMESTAMPTZ, ColumnType.DATE})
NUMERIC = frozenset({ColumnType.BIGINT, ColumnType.INTEGER, ColumnType.NUMERIC})
CLOCK_KINDS = ("after", "earliest", "latest", "activity", "when")
AT_ONCE = "at_once"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it
_COLUMN_TYPES = frozenset(t.value for t in ColumnType)
_ACTIONS = frozenset(a.value for a in Action)


@dataclass(frozen=True, slots=True)
class PolicyError:
    """One problem in a policy file: where it is, what is wrong, how to fix it."""

    file: str
    line: int
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class PolicyInvalid(ValueError):
    """The policy file has errors; `errors` lists every one of them."""

    def __init__(self, errors: Sequence[PolicyError]) -> None:
        self.errors: tuple[PolicyError, ...] = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def load_policy_text(text: str, filename: str, schema: Mapping[str, Any]) -> Policy:
    """Build the policy from the text of a policy file; raise PolicyInvalid listing every error.

    `schema` is the policy JSON Schema (`lethe.policy_file.policy_schema()` reads the shipped
    one; the core reads no file).
    """
    result = parse_policy(text, filename, schema)
    if isinstance(result, Policy):
        return result
    raise PolicyInvalid(result)


def parse_policy(text: str, filename: str, schema: Mapping[str, Any]) -> Policy | list[PolicyError]:
    """Build the policy, or return every error found (sorted by line); never a partial policy.

    `schema` is the policy JSON Schema (`lethe.policy_file.policy_schema()` reads the shipped one).
    """
    errors: list[PolicyError] = []
    document = _Document.parse(text, filename, errors)
    if document is None:
        return errors
    validator = Draft202012Validator(schema)
    for error in _relevant(validator.iter_errors(document.data)):
        for path, key, message, hint in _explain(error, document):
            errors.append(PolicyError(filename, document.line(path, key), message, hint))
    policy = _Builder(document, errors).build()
    if errors or policy is None:
        return _sorted_unique(errors)
    return policy


def _relevant(errors: Iterable[ValidationError]) -> list[ValidationError]:
    """Drop echoes: where a key is unknown (misspelt) or a value has the wrong type, what is
    "missing" or "matches no form" there is the same mistake."""
    errors = list(errors)
    causes = {"additionalProperties", "type"}
    explained = {tuple(e.absolute_path) for e in errors if e.validator in causes}
    echoes = {"required", "dependentRequired", "oneOf", "anyOf"}
    return [
        e for e in errors if not (e.validator in echoes and tuple(e.absolute_path) in explained)
    ]


def _sorted_unique(errors: Iterable[PolicyError]) -> list[PolicyError]:
    seen: set[PolicyError] = set()
    unique = []
    for error in errors:
        if error not in seen:
            seen.add(error)
            unique.append(error)
    return sorted(unique, key=lambda e: e.line)


# --- YAML with line numbers --------------------------------------------------------------


class _Document:
    """The parsed file: plain data (for the schema) and the line of every node and key."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.data: Any = None
        self.lines: dict[Path, int] = {}
        self.key_lines: dict[Path, int] = {}
        self.alias_of: dict[Path, Path] = {}  # a YAML alias's path -> its anchor's path
        self._first_path: dict[int, Path] = {}

    @classmethod
    def parse(cls, text: str, filename: str, errors: list[PolicyError]) -> _Document | None:
        doc = cls(filename)
        try:
            root = yaml.compose(text, Loader=_YAML_LOADER)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            problem = exc.problem or exc.context or "unreadable YAML"
            opened = exc.context_mark
            if exc.context and opened is not None and opened.line + 1 != line:
                problem += f" ({exc.context} at line {opened.line + 1})"
            errors.append(
                PolicyError(
                    filename,
                    line,
                    f"YAML syntax error: {problem}",
                    "check the indentation and quoting on this line and the one before",
                )
            )
            return None
        except yaml.YAMLError as exc:
            errors.append(PolicyError(filename, 1, f"YAML error: {exc}", "fix the YAML syntax"))
            return None
        if root is None:
            errors.append(
                PolicyError(filename, 1, "the policy file is empty", "write policy:, purposes:…")
            )
            return None
        constructor = yaml.constructor.SafeConstructor()
        doc.data = doc._convert(root, (), constructor, errors, frozenset())
        return doc

    def _convert(
        self,
        node: yaml.Node,
        path: Path,
        constructor: yaml.constructor.SafeConstructor,
        errors: list[PolicyError],
        open_nodes: frozenset[int],
    ) -> Any:
        line = node.start_mark.line + 1
        self.lines[path] = line
        first = self._first_path.setdefault(id(node), path)
        if first != path:
            self.alias_of[path] = first
        if id(node) in open_nodes:
            errors.append(
                PolicyError(
                    self.filename, line, "a YAML alias refers to itself", "write the value out"
                )
            )
            return None
        inner = open_nodes | {id(node)}
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            first_line: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                if key_node.tag == "tag:yaml.org,2002:merge":
                    errors.append(
                        PolicyError(
                            self.filename,
                            key_line,
                            "YAML merge keys (<<) are not supported in a policy file",
                            "write the keys out, or reuse a whole value with an alias (*name)",
                        )
                    )
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    errors.append(
                        PolicyError(
                            self.filename,
                            key_line,
                            "a key must be a plain name",
                            "write key: value",
                        )
                    )
                    continue
                key = self._scalar(key_node, constructor, errors)
                if isinstance(key, float | bool) or key is None:
                    key = key_node.value
                if key in result:
                    errors.append(
                        PolicyError(
                            self.filename,
                            key_line,
                            f"duplicate key {_show(key)} (first at line {first_line[key]}); "
                            "YAML would silently keep only the last one",
                            "remove one of them or give it another name",
                        )
                    )
                    continue
                first_line[key] = key_line
                self.key_lines[(*path, key)] = key_line
                result[key] = self._convert(value_node, (*path, key), constructor, errors, inner)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [
                self._convert(item, (*path, i), constructor, errors, inner)
                for i, item in enumerate(node.value)
            ]
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node, constructor, errors)

    def _scalar(
        self,
        node: yaml.ScalarNode,
        constructor: yaml.constructor.SafeConstructor,
        errors: list[PolicyError],
    ) -> Any:
        try:
            return constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            errors.append(
                PolicyError(
                    self.filename,
                    node.start_mark.line + 1,
                    f"unreadable value: {exc.problem}",
                    "write a plain string, number or boolean",
                )
            )
            return None

    def canonical(self, path: Sequence[str | int]) -> Path:
        """The path as written in the file: what an alias reaches is reached through its anchor,
        so one mistake inside an anchor is one error, at the anchor's line."""
        full = tuple(path)
        for end in range(len(full), 0, -1):
            anchor = self.alias_of.get(full[:end])
            if anchor is not None:
                return self.canonical((*anchor, *full[end:]))
        return full

    def where(self, path: Sequence[str | int]) -> str:
        """The dotted name of `path` (through its anchor) for messages."""
        return _where(self.canonical(path))

    def line(self, path: Sequence[str | int], key: bool = False) -> int:
        """The line of the node at `path` (of its key when `key`), or of its nearest parent."""
        full = self.canonical(path)
        for end in range(len(full), -1, -1):
            prefix = full[:end]
            if (key or end < len(full)) and prefix in self.key_lines:
                return self.key_lines[prefix]
            if prefix in self.key_lines and isinstance(self.get(prefix), dict | list):
                return self.key_lines[prefix]
            if prefix in self.lines:
                return self.lines[prefix]
        return 1

    def get(self, path: Path) -> Any:
        value = self.data
        for part in path:
            in_mapping = isinstance(value, dict) and part in value
            in_list = isinstance(value, list) and isinstance(part, int) and part < len(value)
            if in_mapping or in_list:
                value = value[part]
            else:
                return None
        return value


# --- schema errors in the operator's words ------------------------------------------------


def _where(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the policy file"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value, default=str)


def _type_name(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_JSON_TYPES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
}


_COMPARE = "compare it with config/policy.yaml, which shows every form"


def _hint(error: ValidationError, fallback: str) -> str:
    schema = error.schema
    if isinstance(schema, Mapping):
        hint = schema.get("x-hint")
        if isinstance(hint, str):
            return hint
    return fallback


def _explain(error: ValidationError, doc: _Document) -> list[tuple[Path, bool, str, str]]:
    """Turn one jsonschema error into (path, at-key, message, hint) items."""
    path: Path = tuple(error.absolute_path)
    where = doc.where(path)
    validator = error.validator
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    instance: Any = error.instance
    expected_value: Any = error.validator_value
    if "propertyNames" in error.schema_path:
        return [
            (
                (*path, instance),
                True,
                f"{where}: {_show(instance)} is not a valid name here",
                _hint(error, "use letters, digits and underscores, starting with a letter"),
            )
        ]
    if validator == "additionalProperties" and isinstance(instance, dict):
        allowed = list(schema.get("properties", {}))
        items = []
        for key in instance:
            if key in allowed:
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            items.append(
                (
                    (*path, key),
                    True,
                    f"unknown key {_show(key)} in {where}",
                    f"{guess}allowed keys: {', '.join(allowed)}",
                )
            )
        return items
    if validator == "required" and isinstance(instance, dict):
        properties = schema.get("properties", {})
        missing = [key for key in expected_value if key not in instance]
        hints = []
        for key in missing:
            sub = properties.get(key, {})
            hint = sub.get("x-hint") if isinstance(sub, Mapping) else None
            hints.append(f"add {key}:" + (f" - {hint}" if isinstance(hint, str) else " to it"))
        lacking = ", ".join(repr(key) for key in missing)
        return [(path, True, f"{where} lacks {lacking}", "; ".join(hints))] if missing else []
    if validator == "dependentRequired" and isinstance(instance, dict):
        items = []
        for key, needed in expected_value.items():
            if key not in instance:
                continue
            for other in needed:
                if other not in instance:
                    items.append(
                        (
                            (*path, key),
                            True,
                            f"{where}: {key!r} needs {other!r} beside it",
                            _hint(error, f"add {other}: beside {key}:"),
                        )
                    )
        return items
    if validator == "type":
        wanted = expected_value
        names = [wanted] if isinstance(wanted, str) else list(wanted)
        expected = schema.get("x-expected") or " or ".join(_JSON_TYPES.get(n, n) for n in names)
        return [
            (
                path,
                False,
                f"{where} must be {expected}, not {_type_name(instance)}",
                _hint(error, f"write {expected} here"),
            )
        ]
    if validator in ("enum", "const"):
        options = expected_value if validator == "enum" else [expected_value]
        return [
            (
                path,
                False,
                f"{where}: {_show(instance)} is not allowed",
                _hint(error, "use one of: " + ", ".join(str(o) for o in options)),
            )
        ]
    if validator == "pattern":
        return [
            (
                path,
                False,
                f"{where}: {_show(instance)} is not a valid name",
                _hint(error, "use letters, digits and underscores, starting with a letter"),
            )
        ]
    if validator in ("minItems", "minProperties", "minLength"):
        return [
            (path, False, f"{where} must not be empty", _hint(error, "fill it in, or remove it"))
        ]
    if validator == "maxProperties":
        return [(path, False, f"{where} has more than one key", _hint(error, "keep one key"))]
    if validator == "uniqueItems":
        return [(path, False, f"{where} lists an item twice", "remove the repeated item")]
    if validator in ("minimum", "exclusiveMinimum"):
        return [
            (
                path,
                False,
                f"{where} must be at least {expected_value}",
                _hint(error, f"use {expected_value} or more"),
            )
        ]
    if validator in ("oneOf", "anyOf"):
        title = schema.get("title", "value")
        return [(path, False, f"{where} is not a valid {title}", _hint(error, _COMPARE))]
    return [(path, False, f"{where}: {error.message}", _hint(error, _COMPARE))]


# --- semantic checks and the frozen model -------------------------------------------------


def _choices(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "(none declared)"


def _unknown(word: str, name: str, known: Iterable[str], declare: str) -> str:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return f"{guess}declare it under {declare} or use one of: {_choices(known)}"


def _period_fits(period: Period, cap: Period) -> bool:
    """True when `period` can never be longer than `cap`, whatever the calendar."""
    if period.months <= cap.months and period.days <= cap.days and period.seconds <= cap.seconds:
        return True
    return period.upper_bound_days() <= cap.lower_bound_days()


class _Builder:
    """Walks the parsed document, reports what is wrong, and builds the model when nothing is."""

    def __init__(self, document: _Document, errors: list[PolicyError]) -> None:
        self.doc = document
        self.errors = errors
        self.purpose_ids: set[str] = set()
        self.parameter_names: set[str] = set()
        self.activities_fed: set[str] = set()
        # False when the section itself is damaged (the schema said so): names cannot be checked
        self.purposes_known = True
        self.parameters_known = True
        self.activities_known = True

    def error(self, path: Path, message: str, hint: str = "", key: bool = False) -> None:
        self.errors.append(PolicyError(self.doc.filename, self.doc.line(path, key), message, hint))

    def build(self) -> Policy | None:
        data = self.doc.data
        if not isinstance(data, dict):
            return None
        self.purposes_known = isinstance(data.get("purposes"), dict)
        self.parameters_known = isinstance(data.get("parameters", {}), dict)
        purposes = self._purposes(_mapping(data.get("purposes")))
        parameters = self._parameters(_mapping(data.get("parameters")))
        prefix = data.get("topic_prefix")
        sources_data = _mapping(data.get("sources"))
        for spec in sources_data.values():
            feeds = _mapping(spec).get("activity", [])
            for feed in feeds if isinstance(feeds, list) else [None]:
                activity = _mapping(feed).get("activity")
                if isinstance(activity, str):
                    self.activities_fed.add(activity)
                else:
                    self.activities_known = False  # the schema has reported it
        sources: dict[str, Source] = {}
        topics: dict[str, str] = {}
        for table, spec in sources_data.items():
            source = self._source(str(table), _mapping(spec), prefix)
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
            spec = _mapping(spec)
            try:
                bases = tuple(LegalBasis(b) for b in _sequence(spec.get("legal_basis")))
                row = spec.get("row")
                purposes[str(pid)] = Purpose(
                    id=str(pid),
                    title=str(spec["title"]),
                    legal_basis=bases,
                    data_categories=tuple(str(c) for c in _sequence(spec["data_categories"])),
                    recipients=tuple(str(r) for r in _sequence(spec["recipients"])),
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
            spec = _mapping(spec)
            path: Path = ("parameters", name)
            default = self._period((*path, "default"), spec.get("default"))
            value = self._period((*path, "value"), spec.get("value"))
            cap = self._period((*path, "max"), spec.get("max"))
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

    def _period(self, path: Path, text: Any) -> Period | None:
        if not isinstance(text, str):
            return None
        try:
            return Period.parse(text)
        except PeriodSyntaxError:
            self.error(
                path,
                f"{self.doc.where(path)}: {text!r} is not an ISO-8601 duration",
                "write it like P1Y, P15M, P180D, P2W or PT12H",
            )
            return None

    # sources

    def _source(self, table: str, spec: Mapping[Any, Any], prefix: Any) -> Source | None:
        path: Path = ("sources", table)
        raw_columns = spec.get("columns")
        columns: dict[str, ColumnType] = {}
        untyped: set[str] = set()
        for column, kind in _mapping(raw_columns).items():
            if isinstance(kind, str) and kind in _COLUMN_TYPES:
                columns[str(column)] = ColumnType(kind)
            else:
                untyped.add(str(column))  # the schema has reported its type
        ctx = _SourceContext(self, table, path, columns)
        ctx.untyped = untyped
        ctx.columns_known = isinstance(raw_columns, dict) and bool(raw_columns)
        ctx.failed = bool(untyped) or not ctx.columns_known
        raw_key = _sequence(spec.get("primary_key"))
        primary_key = tuple(c for c in raw_key if isinstance(c, str))
        if len(primary_key) != len(raw_key):
            ctx.failed = True  # the schema has reported it
        for i, column in enumerate(primary_key):
            ctx.column((*path, "primary_key", i), column, "primary key")
        subject = self._subject(ctx, spec.get("subject"))
        activity = []
        for i, feed in enumerate(_sequence(spec.get("activity"))):
            feed = _mapping(feed)
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
        for column, method in _mapping(spec.get("anonymise")).items():
            apath: Path = (*path, "anonymise", column)
            built = ctx.field(apath, str(column), method)
            if built is not None:
                anonymise.append(built)
        methods = {f.column: f.method for f in anonymise}
        rules = []
        seen_purposes: dict[str, int] = {}
        raw_rules = _sequence(spec.get("rules"))
        for i, raw_rule in enumerate(raw_rules):
            rule = self._rule(ctx, (*path, "rules", i), _mapping(raw_rule), methods)
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

    def _subject(self, ctx: _SourceContext, raw: Any) -> tuple[SubjectKey, ...]:
        if not isinstance(raw, list):
            return ()
        keys = []
        for i, item in enumerate(raw):
            item = _mapping(item)
            column, kind = item.get("column"), item.get("kind")
            if not isinstance(column, str) or not isinstance(kind, str):
                ctx.failed = True
                continue
            if ctx.column((*ctx.path, "subject", i, "column"), column, "subject"):
                keys.append(SubjectKey(kind=kind, column=column, lower=item.get("lower") is True))
        return tuple(keys)

    def _hold(
        self,
        ctx: _SourceContext,
        spec: Mapping[Any, Any],
        subject: tuple[SubjectKey, ...],
        raw_rules: list[Any],
    ) -> HoldSpec | None:
        if "hold" not in spec:
            return None
        raw = _mapping(spec.get("hold"))
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
        if isinstance(purpose, str) and self._unknown_purpose(purpose):
            self.error(
                (*path, "purpose"),
                f"hold of {ctx.table} names unknown purpose {purpose!r}",
                _unknown("purpose", purpose, self.purpose_ids, "purposes:"),
                key=True,
            )
        if not isinstance(released, str):
            return None
        if not ctx.column((*path, "released"), released, "hold release"):
            return None
        return HoldSpec(
            released_column=released, purpose=purpose if isinstance(purpose, str) else None
        )

    def _unknown_purpose(self, purpose: str) -> bool:
        return self.purposes_known and purpose not in self.purpose_ids

    def _rule(
        self,
        ctx: _SourceContext,
        path: Path,
        raw: Mapping[Any, Any],
        methods: Mapping[str, Anonymiser],
    ) -> Rule | None:
        purpose = raw.get("purpose")
        ok = isinstance(purpose, str)
        if isinstance(purpose, str) and self._unknown_purpose(purpose):
            self.error(
                (*path, "purpose"),
                f"rule of {ctx.table} names unknown purpose {purpose!r}",
                _unknown("purpose", purpose, self.purpose_ids, "purposes:"),
                key=True,
            )
            ok = False
        needs = []
        for i, column in enumerate(_sequence(raw.get("needs"))):
            if isinstance(column, str) and ctx.column((*path, "needs", i), column, "needs"):
                needs.append(column)
        stages = []
        actions: dict[Action, int] = {}
        raw_stages = _sequence(raw.get("stages"))
        for i, raw_stage in enumerate(raw_stages):
            stage = self._stage(ctx, (*path, "stages", i), _mapping(raw_stage), methods)
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
        ctx: _SourceContext,
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
        ctx: _SourceContext,
        path: Path,
        raw: Mapping[Any, Any],
        methods: Mapping[str, Anonymiser],
    ) -> Stage | None:
        raw_action = raw.get("action")
        if not isinstance(raw_action, str) or raw_action not in _ACTIONS:
            return None  # the schema has reported it
        action = Action(raw_action)
        due = _ClockBuilder(self, ctx).clock((*path, "due"), raw.get("due"))
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


class _SourceContext:
    """Column checks for one source; `failed` once any of them reported an error."""

    def __init__(
        self, builder: _Builder, table: str, path: Path, columns: Mapping[str, ColumnType]
    ) -> None:
        self.builder = builder
        self.table = table
        self.path = path
        self.columns = columns
        self.primary_key = {
            str(c) for c in _sequence(_mapping(builder.doc.get(path)).get("primary_key"))
        }
        self.failed = False
        # columns declared with a broken type still exist; a broken columns: section names none
        self.untyped: set[str] = set()
        self.columns_known = True

    def fail(self, path: Path, message: str, hint: str) -> bool:
        self.builder.error(path, message, hint)
        self.failed = True
        return False

    def column(self, path: Path, column: str, role: str) -> bool:
        """True when the column exists with a type; else False (reported once, where it is)."""
        if column in self.columns:
            return True
        if column in self.untyped or not self.columns_known:
            self.failed = True  # the schema has reported the columns: entry
            return False
        close = difflib.get_close_matches(column, list(self.columns), n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        return self.fail(
            path,
            f"{role} of {self.table} names column {column!r}, which {self.table} lacks",
            f"{guess}declare it under columns: or use one of: {_choices(self.columns)}",
        )

    def instant_column(self, path: Path, column: str, role: str) -> bool:
        if not self.column(path, column, role):
            return False
        kind = self.columns[column]
        if kind in TEMPORAL:
            return True
        instants = [c for c, t in self.columns.items() if t in TEMPORAL]
        return self.fail(
            path,
            f"{role} of {self.table} uses column {column!r} ({kind}) as an instant",
            f"use a timestamptz or date column: {_choices(instants)}",
        )

    def field(self, path: Path, column: str, raw_method: Any) -> FieldAnonymisation | None:
        if not self.column(path, column, "anonymisation"):
            return None
        if column in self.primary_key:
            self.fail(
                path,
                f"anonymisation of {self.table} names primary key column {column!r}",
                "a primary key cannot be anonymised; delete the row instead, "
                "or anonymise the other columns",
            )
            return None
        method = raw_method if isinstance(raw_method, Anonymiser) else _anonymiser(raw_method)
        if method is None:
            self.failed = True
            return None
        kind = self.columns[column]
        problem = ""
        if isinstance(method, Coarsen) and kind not in TEMPORAL:
            problem = f"coarsens column {column!r} ({kind}), which is not a timestamptz or date"
            hint = "coarsen only timestamptz or date columns; use empty or constant here"
        elif isinstance(method, Bucket) and kind not in NUMERIC:
            problem = f"buckets column {column!r} ({kind}), which is not a number"
            hint = "bucket only bigint, integer or numeric columns; use empty or constant here"
        elif isinstance(method, Constant) and not _fits(method.value, kind):
            problem = f"replaces column {column!r} ({kind}) by {_show(method.value)}"
            hint = f"give a constant of type {kind}, or use empty"
        if problem:
            self.fail(path, f"anonymisation of {self.table} {problem}", hint)
            return None
        return FieldAnonymisation(column=column, method=method)


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


def _fits(value: bool | str | int, kind: ColumnType) -> bool:
    if isinstance(value, bool):
        return kind is ColumnType.BOOLEAN
    if isinstance(value, int):
        return kind in NUMERIC
    return kind is ColumnType.TEXT


def _anonymiser(raw: Any) -> Anonymiser | None:
    if raw == "empty":
        return Empty()
    if isinstance(raw, dict) and len(raw) == 1:
        ((kind, arg),) = raw.items()
        if kind == "coarsen" and isinstance(arg, str) and arg in {u.value for u in TimeUnit}:
            return Coarsen(TimeUnit(arg))
        if kind == "bucket" and isinstance(arg, int) and not isinstance(arg, bool) and arg >= 1:
            return Bucket(arg)
        if kind == "constant" and isinstance(arg, str | int | bool):
            return Constant(arg)
    return None  # the schema has reported it


class _ClockBuilder:
    """Builds clock expressions and conditions of one source, reporting what is wrong."""

    def __init__(self, builder: _Builder, ctx: _SourceContext) -> None:
        self.builder = builder
        self.ctx = ctx

    def clock(self, path: Path, raw: Any) -> Clock | None:
        if isinstance(raw, str):
            if raw == AT_ONCE:
                return ChangeTime()
            if self.ctx.instant_column(path, raw, "clock"):
                return ColumnInstant(raw)
            return None
        if not isinstance(raw, dict):
            return None
        kinds = [k for k in CLOCK_KINDS if k in raw]
        if len(kinds) != 1:
            return None  # the schema has reported it
        kind = kinds[0]
        sub: Path = (*path, kind)
        if kind == "after":
            period = self.period(sub, raw["after"])
            start = self.clock((*path, "from"), raw.get("from"))
            return After(start, period) if start is not None and period is not None else None
        if kind in ("earliest", "latest"):
            operands = [self.clock((*sub, i), item) for i, item in enumerate(_sequence(raw[kind]))]
            if not operands or any(o is None for o in operands):
                return None
            built = tuple(o for o in operands if o is not None)
            return Earliest(built) if kind == "earliest" else Latest(built)
        if kind == "activity":
            name = raw["activity"]
            if not isinstance(name, str):
                return None
            if self.builder.activities_known and name not in self.builder.activities_fed:
                self.ctx.fail(
                    sub,
                    f"clock of {self.ctx.table} reads activity {name!r}, which no source feeds",
                    "add activity: [{activity: "
                    f"{name}, column: <timestamptz column>}}] to the tables that record it; "
                    f"fed activities: {_choices(self.builder.activities_fed)}",
                )
                return None
            return SubjectActivity(name)
        condition = self.condition(sub, raw["when"])
        then = self.clock((*path, "then"), raw.get("then"))
        otherwise = None
        if "else" in raw:
            otherwise = self.clock((*path, "else"), raw["else"])
            if otherwise is None:
                return None
        if condition is None or then is None:
            return None
        return When(condition, then, otherwise)

    def period(self, path: Path, raw: Any) -> Period | PeriodRef | None:
        if isinstance(raw, str):
            return self.builder._period(path, raw)
        name = _mapping(raw).get("parameter")
        if not isinstance(name, str):
            return None
        if self.builder.parameters_known and name not in self.builder.parameter_names:
            self.ctx.fail(
                (*path, "parameter"),
                f"clock of {self.ctx.table} refers to unknown parameter {name!r}",
                _unknown("parameter", name, self.builder.parameter_names, "parameters:"),
            )
            return None
        return PeriodRef(name)

    def condition(self, path: Path, raw: Any) -> Condition | None:
        if not isinstance(raw, dict) or len(raw) != 1:
            return None  # the schema has reported it
        ((kind, arg),) = raw.items()
        sub: Path = (*path, kind)
        if kind == "set":
            if isinstance(arg, str) and self.ctx.column(sub, arg, "condition"):
                return IsSet(arg)
            return None
        if kind == "equals":
            if not isinstance(arg, dict) or len(arg) != 1:
                return None
            ((column, value),) = arg.items()
            cpath: Path = (*sub, column)
            if not isinstance(column, str) or not self.ctx.column(cpath, column, "condition"):
                return None
            if not isinstance(value, bool | str | int):
                return None
            kind_of = self.ctx.columns[column]
            if not _fits(value, kind_of):
                self.ctx.fail(
                    cpath,
                    f"condition of {self.ctx.table} compares {column!r} ({kind_of}) "
                    f"with {_show(value)}",
                    f"compare with a value of type {kind_of}"
                    + (" (true or false)" if kind_of is ColumnType.BOOLEAN else ""),
                )
                return None
            return Equals(column, value)
        if kind == "not":
            inner = self.condition(sub, arg)
            return Not(inner) if inner is not None else None
        if kind in ("all", "any"):
            parts = [self.condition((*sub, i), c) for i, c in enumerate(_sequence(arg))]
            if not parts or any(p is None for p in parts):
                return None
            built = tuple(p for p in parts if p is not None)
            return AllOf(built) if kind == "all" else AnyOf(built)
        return None


def _mapping(value: Any) -> Mapping[Any, Any]:
    return value if isinstance(value, dict) else {}


def _sequence(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
