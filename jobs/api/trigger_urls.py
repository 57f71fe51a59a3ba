"""Trigger URLs over the API: a job type's URLs, managed by Editors under
/api/v1/job-types/{name}/trigger-urls/, and the URL itself, /hooks/{token}/,
which anyone holding it may POST to without an account (the only write that
needs no login: docs/security.md#trigger-urls). The service is
jobs/runs/trigger_urls.py.
"""

import uuid

from django.http import QueryDict
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import audit
from jobs.api.schema import ErrorSerializer
from jobs.api.throttles import TriggerUrlThrottle
from jobs.models import JobType, Run, TriggerUrl
from jobs.runs.trigger_urls import trigger_url_create, trigger_url_for_token, trigger_url_revoke, trigger_url_run


class TriggerUrlSerializer(serializers.ModelSerializer):
    """A trigger URL as lists show it: never its token, only the token's first characters."""

    job_type = serializers.SlugRelatedField(slug_field="name", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    prefix = serializers.CharField(read_only=True, help_text="The token's first characters, to tell URLs apart.")

    class Meta:
        model = TriggerUrl
        fields = ["id", "job_type", "label", "prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class TriggerUrlCreateSerializer(serializers.Serializer):
    label = serializers.CharField(required=False, default="", allow_blank=True, max_length=200)


class TriggerUrlCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField(help_text="The URL to POST to, token included. Shown this once: keep it now.")
    label = serializers.CharField()
    prefix = serializers.CharField()
    created_at = serializers.DateTimeField()


def hook_url(request, token: str) -> str:
    return request.build_absolute_uri(reverse("trigger-url-hook", args=[token]))


class TriggerUrlViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The trigger URLs of a job type: list (Viewers), create and revoke (Editors)."""

    queryset = TriggerUrl.objects.select_related("job_type", "created_by")
    serializer_class = TriggerUrlSerializer
    filter_backends = []

    def job_type(self) -> JobType:
        return get_object_or_404(JobType, name=self.kwargs["name"])

    def get_queryset(self):
        return super().get_queryset().filter(job_type__name=self.kwargs["name"])

    def list(self, request, *args, **kwargs):
        self.job_type()  # 404 for a job type that does not exist, rather than an empty list
        return super().list(request, *args, **kwargs)

    def author(self) -> audit.Author:
        return audit.Author(self.request.user, audit.API)

    @extend_schema(request=TriggerUrlCreateSerializer, responses={201: TriggerUrlCreatedSerializer})
    def create(self, request, name=None):
        """Make a trigger URL for this job type. Its token is in `url`, shown only in this answer."""
        body = TriggerUrlCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        trigger_url, token = trigger_url_create(
            job_type=self.job_type(), by=self.author(), label=body.validated_data["label"]
        )
        data = {
            "id": trigger_url.pk,
            "url": hook_url(request, token),
            "label": trigger_url.label,
            "prefix": trigger_url.prefix,
            "created_at": trigger_url.created_at,
        }
        return Response(TriggerUrlCreatedSerializer(data).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)],
        responses={204: OpenApiResponse(description="Revoked: the URL answers 404 from now on.")},
    )
    def destroy(self, request, name=None, pk=None):
        """Revoke a trigger URL (it stays listed, with `revoked_at`)."""
        trigger_url_revoke(trigger_url=self.get_object(), by=self.author())
        return Response(status=status.HTTP_204_NO_CONTENT)


class HookRunSerializer(serializers.ModelSerializer):
    """A run started through a trigger URL, as its holder may see it."""

    job_type = serializers.SlugRelatedField(slug_field="name", read_only=True)
    status_url = serializers.SerializerMethodField(help_text="Where to GET this run's status, with no account.")

    class Meta:
        model = Run
        fields = ["id", "job_type", "status", "created_at", "started_at", "finished_at", "status_url"]
        read_only_fields = fields

    def get_status_url(self, run: Run) -> str:
        request = self.context["request"]
        return request.build_absolute_uri(reverse("trigger-url-run", args=[self.context["token"], run.pk]))


class TriggerUrlHookMixin:
    """Anyone may call it (no account, so no session and no CSRF): the token in
    the path is the credential. An unknown or revoked token answers 404, as a
    URL that never existed does. Throttled per trigger URL."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [TriggerUrlThrottle]

    def initial(self, request, *args, **kwargs):
        # Before the throttle, which counts per trigger URL.
        self.trigger_url = trigger_url_for_token(kwargs["token"])
        if self.trigger_url is None:
            raise NotFound("No such trigger URL.")
        super().initial(request, *args, **kwargs)


TOKEN = OpenApiParameter("token", OpenApiTypes.STR, OpenApiParameter.PATH, description="The trigger URL's token.")
THROTTLED = OpenApiResponse(
    ErrorSerializer, description="Past JOBS_TRIGGER_URL_RATE for this URL: try again after Retry-After seconds."
)


class TriggerUrlHookView(TriggerUrlHookMixin, APIView):
    @extend_schema(
        operation_id="trigger_url_post",
        description="Run the trigger URL's job type with the JSON body (an object) as params, without an account. "
        "An `Idempotency-Key` header already sent to this URL returns its first run (200).",
        parameters=[
            TOKEN,
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="At most 150 characters. The same key again, to this URL: its first run comes back "
                "(200), and nothing new runs.",
            ),
        ],
        request={"application/json": {"type": "object", "additionalProperties": {}}},
        responses={
            201: HookRunSerializer,
            200: HookRunSerializer,
            409: OpenApiResponse(ErrorSerializer, description="The job type is disabled, or a workflow with no steps."),
            429: THROTTLED,
        },
    )
    def post(self, request, token):
        params = request.data.dict() if isinstance(request.data, QueryDict) else request.data  # empty body: {}
        run, created = trigger_url_run(
            trigger_url=self.trigger_url,
            params=params,
            idempotency_key=request.headers.get("Idempotency-Key") or None,
        )
        data = HookRunSerializer(run, context={"request": request, "token": token}).data
        return Response(data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class TriggerUrlRunView(TriggerUrlHookMixin, APIView):
    @extend_schema(
        operation_id="trigger_url_run_status",
        description="The status of a run started through this trigger URL, without an account.",
        parameters=[TOKEN, OpenApiParameter("run_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={200: HookRunSerializer, 429: THROTTLED},
    )
    def get(self, request, token, run_id):
        try:
            run = (
                Run.objects.filter(pk=uuid.UUID(run_id), trigger_url=self.trigger_url)
                .select_related("job_type")
                .first()
            )
        except ValueError:
            run = None
        if run is None:
            raise NotFound("No run of this trigger URL has this id.")
        return Response(HookRunSerializer(run, context={"request": request, "token": token}).data)
