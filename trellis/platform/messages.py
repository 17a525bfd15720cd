"""Messages the platform tells its callers, in English and in the caller's language.

A service's refusal is written once, in English, with ``N_``::

    N_("%(name)s is not a field", name=repr(field_name))

The result *is* the English text (a ``str``), so the API's JSON, logs and tests see a
plain string. It also keeps its message id and parameters, so a page (or any caller that
knows the user's language) can tell it in that language with ``tell(message, gettext)``:
the id is looked up in the compiled catalogue and the parameters are put back in.
Parameters that are messages themselves are told in the same language.

``N_`` is a keyword of the message extraction (``babel.cfg``, docs/ui.md), so every id
lands in the catalogue and tests/ui/test_translations.py holds each to a translation.

This module is pure: no Flask, no session. jsonschema's errors become messages through
``schema_message``, so a record's or a definition's problems read alike in both languages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jsonschema.exceptions import ValidationError


class Message(str):
    """English text that remembers its message id and parameters (see the module)."""

    msgid: str
    params: dict[str, Any]

    def __new__(cls, msgid: str, /, **params: Any) -> Message:
        """The English text of ``msgid`` with ``params`` put in (``%(name)s`` style)."""
        text = msgid % params if params else msgid
        message = super().__new__(cls, text)
        message.msgid = msgid
        message.params = params
        return message

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (RQ jobs) as the message it is
        return (_rebuild, (self.msgid, self.params))


def _rebuild(msgid: str, params: dict[str, Any]) -> Message:
    return Message(msgid, **params)


N_ = Message


class Localized(Message):
    """Text an administrator wrote in several languages (a validation rule's message):
    the English text as the string, every language kept in ``texts``."""

    texts: dict[str, str]

    def __new__(cls, texts: dict[str, str], /) -> Localized:
        """The message in ``texts`` (language → text), English first."""
        english = texts.get("en") or next(iter(texts.values()), "")
        message = str.__new__(cls, english)
        message.msgid = english
        message.params = {}
        message.texts = dict(texts)
        return message

    def __reduce__(self) -> tuple[Any, ...]:
        return (Localized, (self.texts,))

    def in_language(self, language: str | None) -> str:
        """The text in ``language`` (``en``, ``zh-CN``), else the English one."""
        return self.texts.get(language or "en") or str(self)


def tell(message: Any, gettext: Callable[[str], str], language: str | None = None) -> str:
    """``message`` in the language ``gettext`` translates to (``language`` names it, for
    text written in several languages); other text as it is."""
    if isinstance(message, Localized):
        return message.in_language(language)
    if not isinstance(message, Message):
        return "" if message is None else str(message)
    translated = gettext(message.msgid)
    if not message.params:
        return translated
    params = {
        k: tell(v, gettext) if isinstance(v, Message) else v for k, v in message.params.items()
    }
    try:
        return translated % params
    except (KeyError, TypeError, ValueError):  # a translation that lost a parameter
        return str(message)


# --- jsonschema ------------------------------------------------------------------------------

_TYPES = {
    "string": N_("must be text"),
    "integer": N_("must be a whole number"),
    "number": N_("must be a number"),
    "boolean": N_("must be true or false"),
    "array": N_("must be a list"),
    "object": N_("must be an object"),
    "null": N_("must be empty"),
}


def _shown(value: Any) -> str:
    """A value as a message quotes it: short, and never the whole of a long input."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _type_message(expected: Any) -> Message:
    names = [expected] if isinstance(expected, str) else [t for t in expected if t != "null"]
    for name in names:
        if name in _TYPES:
            return _TYPES[name]
    return N_("has the wrong type")


def schema_message(error: ValidationError) -> Message:
    """One jsonschema error as a message naming the rule broken, not echoing the input."""
    keyword, limit = error.validator, error.validator_value
    if keyword == "type":
        return _type_message(limit)
    if keyword == "required":
        missing = str(error.message).split("'")[1] if "'" in str(error.message) else ""
        return N_("%(name)s is required", name=repr(missing))
    if keyword == "maxLength":
        return N_("must be at most %(limit)s characters", limit=limit)
    if keyword == "minLength":
        if limit == 1:
            return N_("must not be empty")
        return N_("must be at least %(limit)s characters", limit=limit)
    if keyword == "maximum":
        return N_("must be at most %(limit)s", limit=limit)
    if keyword == "minimum":
        return N_("must be at least %(limit)s", limit=limit)
    if keyword == "exclusiveMaximum":
        return N_("must be less than %(limit)s", limit=limit)
    if keyword == "exclusiveMinimum":
        return N_("must be greater than %(limit)s", limit=limit)
    if keyword == "multipleOf":
        return N_("must be a multiple of %(step)s", step=limit)
    if keyword == "pattern":
        return N_("does not match the pattern %(pattern)s", pattern=limit)
    if keyword == "format":
        return N_("is not a valid %(format)s", format=limit)
    if keyword == "enum":
        shown = [_shown(v) for v in limit[:10]] + (["…"] if len(limit) > 10 else [])
        return N_(
            "%(value)s is not one of: %(choices)s",
            value=_shown(error.instance),
            choices=", ".join(shown),
        )
    if keyword == "const":
        return N_("must be %(value)s", value=_shown(limit))
    if keyword == "maxItems":
        return N_("must have at most %(limit)s items", limit=limit)
    if keyword == "minItems":
        if limit == 1:
            return N_("must have at least one item")
        return N_("must have at least %(limit)s items", limit=limit)
    if keyword == "uniqueItems":
        return N_("must not list an item twice")
    if keyword == "minProperties" and limit == 1:
        return N_("must not be empty")
    if keyword in ("maxProperties", "minProperties"):
        return N_("has too many or too few entries")
    if keyword in ("anyOf", "oneOf"):
        return N_("does not fit any of the allowed forms")
    return N_("is not valid (%(rule)s)", rule=keyword)


__all__ = ["N_", "Message", "schema_message", "tell"]
