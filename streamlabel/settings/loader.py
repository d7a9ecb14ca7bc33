"""How settings are read: one loader for every settings model.

Sources, highest priority first: explicit overrides, environment variables
``STREAMLABEL_<SECTION>__<NAME>``, a settings file (pydantic-settings' own TOML
or JSON source, chosen by the file's suffix), the defaults. The sources are
merged first and validated once, so a rule that relates two settings (SASL
needs credentials) sees the merged values. Renamed settings are still read
under their old names, each source on its own (:mod:`~streamlabel.settings.renamed`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from streamlabel.errors import SettingsError
from streamlabel.settings.renamed import OldEnvSource, Renamed

__all__ = ["Section", "SettingsModel", "describe_validation_error", "load"]

S = TypeVar("S", bound="SettingsModel")

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("streamlabel_config_file", default=None)
"""The settings file of the load in progress (a per-call source, not part of the model)."""


class Section(BaseModel):
    """One component's settings: frozen, and an unknown name is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SettingsModel(BaseSettings):
    """The root of a settings model: env prefix, nesting, the sources in priority order."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMLABEL_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    renamed: ClassVar[Mapping[str, str]] = {}
    """Old dotted name -> new dotted name, read for one release with a warning."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Overrides > environment (new names, then old ones) > the settings file."""
        renamed = cls.renamed
        sources: list[PydanticBaseSettingsSource] = [
            Renamed(init_settings, renamed, "overrides"),
            env_settings,
        ]
        if renamed:
            sources.append(OldEnvSource(settings_cls, renamed))
        path = _CONFIG_FILE.get()
        if path is not None:
            sources.append(Renamed(_file_source(settings_cls, path), renamed, str(path)))
        return tuple(sources)


def load(model: type[S], config_file: str | Path | None, overrides: dict[str, Any]) -> S:
    """``model`` from overrides > environment > ``config_file`` > defaults.

    Raises:
        SettingsError: the file is missing or unparsable (naming it), or a value
            is invalid (naming every invalid setting).
    """
    token = _CONFIG_FILE.set(Path(config_file) if config_file is not None else None)
    try:
        return model(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None
    finally:
        _CONFIG_FILE.reset(token)


class _CheckedFile:
    """A file source's reading, with every failure a :class:`SettingsError` naming the file."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        read: Callable[[Any], Any] = super()._read_file  # type: ignore[misc]
        try:
            data = read(file_path)
        except (OSError, ValueError) as exc:  # TOML/JSON decode errors are ValueErrors
            raise SettingsError(f"settings file {str(file_path)!r} is not valid: {exc}") from None
        if not isinstance(data, dict):
            raise SettingsError(f"settings file {str(file_path)!r} must hold a table/object")
        return data


class _TomlFile(_CheckedFile, TomlConfigSettingsSource):
    pass


class _JsonFile(_CheckedFile, JsonConfigSettingsSource):
    pass


def _file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    """The TOML source for a ``.toml`` file, else the JSON source."""
    if not path.is_file():  # pydantic-settings skips a missing file; a named one must exist
        raise SettingsError(f"cannot read the settings file {str(path)!r}: no such file")
    if path.suffix.lower() == ".toml":
        return _TomlFile(settings_cls, toml_file=path)
    return _JsonFile(settings_cls, json_file=path)


_SECRET_WORDS = ("password", "secret", "token")


def _redact(value: Any, name: str = "") -> Any:
    """The value with secrets masked (a field whose name says it holds one)."""
    if any(w in name.lower() for w in _SECRET_WORDS) and value is not None:
        return "**********"
    if isinstance(value, dict):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    return value


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming every invalid setting (``kafka.partitions: ...``), secrets masked."""
    problems = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"])
        shown = _redact(e.get("input"), str(e["loc"][-1]) if e["loc"] else "")
        problems.append(f"{loc or '<settings>'}: {e['msg']} (got {shown!r})")
    return "invalid settings: " + "; ".join(problems)
