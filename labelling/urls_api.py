from __future__ import annotations

from django.urls import path

from labelling import apis

urlpatterns = [
    path("labelling/queue/", apis.QueueView.as_view(), name="labelling-queue"),
    path("labelling/actions/", apis.ActionView.as_view(), name="labelling-action"),
    path("labelling/undo/", apis.UndoView.as_view(), name="labelling-undo"),
]

urlpatterns += [
    path(
        "labelling/second-opinions/", apis.SecondOpinionListView.as_view(), name="second-opinions"
    ),
    path(
        "labelling/second-opinions/<int:pk>/settle/",
        apis.SecondOpinionSettleView.as_view(),
        name="second-opinion-settle",
    ),
    path("labelling/agreement/", apis.AgreementView.as_view(), name="labelling-agreement"),
]
