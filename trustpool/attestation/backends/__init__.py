# SPDX-License-Identifier: Apache-2.0
"""Attestation backends, one module per service, loaded by name."""

from __future__ import annotations

from typing import Any

from oslo_config import cfg
from stevedore import driver, extension
from stevedore.exception import NoMatches

from trustpool.attestation.backends.base import AttestationBackend
from trustpool.exceptions import ConfigurationError

__all__ = ["NAMESPACE", "AttestationBackend", "available_backends",
           "backend_class", "backend_opts", "load_backend", "register_backend",
           "unregister_backend"]

#: Entry point group of backends; the names in it are what operators type.
NAMESPACE = "trustpool.attestation.backends"


def available_backends() -> list[str]:
    """Names of the installed backends, sorted."""
    return sorted(extension.ExtensionManager(NAMESPACE).names())


def backend_class(conf: cfg.ConfigOpts,
                  name: str) -> type[AttestationBackend]:
    """The class of the backend called ``name``, not built.

    Registers the backend's own option groups on ``conf``, so that they
    (and the files of :attr:`AttestationBackend.FILE_OPTS`) can be checked
    before the backend is built.

    :raises ConfigurationError: when no backend has that name.
    """
    backend_cls: type[AttestationBackend] | None = _OVERRIDES.get(name)
    if backend_cls is None:
        installed = available_backends()
        # Checked first: stevedore would log its own warning for an
        # unknown name on top of our error.
        if name not in installed:
            raise ConfigurationError(
                "backend", f"no attestation backend named {name!r}; "
                f"installed: {', '.join(installed) or 'none'}")
        try:
            manager: driver.DriverManager = driver.DriverManager(
                NAMESPACE, name, invoke_on_load=False)
        except NoMatches:
            raise ConfigurationError(
                "backend", f"the attestation backend {name!r} cannot be "
                "loaded") from None
        loaded: Any = manager.driver
        backend_cls = loaded
    if not (isinstance(backend_cls, type)
            and issubclass(backend_cls, AttestationBackend)):
        raise ConfigurationError(
            "backend", f"the attestation backend {name!r} is not an "
            "AttestationBackend")
    for group, opts in backend_cls.CONFIG_OPTS:
        conf.register_opts(opts, group=group)
    return backend_cls


def load_backend(conf: cfg.ConfigOpts, name: str) -> AttestationBackend:
    """Build the backend called ``name`` with ``conf``.

    Registers the backend's own option groups on ``conf`` first.

    :raises ConfigurationError: when no backend has that name, or the
        backend refuses its options.
    """
    backend_cls = backend_class(conf, name)
    try:
        backend: AttestationBackend = backend_cls(conf)
    except (cfg.Error, ValueError) as exc:
        if isinstance(exc, ConfigurationError):
            raise
        raise ConfigurationError(
            "backend", f"the {name!r} backend refuses its options: {exc}"
        ) from exc
    return backend


#: Backends registered in this process; looked up before the entry points.
_OVERRIDES: dict[str, type[AttestationBackend]] = {}


def register_backend(name: str,
                     backend_cls: type[AttestationBackend]) -> None:
    """Make ``backend_cls`` loadable as ``name`` in this process.

    For test fixtures (:class:`trustpool.fixture.TrustFixture` uses it) and
    embedders that build a backend in code: no installed entry point is
    needed, and a registered name wins over an installed one. Undo with
    :func:`unregister_backend`.
    """
    if not (isinstance(backend_cls, type)
            and issubclass(backend_cls, AttestationBackend)):
        raise TypeError(f"{backend_cls!r} is not an AttestationBackend")
    _OVERRIDES[name] = backend_cls


def unregister_backend(name: str) -> None:
    """Forget a backend registered with :func:`register_backend`."""
    _OVERRIDES.pop(name, None)


def backend_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Option groups of every installed backend, for the sample config.

    Only imports the backend classes; none is built.
    """
    manager: extension.ExtensionManager = extension.ExtensionManager(
        NAMESPACE, invoke_on_load=False)
    groups: dict[str, list[cfg.Opt]] = {}
    for ext in sorted(manager, key=lambda e: e.name):
        for group, opts in ext.plugin.CONFIG_OPTS:
            groups.setdefault(group, []).extend(opts)
    return sorted(groups.items())
