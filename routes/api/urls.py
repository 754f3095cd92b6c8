from django.urls import path

from .limits import LimitsGetApi, LimitsSetApi
from .views import EndpointDetailApi, EndpointListApi, RouteDetailApi, RouteListCreateApi

urlpatterns = [
    path("2.0/gateway/routes/", RouteListCreateApi.as_view(), name="route-list"),
    path("2.0/gateway/routes/<str:name>", RouteDetailApi.as_view(), name="route-detail"),
    path("2.0/endpoints/", EndpointListApi.as_view(), name="endpoint-list"),
    path("2.0/endpoints/<str:name>", EndpointDetailApi.as_view(), name="endpoint-detail"),
    path("2.0/gateway/limits/", LimitsSetApi.as_view(), name="limits-set"),
    path("2.0/gateway/limits/<str:route>", LimitsGetApi.as_view(), name="limits-get"),
]
