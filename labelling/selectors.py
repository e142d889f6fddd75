from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet

from labelling.models import OpinionStatus, SecondOpinion


def opinions_by_status(*, status: str | None = None) -> QuerySet[SecondOpinion]:
    opinions = SecondOpinion.objects.select_related(
        "first_subclass__label_class",
        "second_subclass__label_class",
        "first_actor",
        "second_actor",
    ).order_by("-id")
    return opinions.filter(status=status) if status else opinions


def agreement_rates() -> dict[str, Any]:
    """Agreement of second opinions with first labels, per class of the first label and per
    (first labeller, second labeller) pair. Two grouped queries."""
    agreed = Count("id", filter=Q(agrees=True))
    per_class = (
        SecondOpinion.objects.values(
            "first_subclass__label_class_id", "first_subclass__label_class__name"
        )
        .annotate(total=Count("id"), agreed=agreed)
        .order_by("first_subclass__label_class__name")
    )
    per_pair = (
        SecondOpinion.objects.values("first_actor__username", "second_actor__username")
        .annotate(total=Count("id"), agreed=agreed)
        .order_by("first_actor__username", "second_actor__username")
    )

    def rate(agreed: int, total: int) -> float | None:
        return round(agreed / total, 4) if total else None

    return {
        "open": SecondOpinion.objects.filter(status=OpinionStatus.OPEN).count(),
        "per_class": [
            {
                "class_id": row["first_subclass__label_class_id"],
                "class_name": row["first_subclass__label_class__name"],
                "opinions": row["total"],
                "agreed": row["agreed"],
                "agreement": rate(row["agreed"], row["total"]),
            }
            for row in per_class
        ],
        "per_pair": [
            {
                "first": row["first_actor__username"],
                "second": row["second_actor__username"],
                "opinions": row["total"],
                "agreed": row["agreed"],
                "agreement": rate(row["agreed"], row["total"]),
            }
            for row in per_pair
        ],
    }
