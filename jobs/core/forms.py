"""Form fields shared by the admin and the monitoring pages."""

from django import forms
from django.forms.fields import InvalidJSONInput

from jobs.core.limits import MAX_JSON_DEPTH, json_depth


class JSONField(forms.JSONField):
    """Django's JSON form field, refusing JSON nested more than MAX_JSON_DEPTH
    levels with a form error (Django's own fails with a server error on JSON
    nested a thousand levels deep)."""

    default_error_messages = {"too_deep": f"Nested more than {MAX_JSON_DEPTH} levels deep: flatten it."}

    def to_python(self, value):
        try:
            converted = super().to_python(value)
        except RecursionError:
            raise forms.ValidationError(self.error_messages["too_deep"], code="too_deep") from None
        if json_depth(converted) > MAX_JSON_DEPTH:
            raise forms.ValidationError(self.error_messages["too_deep"], code="too_deep")
        return converted

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return InvalidJSONInput(data)  # shown again as typed, with the error
