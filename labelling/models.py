from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Claim(models.Model):
    """An image shown to one SME, kept from other SMEs' queues until ``expires_at``."""

    image = models.OneToOneField("curation.Image", on_delete=models.CASCADE, related_name="claim")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["user", "expires_at"], name="claim_user_expiry")]


class ActionKind(models.TextChoices):
    LABEL = "label", "Labelled"
    UNKNOWN = "unknown", "Sent to holding class"
    BAD = "bad", "Marked bad"
    SKIP = "skip", "Skipped"
    OPINION = "opinion", "Second opinion given"


class LabellingAction(models.Model):
    """One keystroke's worth of work on the labelling page, kept so ``z`` can undo it and so
    the stats can count it. The label change itself is a LabelEvent, linked here."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    image = models.ForeignKey("curation.Image", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=ActionKind.choices)
    label_event = models.ForeignKey(
        "curation.LabelEvent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    previous_subclass = models.ForeignKey(
        "curation.SubClass", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    bad_reason = models.CharField(max_length=32, blank=True)
    previous_bad_reason = models.CharField(max_length=32, blank=True)
    opinion = models.ForeignKey(
        "SecondOpinion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    undone_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["user", "-id"], condition=Q(undone_at__isnull=True), name="action_user_open"
            )
        ]


class ExemplarKind(models.TextChoices):
    GOOD = "good", "Good example"
    BAD = "bad", "Bad example"


class Exemplar(models.Model):
    """An image pinned to a class's labelling standard as a good or bad example."""

    label_class = models.ForeignKey(
        "curation.LabelClass", on_delete=models.CASCADE, related_name="exemplars"
    )
    image = models.ForeignKey("curation.Image", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=ExemplarKind.choices)
    note = models.CharField(max_length=300, blank=True)
    pinned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "id"]
        constraints = [
            models.UniqueConstraint(fields=["label_class", "image"], name="exemplar_unique_image")
        ]


class OpinionStatus(models.TextChoices):
    AGREED = "agreed", "Agreed"
    OPEN = "open", "Disagreement to settle"
    SETTLED = "settled", "Settled by a reviewer"
    DOUBLE_CHECK = "double_check", "Sent to Double-check"


class SettledChoice(models.TextChoices):
    FIRST = "first", "Kept the first label"
    SECOND = "second", "Took the second opinion"
    DOUBLE_CHECK = "double_check", "Sent to Double-check"


class SecondOpinion(models.Model):
    """A blind second label of an already labelled image, by another SME. Disagreements wait
    for a reviewer; agreements feed the consistency figures."""

    image = models.ForeignKey("curation.Image", on_delete=models.CASCADE, related_name="+")
    first_subclass = models.ForeignKey(
        "curation.SubClass", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    first_actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    second_subclass = models.ForeignKey(
        "curation.SubClass", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    second_bad_reason = models.CharField(max_length=32, blank=True)
    second_actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    agrees = models.BooleanField()
    status = models.CharField(max_length=16, choices=OpinionStatus.choices)
    settled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    settled_at = models.DateTimeField(null=True, blank=True)
    settled_choice = models.CharField(max_length=16, choices=SettledChoice.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["image", "second_actor"], name="secondopinion_one_per_image_and_sme"
            )
        ]
        indexes = [
            models.Index(fields=["status", "-id"], name="secondopinion_status"),
        ]
