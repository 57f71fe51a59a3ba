"""The admin page of secrets: names and descriptions, and a value that can be
set and never seen (docs/security.md, "Secrets")."""

from django import forms
from django.contrib import admin

from jobs import audit
from jobs.core import secrets
from jobs.definitions.secrets import secret_create, secret_in_use, secret_update
from jobs.models import Secret


class SecretForm(forms.ModelForm):
    value = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown again. On a change, leave it empty to keep the current value.",
    )

    class Meta:
        model = Secret
        fields = ["name", "value", "description"]

    def clean_value(self) -> str:
        value = self.cleaned_data.get("value", "")
        if not value:
            if self.instance.pk is None:
                raise forms.ValidationError("Give the secret's value.")
            return value
        problems = Secret.value_errors(value)
        if problems:
            raise forms.ValidationError(problems)
        try:
            secrets.encrypt(value)  # says now, on the form, if no key is set
        except secrets.SecretsError as exc:
            raise forms.ValidationError(str(exc)) from None
        return value


@admin.register(Secret)
class SecretAdmin(admin.ModelAdmin):
    form = SecretForm
    list_display = ["name", "description", "updated_at", "updated_by", "created_by"]
    search_fields = ["name", "description"]
    list_select_related = ["created_by", "updated_by"]
    readonly_fields = ["created_at", "created_by", "updated_at", "updated_by"]

    def get_readonly_fields(self, request, obj=None):
        # The name is what job types refer to: it does not change once created.
        return [*self.readonly_fields, "name"] if obj is not None else self.readonly_fields

    def get_fields(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            return ["name", "description", *self.readonly_fields]  # no value field to show, even empty
        return super().get_fields(request, obj)

    def save_model(self, request, obj, form, change):
        # The admin records its own history entry (naming the fields, as the service would).
        by = audit.Author(request.user, "in the admin")
        value = form.cleaned_data.get("value") or None
        if change:
            stored = Secret.objects.get(pk=obj.pk)
            saved = secret_update(secret=stored, value=value, description=obj.description, by=by, log=False)
        else:
            saved = secret_create(name=obj.name, value=value, description=obj.description, by=by, log=False)
        form.instance = saved
        obj.pk = saved.pk

    def get_deleted_objects(self, objs, request):
        # A secret that job types use is not deleted: the admin lists why, as for protected objects.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        in_use = [problem for obj in objs if (problem := secret_in_use(obj))]
        return deleted, counts, perms_needed, [*protected, *in_use]
