"""Readable differences between two versions of an object definition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_MISSING = object()


@dataclass(frozen=True)
class FieldChange:
    field: str
    kind: str  # "added" | "removed" | "changed"
    changes: dict[str, tuple[Any, Any]]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "change": self.kind}
        if self.changes:
            out["keywords"] = {k: {"from": a, "to": b} for k, (a, b) in self.changes.items()}
        return out


@dataclass(frozen=True)
class DefinitionDiff:
    fields: list[FieldChange]
    object_changes: dict[str, tuple[Any, Any]]

    @property
    def added(self) -> list[str]:
        return [c.field for c in self.fields if c.kind == "added"]

    @property
    def removed(self) -> list[str]:
        return [c.field for c in self.fields if c.kind == "removed"]

    @property
    def changed(self) -> list[FieldChange]:
        return [c for c in self.fields if c.kind == "changed"]

    def is_empty(self) -> bool:
        return not self.fields and not self.object_changes

    def as_dict(self) -> dict[str, Any]:
        return {
            "fields": [c.as_dict() for c in self.fields],
            "object": {k: {"from": a, "to": b} for k, (a, b) in self.object_changes.items()},
            "summary": self.summary(),
        }

    def summary(self) -> str:
        parts = []
        if self.added:
            parts.append("added " + ", ".join(self.added))
        if self.removed:
            parts.append("removed " + ", ".join(self.removed))
        for change in self.changed:
            parts.append(f"changed {change.field} ({', '.join(sorted(change.changes))})")
        if self.object_changes:
            parts.append("changed " + ", ".join(sorted(self.object_changes)))
        return "; ".join(parts) or "no change"


def _keyword_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    changes = {}
    for key in list(old) + [k for k in new if k not in old]:
        before, after = old.get(key, _MISSING), new.get(key, _MISSING)
        if before != after:
            changes[key] = (
                None if before is _MISSING else before,
                None if after is _MISSING else after,
            )
    return changes


def diff_definitions(old: dict[str, Any] | None, new: dict[str, Any]) -> DefinitionDiff:
    """What changed from ``old`` to ``new`` (``old`` None: everything is added)."""
    old = old or {"properties": {}, "required": []}
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    fields: list[FieldChange] = []
    for name, prop in new_props.items():
        if name not in old_props:
            fields.append(FieldChange(name, "added", {}))
            continue
        changes = _keyword_changes(old_props[name], prop)
        if (name in old_required) != (name in new_required):
            changes["required"] = (name in old_required, name in new_required)
        if changes:
            fields.append(FieldChange(name, "changed", changes))
    fields.extend(FieldChange(name, "removed", {}) for name in old_props if name not in new_props)
    outer_old = {k: v for k, v in old.items() if k not in {"properties", "required"}}
    outer_new = {k: v for k, v in new.items() if k not in {"properties", "required"}}
    object_changes = _keyword_changes(outer_old, outer_new) if old.get("x-name") else {}
    return DefinitionDiff(fields, object_changes)
