"""`/api/v1/secrets/`: named secrets, write-only (docs/guide.md, "Secrets").

A value is accepted on create and update and never returned: every answer
holds the name, the description, and who changed it when.
"""

from django.db import transaction
from rest_framework import serializers, status, viewsets
from rest_framework.response import Response

from jobs import audit
from jobs.definitions.secrets import secret_create, secret_delete, secret_update
from jobs.models import Secret


class SecretSerializer(serializers.ModelSerializer):
    value = serializers.CharField(
        write_only=True,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="Write-only: stored encrypted, never shown again.",
    )
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    updated_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Secret
        fields = ["name", "description", "value", "created_at", "created_by", "updated_at", "updated_by"]
        read_only_fields = ["created_at", "updated_at"]
        # Uniqueness and the value's rules are the service's (jobs/definitions/secrets.py).
        extra_kwargs = {"name": {"validators": []}}

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list | tuple):
            # The name is what job types refer to: it does not change (delete and create instead).
            fields["name"].read_only = True
            fields["value"].required = False
        return fields


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

    def perform_update(self, serializer):
        data = serializer.validated_data
        serializer.instance = secret_update(
            secret=serializer.instance, value=data.get("value"), description=data.get("description"), by=self.author()
        )

    def destroy(self, request, *args, **kwargs):
        with transaction.atomic():
            secret_delete(secret=self.get_object(), by=self.author())
        return Response(status=status.HTTP_204_NO_CONTENT)
