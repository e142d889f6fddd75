from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from knox.models import AuthToken
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.services import token_issue, token_revoke


class TokenSerializer(serializers.ModelSerializer[AuthToken]):
    key = serializers.CharField(source="token_key", read_only=True)

    class Meta:
        model = AuthToken
        fields = ["key", "created", "expiry"]


class TokenViewSet(viewsets.GenericViewSet):
    """Your own API tokens. The full token is shown once, when it is issued; only a digest is
    kept. Revoke one by its key (the first characters of the token)."""

    serializer_class = TokenSerializer
    lookup_field = "token_key"
    pagination_class = None

    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return AuthToken.objects.none()
        return AuthToken.objects.filter(user=self.request.user).order_by("-created")

    def list(self, request: Request) -> Response:
        return Response(TokenSerializer(self.get_queryset(), many=True).data)

    @extend_schema(request=None, responses={201: dict})
    def create(self, request: Request) -> Response:
        instance, token = token_issue(user=request.user)
        return Response(
            {"token": token, **TokenSerializer(instance).data}, status=status.HTTP_201_CREATED
        )

    def destroy(self, request: Request, token_key: str | None = None) -> Response:
        if not token_revoke(user=request.user, token_key=token_key or ""):
            return Response({"detail": "No such token."}, status=status.HTTP_404_NOT_FOUND)
        return Response(status=status.HTTP_204_NO_CONTENT)
