"""The API's shapes of a schedule backfill (jobs/schedules/backfill.py)."""

from rest_framework import serializers

from jobs.models import Backfill


class BackfillRequestSerializer(serializers.Serializer):
    start = serializers.DateTimeField(help_text="The first moment whose ticks are run (included).")
    end = serializers.DateTimeField(help_text="Ticks before this are run (excluded); at most now.")
    backfill_concurrency = serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        help_text="How many of its runs may be active at once. Default: the schedule's backfill_concurrency, "
        "else the job type's max_concurrency, else JOBS_BACKFILL_CONCURRENCY; never more than max_concurrency.",
    )


class BackfillProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField(help_text="Runs ended (succeeded, failed or cancelled).")
    active = serializers.IntegerField(help_text="Runs released and not ended.")
    waiting = serializers.IntegerField(help_text="Runs not released yet.")
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()


class BackfillSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    cancelled_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    progress = BackfillProgressSerializer(read_only=True)

    class Meta:
        model = Backfill
        fields = [
            "id",
            "schedule",
            "start",
            "end",
            "concurrency",
            "total",
            "skipped",
            "progress",
            "requested_by",
            "created_at",
            "released_all_at",
            "cancelled_at",
            "cancelled_by",
        ]
        read_only_fields = fields
