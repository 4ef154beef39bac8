"""Settings as environment variables, both ways: the codec ``config.Settings`` uses.

Reading is pydantic-settings' own environment source (each field's ``validation_alias``, an
``AliasChoices`` tried in order, ``NoDecode`` lists), over the mapping it is handed
(``os.environ`` or a test's dict), limited to the keys the model declares, plus boto3's
per-service endpoints (``AWS_ENDPOINT_URL_<SERVICE>``), which have no fixed key. Writing renders
each value as reading parses it, so ``Model(**read(M, render_all(m))) == m``. A refusal names
the key and the value it got; a secret (``SecretStr``) takes any string, so none is ever echoed.
"""

from __future__ import annotations

from typing import Any, Mapping

from pydantic import AliasChoices, SecretStr, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource

SERVICE_ENDPOINT_PREFIX = "AWS_ENDPOINT_URL_"  # boto3's per-service endpoints: AWS_ENDPOINT_URL_S3, ...


def aliases(alias: Any) -> list[str]:
    """A field's environment keys, the first the one written."""
    return list(alias.choices) if isinstance(alias, AliasChoices) else [alias] if isinstance(alias, str) else []


def env_keys(model: type[BaseSettings]) -> dict[str, str]:
    """Every environment key the model declares (its first name) → the field it sets."""
    return {aliases(field.validation_alias)[0]: name for name, field in model.model_fields.items()
            if aliases(field.validation_alias)}


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over ``environ``, reading only the model's keys."""

    def __init__(self, model: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(model, case_sensitive=True, env_ignore_empty=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        keys = {key for field in self.settings_cls.model_fields.values() for key in aliases(field.validation_alias)}
        return {key: value for key, value in self._environ.items() if key in keys and value}


def read(model: type[BaseSettings], environ: Mapping[str, str], services_field: str) -> dict[str, Any]:
    """The model's arguments ``environ`` holds (keyed as the environment spells them), boto3's
    per-service endpoints as ``services_field``: sorted (service, URL) pairs."""
    values = _Environment(model, environ)()
    services = {key[len(SERVICE_ENDPOINT_PREFIX):].lower(): value for key, value in environ.items()
                if key.startswith(SERVICE_ENDPOINT_PREFIX) and value}
    return {**values, services_field: tuple(sorted(services.items()))} if services else values


def render(value: Any) -> str:
    """One value as ``read`` parses it back (a secret's own value: the environment carries it)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):  # a,b or a=x,b=y
        return ",".join(item if isinstance(item, str) else "=".join(item) for item in value)
    return str(value)


def service_endpoint_keys(endpoints: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return {SERVICE_ENDPOINT_PREFIX + service.upper(): url for service, url in endpoints}


def refusal(exc: ValidationError) -> ValueError:
    """One line per problem, each naming its key and value (the message alone for a rule across keys)."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
        problems.append(f"{where}={error['input']!r}: {message}" if where else message)
    return ValueError("; ".join(problems))
