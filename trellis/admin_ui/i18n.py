"""Languages of the UI: zh-CN and en, with Flask-Babel.

Platform strings are translated from compiled catalogues (``translations/``, compiled
when the package is built or installed). Metadata labels (``x-label``) are picked in
the chosen language only, falling back to English, then to any language given.

The language is the signed-in user's (``users.language``, set by the switch), else the
browser's ``Accept-Language``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, g, has_app_context, request
from flask_babel import Babel, get_locale, get_translations, gettext

from trellis.platform.messages import tell

LANGUAGES = ("en", "zh-CN")
_BABEL_LOCALE = {"en": "en", "zh-CN": "zh_CN"}
babel = Babel()


def current_language() -> str:
    """The language of this request, as stored on users and in labels (``en``, ``zh-CN``)."""
    cached = g.get("language")
    if cached is not None:
        return str(cached)
    user = g.get("user")
    language = user.language if user is not None and user.language in LANGUAGES else None
    if language is None:
        best = request.accept_languages.best_match(["en", "zh-CN", "zh"], default="en")
        language = "zh-CN" if best.startswith("zh") else "en"
    g.language = language
    return language


def _select_locale() -> str:
    return _BABEL_LOCALE[current_language()]


def pick(labels: Any, fallback: str = "") -> str:
    """A bilingual label (``{"en": …, "zh-CN": …}``) in the current language only."""
    if isinstance(labels, str):
        return labels
    if not isinstance(labels, dict) or not labels:
        return fallback
    language = current_language()
    for key in (language, "en", *labels):
        value = labels.get(key)
        if isinstance(value, str) and value:
            return value
    return fallback


def told(message: Any) -> str:
    """A service's message (``trellis.platform.messages``) in the current language."""
    return tell(message, gettext, current_language())


def html_lang() -> str:
    """The page's ``<html lang>``: the request's language, ``en`` or ``zh-CN``."""
    return current_language()


def init_app(app: Flask) -> None:
    """Flask-Babel with the catalogues under ``admin_ui/translations``."""
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", _translations_dir())
    babel.init_app(app, locale_selector=_select_locale)
    app.jinja_env.globals.update(pick=pick, html_lang=html_lang, get_locale=get_locale)
    app.jinja_env.filters["label"] = pick
    app.jinja_env.filters["told"] = told
    # Flask-Babel's template callables look the catalogue up through four context calls
    # each time; a list page says ~40 strings. The same catalogue, looked up once a request.
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda s: _translations().ugettext(s),
        ngettext=lambda s, p, n: _translations().ungettext(s, p, n),
        newstyle=True,
        pgettext=lambda c, s: _translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: _translations().unpgettext(c, s, p, n),
    )


def _translations() -> Any:
    """This request's catalogue (Flask-Babel's, kept on ``g``); outside a request, Babel's."""
    if not has_app_context():
        return get_translations()
    found = g.get("babel_catalogue")
    if found is None:
        found = g.babel_catalogue = get_translations()
    return found


def _translations_dir() -> str:
    from pathlib import Path

    return str(Path(__file__).with_name("translations"))
