from __future__ import annotations

from django.apps import AppConfig


class LabellingConfig(AppConfig):
    name = "labelling"

    def ready(self) -> None:
        from accounts.models import Role
        from curation.grid_actions import CLASS_PAGE, INBOX, GridAction, grid_action_register
        from curation.plugins import ASIDE, ImagePanel, image_panel_register
        from labelling.standards import exemplars_of_image

        # The library grids offer "send to a labelling queue" without importing labelling.
        grid_action_register(
            GridAction(
                key="queue",
                label="Send to queue…",
                url_name="labelling:picked-queue",
                dialog="labelling/_picked_queue_dialog.html",
                pages=frozenset({CLASS_PAGE, INBOX}),
                minimum_role=Role.LABELLER,
                order=20,
            )
        )
        # The image page shows where the image is pinned in the labelling standards.
        image_panel_register(
            "standards",
            ImagePanel(
                template="labelling/_image_standards.html",
                context=lambda image: {"pins": exemplars_of_image(image_id=image.pk)},
                column=ASIDE,
                order=10,
            ),
        )
