from __future__ import annotations

from django.urls import path

from server.ratings import views

app_name = "ratings"

urlpatterns = [
    path("<slug:slug>/", views.rate_page, name="page"),
    path("<slug:slug>/join/<str:invite_token>/", views.join, name="join"),
    path("<slug:slug>/done/", views.done, name="done"),
    path("<slug:slug>/api/next", views.api_next, name="api-next"),
    path("<slug:slug>/api/vote", views.api_vote, name="api-vote"),
    path("<slug:slug>/api/undo", views.api_undo, name="api-undo"),
    path("<slug:slug>/api/acknowledge", views.api_acknowledge, name="api-acknowledge"),
    path("<slug:slug>/api/skip", views.api_skip, name="api-skip"),
    path("<slug:slug>/image/<str:sha256>", views.image_file, name="image"),
]
