"""Send images picked in a library grid (class page, inbox) to a labelling queue of their own.
The grids offer it through the action registered in ``LabellingConfig.ready``."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from accounts.decorators import request_user as _user
from curation.views_bulk import back_to_grid, picked_images
from labelling.services import PickedQueueError, picked_queue_create


@login_required
@require_POST
def picked_queue_form(request: HttpRequest) -> HttpResponse:
    """Labellers may make queues (as from the Identify page)."""
    picked = picked_images(request)
    try:
        saved = picked_queue_create(
            image_ids=[item.image_id for item in picked],
            name=request.POST.get("name", ""),
            actor=_user(request),
        )
    except PickedQueueError as exc:
        messages.error(request, str(exc))
        return back_to_grid(request)
    count = len(saved.params["images"])
    messages.success(
        request,
        format_html(
            'Labelling queue “{}” holds {} image{}. <a href="{}">Open the queue</a>',
            saved.name,
            count,
            "s" if count != 1 else "",
            reverse("labelling:label", args=[f"filter:{saved.pk}"]),
        ),
    )
    return back_to_grid(request)
