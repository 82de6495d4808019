"""Which language a page is in: the user's own setting (User.language) if
they have one, else what the browser asks for (Django's LocaleMiddleware,
which runs first); and the admin's language switch, which saves the choice."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

LANGUAGE_CODES = {code for code, _name in settings.LANGUAGES}


class UserLanguageMiddleware:
    """After authentication: a signed-in user's language overrides the browser's."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        language = getattr(request.user, "language", "") if request.user.is_authenticated else ""
        if language in LANGUAGE_CODES:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        response = self.get_response(request)
        if language in LANGUAGE_CODES:
            response.headers.setdefault("Content-Language", language)
        return response


@require_POST
def set_language(request: HttpRequest) -> HttpResponse:
    """The admin header's language switch: saves the signed-in user's choice
    ("" = follow the browser) and goes back to the page it came from."""
    language = request.POST.get("language", "")
    target = request.POST.get("next", "/admin/")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = "/admin/"
    if request.user.is_authenticated and (language in LANGUAGE_CODES or language == ""):
        request.user.language = language
        request.user.save(update_fields=["language"])
    return HttpResponseRedirect(target)
