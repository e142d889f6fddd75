from __future__ import annotations

from django.urls import path

from labelling import views, views_grid

app_name = "labelling"

urlpatterns = [
    path("", views.queue_picker, name="queues"),
    path("stats/", views.stats_page, name="stats"),
    path("standards/<int:pk>/", views.standards_page, name="standards"),
    path("standards/<int:pk>/panel", views.standards_panel, name="standards-panel"),
    path("standards/pin/", views.exemplar_pin_form, name="exemplar-pin"),
    path("second-opinions/", views.second_opinions_page, name="second-opinions"),
    path(
        "second-opinions/<int:pk>/settle/",
        views.second_opinion_settle_form,
        name="second-opinion-settle",
    ),
    path("second-opinions/agreement/", views.agreement_page, name="agreement"),
    path("queues/picked/", views_grid.picked_queue_form, name="picked-queue"),
    # Queue specs: inbox, class:<id>, subclass:<id>, filter:<id>.
    path("<str:spec>/", views.label_page, name="label"),
]
