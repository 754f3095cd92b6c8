"""Django's half: admin, management API, OpenAPI. Serving paths never reach here (see asgi.py)."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

admin.site.site_header = "LLM governance gateway"
admin.site.site_title = "Gateway admin"
admin.site.index_title = "Routes, consumers, keys and usage"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("routes.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", authentication_classes=[], permission_classes=[]),
        name="docs",
    ),
]
