"""The relay's own error messages in the client's language: English, or
Simplified Chinese when the request's Accept-Language prefers Chinese.

Only an error answer reads the header and the catalogue (relay/locale/,
domain ``relay``, loaded once on first use); a request that succeeds never
touches this module. Templates are marked with ``N_`` where they are written
and take their values by name (``{model}``), so a translation can put them
in its own order; ``Term`` values (e.g. "daily") are translated too.
"""

from __future__ import annotations

import functools
import gettext
from collections.abc import Mapping
from pathlib import Path

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "relay"
CHINESE = "zh_Hans"


def N_(template: str) -> str:
    """Marks an error message template for the catalogue; returns it unchanged."""
    return template


class Term(str):
    """A word put into a template (a period, a role) that is translated with it."""

    __slots__ = ()


def client_language(accept_language: bytes | None) -> str | None:
    """CHINESE when the most preferred language of an Accept-Language header
    is any Chinese (we have Simplified only), else None (English)."""
    if not accept_language:
        return None
    best, best_q = "", -1.0
    for part in accept_language.decode("latin-1").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        if q > best_q:
            best, best_q = tag.strip().lower(), q
    return CHINESE if best == "zh" or best.startswith("zh-") else None


@functools.cache
def _catalogue(language: str) -> gettext.NullTranslations:
    return gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[language], fallback=True)


def say(template: str, params: Mapping[str, object] | None, language: str | None) -> str:
    """``template`` with ``params`` in ``language`` (None: English as written)."""
    if language is None:
        return template.format_map(params) if params else template
    catalogue = _catalogue(language)
    text = catalogue.gettext(template)
    if not params:
        return text
    return text.format_map({k: catalogue.gettext(v) if isinstance(v, Term) else v for k, v in params.items()})
