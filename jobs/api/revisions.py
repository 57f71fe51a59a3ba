"""`…/{name or id}/revisions/` on the job type and schedule endpoints: the
revisions of one definition, newest first, each with its field changes; one
revision with its whole definition; and restoring one (the change
permission). Credentials masked (jobs/definitions/revisions.py)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from jobs.api.schema import ErrorSerializer
from jobs.definitions import revisions

# Any value reaches the view, which answers 404 in JSON for one that is no revision id.
REVISION_ID = r"revisions/(?P<revision_id>[^/]+)"
REVISION_PARAMETER = OpenApiParameter("revision_id", int, OpenApiParameter.PATH, description="The revision's id.")
HISTORY_TYPES = {"+": "created", "~": "changed", "-": "deleted"}


class ChangeSerializer(serializers.Serializer):
    field = serializers.CharField()
    old = serializers.JSONField()
    new = serializers.JSONField()


class RevisionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    user = serializers.CharField(allow_null=True)
    source = serializers.CharField(help_text="api, admin, import, restore, monitor, director, migration or code.")
    type = serializers.ChoiceField(choices=list(HISTORY_TYPES.values()))
    changes = ChangeSerializer(many=True)


class RevisionDetailSerializer(RevisionSerializer):
    definition = serializers.JSONField(help_text="The whole definition, as the API shows it (credentials masked).")


def revision_data(record, changes: list[dict]) -> dict:
    user = record.history_user
    return {
        "id": record.history_id,
        "created_at": record.history_date,
        "user": user.get_username() if user is not None else None,
        "source": record.history_change_reason or "",
        "type": HISTORY_TYPES.get(record.history_type, record.history_type),
        "changes": changes,
    }


def restore_schema(serializer_class) -> object:
    """The restore action's schema, for a viewset of `serializer_class` (extend_schema_view)."""
    return extend_schema(
        request=None,
        responses={
            200: OpenApiResponse(serializer_class, description="Restored: as it is now, itself a new revision."),
            400: OpenApiResponse(ErrorSerializer, description="What no longer holds (a step's job type deleted, …)."),
        },
        filters=False,
        parameters=[REVISION_PARAMETER],
    )


class RevisionsMixin:
    """For a ModelViewSet of a model with a `history` (DefinitionHistory)."""

    def restore_definition(self, obj, record):
        raise NotImplementedError

    def _record(self, obj):
        revision_id = self.kwargs["revision_id"]
        if not revision_id.isdigit():
            raise NotFound(f"No revision {revision_id!r}: revisions have whole numbers as ids.")
        return get_object_or_404(obj.history.select_related("history_user"), history_id=int(revision_id))

    @extend_schema(request=None, responses=RevisionSerializer(many=True), filters=False)
    @action(detail=True, methods=["get"], filterset_class=None)
    def revisions(self, request, **kwargs):
        """Its revisions, newest first, each with what it changed from the one before."""
        obj = self.get_object()
        page = self.paginate_queryset(
            obj.history.select_related("history_user").order_by("-history_date", "-history_id")
        )
        older = revisions.revision_before(page[-1]) if page else None
        return self.get_paginated_response(
            [revision_data(record, changes) for record, changes in revisions.with_changes(page, older)]
        )

    @extend_schema(request=None, responses=RevisionDetailSerializer, filters=False, parameters=[REVISION_PARAMETER])
    @action(detail=True, methods=["get"], url_path=REVISION_ID, filterset_class=None)
    def revision(self, request, revision_id=None, **kwargs):
        """One revision, with the whole definition it holds."""
        record = self._record(self.get_object())
        data = revision_data(record, revisions.changes(record, revisions.revision_before(record)))
        return Response({**data, "definition": revisions.definition(record)})

    @action(detail=True, methods=["post"], url_path=f"{REVISION_ID}/restore", filterset_class=None)
    def restore(self, request, revision_id=None, **kwargs):
        """Make it what this revision holds, through the same checks as any save."""
        obj = self.get_object()
        restored = self.restore_definition(obj, self._record(obj))
        restored._prefetched_objects_cache = {}
        return Response(self.get_serializer(restored).data)
