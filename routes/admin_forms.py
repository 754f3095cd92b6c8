"""Admin forms. Credentials are write-only: the form shows which fields are stored, masked, and
fields to replace them — never a stored value."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.forms.formsets import DELETION_FIELD_NAME
from django.http import QueryDict
from django.utils import timezone

from providers.registry import get_provider, provider_names

from . import services
from .errors import InvalidRequest
from .models import ApiKey, ProviderCredential, Route

MASK = "••••••••"


def masked_field_names(secrets: dict[str, str] | None) -> str:
    """`name: ••••••••` for each stored secret field: which fields are set, never their values."""
    return ", ".join(f"{name}: {MASK}" for name in sorted(secrets or {})) or "nothing stored yet"


class RouteAdminForm(forms.ModelForm):
    provider = forms.ChoiceField(choices=())

    class Meta:
        model = Route
        fields = ["name", "route_type", "provider", "model_name", "config", "enabled", "production_only",
                  "default_max_tokens", "max_candidates", "description", "connect_timeout_seconds",
                  "read_timeout_seconds", "total_timeout_seconds", "max_retries", "split_weight"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        provider_field = self.fields["provider"]
        assert isinstance(provider_field, forms.ChoiceField)
        provider_field.choices = [(n, n) for n in provider_names()]

    def clean_config(self) -> Any:
        # An emptied textarea means "no settings", not NULL (the column is NOT NULL).
        value = self.cleaned_data.get("config")
        return {} if value is None else value

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        provider, route_type = data.get("provider"), data.get("route_type")
        config = data.get("config")
        if config is None:
            return data  # not JSON: the field's own error is shown
        if not isinstance(config, dict):
            raise forms.ValidationError({"config": "The config must be a JSON object."})
        # Without a valid provider, any provider's secret field name counts.
        names = [provider] if provider else provider_names()
        secret_fields = {f for name in names for f in get_provider(name).secret_fields}
        in_config = sorted(secret_fields & set(config))
        if in_config:
            self._drop_from_shown_config({k: v for k, v in config.items() if k not in secret_fields})
            raise forms.ValidationError({"config": (
                f"Secret field(s) {', '.join(in_config)} belong in a credential below (\"Replace API key\" "
                "or \"Replace other secret fields\"), not in the config, which is stored in plain text. "
                "They were removed from the config shown here, and nothing was saved."
            )})
        if provider and route_type:
            try:
                services.route_validate(
                    route_type=route_type, provider=provider, config=config, secrets=assumed_secrets(provider)
                )
            except InvalidRequest as exc:
                raise forms.ValidationError(exc.message) from None
        return data

    def _drop_from_shown_config(self, config: dict[str, Any]) -> None:
        # The page re-renders what was posted: a secret typed into the config must not come back in
        # the HTML (pages get cached, saved, screenshotted).
        shown = self.data.copy() if isinstance(self.data, QueryDict) else dict(self.data)
        shown[self.add_prefix("config")] = json.dumps(config, indent=2)
        self.data = shown


def assumed_secrets(provider: str) -> dict[str, str]:
    """Every secret field of `provider` as present: the route form cannot see its inline credentials."""
    return {name: "set" for name in get_provider(provider).secret_fields}


class CredentialAdminForm(forms.ModelForm):
    api_key = forms.CharField(
        label="Replace API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The provider's main secret (e.g. openai_api_key). Leave blank to keep the stored one.",
    )
    other_secrets = forms.CharField(
        label="Replace other secret fields",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text='JSON object, e.g. {"aws_secret_access_key": "..."}. Merged into the stored fields; '
        "an empty string removes a field.",
    )

    new_secrets: dict[str, str]  # set by clean(): what save() stores

    class Meta:
        model = ProviderCredential
        fields = ["environment"]

    def clean_other_secrets(self) -> dict[str, str]:
        raw = self.cleaned_data.get("other_secrets") or ""
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise forms.ValidationError("Not valid JSON (the value is not shown back).") from None
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise forms.ValidationError("Give a JSON object of strings.")
        # Pasted secrets often carry a trailing newline, which no vendor accepts.
        return {k: v.strip() for k, v in value.items()}

    def _provider_name(self) -> str | None:
        # The route form posts its provider alongside its inline credentials.
        posted = self.data.get("provider")
        if posted:
            return str(posted)
        return self.instance.route.provider if self.instance.route_id else None

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        api_key, other = data.get("api_key"), data.get("other_secrets") or {}
        provider_name = self._provider_name()
        if provider_name is None or provider_name not in provider_names():
            raise forms.ValidationError("Choose the route's provider first.")
        provider = get_provider(provider_name)
        unknown = sorted(name for name, value in other.items() if value and name not in provider.secret_fields)
        if unknown:
            raise forms.ValidationError(
                f"Unknown secret field(s) for {provider.name}: {', '.join(unknown)} "
                f"(it takes: {', '.join(provider.secret_fields) or 'none'})."
            )
        if api_key and not provider.secret_fields:
            raise forms.ValidationError(f"Provider {provider.name} takes no secret fields.")
        secrets = dict(self.instance.secrets or {}) if self.instance.pk else {}
        for name, value in other.items():
            if value:
                secrets[name] = value
            else:
                secrets.pop(name, None)
        if api_key:
            secrets[provider.secret_fields[0]] = api_key
        stale = sorted(set(secrets) - set(provider.secret_fields))
        if stale:
            # Left over from another provider (the route's provider was changed).
            raise forms.ValidationError(
                f"This credential holds {', '.join(stale)}, which provider {provider.name} does not take: "
                f"tick Delete to remove the credential, or clear the field(s) with "
                f"{json.dumps(dict.fromkeys(stale, ''))} in the other secret fields."
            )
        if not secrets:
            raise forms.ValidationError(
                "Enter the API key (or other secret fields) for this credential." if not self.instance.pk
                else "This would leave the credential empty: tick Delete to remove it instead."
            )
        self.new_secrets = secrets
        return data

    def has_changed(self) -> bool:
        return super().has_changed() or bool(self["api_key"].value()) or bool(self["other_secrets"].value())

    def save(self, commit: bool = True) -> ProviderCredential:
        credential: ProviderCredential = super().save(commit=False)
        credential.secrets = self.new_secrets
        if commit:
            credential.save()
        return credential


class CredentialInlineFormSet(forms.BaseInlineFormSet):
    """Checks the route against the secrets it will really hold once saved.

    The route form can only assume every secret field is set; here the credentials are known, so a
    route that needs a key (OpenAI's own API, Azure) cannot be saved without one.
    """

    instance: Route

    def clean(self) -> None:
        super().clean()
        route = self.instance
        if any(self.errors) or route.provider not in provider_names():
            return
        try:
            services.route_validate(route_type=route.route_type, provider=route.provider,
                                    config=route.config or {}, secrets=assumed_secrets(route.provider))
        except InvalidRequest:
            return  # the route form reports it
        by_environment: dict[str, dict[str, str]] = {}
        for form in self.forms:
            new_secrets = getattr(form, "new_secrets", None)
            if new_secrets is None or form.cleaned_data.get(DELETION_FIELD_NAME):
                continue  # an untouched extra form, or one being deleted
            by_environment[form.cleaned_data["environment"]] = new_secrets
        checks = list(by_environment.items()) or [("", {})]
        for environment, secrets in checks:
            try:
                services.route_validate(route_type=route.route_type, provider=route.provider,
                                        config=route.config or {}, secrets=secrets)
            except InvalidRequest as exc:
                where = f"The {environment} credential" if environment else "This route needs a credential"
                raise forms.ValidationError(f"{where}: {exc.message}") from None


class ApiKeyAdminForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["consumer", "name", "is_admin", "expires_at"]

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and self.instance.pk is None and expires_at <= timezone.now():
            raise forms.ValidationError(
                "This time has passed: the key would never work. Leave it blank or pick a later one."
            )
        return expires_at
