from django.urls import path

from .views import RouteDetailApi, RouteListCreateApi

urlpatterns = [
    path("2.0/gateway/routes/", RouteListCreateApi.as_view(), name="route-list"),
    path("2.0/gateway/routes/<str:name>", RouteDetailApi.as_view(), name="route-detail"),
]
