from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from curation import selectors


@login_required
def library(request: HttpRequest) -> HttpResponse:
    return render(request, "curation/library.html", {"totals": selectors.library_totals()})
