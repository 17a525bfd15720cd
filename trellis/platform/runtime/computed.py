"""What records compute and enforce on every write path: formulas, roll-ups, validation
rules and conditional field rules (docs/expressions.md, "In definitions").

The record pipeline calls in at fixed moments, whatever the entry point (API, bulk, forms,
imports, pack installs, automations):

- ``prepare`` (before validation): fields not visible are not written; formulas computed;
- ``check`` (validation): required-if, read-only-if, and the rules that read only the
  record and what it looks up, each a 422 naming the rule and its field;
- ``after_write`` (the row is written, same transaction): each roll-up the record feeds
  is updated, by a delta for SUM and COUNT (``SET f = f + :delta``, which the row lock
  serialises, so concurrent writers never lose one another's change) or recomputed under
  the parent row's lock for MIN, MAX and AVG; formulas of other records that read a
  changed field through a lookup are recomputed; records whose roll-ups moved are noted;
- ``finish`` (end of the service call): the rules that read roll-ups are checked on the
  stored rows, after every roll-up of the call has moved; a failure refuses the whole
  call (the caller rolls back). Then each record whose stored values the call moved this
  way (its roll-ups, a formula reading another record) is told to the ``RECOMPUTED``
  hooks, once, with its values before the first move and after the last: the record's
  own automations see a change its lines made (``automations.engine``).

Plans (compiled expressions, who feeds which roll-up) are built once per object version
and metadata revision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from trellis.exceptions import ValidationFailed
from trellis.platform.expressions import CompiledExpression, compiled, to_decimal
from trellis.platform.expressions.checker import COMPUTED_TYPES
from trellis.platform.messages import N_, Localized
from trellis.platform.metadata.computed import PLACEHOLDER, formula_order, rollup_source
from trellis.platform.metadata.fieldtypes import CONDITION_KEYWORDS

if TYPE_CHECKING:
    from trellis.platform.runtime.records.pipeline import Draft, WriteUnit
    from trellis.platform.runtime.registry import MetaRegistry, ObjectMeta

PENDING_KEY = "trellis.computed.pending"
MOVED_KEY = "trellis.computed.moved"  # a call's ``Moved`` records, told at ``finish``
LOCKED_KEY = "trellis.computed.locked"  # (transaction, {object: live ids locked})
# What a call keeps for its ``finish``: an automation's own writes (calls of their own)
# must neither consume nor drop them (``set_aside``).
_CALL_KEYS = (PENDING_KEY, MOVED_KEY)


@dataclass
class Moved:
    """The records a call moved by roll-ups or formula readers: each one's row before the
    first move and after the last; and the records the call created (their create is
    their event: they are not told again)."""

    rows: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    created: set[tuple[str, int]] = field(default_factory=set)


@dataclass(frozen=True)
class Rollup:
    """One roll-up field: ``function`` of ``child.value`` over the children whose ``link``
    points at a ``parent`` record (those the ``filter`` keeps)."""

    parent: str
    field: str
    child: str
    link: str
    function: str
    value: str | None
    filter: CompiledExpression | None

    @property
    def by_delta(self) -> bool:
        """SUM and COUNT move by the change of one child; the others are recomputed."""
        return self.function in ("SUM", "COUNT")


@dataclass(frozen=True)
class Rule:
    """A validation rule, compiled; ``later``: it reads roll-ups, so it is checked at the
    end of the call on the stored row."""

    name: str
    field: str
    when: CompiledExpression | None
    check: CompiledExpression
    messages: dict[str, list[tuple[str, CompiledExpression | None]]]
    later: bool


@dataclass
class Plan:
    """What one object computes and enforces (empty for most objects)."""

    formulas: list[tuple[str, CompiledExpression]] = field(default_factory=list)
    conditions: dict[str, dict[str, CompiledExpression]] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    feeds: list[Rollup] = field(default_factory=list)  # roll-ups this object's records feed
    own_rollups: list[Rollup] = field(default_factory=list)  # roll-up fields of this object
    readers: list[tuple[str, str, tuple[str, ...], frozenset[str]]] = field(default_factory=list)
    # (object, formula, its lookup path to this object, the fields of ours it reads)

    @property
    def empty(self) -> bool:
        """Nothing to compute or check: the pipeline skips every step."""
        return not (self.formulas or self.conditions or self.rules or self.feeds or self.readers)

    @property
    def later_rules(self) -> list[Rule]:
        """The rules checked at the end of the call."""
        return [rule for rule in self.rules if rule.later]


def plan_of(registry: MetaRegistry, meta: ObjectMeta) -> Plan:
    """The object's plan at the registry's revision (built on first use; kept with the
    registry, as it is asked for several times per record written)."""
    plans: dict[tuple[Any, ...], Plan] = registry.derived.setdefault("computed.plans", {})
    key = (registry.revision, meta.name, meta.version)
    found = plans.get(key)
    if found is None:
        if len(plans) > 1000:
            plans.clear()
        found = plans[key] = _build(registry, meta)
    return found


def _compile(registry: MetaRegistry, meta: ObjectMeta, text: str, old: bool = False) -> Any:
    documents = registry.documents()
    key = (meta.name, meta.version, registry.revision)
    return compiled(text, key, meta.definition.document, documents, allow_old=old)


def _rollups(registry: MetaRegistry) -> list[Rollup]:
    documents = registry.documents()
    found = []
    for meta in registry.all():
        for name, spec in meta.fields.items():
            if spec.type.name != "rollup":
                continue
            settings = spec.schema["x-rollup"]
            source = rollup_source(meta.definition.document, documents, settings["of"])
            if source is None:
                continue
            child = registry.get(source[0])
            text = settings.get("filter")
            found.append(
                Rollup(
                    meta.name,
                    name,
                    source[0],
                    source[1],
                    settings["function"],
                    settings.get("field"),
                    _compile(registry, child, text) if text else None,
                )
            )
    return found


def _build(registry: MetaRegistry, meta: ObjectMeta) -> Plan:
    plan = Plan()
    document = meta.definition.document
    documents = registry.documents()
    for name in formula_order(document, documents) or []:
        plan.formulas.append(
            (name, _compile(registry, meta, meta.fields[name].schema["x-formula"]))
        )
    for name, spec in meta.fields.items():
        conditions: dict[str, CompiledExpression] = {
            keyword: _compile(registry, meta, spec.schema[keyword])
            for keyword in CONDITION_KEYWORDS
            if keyword in spec.schema
        }
        if conditions:
            plan.conditions[name] = conditions
    rollups = _rollups(registry)
    plan.feeds = [r for r in rollups if r.child == meta.name]
    plan.own_rollups = [r for r in rollups if r.parent == meta.name]
    rolled = {(r.parent, r.field) for r in rollups}
    for rule in document.get("x-rules", []):
        when = _compile(registry, meta, rule["when"], old=True) if "when" in rule else None
        check = _compile(registry, meta, rule["assert"], old=True)
        messages = {
            language: _message_parts(registry, meta, text)
            for language, text in rule["message"].items()
        }
        later = any(_reads_rollup(registry, meta, c, rolled) for c in (when, check) if c)
        plan.rules.append(Rule(rule["name"], rule.get("field", ""), when, check, messages, later))
    for other in registry.all():
        for name, spec in other.fields.items():
            if spec.type.name != "formula":
                continue
            formula = _compile(registry, other, spec.schema["x-formula"])
            for (path, target), target_fields in _lookup_reads(registry, other, formula).items():
                if target == meta.name:
                    plan.readers.append((other.name, name, path, frozenset(target_fields)))
    return plan


def _message_parts(
    registry: MetaRegistry, meta: ObjectMeta, text: str
) -> list[tuple[str, CompiledExpression | None]]:
    parts: list[tuple[str, CompiledExpression | None]] = []
    at = 0
    for match in PLACEHOLDER.finditer(text):
        parts.append((text[at : match.start()], None))
        parts.append(("", _compile(registry, meta, match.group(1), old=True)))
        at = match.end()
    parts.append((text[at:], None))
    return parts


def _lookup_reads(
    registry: MetaRegistry, meta: ObjectMeta, formula: CompiledExpression
) -> dict[tuple[tuple[str, ...], str], set[str]]:
    """What a formula reads of other records: (lookup path, the object it ends at) → the
    fields read there. ``dealer.region.name`` reads ``region`` of the dealer (path
    ``dealer``) and ``name`` of the region (path ``dealer.region``)."""
    reads: dict[tuple[tuple[str, ...], str], set[str]] = {}
    for path in formula.paths:
        parts = path.split(".")
        current = meta
        for depth in range(1, len(parts)):
            spec = current.fields.get(parts[depth - 1])
            if spec is None or not spec.target:
                break
            current = registry.get(spec.target)
            reads.setdefault((tuple(parts[:depth]), current.name), set()).add(parts[depth])
    return reads


def _reads_rollup(
    registry: MetaRegistry,
    meta: ObjectMeta,
    expression: CompiledExpression,
    rolled: set[tuple[str, str]],
) -> bool:
    for path in (*expression.paths, *expression.old_paths):
        current = meta
        parts = path.split(".")
        for index, part in enumerate(parts):
            spec = current.fields.get(part)
            if spec is None:
                break
            if index == len(parts) - 1:
                if (current.name, part) in rolled or (
                    spec.type.name in COMPUTED_TYPES
                    and any(
                        (current.name, p.split(".")[0]) in rolled
                        for p in _compile(registry, current, spec.schema["x-formula"]).paths
                        if spec.type.name == "formula"
                    )
                ):
                    return True
            elif spec.target:
                current = registry.get(spec.target)
    return False


# --- values ----------------------------------------------------------------------------


def _dec(value: Any) -> Decimal:
    """A number as a Decimal (NULL as 0)."""
    return to_decimal(value) or Decimal(0)


def record_resolver(unit: WriteUnit) -> Callable[[str, int, str], Any]:
    """Reads a field of another record (paths through lookups), each row once a call."""
    rows: dict[tuple[str, int], Any] = {}

    def resolve(object_name: str, record_id: int, name: str) -> Any:
        key = (object_name, int(record_id))
        if key not in rows:
            table = unit.registry.get(object_name).table
            rows[key] = (
                unit.session.execute(
                    sa.select(table).where(table.c.id == key[1], table.c.deleted_at.is_(None))
                )
                .mappings()
                .first()
            )
        row = rows[key]
        return None if row is None else row.get(name)

    return resolve


def expression_user(unit: WriteUnit) -> dict[str, Any] | None:
    """``$user`` as expressions read it (``None`` for the system)."""
    caller = unit.caller
    if caller is None:
        return None
    return {"id": caller.user_id, "roles": list(caller.roles), "partner": caller.partner_id}


def python_values(meta: ObjectMeta, values: Mapping[str, Any]) -> dict[str, Any]:
    """JSON values as the columns hold them (what expressions read); a value its type
    refuses reads as NULL here, and validation says why."""
    result: dict[str, Any] = {}
    for name, value in values.items():
        spec = meta.fields.get(name)
        if spec is None or value is None:
            result[name] = value
            continue
        try:
            result[name] = spec.to_python(value)
        except (ValueError, TypeError, ArithmeticError):
            result[name] = None
    return result


def _json(meta: ObjectMeta, name: str, value: Any) -> Any:
    spec = meta.fields[name]
    if value is None:
        return None
    return spec.to_json(spec.to_python(value))


def _true(expression: CompiledExpression, values: Mapping[str, Any], unit: WriteUnit,
          resolver: Any, old: Mapping[str, Any] | None = None) -> bool:  # fmt: skip
    return expression(values, resolver, expression_user(unit), old) is True


# --- before validation -----------------------------------------------------------------


def prepare(draft: Draft, unit: WriteUnit) -> None:
    """Drop the fields the record does not show, then compute its formulas (in the order
    they read each other), into the draft's payload."""
    meta = draft.meta
    plan = plan_of(unit.registry, meta)
    if draft.old is None:
        for rollup in plan.own_rollups:  # a new record's sums and counts start at zero
            if rollup.by_delta:
                draft.payload[rollup.field] = 0
    if plan.feeds and unit.dialect == "postgresql":
        merged = {**(draft.old or {}), **draft.payload}
        lock_rollup_parents(unit, meta, [draft.old or {}, merged])
    if not (plan.formulas or plan.conditions):
        return
    stored = {n: draft.old.get(n) for n in meta.fields} if draft.old is not None else {}
    merged = {**stored, **draft.payload}
    resolver = record_resolver(unit)
    values = python_values(meta, merged)
    for name, conditions in plan.conditions.items():
        visible = conditions.get("x-visible-if")
        if visible is not None and not _true(visible, values, unit, resolver):
            draft.payload.pop(name, None)  # a field not shown is not written
            if draft.old is None:
                values[name] = None
            else:
                values[name] = python_values(meta, {name: stored.get(name)})[name]
    _formulas(meta, plan, values, resolver)
    for name, _formula in plan.formulas:
        draft.payload[name] = _json(meta, name, values[name])


def _stored_formulas(
    session: Any,
    meta: ObjectMeta,
    plan: Plan,
    record_id: int,
    values: dict[str, Any],
    resolver: Any,
) -> dict[str, Any]:
    """A stored record's formulas computed afresh over its ``values`` (changed in place);
    its row is written when one moved. Returns what moved."""
    before = {name: values.get(name) for name, _formula in plan.formulas}
    _formulas(meta, plan, values, resolver)
    changed = {name: values[name] for name in before if values[name] != before[name]}
    if changed:
        table = meta.table
        session.execute(sa.update(table).where(table.c.id == record_id).values(changed))
    return changed


def _formulas(meta: ObjectMeta, plan: Plan, values: dict[str, Any], resolver: Any) -> None:
    """Compute the object's formulas into ``values`` (column values), in reading order."""
    for name, formula in plan.formulas:
        result = formula(values, resolver, None, None)
        try:
            values[name] = meta.fields[name].to_python(result) if result is not None else None
        except (ValueError, TypeError, ArithmeticError):
            values[name] = None


def lock_rollup_parents(
    unit: WriteUnit, meta: ObjectMeta, records: list[Mapping[str, Any]]
) -> None:
    """Lock, before anything else, the records whose roll-ups this write will move, and
    theirs in turn: the farthest first, each level by id. Every writer takes them in the
    same order, so concurrent writers queue instead of deadlocking (a reference check's
    shared lock taken first would let two of them wait for each other)."""
    levels: list[set[tuple[str, int]]] = []
    current = [(meta, record) for record in records]
    for _depth in range(4):  # roll-ups of roll-ups, a few levels at most
        wanted: set[tuple[str, int]] = set()
        for owner, record in current:
            for rollup in plan_of(unit.registry, owner).feeds:
                value = record.get(rollup.link)
                if isinstance(value, int) and not isinstance(value, bool):
                    wanted.add((rollup.parent, value))
        if not wanted:
            break
        levels.append(wanted)
        current = []
        for object_name, record_id in sorted(wanted):
            parent = unit.registry.get(object_name)
            links = {r.link for r in plan_of(unit.registry, parent).feeds}
            if links:
                table = parent.table
                row = (
                    unit.session.execute(
                        sa.select(*(table.c[n] for n in sorted(links))).where(
                            table.c.id == record_id
                        )
                    )
                    .mappings()
                    .first()
                )
                if row is not None:
                    current.append((parent, dict(row)))
    held = _held(unit.session)
    for wanted in reversed(levels):
        for object_name, record_id in sorted(wanted):
            parent = unit.registry.get(object_name)
            statement = parent.statement(("rollup_lock",), partial(_lock_statement, parent))
            locked = unit.session.execute(statement, {"id": record_id}).first()
            if locked is not None and locked.deleted_at is None:
                held.setdefault(object_name, set()).add(record_id)


def _held(session: Any) -> dict[str, set[int]]:
    """The live records this transaction has locked for its roll-ups, by object."""
    transaction = session.get_transaction()
    entry = session.info.get(LOCKED_KEY)
    if entry is None or entry[0] is not transaction:
        entry = session.info[LOCKED_KEY] = (transaction, {})
    held: dict[str, set[int]] = entry[1]
    return held


def locked_live(session: Any, object_name: str) -> set[int]:
    """The ``object_name`` records this transaction holds ``FOR UPDATE`` (roll-up
    parents, locked up front) and found live: the reference check of a lookup to one of
    them needs no shared lock and no query of its own, since a concurrent delete waits for
    this transaction anyway."""
    entry = session.info.get(LOCKED_KEY)
    if entry is None or entry[0] is not session.get_transaction():
        return set()
    return entry[1].get(object_name, set())


# --- validation ------------------------------------------------------------------------


def check(draft: Draft, unit: WriteUnit) -> None:
    """Conditional required and read-only fields, then the rules that read only the record
    and its lookups: every problem at once, each naming its field (and rule)."""
    meta = draft.meta
    plan = plan_of(unit.registry, meta)
    if not (plan.conditions or plan.rules):
        return
    stored = {n: draft.old.get(n) for n in meta.fields} if draft.old is not None else None
    merged = {**(stored or {}), **draft.payload}
    resolver = record_resolver(unit)
    values = python_values(meta, merged)
    old = python_values(meta, stored) if stored is not None else None
    details: list[dict[str, Any]] = []
    for name, conditions in plan.conditions.items():
        required = conditions.get("x-required-if")
        if (
            required is not None
            and merged.get(name) in (None, "", [])
            and _true(required, values, unit, resolver)
        ):
            details.append({"field": name, "message": N_("is required")})
        locked = conditions.get("x-readonly-if")
        if locked is not None and name in draft.payload:
            before = None if stored is None else stored.get(name)
            changed = draft.payload[name] != before and not (
                stored is None and draft.payload[name] == meta.fields[name].default
            )
            if changed and _true(locked, old if old is not None else values, unit, resolver):
                details.append({"field": name, "message": N_("is read-only now")})
    for rule in plan.rules:
        if not rule.later:
            problem = _broken(rule, values, old, unit, resolver)
            if problem is not None:
                details.append(problem)
    if details:
        raise ValidationFailed(N_("the record breaks its object's rules"), details)


def _broken(
    rule: Rule, values: Mapping[str, Any], old: Mapping[str, Any] | None, unit: WriteUnit,
    resolver: Any,
) -> dict[str, Any] | None:  # fmt: skip
    user = expression_user(unit)
    if rule.when is not None and rule.when(values, resolver, user, old) is not True:
        return None
    if rule.check(values, resolver, user, old) is True:
        return None
    texts = {}
    for language, parts in rule.messages.items():
        pieces = []
        for text, expression in parts:
            if expression is None:
                pieces.append(text)
            else:
                pieces.append(_shown(expression(values, resolver, user, old)))
        texts[language] = "".join(pieces)
    return {"field": rule.field, "rule": rule.name, "message": Localized(texts)}


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, Decimal | float):
        return f"{_dec(value).quantize(Decimal('0.01')):,}"
    return str(value)


# --- after the write -------------------------------------------------------------------


def after_write(
    unit: WriteUnit,
    meta: ObjectMeta,
    record_id: int,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
) -> None:
    """A record was created (``old`` None), changed, deleted (``new`` None) or restored:
    move the roll-ups it feeds, recompute the formulas that read it, note what to check."""
    plan = plan_of(unit.registry, meta)
    if plan.later_rules and new is not None:  # checked at the end, against the first old
        _pending(unit).setdefault((meta.name, record_id), dict(old) if old is not None else None)
    if plan.empty:
        return
    for rollup in plan.feeds:
        _move(unit, rollup, old, new)
    if plan.readers and old is not None and new is not None:
        changed = {n for n in meta.fields if old.get(n) != new.get(n)}
        stale = {(name, path) for name, _f, path, reads in plan.readers if changed & reads}
        for object_name, path in sorted(stale):  # once per reader and path, whatever it reads
            _recompute_readers(unit, object_name, path, record_id)


def _pending(unit: WriteUnit) -> dict[tuple[str, int], dict[str, Any] | None]:
    pending: dict[tuple[str, int], dict[str, Any] | None] = unit.session.info.setdefault(
        PENDING_KEY, {}
    )
    return pending


def _contribution(
    unit: WriteUnit, rollup: Rollup, values: Mapping[str, Any] | None
) -> tuple[Any, Any]:
    """(parent id, what the child adds) — the value, 1 for COUNT; None when it adds nothing."""
    if values is None or values.get(rollup.link) is None:
        return None, None
    parent = values[rollup.link]
    if rollup.filter is not None and not _true(rollup.filter, values, unit, record_resolver(unit)):
        return parent, None
    if rollup.function == "COUNT":
        return parent, 1
    return parent, values.get(rollup.value) if rollup.value else None


def _move(
    unit: WriteUnit, rollup: Rollup, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> None:
    old_parent, before = _contribution(unit, rollup, old)
    new_parent, after = _contribution(unit, rollup, new)
    if old_parent == new_parent and before == after:
        return
    if not rollup.by_delta:
        for parent in {old_parent, new_parent} - {None}:
            _recompute(unit, rollup, int(parent))
        return
    if old_parent == new_parent:
        delta = _dec(after) - _dec(before)
        if delta:
            _add(unit, rollup, int(new_parent), delta)
        return
    if old_parent is not None and before is not None:
        _add(unit, rollup, int(old_parent), -_dec(before))
    if new_parent is not None and after is not None:
        _add(unit, rollup, int(new_parent), _dec(after))


def _add(unit: WriteUnit, rollup: Rollup, parent_id: int, delta: Decimal) -> None:
    """``SET f = COALESCE(f, 0) + delta``: the row lock orders concurrent writers, each
    adding to what the one before it committed."""
    meta = unit.registry.get(rollup.parent)
    spec = meta.fields[rollup.field]
    amount = int(delta) if rollup.function == "COUNT" else spec.to_python(delta)
    statement = meta.statement(("rollup_add", rollup.field), lambda: _add_statement(meta, rollup))
    found = unit.session.execute(statement, {"parent_id": parent_id, "delta": amount})
    row = found.mappings().first()
    if row is None:
        return
    new = dict(row)
    old = {**new, rollup.field: (new[rollup.field] or 0) - amount}
    _rolled(unit, meta, parent_id, old, new)


def _add_statement(meta: ObjectMeta, rollup: Rollup) -> Any:
    """``UPDATE … SET f = COALESCE(f, 0) + :delta WHERE id = :parent_id RETURNING *``,
    built once per object version."""
    table = meta.table
    column = table.c[rollup.field]
    delta = sa.bindparam("delta", type_=column.type)
    return (
        sa.update(table)
        .where(table.c.id == sa.bindparam("parent_id"))
        .values({rollup.field: sa.func.coalesce(column, 0) + delta})
        .returning(*table.c)
    )


def _lock_statement(meta: ObjectMeta) -> Any:
    table = meta.table
    return (
        sa.select(table.c.id, table.c.deleted_at)
        .where(table.c.id == sa.bindparam("id"))
        .with_for_update()
    )


def _recompute(unit: WriteUnit, rollup: Rollup, parent_id: int) -> None:
    """MIN, MAX, AVG: the parent row locked first, then its children read afresh (a new
    statement, so it sees every child committed before the lock was granted)."""
    meta = unit.registry.get(rollup.parent)
    table = meta.table
    if unit.dialect == "postgresql":
        unit.session.execute(sa.select(table.c.id).where(table.c.id == parent_id).with_for_update())
    child = unit.registry.get(rollup.child).table
    rows = unit.session.execute(
        sa.select(child).where(child.c[rollup.link] == parent_id, child.c.deleted_at.is_(None))
    ).mappings()
    values = [
        row[rollup.value]
        for row in rows
        if rollup.value
        and row[rollup.value] is not None
        and (rollup.filter is None or _true(rollup.filter, dict(row), unit, record_resolver(unit)))
    ]
    result = _aggregate(rollup.function, values)
    spec = meta.fields[rollup.field]
    stored = None if result is None else spec.to_python(result)
    before = (
        unit.session.execute(sa.select(table).where(table.c.id == parent_id)).mappings().first()
    )
    if before is None or before[rollup.field] == stored:
        return
    unit.session.execute(
        sa.update(table).where(table.c.id == parent_id).values({rollup.field: stored})
    )
    _rolled(unit, meta, parent_id, dict(before), {**before, rollup.field: stored})


def _aggregate(function: str, values: list[Any]) -> Any:
    """MIN, MAX or AVG of the children's values (None without any); SUM and COUNT too,
    for a preview that has the children in hand."""
    if function == "COUNT":
        return len(values)
    if function == "SUM":
        return sum((_dec(v) for v in values), Decimal(0))
    if not values:
        return None
    if function == "MIN":
        return min(values)
    if function == "MAX":
        return max(values)
    return sum((_dec(v) for v in values), Decimal(0)) / len(values)


def _rolled(
    unit: WriteUnit, meta: ObjectMeta, record_id: int, old: dict[str, Any], new: dict[str, Any]
) -> None:
    """A roll-up moved: the record's own formulas that read it follow, and the move goes on
    to the roll-ups and formulas that read this record."""
    plan = plan_of(unit.registry, meta)
    if plan.formulas:
        new = dict(new)
        _stored_formulas(unit.session, meta, plan, record_id, new, record_resolver(unit))
    _note_moved(unit, meta, record_id, old, new)
    after_write(unit, meta, record_id, old, new)


def _told(unit: WriteUnit, meta: ObjectMeta) -> bool:
    """Whether moves of ``meta``'s records are told to anyone (``RECOMPUTED`` hooks)."""
    from trellis.platform.runtime.records.hooks import Hook

    return bool(unit.hook_functions(Hook.RECOMPUTED, meta))


def _moved(unit: WriteUnit) -> Moved:
    moved: Moved = unit.session.info.setdefault(MOVED_KEY, Moved())
    return moved


def _note_moved(
    unit: WriteUnit,
    meta: ObjectMeta,
    record_id: int,
    old: Mapping[str, Any],
    new: Mapping[str, Any],
) -> None:
    """Keep a moved record's first row before and latest row after, for ``finish``."""
    if not _told(unit, meta):
        return
    rows = _moved(unit).rows
    key = (meta.name, record_id)
    if key in rows:
        rows[key][1] = dict(new)
    else:
        rows[key] = [dict(old), dict(new)]


def note_created(unit: WriteUnit, meta: ObjectMeta, ids: list[int]) -> None:
    """Records this call creates: a move of their roll-ups by their own lines, in the same
    call, is part of their create, not a change to tell."""
    if _told(unit, meta):
        _moved(unit).created.update((meta.name, record_id) for record_id in ids)


def _recompute_readers(
    unit: WriteUnit, object_name: str, path: tuple[str, ...], target_id: int
) -> None:
    """Formulas reading a changed record through a lookup path (one or two hops):
    recomputed on each reader."""
    meta = unit.registry.get(object_name)
    table = meta.table
    if len(path) == 1:
        reaches = table.c[path[0]] == target_id
    else:  # the readers whose first hop points at a record whose second hop is the target
        middle = unit.registry.get(meta.fields[path[0]].target or "").table
        reaches = table.c[path[0]].in_(
            sa.select(middle.c.id).where(
                middle.c[path[1]] == target_id, middle.c.deleted_at.is_(None)
            )
        )
    rows = (
        unit.session.execute(sa.select(table).where(reaches, table.c.deleted_at.is_(None)))
        .mappings()
        .all()
    )
    plan = plan_of(unit.registry, meta)
    resolver = record_resolver(unit)
    for row in rows:  # every formula of the reader is brought up to date together
        values = dict(row)
        if _stored_formulas(unit.session, meta, plan, int(row["id"]), values, resolver):
            _note_moved(unit, meta, int(row["id"]), dict(row), values)
            after_write(unit, meta, int(row["id"]), dict(row), values)


# --- end of the call -------------------------------------------------------------------


def finish(unit: WriteUnit) -> None:
    """The rules that read roll-ups, on the stored rows of every record the call moved;
    then the moved records told to the ``RECOMPUTED`` hooks (``tell_moved``)."""
    _check_later_rules(unit)
    tell_moved(unit)


def tell_moved(unit: WriteUnit) -> None:
    """Each record the call moved (not created, not deleted), once, to the ``RECOMPUTED``
    hooks: an update from its row before the first move to its row after the last, as
    JSON, with the changed fields. Taken off the session first, so what the hooks write
    (calls of their own) is told by their own ``finish``."""
    from trellis.platform.runtime.records.hooks import Action, Hook, WriteEvent
    from trellis.platform.runtime.records.serialise import serialise

    moved: Moved | None = unit.session.info.pop(MOVED_KEY, None)
    if moved is None:
        return
    for (object_name, record_id), (before, after) in moved.rows.items():
        if (object_name, record_id) in moved.created or after.get("deleted_at") is not None:
            continue
        meta = unit.registry.get(object_name)
        old, new = serialise(meta, before), serialise(meta, after)
        changes = {n: [old.get(n), new.get(n)] for n in meta.fields if old.get(n) != new.get(n)}
        if not changes:
            continue
        event = WriteEvent(
            meta=meta,
            action=Action.UPDATE,
            values=new,
            session=unit.session,
            caller=unit.caller,
            record_id=record_id,
            old=old,
            changes=changes,
            registry=unit.registry,
        )
        unit.hooks.run(Hook.RECOMPUTED, event, unit.hook_functions(Hook.RECOMPUTED, meta))


def _check_later_rules(unit: WriteUnit) -> None:
    pending = unit.session.info.pop(PENDING_KEY, None)
    if not pending:
        return
    details: list[dict[str, Any]] = []
    for (object_name, record_id), old in pending.items():
        meta = unit.registry.get(object_name)
        rules = plan_of(unit.registry, meta).later_rules
        table = meta.table
        row = (
            unit.session.execute(
                sa.select(table).where(table.c.id == record_id, table.c.deleted_at.is_(None))
            )
            .mappings()
            .first()
        )
        if row is None:
            continue
        resolver = record_resolver(unit)
        for rule in rules:
            problem = _broken(rule, dict(row), old or {}, unit, resolver)
            if problem is not None:
                details.append(problem)
    if details:
        raise ValidationFailed(N_("the record breaks its object's rules"), details)


def discard(unit: WriteUnit) -> None:
    """Forget what a refused call noted for its end (its changes are being rolled back)."""
    for key in _CALL_KEYS:
        unit.session.info.pop(key, None)


@contextmanager
def set_aside(session: Any) -> Iterator[None]:
    """What the call under way keeps for its ``finish`` (rules to check, moved records to
    tell) survives calls made inside it — an automation's own writes, which start and
    finish their own. Rules those calls left unchecked are checked with the outer ones;
    moves they left untold (a call that failed, rolled back) are dropped."""
    outer = {key: session.info.pop(key) for key in _CALL_KEYS if key in session.info}
    try:
        yield
    finally:
        left = session.info.pop(PENDING_KEY, None) or {}
        session.info.pop(MOVED_KEY, None)
        if PENDING_KEY in outer or left:
            session.info[PENDING_KEY] = {**left, **outer.get(PENDING_KEY, {})}
        if MOVED_KEY in outer:
            session.info[MOVED_KEY] = outer[MOVED_KEY]


# --- whole tables ----------------------------------------------------------------------


def backfill(
    session: Any, registry: MetaRegistry, object_name: str, done: set[str] | None = None
) -> None:
    """Every stored value of the object's formulas and roll-ups computed afresh (a new or
    changed definition): roll-ups from their children, then formulas, row by row; then the
    roll-ups of other objects over this one, upwards."""
    done = set() if done is None else done
    if object_name in done:
        return
    done.add(object_name)
    _backfill_one(session, registry, object_name)
    for rollup in _rollups(registry):
        if rollup.child == object_name:
            backfill(session, registry, rollup.parent, done)


def _backfill_one(session: Any, registry: MetaRegistry, object_name: str) -> None:
    """The object's own formulas and roll-ups, computed afresh."""
    from trellis.platform.runtime.access import Access
    from trellis.platform.runtime.records.hooks import hooks
    from trellis.platform.runtime.records.pipeline import WriteUnit

    meta = registry.find(object_name)
    if meta is None:
        return
    unit = WriteUnit(session, registry, Access(registry, None, session), None, hooks)
    plan = plan_of(registry, meta)
    table = meta.table
    if not (plan.formulas or plan.own_rollups):
        return
    ids = list(session.scalars(sa.select(table.c.id).order_by(table.c.id)))
    for rollup in plan.own_rollups:
        child = registry.get(rollup.child).table
        rows = session.execute(
            sa.select(child).where(child.c.deleted_at.is_(None), child.c[rollup.link].is_not(None))
        ).mappings()
        groups: dict[int, list[Any]] = {}
        for row in rows:
            if rollup.filter is not None and not _true(
                rollup.filter, dict(row), unit, record_resolver(unit)
            ):
                continue
            value = 1 if rollup.function == "COUNT" else row[rollup.value] if rollup.value else None
            if value is not None:
                groups.setdefault(int(row[rollup.link]), []).append(value)
        spec = meta.fields[rollup.field]
        for record_id in ids:
            values = groups.get(record_id, [])
            result: Any
            if rollup.function in ("SUM", "COUNT"):
                result = sum((_dec(v) for v in values), Decimal(0))
            elif not values:
                result = None
            elif rollup.function == "MIN":
                result = min(values)
            elif rollup.function == "MAX":
                result = max(values)
            else:
                result = sum((_dec(v) for v in values), Decimal(0)) / len(values)
            stored = (
                None
                if result is None
                else spec.to_python(int(result) if rollup.function == "COUNT" else result)
            )
            session.execute(
                sa.update(table).where(table.c.id == record_id).values({rollup.field: stored})
            )
    if plan.formulas:
        resolver = record_resolver(unit)
        for row in session.execute(sa.select(table)).mappings().all():
            _stored_formulas(session, meta, plan, int(row["id"]), dict(row), resolver)


# --- preview (a form being typed) -------------------------------------------------------


@dataclass
class FieldState:
    """How a form shows a field now: its conditional rules decided on the values typed."""

    visible: bool = True
    required: bool = False
    readonly: bool = False


@dataclass
class Preview:
    """What a record being typed would compute: the JSON values of its formulas and of the
    roll-ups over the lines in hand, its fields' states, and the same for each line."""

    values: dict[str, Any] = field(default_factory=dict)
    states: dict[str, FieldState] = field(default_factory=dict)
    lines: dict[tuple[str, str], list[Preview]] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)  # broken rules, as on save


Line = tuple[dict[str, Any], dict[str, Any] | None]  # (values typed, values stored)


def preview(
    unit: WriteUnit,
    meta: ObjectMeta,
    payload: Mapping[str, Any],
    stored: Mapping[str, Any] | None = None,
    lines: Mapping[tuple[str, str], tuple[ObjectMeta, list[Line]]] | None = None,
) -> Preview:
    """Compute a record as a form holds it, writing nothing: the same visibility, formulas
    and conditions as ``prepare`` and ``check``, and each roll-up over master-detail lines
    given in ``lines`` (keyed by (child object, its master field)) from those lines' values
    as computed here. Roll-ups whose children are not in hand are left out."""
    plan = plan_of(unit.registry, meta)
    result = Preview()
    merged = {**(stored or {}), **payload}
    resolver = record_resolver(unit)
    values = python_values(meta, merged)
    old = python_values(meta, dict(stored)) if stored is not None else None
    for name, conditions in plan.conditions.items():
        visible = conditions.get("x-visible-if")
        if visible is not None and not _true(visible, values, unit, resolver):
            result.states[name] = FieldState(visible=False)
            values[name] = (old or {}).get(name)
    children: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for key, (child, items) in (lines or {}).items():
        shown = [preview(unit, child, typed, before) for typed, before in items]
        result.lines[key] = shown
        children[key] = [
            python_values(child, {**(before or {}), **typed, **line.values})
            for (typed, before), line in zip(items, shown, strict=True)
        ]
    for rollup in plan.own_rollups:
        rows = children.get((rollup.child, rollup.link))
        if rows is None:
            continue
        kept = [
            row
            for row in rows
            if rollup.filter is None or _true(rollup.filter, row, unit, resolver)
        ]
        picked = [row.get(rollup.value) for row in kept] if rollup.value else kept
        if rollup.function != "COUNT":
            picked = [v for v in picked if v is not None]
        total = _aggregate(rollup.function, picked)
        try:
            spec = meta.fields[rollup.field]
            values[rollup.field] = None if total is None else spec.to_python(total)
        except (ValueError, TypeError, ArithmeticError):
            values[rollup.field] = None
        result.values[rollup.field] = _json(meta, rollup.field, values[rollup.field])
    _formulas(meta, plan, values, resolver)
    for name, _formula in plan.formulas:
        result.values[name] = _json(meta, name, values[name])
    for name, conditions in plan.conditions.items():
        if name in result.states:
            continue
        required = conditions.get("x-required-if")
        locked = conditions.get("x-readonly-if")
        result.states[name] = FieldState(
            required=required is not None and _true(required, values, unit, resolver),
            readonly=locked is not None
            and _true(locked, old if old is not None else values, unit, resolver),
        )
    if plan.rules:
        after = _as_if_written(unit, plan, values, old, resolver)
        for rule in plan.rules:
            problem = _broken(rule, values, old, unit, after if rule.later else resolver)
            if problem is not None:
                result.problems.append(problem)
    return result


def _as_if_written(
    unit: WriteUnit,
    plan: Plan,
    values: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    resolver: Callable[[str, int, str], Any],
) -> Callable[[str, int, str], Any]:
    """A resolver that reads the SUM and COUNT roll-ups this record feeds as they would
    be once it is saved (stored value + its change), so a rule reading them (a dealer's
    open exposure) is judged in the preview as it will be on save. MIN, MAX and AVG, and
    roll-ups further up, read as stored."""
    moved: dict[tuple[str, int, str], Decimal] = {}
    for rollup in plan.feeds:
        if not rollup.by_delta:
            continue
        for values_of, sign in ((old, -1), (values, 1)):
            parent, amount = _contribution(unit, rollup, values_of)
            if parent is not None and amount is not None:
                key = (rollup.parent, int(parent), rollup.field)
                moved[key] = moved.get(key, Decimal(0)) + sign * _dec(amount)
    if not any(moved.values()):
        return resolver

    def resolve(object_name: str, record_id: int, name: str) -> Any:
        value = resolver(object_name, record_id, name)
        delta = moved.get((object_name, int(record_id), name))
        return value if not delta else _dec(value) + delta

    return resolve


def live(registry: MetaRegistry, meta: ObjectMeta) -> bool:
    """Whether a form of the object has anything to preview as it is typed: formulas,
    conditional rules, validation rules or roll-ups of its own or of its lines."""
    plans = [plan_of(registry, meta)]
    plans += [plan_of(registry, registry.get(child)) for child, _spec in meta.children]
    return any(p.formulas or p.conditions or p.own_rollups or p.rules for p in plans)
