from rest_framework.permissions import DjangoModelPermissions


class ModelPermissions(DjangoModelPermissions):
    """Django model permissions, with reads needing the `view` permission and
    each extra action (run, cancel, rerun) the permission its view names in
    `action_permissions`."""

    view_perm = ["%(app_label)s.view_%(model_name)s"]
    perms_map = {**DjangoModelPermissions.perms_map, "GET": view_perm, "HEAD": view_perm, "OPTIONS": view_perm}

    def has_permission(self, request, view) -> bool:
        action_perm = getattr(view, "action_permissions", {}).get(getattr(view, "action", None))
        if action_perm:
            return bool(request.user and request.user.is_authenticated and request.user.has_perm(action_perm))
        if getattr(view, "queryset", None) is None and not hasattr(view, "get_queryset"):
            # Views about no model (the API root): signing in is enough.
            return bool(request.user and request.user.is_authenticated)
        return super().has_permission(request, view)
