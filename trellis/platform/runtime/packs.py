"""Packs: folders of metadata and demo data, installed in one transaction (DESIGN §8).

A pack folder holds ``pack.json`` — name, version, label, dependencies, the object
files in install order, roles, workflows, demo data files — and the files it names. Installing is
idempotent: an unchanged definition writes nothing, a changed one becomes a new
version through the same service as the API, and demo data loads once.
"""

from __future__ import annotations

import copy
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trellis.exceptions import PackError, TrellisError
from trellis.platform.messages import N_
from trellis.platform.metadata.fieldtypes import CONDITION_KEYWORDS
from trellis.platform.metadata.names import is_valid_name
from trellis.platform.runtime.automations import AutomationService, pack_hooks
from trellis.platform.runtime.identity import RoleService, UserService
from trellis.platform.runtime.models import InstalledPack, utcnow
from trellis.platform.runtime.objects import ObjectService
from trellis.platform.runtime.records import RecordService
from trellis.platform.runtime.versioning import DocumentStore, bump_revision
from trellis.platform.runtime.workflow import seeding
from trellis.platform.runtime.workflow.documents import WorkflowService

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.identity.caller import Caller
    from trellis.platform.runtime.registry import MetaRegistry

BUILTIN_PACKS = Path(__file__).resolve().parents[2] / "apps"


@dataclass
class InstallResult:
    """What installing a pack did: documents created, updated or unchanged, and demo data."""

    name: str
    version: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    demo_records: int = 0
    demo_users: list[dict[str, Any]] = field(default_factory=list)
    demo_approvals: int = 0


def resolve_pack(path_or_name: str) -> Path:
    """A pack folder given as a path, or the name of a pack shipped with Trellis."""
    path = Path(path_or_name)
    if (path / "pack.json").is_file():
        return path
    if is_valid_name(path_or_name) and (BUILTIN_PACKS / path_or_name / "pack.json").is_file():
        return BUILTIN_PACKS / path_or_name
    raise PackError(
        N_(
            "no pack at %(path)s (a folder with pack.json, or a built-in name)",
            path=repr(path_or_name),
        )
    )


def _read_json(folder: Path, relative: str) -> Any:
    path = (folder / relative).resolve()
    if folder.resolve() not in path.parents:
        raise PackError(N_("%(file)s is outside the pack folder", file=repr(relative)))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackError(
            N_("the pack names %(file)s, which does not exist", file=repr(relative))
        ) from None
    except OSError as exc:  # a folder, an unreadable file
        raise PackError(
            N_("cannot read %(file)s: %(reason)s", file=repr(relative), reason=exc.strerror)
        ) from None
    except ValueError as exc:
        raise PackError(
            N_("%(file)s is not valid JSON: %(reason)s", file=relative, reason=str(exc))
        ) from None


def load_manifest(folder: Path) -> dict[str, Any]:
    """A pack folder's ``pack.json``, checked: a name, a version string and file lists.

    Raises ``PackError`` naming each problem.
    """
    manifest = _read_json(folder, "pack.json")
    problems = []
    if not isinstance(manifest, dict):
        raise PackError(N_("pack.json must be a JSON object"))
    if not is_valid_name(manifest.get("name")):
        problems.append({"field": "name", "message": N_("must be a lower snake_case name")})
    if not isinstance(manifest.get("version"), str):
        problems.append({"field": "version", "message": N_("must be a version string")})
    for key in ("objects", "roles", "workflows", "automations", "demo"):
        value = manifest.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append({"field": key, "message": N_("must be a list of file paths")})
    if problems:
        raise PackError(N_("pack.json is not valid"), problems)
    return manifest


def install_pack(
    session: Session,
    registry: MetaRegistry,
    folder: Path,
    *,
    author_id: int | None,
    with_demo: bool = False,
) -> InstallResult:
    """Install or upgrade the pack in ``folder``; the caller commits."""
    manifest = load_manifest(folder)
    result = InstallResult(manifest["name"], manifest["version"])
    service = ObjectService(session, registry, author_id)
    object_names: list[str] = []
    documents: list[tuple[str, Any]] = []
    staged: list[tuple[str, Any]] = []
    for relative in manifest.get("objects", []):
        document = _read_json(folder, relative)
        name = document.get("x-name") if isinstance(document, dict) else None
        object_names.append(str(name))
        documents.append((relative, document))
        registry.ensure_current(session)
        if isinstance(name, str) and registry.find(name) is None:
            # As it is when it can be; else first without what reads fields of objects
            # still to come (roll-ups, rules, formulas, conditions), added in rounds below.
            try:
                with session.begin_nested():
                    service.create(document)
            except TrellisError:
                registry.invalidate()
                try:
                    service.create(_structure_only(document))
                except TrellisError as exc:
                    raise PackError(_in(relative, exc), exc.details) from None
                staged.append((relative, document))
            result.created.append(name)
    # Then with formulas and roll-ups, then with rules (which may read both, anywhere).
    without_rules = [(relative, _without_rules(document)) for relative, document in staged]
    _install_in_rounds(session, registry, service, without_rules, result)
    _install_in_rounds(session, registry, service, documents, result)
    roles = RoleService(session, registry, author_id)
    _install_documents(roles, folder, manifest.get("roles", []), "role", result)
    # Roles before workflows: a transition names the roles that may fire it.
    workflows = WorkflowService(session, registry, author_id)
    _install_documents(workflows, folder, manifest.get("workflows", []), "workflow", result)
    # Hooks first: an automation naming a hook is checked against those registered.
    hooks_file = _load_hooks(folder, manifest["name"])
    automations = AutomationService(session, registry, author_id)
    files = automation_files(folder, manifest)
    _install_documents(automations, folder, files, "automation", result)
    # The object names, as installed: the app shell groups its navigation by pack.
    manifest = {**manifest, "installed_objects": object_names}
    if hooks_file is not None:  # where every other process imports the pack's hooks from
        manifest["hooks_file"] = hooks_file
    row = session.get(InstalledPack, manifest["name"])
    if row is None:
        row = InstalledPack(name=manifest["name"], version=manifest["version"], manifest=manifest)
        session.add(row)
        bump_revision(session)  # the registry keeps the packs (the navigation's groups)
    else:
        if row.manifest != manifest:
            bump_revision(session)
        row.version, row.manifest, row.updated_at = manifest["version"], manifest, utcnow()
    if with_demo and not row.demo_loaded:
        registry.ensure_current(session)
        records = RecordService(session, registry)  # the system, with every right
        refs: dict[str, int] = {}
        # Demo records may start in any state of their workflow (orders along the whole
        # lifecycle); every other write starts a record in the initial state.
        with seeding(session):
            for relative in manifest.get("demo", []):
                data = _read_json(folder, relative)
                result.demo_records += load_demo_data(records, data, relative, refs)
                result.demo_users += load_demo_users(session, registry, data, relative, refs)
        # Then, as the demo's own users, the approvals in flight: submitted (and decided)
        # through the approval service like any request, so the inboxes are not empty.
        for relative in manifest.get("demo", []):
            data = _read_json(folder, relative)
            result.demo_approvals += load_demo_approvals(session, registry, data, relative, refs)
        row.demo_loaded = True
    session.flush()
    return result


def _load_hooks(folder: Path, pack_name: str) -> str | None:
    """Import the pack's optional ``hooks.py`` (its named actions); its path, if it has one."""
    path = folder / pack_hooks.HOOKS_FILE
    if not path.is_file():
        return None
    pack_hooks.load(pack_name, path)
    return str(path.resolve())


def automation_files(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """The pack's automation files: those ``pack.json`` lists, else ``automations/*.json``."""
    if "automations" in manifest:
        return list(manifest["automations"])
    return sorted(str(path.relative_to(folder)) for path in (folder / "automations").glob("*.json"))


def _install_documents(
    service: DocumentStore[Any],
    folder: Path,
    files: list[str],
    noun: str,
    result: InstallResult,
) -> None:
    """Create or update each document (roles, workflows, automations) of the pack's ``files``."""
    for relative in files:
        document = _read_json(folder, relative)
        name = document.get("x-name") if isinstance(document, dict) else None
        try:
            if isinstance(name, str) and name in service.names():
                outcome = service.update(name, document)
                (result.updated if outcome.created else result.unchanged).append(f"{noun} {name}")
            else:
                service.create(document)
                result.created.append(f"{noun} {name}")
        except TrellisError as exc:
            raise PackError(_in(relative, exc), exc.details) from None


def _structure_only(document: Any) -> Any:
    """The definition without its formulas, roll-ups, rules and conditions (and without
    them in its layout and list columns)."""
    if not isinstance(document, dict) or not isinstance(document.get("properties"), dict):
        return document
    plain = _without_rules(document)
    computed = {
        n for n, p in plain["properties"].items() if isinstance(p, dict)
        and p.get("x-type") in ("formula", "rollup")
    }  # fmt: skip
    for name in computed:
        del plain["properties"][name]
    if computed:
        plain["required"] = [n for n in plain.get("required", []) if n not in computed]
        if not plain["required"]:
            del plain["required"]
        for section in plain.get("x-layout", {}).get("sections", []):
            section["fields"] = [n for n in section.get("fields", []) if n not in computed]
        if "x-list-columns" in plain:
            plain["x-list-columns"] = [n for n in plain["x-list-columns"] if n not in computed]
    return plain


def _without_rules(document: Any) -> Any:
    """The definition without its validation rules and conditional field rules."""
    if not isinstance(document, dict) or not isinstance(document.get("properties"), dict):
        return document
    plain = copy.deepcopy(document)
    plain.pop("x-rules", None)
    for prop in plain["properties"].values():
        for keyword in CONDITION_KEYWORDS:
            if isinstance(prop, dict):
                prop.pop(keyword, None)
    return plain


def _install_in_rounds(
    session: Session,
    registry: MetaRegistry,
    service: ObjectService,
    documents: list[tuple[str, Any]],
    result: InstallResult,
) -> None:
    """Each pack definition as it is, in rounds: one that reads a field another has yet to
    get (a roll-up of a roll-up) waits for the next round; no progress is the first
    refusal of the round."""
    waiting = list(documents)
    while waiting:
        refused: list[tuple[str, Any, TrellisError]] = []
        for relative, document in waiting:
            name = document.get("x-name") if isinstance(document, dict) else None
            try:
                with session.begin_nested():
                    registry.ensure_current(session)
                    current = registry.get(str(name))
                    merged = keep_additions(document, current.definition.document)
                    outcome = service.update(current.name, merged)
            except TrellisError as exc:
                registry.invalidate()
                refused.append((relative, document, exc))
                continue
            if outcome.created and current.name not in result.created:
                if current.name not in result.updated:
                    result.updated.append(current.name)
            elif current.name not in result.created and current.name not in result.updated:
                result.unchanged.append(current.name)
        if len(refused) == len(waiting):
            first, _document, error = refused[0]
            raise PackError(_in(first, error), error.details)
        waiting = [(relative, document) for relative, document, _exc in refused]


def keep_additions(pack_document: Any, current: dict[str, Any]) -> Any:
    """The pack's definition plus the fields admins added to the installed one (DESIGN §8).

    A field the current definition has and the pack's does not is taken to be an admin's
    addition and kept, required or not as it was; so a pack version cannot drop a field
    on its own (an admin removes it, and its data is archived, never lost).
    """
    if not isinstance(pack_document, dict) or not isinstance(pack_document.get("properties"), dict):
        return pack_document  # let validation refuse it with the pack's own pointers
    merged = copy.deepcopy(pack_document)
    added = [name for name in current["properties"] if name not in merged["properties"]]
    if not added:
        return merged
    for field_name in added:
        merged["properties"][field_name] = copy.deepcopy(current["properties"][field_name])
    required = set(current.get("required", []))
    kept = [field_name for field_name in added if field_name in required]
    if kept:
        merged["required"] = [*merged.get("required", []), *kept]
    return merged


def load_demo_data(
    records: RecordService, data: Any, source: str, ids: dict[str, int] | None = None
) -> int:
    """Create demo records; ``{"$ref": "name"}`` points at an earlier record (of any file)."""
    if not isinstance(data, dict) or not isinstance(data.get("records", []), list):
        raise PackError(N_("%(file)s must hold {'records': [...]}", file=source))
    ids = {} if ids is None else ids
    for index, entry in enumerate(data.get("records", [])):
        try:
            values = _resolve_refs(entry["values"], ids)
            record = records.create(entry["object"], values)
        except (KeyError, TypeError):
            raise PackError(
                N_(
                    "%(file)s record %(index)s needs 'object' and 'values'",
                    file=source,
                    index=index,
                )
            ) from None
        except TrellisError as exc:
            raise PackError(
                N_(
                    "%(file)s record %(index)s: %(message)s",
                    file=source,
                    index=index,
                    message=exc.message,
                ),
                exc.details,
            ) from None
        if entry.get("ref"):
            ids[str(entry["ref"])] = int(record["id"])
    return len(data.get("records", []))


def demo_user_entries(folder: Path) -> list[dict[str, Any]]:
    """The demo users a pack declares (without touching the database)."""
    entries: list[dict[str, Any]] = []
    for relative in load_manifest(folder).get("demo", []):
        data = _read_json(folder, relative)
        if isinstance(data, dict) and isinstance(data.get("users"), list):
            entries.extend(u for u in data["users"] if isinstance(u, dict) and "email" in u)
    return entries


def load_demo_users(
    session: Session, registry: MetaRegistry, data: Any, source: str, ids: dict[str, int]
) -> list[dict[str, Any]]:
    """Create the demo users of a file, each with a fresh random password (returned once)."""
    users = data.get("users", []) if isinstance(data, dict) else []
    if not isinstance(users, list):
        raise PackError(N_("%(file)s: users must be a list", file=source))
    service = UserService(session, registry, None)
    created = []
    for index, entry in enumerate(users):
        if not isinstance(entry, dict) or "email" not in entry:
            raise PackError(N_("%(file)s user %(index)s needs an email", file=source, index=index))
        password = secrets.token_urlsafe(9)
        try:
            user = service.create({**_resolve_refs(entry, ids), "password": password})
        except TrellisError as exc:
            raise PackError(
                N_(
                    "%(file)s user %(index)s: %(message)s",
                    file=source,
                    index=index,
                    message=exc.message,
                ),
                exc.details,
            ) from None
        created.append({"email": user.email, "password": password, "roles": entry.get("roles", [])})
    return created


def load_demo_approvals(
    session: Session, registry: MetaRegistry, data: Any, source: str, refs: dict[str, int]
) -> int:
    """Submit demo records for approval as their ``submitted_by`` user, then approve their
    tasks as each of ``approved_by`` in turn: ``{"approvals": [{"object", "record":
    {"$ref": …}, "submitted_by": e-mail, "approved_by": [e-mail, …]}]}``."""
    from trellis.platform.runtime.workflow.approvals import ApprovalService

    entries = data.get("approvals", []) if isinstance(data, dict) else []
    if not isinstance(entries, list):
        raise PackError(N_("%(file)s: approvals must be a list", file=source))
    registry.ensure_current(session)
    for index, entry in enumerate(entries):
        try:
            object_name = str(entry["object"])
            record_id = int(_resolve_refs(entry["record"], refs))
            submitter = _demo_caller(session, registry, str(entry["submitted_by"]))
            ApprovalService(session, registry, submitter).submit(object_name, record_id)
            for email in entry.get("approved_by", []):
                caller = _demo_caller(session, registry, str(email))
                service = ApprovalService(session, registry, caller)
                tasks = service.state(object_name, record_id)["tasks"]
                mine = [t for t in tasks if t["mine"] and t["status"] == "pending"]
                if not mine:
                    raise PackError(
                        N_(
                            "%(file)s approval %(index)s: %(user)s has no task to approve",
                            file=source,
                            index=index,
                            user=email,
                        )
                    )
                service.decide(mine[0]["id"], "approve")
        except (KeyError, TypeError, ValueError):
            raise PackError(
                N_(
                    "%(file)s approval %(index)s needs 'object', 'record' and 'submitted_by'",
                    file=source,
                    index=index,
                )
            ) from None
        except PackError:
            raise
        except TrellisError as exc:
            raise PackError(
                N_(
                    "%(file)s approval %(index)s: %(message)s",
                    file=source,
                    index=index,
                    message=exc.message,
                ),
                exc.details,
            ) from None
    return len(entries)


def _demo_caller(session: Session, registry: MetaRegistry, email: str) -> Caller:
    """A demo user as the caller of a service (their roles and partner, as signed in)."""
    import sqlalchemy as sa

    from trellis.platform.runtime.identity.caller import Caller, Identity
    from trellis.platform.runtime.models import User, UserRole

    user = session.scalar(sa.select(User).where(sa.func.lower(User.email) == email.lower()))
    if user is None:
        raise PackError(N_("no demo user %(email)s", email=email))
    roles = tuple(
        sorted(session.scalars(sa.select(UserRole.role_name).where(UserRole.user_id == user.id)))
    )
    identity = Identity(
        user_id=user.id,
        email=user.email,
        is_admin=user.is_admin,
        partner_id=user.partner_id,
        roles=roles,
        revision=registry.revision or 0,
    )
    return Caller.of(
        identity, registry.permissions(roles, user.is_admin), registry.permissions(roles, False)
    )


def _in(relative: str, exc: TrellisError) -> str:
    """A file's refusal, named by the file."""
    return N_("%(file)s: %(message)s", file=relative, message=exc.message)


def _resolve_refs(value: Any, ids: dict[str, int]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$ref"}:
            if value["$ref"] not in ids:
                raise PackError(
                    N_(
                        "unknown $ref %(ref)s (refs must point backwards)",
                        ref=repr(value["$ref"])[:60],
                    )
                )
            return ids[value["$ref"]]
        return {k: _resolve_refs(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(v, ids) for v in value]
    return value
