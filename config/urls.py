from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.views import LoginView

urlpatterns = [
    path("", include("curation.urls")),
    path("account/", include("accounts.urls")),
    path("label/", include("labelling.urls")),
    path("models/", include("inference.urls")),
    path("duplicates/", include("curation.urls_duplicates")),
    path("datasets/", include("curation.urls_datasets")),
    path("quality/", include("curation.urls_quality")),
    path("production/", include("inference.urls_production")),
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # One password form, the rate-limited one: the admin's own sign-in page sends people there.
    path(
        "admin/login/",
        RedirectView.as_view(pattern_name="login", query_string=True),
        name="admin-login",
    ),
    path("admin/", admin.site.urls),
    path("api/v1/", include("config.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]

# 403 and 404 use Django's handlers, which render 403.html and 404.html with the request (and so
# the navigation); the 500 one needs its own for that.
handler500 = "config.views.server_error"
