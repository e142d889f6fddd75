"""The labelling page's API: one round trip per key press (act, then top up the prefetch)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from accounts.permissions import IsReviewer, api_user
from config.query import ID_MAX, choice_param
from curation.models import BadReason, BadVerdict, Image, LabelClass, SubClass
from labelling.models import ActionKind, LabellingAction, OpinionStatus, SecondOpinion
from labelling.queues import Queue, QueueNotFound, queue_images, queue_resolve
from labelling.selectors import agreement_rates, opinions_by_status
from labelling.services import (
    ClaimConflict,
    NothingToUndo,
    SettleChoice,
    claims_take,
    holding_subclass,
    label_image,
    mark_bad,
    second_opinion_give,
    second_opinion_settle,
    skip_image,
    undo_last,
)
from labelling.suggestions import active_model_id, suggestions_for

PREFETCH_MAX = 20


def _payload(
    images: list[Image], *, model_id: int | None, blind: bool = False
) -> list[dict[str, Any]]:
    """What the page needs to show each image, suggestions included (bounded queries). A blind
    payload (second opinion) leaves out the current label, the verdict and the image page's
    address (the page shows the label). Queues never hand out images judged bad, so only an
    undone image can carry a verdict (looked up one at a time)."""
    ids = [image.pk for image in images]
    suggestions = suggestions_for(image_ids=ids, model_id=model_id)
    rows = []
    for image in images:
        subclass = None if blind else image.subclass
        rows.append(
            {
                "id": image.pk,
                "version": image.version,
                "width": image.width,
                "height": image.height,
                "file_url": reverse("api:image-file", args=[image.pk]),
                # What the page shows: a TIFF's JPEG rendition, any other original as is.
                "display_url": reverse("api:image-display", args=[image.pk]),
                "page_url": None if blind else reverse("curation:image", args=[image.pk]),
                "subclass_id": subclass.pk if subclass else None,
                "label": str(subclass) if subclass else None,
                "class_id": subclass.label_class_id if subclass else None,
                "bad_reason": None if blind else _verdict(image),
                "suggestions": [s.as_dict() for s in suggestions.get(image.pk, [])],
            }
        )
    return rows


def _verdict(image: Image) -> str | None:
    verdict = getattr(image, "_verdict", None)
    return verdict.reason if verdict else None


def _queue(spec: str) -> Queue:
    try:
        return queue_resolve(spec or "inbox")
    except QueueNotFound as exc:
        raise NotFound(str(exc)) from None


def _next(request: Request, queue: Queue, holding: list[int], count: int) -> dict[str, Any]:
    model_id = active_model_id()
    user = api_user(request)
    images = queue_images(queue=queue, user=user, exclude_ids=holding, limit=count)
    claims_take(user=user, image_ids=[image.pk for image in images])
    return {
        "next": _payload(images, blind=queue.blind, model_id=model_id),
        "remaining": queue.size(user=user),
    }


HOLDING_MAX = 200


class QueueQuery(serializers.Serializer[Any]):
    queue = serializers.CharField(default="inbox")
    # Ids of images the client still holds; bounded so no id overflows the database's integers.
    holding = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ID_MAX),
        default=list,
        max_length=HOLDING_MAX,
    )
    count = serializers.IntegerField(min_value=0, max_value=PREFETCH_MAX, default=5)


class QueueView(APIView):
    """The next images of a queue, claimed for you (other SMEs won't see them meanwhile)."""

    @extend_schema(parameters=[QueueQuery], responses={200: dict})
    def get(self, request: Request) -> Response:
        query = QueueQuery(
            data={
                "queue": request.query_params.get("queue", "inbox"),
                "holding": request.query_params.getlist("holding"),
                "count": request.query_params.get("count", 5),
            }
        )
        query.is_valid(raise_exception=True)
        queue = _queue(query.validated_data["queue"])
        body = _next(request, queue, query.validated_data["holding"], query.validated_data["count"])
        return Response(
            {"queue": {"spec": queue.spec, "title": queue.title, "blind": queue.blind}, **body}
        )


class ActionInput(QueueQuery):
    image = serializers.IntegerField(min_value=1, max_value=ID_MAX)
    version = serializers.IntegerField(min_value=1, required=False)
    action = serializers.ChoiceField(choices=ActionKind.choices)
    subclass = serializers.IntegerField(required=False)
    holding_class = serializers.IntegerField(required=False)
    bad_reason = serializers.ChoiceField(choices=BadReason.choices, required=False)
    count = serializers.IntegerField(min_value=0, max_value=PREFETCH_MAX, default=1)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        action = attrs["action"]
        if action != ActionKind.SKIP and "version" not in attrs:
            raise ValidationError({"version": ["Send the version of the image you saw."]})
        if action == ActionKind.LABEL and "subclass" not in attrs:
            raise ValidationError({"subclass": ["Choose a sub-class."]})
        if action == ActionKind.BAD and "bad_reason" not in attrs:
            raise ValidationError({"bad_reason": ["Choose a reason from the standards."]})
        return attrs


class ActionView(APIView):
    """Label, send to the holding class, mark bad or skip the image; the answer carries the
    next images to keep the page's prefetch full. A conflicting label answers 409."""

    @extend_schema(request=ActionInput, responses={200: dict, 409: dict})
    def post(self, request: Request) -> Response:
        data = ActionInput(data=request.data)
        data.is_valid(raise_exception=True)
        args = data.validated_data
        user = api_user(request)
        image_id = args["image"]
        queue = _queue(args["queue"])
        try:
            if queue.blind and args["action"] != ActionKind.SKIP:
                action = self._opinion(user, image_id, args)
            elif args["action"] == ActionKind.LABEL:
                subclass = SubClass.objects.filter(pk=args["subclass"]).first()
                if subclass is None:
                    raise ValidationError({"subclass": [f"No sub-class {args['subclass']}."]})
                action = label_image(
                    user=user,
                    image_id=image_id,
                    subclass=subclass,
                    expected_version=args["version"],
                )
            elif args["action"] == ActionKind.UNKNOWN:
                holding_class = None
                if "holding_class" in args:
                    holding_class = LabelClass.objects.filter(pk=args["holding_class"]).first()
                try:
                    target = holding_subclass(label_class=holding_class)
                except LookupError as exc:
                    raise ValidationError({"holding_class": [str(exc)]}) from None
                action = label_image(
                    user=user,
                    image_id=image_id,
                    subclass=target,
                    expected_version=args["version"],
                    kind=ActionKind.UNKNOWN,
                )
            elif args["action"] == ActionKind.BAD:
                action = mark_bad(
                    user=user,
                    image_id=image_id,
                    reason=args["bad_reason"],
                    expected_version=args["version"],
                )
            else:
                action = skip_image(user=user, image_id=image_id)
        except ClaimConflict as exc:
            return Response(
                {"detail": str(exc), "claimed_by": exc.claim.user.username},
                status=status.HTTP_409_CONFLICT,
            )
        except Image.DoesNotExist:
            raise NotFound(f"No image {image_id}.") from None
        except ValueError as exc:
            raise ValidationError({"detail": [str(exc)]}) from None
        holding = [*args["holding"], image_id]
        return Response(
            {
                "action": {"id": action.pk, "kind": action.kind, "image": image_id},
                **_next(request, queue, holding, args["count"]),
            }
        )

    def _opinion(self, user: User, image_id: int, args: dict[str, Any]) -> LabellingAction:
        subclass = None
        if args["action"] == ActionKind.LABEL:
            subclass = SubClass.objects.filter(pk=args["subclass"]).first()
            if subclass is None:
                raise ValidationError({"subclass": [f"No sub-class {args['subclass']}."]})
        elif args["action"] == ActionKind.UNKNOWN:
            try:
                subclass = holding_subclass()
            except LookupError as exc:
                raise ValidationError({"holding_class": [str(exc)]}) from None
        return second_opinion_give(
            user=user,
            image_id=image_id,
            subclass=subclass,
            bad_reason=args.get("bad_reason", "") if args["action"] == ActionKind.BAD else "",
        )


class UndoInput(serializers.Serializer[Any]):
    # The page's queue: the answer then counts what is left in it, and a blind queue's answer
    # hides the first label as its other answers do.
    queue = serializers.CharField(required=False)


class UndoView(APIView):
    """Undo your last labelling action (as a new label event); the image comes back to you.
    Send ``queue`` to get its ``remaining`` count back. The image is answered blind (no label,
    verdict or page address) when the undone action was a second opinion, when ``queue`` is a
    blind queue, or, without ``queue``, when it was a skip of an image someone else labelled."""

    @extend_schema(request=UndoInput, responses={200: dict, 404: dict, 409: dict})
    def post(self, request: Request) -> Response:
        data = UndoInput(data=request.data)
        data.is_valid(raise_exception=True)
        queue = _queue(data.validated_data["queue"]) if "queue" in data.validated_data else None
        user = api_user(request)
        try:
            action = undo_last(user=user)
        except NothingToUndo as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
        except ClaimConflict as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        image = Image.objects.select_related("subclass__label_class").get(pk=action.image_id)
        image._verdict = BadVerdict.objects.filter(image=image).first()  # type: ignore[attr-defined]
        blind = action.kind == ActionKind.OPINION or (
            queue.blind
            if queue is not None
            else action.kind == ActionKind.SKIP
            and image.subclass_id is not None
            and image.labelled_by_id != user.pk
        )
        body: dict[str, Any] = {
            "undone": {"id": action.pk, "kind": action.kind, "at": timezone.now()},
            "image": _payload([image], model_id=active_model_id(), blind=blind)[0],
        }
        if queue is not None:
            body["remaining"] = queue.size(user=user)
        return Response(body)


class SecondOpinionSerializer(serializers.ModelSerializer[SecondOpinion]):
    first_label = serializers.CharField(source="first_subclass", read_only=True, default=None)
    second_label = serializers.CharField(source="second_subclass", read_only=True, default=None)
    first_actor = serializers.CharField(source="first_actor.username", default=None)
    second_actor = serializers.CharField(source="second_actor.username")

    class Meta:
        model = SecondOpinion
        fields = [
            "id",
            "image",
            "first_label",
            "first_actor",
            "second_label",
            "second_bad_reason",
            "second_actor",
            "agrees",
            "status",
            "created_at",
            "settled_at",
        ]


class SecondOpinionListView(APIView):
    """Second opinions (reviewers): ``?status=open`` lists the disagreements to settle."""

    permission_classes = [IsReviewer]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "status", str, enum=OpinionStatus.values, default=OpinionStatus.OPEN.value
            )
        ],
        responses={200: SecondOpinionSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        wanted = choice_param(request, "status", OpinionStatus.values, default=OpinionStatus.OPEN)
        opinions = opinions_by_status(status=wanted)[:200]
        return Response(SecondOpinionSerializer(opinions, many=True).data)


class SettleInput(serializers.Serializer[Any]):
    choice = serializers.ChoiceField(choices=[(c, c) for c in SettleChoice.ALL])


class SecondOpinionSettleView(APIView):
    """Settle a disagreement: keep the first label, take the second, or send to Double-check."""

    permission_classes = [IsReviewer]

    @extend_schema(request=SettleInput, responses={200: SecondOpinionSerializer})
    def post(self, request: Request, pk: int) -> Response:
        data = SettleInput(data=request.data)
        data.is_valid(raise_exception=True)
        if not SecondOpinion.objects.filter(pk=pk).exists():
            raise NotFound(f"No second opinion {pk}.")
        try:
            opinion = second_opinion_settle(
                reviewer=api_user(request), opinion_id=pk, choice=data.validated_data["choice"]
            )
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(SecondOpinionSerializer(opinions_by_status().get(pk=opinion.pk)).data)


class AgreementView(APIView):
    """Label consistency from second opinions: agreement per class and per labeller pair."""

    # Per labeller pair: the same reviewers' view as /label/second-opinions/agreement/.
    permission_classes = [IsReviewer]

    @extend_schema(responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response(agreement_rates())
