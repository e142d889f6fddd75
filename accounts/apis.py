from __future__ import annotations

from typing import Any, cast

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from knox.auth import TokenAuthentication
from knox.models import AuthToken
from rest_framework import serializers, status, viewsets
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated, Throttled
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from accounts.permissions import IsLabeller, api_user
from accounts.services import token_issue, token_revoke, token_revoke_all
from accounts.throttling import (
    login_failure_record,
    login_failures_clear,
    login_refusal,
    login_wait_seconds,
)


class TokenSerializer(serializers.ModelSerializer[AuthToken]):
    key = serializers.CharField(source="token_key", read_only=True)

    class Meta:
        model = AuthToken
        fields = ["key", "created", "expiry"]


# The throttle's "username" for token issuing: no real username has angle brackets.
ISSUE_THROTTLE_NAME = "<token issue>"


class TokenViewSet(viewsets.GenericViewSet):
    """Your own API tokens. The full token is shown once, when it is issued; only a digest is
    kept. Revoke one by its key (the first characters of the token)."""

    serializer_class = TokenSerializer
    lookup_field = "token_key"
    pagination_class = None

    lookup_value_regex = "[^/]+"

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Issuing is rate-limited like signing in: an address whose attempts keep failing to
        # authenticate is refused (429) before its credential is even looked at.
        if self.action == "create":
            wait = login_wait_seconds(request=request._request, username=ISSUE_THROTTLE_NAME)
            if wait:
                raise Throttled(
                    wait=wait, detail="Too many failed attempts to issue a token from your address."
                )
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc: Exception) -> Response:
        if self.action == "create" and isinstance(exc, (NotAuthenticated, AuthenticationFailed)):
            # Counted on its own: a failed token is not a failed password.
            login_failure_record(
                request=self.request._request, username=ISSUE_THROTTLE_NAME, per_address=False
            )
        return super().handle_exception(exc)

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return AuthToken.objects.none()
        return AuthToken.objects.filter(user=self.request.user).order_by("-created")

    def list(self, request: Request) -> Response:
        return Response(TokenSerializer(self.get_queryset(), many=True).data)

    @extend_schema(request=None, responses={201: dict})
    def create(self, request: Request) -> Response:
        instance, token = token_issue(user=api_user(request))
        return Response(
            {"token": token, **TokenSerializer(instance).data}, status=status.HTTP_201_CREATED
        )

    def destroy(self, request: Request, token_key: str | None = None) -> Response:
        if not token_revoke(user=api_user(request), token_key=token_key or ""):
            return Response({"detail": "No such token."}, status=status.HTTP_404_NOT_FOUND)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenLoginSerializer(serializers.Serializer[Any]):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class TokenLoginResponseSerializer(TokenSerializer):
    token = serializers.CharField(read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)
    role = serializers.CharField(source="user.role", read_only=True)

    class Meta(TokenSerializer.Meta):
        fields = ["token", *TokenSerializer.Meta.fields, "username", "role"]


class TokenLoginView(APIView):
    """Exchange a username and password for a new token, for scripts that are given a password
    rather than a token. Failed attempts are rate-limited per address and username, and per
    address across usernames (429)."""

    authentication_classes: list[type[BaseAuthentication]] = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=TokenLoginSerializer,
        responses={201: TokenLoginResponseSerializer, 400: dict, 429: dict},
    )
    def post(self, request: Request) -> Response:
        serializer = TokenLoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        username = serializer.validated_data["username"]
        refusal = login_refusal(request=request._request, username=username)
        if refusal is not None:
            return Response(
                {"detail": refusal.message},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
                headers={"Retry-After": str(refusal.wait)},
            )
        user = authenticate(
            request._request, username=username, password=serializer.validated_data["password"]
        )
        if user is None:
            login_failure_record(request=request._request, username=username)
            return Response(
                {"detail": "Wrong username or password, or the account is disabled."},
                status=status.HTTP_400_BAD_REQUEST,
            )
        login_failures_clear(request=request._request, username=username)
        instance, token = token_issue(user=cast(User, user))
        instance.token = token  # type: ignore[attr-defined]
        return Response(TokenLoginResponseSerializer(instance).data, status=status.HTTP_201_CREATED)


class TokenLogoutView(APIView):
    """Revoke the token that authenticates this request."""

    authentication_classes = [TokenAuthentication]
    permission_classes = [IsLabeller]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        request.auth.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenLogoutAllView(APIView):
    """Revoke every one of your tokens at once (a leaked token, a retired machine)."""

    permission_classes = [IsLabeller]

    @extend_schema(request=None, responses={200: dict})
    def post(self, request: Request) -> Response:
        revoked = token_revoke_all(user=api_user(request))
        return Response({"detail": f"{revoked} token(s) revoked.", "revoked": revoked})
