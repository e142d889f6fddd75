"""Site-wide error views."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, HttpResponseServerError
from django.template import loader

logger = logging.getLogger("loupe.errors")


def server_error(request: HttpRequest) -> HttpResponse:
    """The 500 page with the site's navigation. Django's own renders it without the request,
    so without the signed-in user and their menu. When rendering with the request fails too
    (the error came from the database, say), the page is rendered without it."""
    template = loader.get_template("500.html")
    try:
        return HttpResponseServerError(template.render({}, request))
    except Exception:
        logger.exception("The 500 page could not be rendered with the request")
        return HttpResponseServerError(template.render({}))
