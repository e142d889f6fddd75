from __future__ import annotations

from django.urls import path

from labelling import views

app_name = "labelling"

urlpatterns = [
    path("", views.queue_picker, name="queues"),
    path("stats/", views.stats_page, name="stats"),
    path("standards/<int:pk>/", views.standards_page, name="standards"),
    path("standards/<int:pk>/panel", views.standards_panel, name="standards-panel"),
    # Queue specs: inbox, class:<id>, subclass:<id>, filter:<id>.
    path("<str:spec>/", views.label_page, name="label"),
]
