"""django-celery-beat's periodic task page, with its actions for those who may
change beat's records (superusers: no role has that permission).

django-celery-beat declares its actions (enable, disable, toggle, run) without
permissions, and Django offers such an action to anyone who may see the list:
a Viewer could disable `jobsite.dispatch` (no schedule would fire any more) or
send any beat entry's task at will. Here each one needs the change permission,
like the change form. See docs/security.md, "Roles".
"""

from django.contrib import admin
from django_celery_beat.admin import PeriodicTaskAdmin as BeatPeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

Beat = BeatPeriodicTaskAdmin


class PeriodicTaskAdmin(BeatPeriodicTaskAdmin):
    @admin.action(description=Beat.enable_tasks.short_description, permissions=["change"])
    def enable_tasks(self, request, queryset):
        return super().enable_tasks(request, queryset)

    @admin.action(description=Beat.disable_tasks.short_description, permissions=["change"])
    def disable_tasks(self, request, queryset):
        return super().disable_tasks(request, queryset)

    @admin.action(description=Beat.toggle_tasks.short_description, permissions=["change"])
    def toggle_tasks(self, request, queryset):
        return super().toggle_tasks(request, queryset)

    @admin.action(description=Beat.run_tasks.short_description, permissions=["change"])
    def run_tasks(self, request, queryset):
        return super().run_tasks(request, queryset)


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PeriodicTaskAdmin)
