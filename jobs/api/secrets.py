"""`/api/v1/secrets/`: named secrets, write-only (docs/guide.md, "Secrets").

A value is accepted on create and update and never returned: every answer
holds the name, the description, and who changed it when.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.response import Response

from jobs import audit
from jobs.definitions.secrets import secret_create, secret_delete, secret_update
from jobs.models import Secret


class TextField(serializers.CharField):
    """A JSON string only, as the schema says: DRF's own also turns numbers into text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def _value_field(**kwargs) -> TextField:
    return TextField(
        write_only=True,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="Write-only: stored encrypted, never shown again.",
        **kwargs,
    )


class SecretSerializer(serializers.ModelSerializer):
    name = TextField(max_length=100, help_text=Secret._meta.get_field("name").help_text)
    description = TextField(required=False, allow_blank=True)
    value = _value_field()
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    updated_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Secret
        fields = ["name", "description", "value", "created_at", "created_by", "updated_at", "updated_by"]
        read_only_fields = ["created_at", "updated_at"]
        # The name's rules and uniqueness and the value's are the service's (jobs/definitions/secrets.py).


class SecretChangeSerializer(serializers.Serializer):
    """A change: a new value, a new description, or both. The name stays (job types refer to it)."""

    description = TextField(required=False, allow_blank=True)
    value = _value_field(required=False)


class SecretViewSet(viewsets.ModelViewSet):
    queryset = Secret.objects.select_related("created_by", "updated_by")
    serializer_class = SecretSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    def author(self) -> audit.Author:
        return audit.Author(self.request.user, audit.API)

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = secret_create(
            name=data["name"], value=data["value"], description=data.get("description", ""), by=self.author()
        )

    @extend_schema(request=SecretChangeSerializer, responses=SecretSerializer)
    def update(self, request, *args, **kwargs):
        secret = self.get_object()
        change = SecretChangeSerializer(data=request.data)
        change.is_valid(raise_exception=True)
        secret = secret_update(
            secret=secret,
            value=change.validated_data.get("value"),
            description=change.validated_data.get("description"),
            by=self.author(),
        )
        return Response(self.get_serializer(secret).data)

    @extend_schema(request=SecretChangeSerializer, responses=SecretSerializer)
    def partial_update(self, request, *args, **kwargs):
        return self.update(request, *args, **kwargs)

    def destroy(self, request, *args, **kwargs):
        secret_delete(secret=self.get_object(), by=self.author())
        return Response(status=status.HTTP_204_NO_CONTENT)
