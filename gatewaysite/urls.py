"""Django's half: admin, management API, OpenAPI. Serving paths never reach here (see asgi.py)."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest
from django.urls import include, path
from django_ratelimit.decorators import ratelimit
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from usage.api import UsageReportApi

admin.site.site_header = "LLM governance gateway"
admin.site.site_title = "Gateway admin"
admin.site.index_title = "Routes, consumers, keys and usage"


def _login_rate(group: str, request: HttpRequest) -> str:
    rate: str = settings.ADMIN_LOGIN_RATE
    return rate


# Password guessing: failed and successful attempts alike count, per client address.
admin.site.login = ratelimit(  # type: ignore[method-assign]
    group="admin-login", key="ip", rate=_login_rate, method="POST", block=True
)(admin.site.login)

# The dashboards' login (Django auth), guarded like the admin's.
dashboard_login = ratelimit(group="admin-login", key="ip", rate=_login_rate, method="POST", block=True)(
    auth_views.LoginView.as_view()
)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/2.0/gateway/usage/", UsageReportApi.as_view(), name="usage-report"),
    path("usage/", include("usage.urls")),
    path("accounts/login/", dashboard_login, name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/", include("routes.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", authentication_classes=[], permission_classes=[]),
        name="docs",
    ),
]
