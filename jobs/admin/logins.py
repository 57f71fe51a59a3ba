"""django-axes' page of failed logins, without its clean-up action.

Axes' "Clean up expired attempts" reads the time of a login attempt from the
request, which only a login request has: from the admin it fails with a 500.
Axes cleans expired attempts at each login anyway. Deleting an attempt here
unlocks its username and address (superusers only: no role may see axes).
"""

from axes.admin import AccessAttemptAdmin as AxesAccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin


class AccessAttemptAdmin(AxesAccessAttemptAdmin):
    actions = []


admin.site.unregister(AccessAttempt)
admin.site.register(AccessAttempt, AccessAttemptAdmin)
