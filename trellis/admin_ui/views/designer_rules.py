"""The rules designer: an object's validation rules (``x-rules`` of its definition),
administrators only.

Each rule is a form — name, when, assert, the message in both languages, the field it is
shown on — whose expressions are checked as typed by the same save-time checks a save
runs (``designer.check_expressions``). Adding, changing or deleting a rule sends the whole
definition through ``ObjectService.update``: a new definition version, so the history tab
shows and compares it. A refusal is shown under the input its JSON pointer names, with
what was typed kept (422), and nothing is stored.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from trellis.admin_ui import bp
from trellis.admin_ui.context import REFUSALS, commit, objects, registry, rollback
from trellis.admin_ui.designer import (
    RuleForm,
    check_expressions,
    place_rule_problems,
    read_rule_form,
    rule_expressions,
    rule_form_of,
    rule_of,
    with_rule,
)
from trellis.admin_ui.i18n import pick, told
from trellis.admin_ui.pages import OBJECT_TABS, admin_only
from trellis.exceptions import NotFound, TrellisError

if TYPE_CHECKING:
    from trellis.platform.runtime.registry import ObjectMeta

OBJECT_TABS.append(("ui.object_rules", lambda: _("Rules")))


def _rules(meta: ObjectMeta) -> list[dict[str, Any]]:
    return list(meta.definition.document.get("x-rules", []))


def _index_of(meta: ObjectMeta, rule_name: str) -> int:
    """The position of the rule named ``rule_name``; 404 when the object has none."""
    for index, rule in enumerate(_rules(meta)):
        if rule.get("name") == rule_name:
            return index
    raise NotFound(f"{meta.name!r} has no rule named {rule_name!r}")


@bp.get("/setup/objects/<name>/rules")
@admin_only
def object_rules(name: str) -> Any:
    """``/setup/objects/<name>/rules``: the object's rules (name, when, must hold, the
    message in the current language, the field it is shown on), to add, edit or delete one.
    """
    meta = registry().get(name)
    rows = [
        {
            "name": rule["name"],
            "when": rule.get("when", ""),
            "assert": rule["assert"],
            "message": pick(rule.get("message"), rule["name"]),
            "field": pick(meta.fields[rule["field"]].label, rule["field"])
            if rule.get("field") in meta.fields
            else rule.get("field", ""),
        }
        for rule in _rules(meta)
    ]
    return render_template("ui/setup/rules.html", meta=meta, rows=rows)


@bp.route("/setup/objects/<name>/new-rule", methods=["GET", "POST"])
@admin_only
def object_rules_new(name: str) -> Any:
    """``/setup/objects/<name>/new-rule``: the rule form; POST adds the rule (422 with the
    problems under their inputs when refused)."""
    meta = registry().get(name)
    if request.method == "GET":
        return _rule_page(meta, RuleForm({}), None)
    return _save_rule(meta, read_rule_form(request.form), None)


@bp.route("/setup/objects/<name>/rules/<rule_name>", methods=["GET", "POST"])
@admin_only
def object_rules_edit(name: str, rule_name: str) -> Any:
    """``/setup/objects/<name>/rules/<rule>``: a rule's form; POST saves it as a new version
    of the object (422 when refused); an unknown rule is 404."""
    meta = registry().get(name)
    index = _index_of(meta, rule_name)
    if request.method == "GET":
        return _rule_page(meta, rule_form_of(_rules(meta)[index]), index)
    return _save_rule(meta, read_rule_form(request.form), index)


@bp.post("/setup/objects/<name>/rules/<rule_name>/delete")
@admin_only
def object_rules_delete(name: str, rule_name: str) -> Any:
    """``POST /setup/objects/<name>/rules/<rule>/delete``: drop the rule (a new version)."""
    meta = registry().get(name)
    index = _index_of(meta, rule_name)
    document = copy.deepcopy(meta.definition.document)
    del document["x-rules"][index]
    if not document["x-rules"]:
        del document["x-rules"]
    try:
        saved = objects().update(name, document)
    except TrellisError as exc:
        if exc.status not in REFUSALS:
            raise
        rollback()
        flash(told(exc.message), "error")
        return redirect(url_for("ui.object_rules", name=name))
    commit()
    flash(
        _("Rule %(rule)s deleted (version %(version)d).", rule=rule_name, version=saved.version),
        "info",
    )
    return redirect(url_for("ui.object_rules", name=name))


@bp.get("/setup/objects/<name>/rule-check")
@admin_only
def object_rules_check(name: str) -> Any:
    """The rule form's expressions as typed, checked (the form asks as it is typed in)."""
    meta = registry().get(name)
    form = read_rule_form(request.args)
    original = request.args.get("original", "")
    index = _index_of(meta, original) if original else None
    return render_template("ui/setup/_expression_checks.html", checks=_checks(meta, form, index))


def _checks(meta: ObjectMeta, form: RuleForm, index: int | None) -> list[Any]:
    """The rule's when, assert and message placeholders, checked in the definition with the
    rule as typed in place (``check_expressions``)."""
    document = copy.deepcopy(meta.definition.document)
    rule = {"name": "rule", "assert": "TRUE", "message": {"en": "-"}, **rule_of(form)}
    at = with_rule(document, rule, index)
    return check_expressions(document, registry().documents(), rule_expressions(form, at))


def _save_rule(meta: ObjectMeta, form: RuleForm, index: int | None) -> Any:
    document = copy.deepcopy(meta.definition.document)
    at = with_rule(document, rule_of(form), index)
    try:
        saved = objects().update(meta.name, document)
    except TrellisError as exc:
        if exc.status not in REFUSALS:
            raise
        rollback()
        place_rule_problems(form, exc.details, at, told(exc.message))
        return _rule_page(registry().get(meta.name), form, index, status=422)
    commit()
    name = form.inputs["name"]
    if saved.created:
        flash(
            _("Rule %(rule)s saved (version %(version)d).", rule=name, version=saved.version),
            "info",
        )
    else:
        flash(_("No changes."), "info")
    return redirect(url_for("ui.object_rules", name=meta.name))


def _rule_page(meta: ObjectMeta, form: RuleForm, index: int | None, status: int = 200) -> Any:
    original = _rules(meta)[index]["name"] if index is not None else ""
    page = render_template(
        "ui/setup/rule.html",
        meta=meta,
        form=form,
        original=original,
        fields=[(n, pick(spec.label, n)) for n, spec in meta.fields.items()],
        checks=_checks(meta, form, index),
    )
    return page, status
