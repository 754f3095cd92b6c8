"""Dashboard pages (mounted at /usage/)."""

from django.urls import path

from .dashboards import usage_home, usage_org, usage_team

urlpatterns = [
    path("", usage_home, name="usage-home"),
    path("org/", usage_org, name="usage-org"),
    path("teams/<int:team_id>/", usage_team, name="usage-team"),
]
