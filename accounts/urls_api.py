from __future__ import annotations

from django.urls import path

from accounts.apis import TokenLoginView, TokenLogoutAllView, TokenLogoutView

urlpatterns = [
    path("auth/login/", TokenLoginView.as_view(), name="token-login"),
    path("auth/logout/", TokenLogoutView.as_view(), name="token-logout"),
    path("auth/logout-all/", TokenLogoutAllView.as_view(), name="token-logout-all"),
]
