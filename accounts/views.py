from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from knox.models import AuthToken

from accounts.decorators import request_user
from accounts.services import token_issue, token_revoke, token_revoke_all
from accounts.throttling import login_failure_record, login_failures_clear, login_refusal


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    """Issue and revoke your own API tokens."""
    new_token = None
    user = request_user(request)
    if request.method == "POST":
        if "revoke_all" in request.POST:
            revoked = token_revoke_all(user=user)
            messages.success(request, f"{revoked} token{'s' if revoked != 1 else ''} revoked.")
            return redirect("accounts:tokens")
        if "revoke" in request.POST:
            if token_revoke(user=user, token_key=request.POST["revoke"]):
                messages.success(request, "Token revoked.")
            return redirect("accounts:tokens")
        _, new_token = token_issue(user=user)
    return render(
        request,
        "accounts/tokens.html",
        {
            "tokens": AuthToken.objects.filter(user=user).order_by("-created"),
            "new_token": new_token,
            "api_url": request.build_absolute_uri(reverse("api:image-list")),
        },
    )


class LoginView(auth_views.LoginView):
    """Django's sign-in form, refusing an address that keeps guessing one username's password,
    or any usernames' passwords (see ``accounts.throttling``)."""

    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        username = request.POST.get("username", "")
        refusal = login_refusal(request=request, username=username)
        if refusal is not None:
            # Unbound (nothing is checked), keeping the username typed.
            form = self.get_form_class()(request, initial={"username": username[:150]})
            context = self.get_context_data(form=form, throttled=refusal.message)
            response = self.render_to_response(context, status=429)
            response["Retry-After"] = str(refusal.wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        login_failures_clear(request=self.request, username=form.cleaned_data["username"])
        return super().form_valid(form)

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        login_failure_record(request=self.request, username=self.request.POST.get("username", ""))
        return super().form_invalid(form)
