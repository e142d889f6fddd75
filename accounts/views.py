from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from knox.models import AuthToken

from accounts.services import token_issue, token_revoke


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    """Issue and revoke your own API tokens."""
    new_token = None
    if request.method == "POST":
        if "revoke" in request.POST:
            if token_revoke(user=request.user, token_key=request.POST["revoke"]):
                messages.success(request, "Token revoked.")
            return redirect("accounts:tokens")
        _, new_token = token_issue(user=request.user)
    return render(
        request,
        "accounts/tokens.html",
        {
            "tokens": AuthToken.objects.filter(user=request.user).order_by("-created"),
            "new_token": new_token,
            "api_url": request.build_absolute_uri(reverse("api:image-list")),
        },
    )
