"""Lazy loading of the ``akeyless`` SDK.

Why: ``import akeyless`` runs a package ``__init__`` that imports ~1,300
generated model modules (~0.4-0.8 s, ~70 MB RSS) although the plugin uses
about a dozen of them. Before anything imports the SDK we place two module
objects in ``sys.modules`` built from the real specs but *not executed*:
``akeyless`` (so its ``__init__`` never runs; submodules are still found
through its ``__path__``) and ``akeyless.models``, whose ``__getattr__``
imports one model module on first use. The SDK's deserialiser looks models
up with ``getattr(akeyless.models, name)``, so it works unchanged. Module
names follow the generator's snake-casing (checked against every model of
the installed SDK in tests); if a name is ever missing we fall back to
executing the real ``akeyless.models`` package once.

Only this module imports the SDK, and only when :func:`load` is called.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import sys
import threading
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any

from ...errors import SetupError

_lock = threading.Lock()
_sdk: Sdk | None = None
_QUIET_LOGGERS = ("akeyless", "akeyless.rest", "urllib3")


@dataclass(frozen=True, slots=True)
class Sdk:
    """The few SDK objects the client uses."""

    ApiClient: Any
    Configuration: Any
    ApiException: type[Exception]
    models: ModuleType
    urllib3: ModuleType
    version: str


def model_module(class_name: str) -> str:
    """The generated module name of a model class (openapi-generator's rule)."""
    word = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", class_name)
    word = re.sub(r"([a-z\d])([A-Z])", r"\1_\2", word)
    return word.replace("-", "_").lower()


def _spec_module(name: str) -> ModuleType:
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise SetupError("the akeyless SDK is not installed")
    return importlib.util.module_from_spec(spec)


def _models_getattr(models: ModuleType) -> Any:
    full_lock = threading.Lock()

    def __getattr__(name: str) -> Any:  # noqa: N807 - module __getattr__ protocol
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            module = importlib.import_module(f"akeyless.models.{model_module(name)}")
            value = getattr(module, name)
        except (ImportError, AttributeError):
            value = _full_models(models, full_lock).get(name) or _opaque(name)
        setattr(models, name, value)
        return value

    return __getattr__


def _full_models(models: ModuleType, lock: threading.Lock) -> dict[str, Any]:
    """Run the real ``akeyless.models`` __init__ once; {} if modules are missing."""
    with lock:
        spec = models.__spec__
        if spec is not None and spec.loader is not None and "APIKeyAccessRules" not in vars(models):
            try:
                spec.loader.exec_module(models)
            except ImportError:  # a frozen build that bundles only the reachable models
                return {}
        return vars(models)


def _opaque(name: str) -> type:
    """A stand-in for a model we do not ship: the deserialiser keeps its raw JSON.

    Only reachable for nested response fields the plugin never reads (the
    build bundles every model reachable from the operations it calls).
    """
    return type(name, (), {"openapi_types": {}, "attribute_map": {}})


def _seed() -> None:
    """Put unexecuted ``akeyless`` and lazy ``akeyless.models`` into sys.modules."""
    if "akeyless" in sys.modules:
        return  # already imported (fully or by us): reuse it
    pkg = _spec_module("akeyless")
    sys.modules["akeyless"] = pkg
    try:
        models = _spec_module("akeyless.models")
    except BaseException:
        del sys.modules["akeyless"]
        raise
    models.__getattr__ = _models_getattr(models)  # type: ignore[method-assign]
    sys.modules["akeyless.models"] = models
    pkg.models = models  # type: ignore[attr-defined]
    pkg.__getattr__ = _package_getattr(pkg)  # type: ignore[method-assign]


def _package_getattr(pkg: ModuleType) -> Any:
    """Anyone reaching for ``akeyless.X`` gets the real package, initialised once."""
    lock = threading.Lock()

    def __getattr__(name: str) -> Any:  # noqa: N807 - module __getattr__ protocol
        if not name[:1].isupper():  # submodules (rest, api_client, ...) import normally
            raise AttributeError(name)
        with lock:
            spec = pkg.__spec__
            if name not in pkg.__dict__ and spec is not None and spec.loader is not None:
                spec.loader.exec_module(pkg)
        try:
            return pkg.__dict__[name]
        except KeyError:
            raise AttributeError(name) from None

    return __getattr__


class _NoDebug(logging.Filter):
    """Drops records below WARNING even if someone lowers the logger's level later."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


_NO_DEBUG = _NoDebug()


def quiet_sdk_logging() -> None:
    """Keep the SDK's body-dumping debug logs off whatever the log level is."""
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        if _NO_DEBUG not in logger.filters:
            logger.addFilter(_NO_DEBUG)


def load() -> Sdk:
    """Import (once) the parts of the SDK the client needs."""
    global _sdk  # noqa: PLW0603 - process-wide, import-once cache
    with _lock:
        if _sdk is None:
            _seed()
            quiet_sdk_logging()
            api_client = importlib.import_module("akeyless.api_client")
            configuration = importlib.import_module("akeyless.configuration")
            exceptions = importlib.import_module("akeyless.exceptions")
            urllib3 = importlib.import_module("urllib3")
            version = getattr(sys.modules["akeyless"], "__version__", None) or _dist_version()
            _sdk = Sdk(api_client.ApiClient, configuration.Configuration,
                       exceptions.ApiException, sys.modules["akeyless.models"], urllib3, version)
        return _sdk


def _dist_version() -> str:
    try:
        return metadata.version("akeyless")
    except metadata.PackageNotFoundError:
        return "unknown"
