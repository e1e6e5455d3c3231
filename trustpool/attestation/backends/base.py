# SPDX-License-Identifier: Apache-2.0
"""The contract every attestation backend keeps.

A backend knows one attestation service's protocol and nothing about
time: caching, batching across threads and what to do when the service
fails are the client's job (:mod:`trustpool.attestation.client`).
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from oslo_config import cfg

from trustpool.attestation.answer import Answer
from trustpool.attestation.model import HostReport
from trustpool.attestation.redact import Redactor
from trustpool.exceptions import AttestationError

__all__ = ["COMMON_GROUP", "AttestationBackend"]

#: The option group shared by trustpool's backends, named as Nova's old
#: in-tree filter named it, so that an old nova.conf keeps working.
COMMON_GROUP = "trusted_computing"


class AttestationBackend(abc.ABC):
    """Asks one attestation service how far it trusts a list of hosts.

    Subclasses are registered in the ``trustpool.attestation.backends``
    entry point group under the short name operators put in the ``backend``
    option, and are built as ``Backend(conf)`` with a ``ConfigOpts`` on
    which the ``[trusted_computing]`` options and the groups in
    :attr:`CONFIG_OPTS` are registered.

    The constructor checks the backend's own options and raises
    :class:`~trustpool.exceptions.ConfigurationError` naming the first bad
    one, so a broken configuration stops the scheduler at start-up.

    Whatever a subclass's :meth:`attest` and :meth:`list_hosts` raise
    besides :class:`~trustpool.exceptions.AttestationError` (a
    ``RecursionError`` from a deep answer, an ``OverflowError`` from a huge
    number, a plain bug) is turned into an ``AttestationError`` on the way
    out, by :meth:`__init_subclass__`: the contract holds for every
    backend, including ones written elsewhere, without each having to
    think of every exception its parser can meet.
    """

    #: The entry point name; shown in reports and logs.
    name: ClassVar[str] = "base"

    #: Most host names :meth:`attest` accepts in one call. ``None``: any
    #: number. The client splits larger batches only when this is set.
    max_batch: ClassVar[int | None] = None

    #: ``(group name, options)`` pairs this backend reads besides
    #: ``[trusted_computing]``; a class attribute so that the sample config
    #: can list them without building the backend.
    CONFIG_OPTS: ClassVar[list[tuple[str, list[cfg.Opt]]]] = []

    #: ``(group, option, kind)`` for each option naming a local file this
    #: backend reads, so that start-up validation and ``trustpool
    #: check-config`` check every one that is set (it exists, is a regular
    #: file this user can read, and parses) without building the backend.
    #: ``kind``: ``"ca"`` (PEM CA certificates), ``"cert"`` (PEM client
    #: certificate, followed by its key unless a ``"key"`` option is set),
    #: ``"key"`` (PEM private key of the ``"cert"`` one), ``"data"`` (the
    #: backend's own format: only opened at start-up, since it may change
    #: while the service runs; its content is for :meth:`self_check`).
    FILE_OPTS: ClassVar[list[tuple[str, str, str]]] = []

    #: Seconds one :meth:`attest` call may take in all, every request of
    #: it included. HTTP backends set it to ``connect_timeout +
    #: read_timeout``; the client abandons a call that takes longer.
    timeout: float = 10.0

    #: Values that must never appear in any output (an auth blob sent as
    #: a header, say). The client masks them in every message it builds
    #: from an exception.
    secrets: Sequence[str] = ()

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for method in ("attest", "attest_answer", "list_hosts"):
            function = cls.__dict__.get(method)
            if function is not None and not getattr(function, "_guarded",
                                                    False):
                setattr(cls, method, _guarded(function))

    @abc.abstractmethod
    def attest(self, hostnames: Sequence[str]) -> dict[str, HostReport]:
        """Return the service's answer for ``hostnames`` in one exchange.

        :param hostnames: distinct host names, never empty.
        :returns: a report for each name the service answered about, keyed
            by that name. Names the service did not mention are left out;
            the client counts them as ``unknown``. Names that were not asked
            for must never appear.
        :raises trustpool.exceptions.AttestationError: when the exchange as
            a whole failed or the answer cannot be trusted (transport or TLS
            error, non-success status, malformed or inconsistent body). The
            message must be safe to log: no credentials, no key material.
        """

    #: Whether :meth:`attest_answer` is the backend's own (trustpool's
    #: readers): the client then asks for an :class:`Answer`, with no
    #: report made per host, and checks it as a whole.
    answers_natively: ClassVar[bool] = False

    def attest_answer(self, hostnames: Sequence[str]) -> Answer:
        """:meth:`attest`'s answer as an :class:`Answer`. A backend that
        overrides it sets :attr:`answers_natively`; the same rules apply
        (names asked about only, unmentioned ones left out)."""
        return Answer.of_reports(self.attest(hostnames))

    def list_hosts(self) -> list[str]:
        """Names of every host the service knows, where it can list them.

        :raises NotImplementedError: when the service cannot list hosts.
        :raises trustpool.exceptions.AttestationError: on a failed exchange.
        """
        raise NotImplementedError(f"the {self.name} backend cannot list hosts")

    def describe(self) -> str:
        """Where this backend asks, for logs (no credentials)."""
        return self.name

    def self_check(self) -> list[tuple[str, str, str, str]]:
        """What ``trustpool check-config`` should report about the data
        this backend reads locally (its ``"data"`` files), as ``(severity,
        group, option, message)`` with severity ``"error"`` or
        ``"warning"``. Never asks the attestation service. Nothing by
        default.
        """
        return []

    def close(self) -> None:  # noqa: B027 - optional, nothing by default
        """Release connections; the backend is not used afterwards."""


_F = TypeVar("_F", bound=Callable[..., Any])


def _guarded(function: _F) -> _F:
    """``function`` raising only AttestationError (and NotImplementedError,
    which :meth:`AttestationBackend.list_hosts` may raise by contract),
    with a message that is one bounded line holding none of the backend's
    :attr:`~AttestationBackend.secrets` (a server's reason phrase can echo
    whatever was sent to it)."""

    @functools.wraps(function)
    def guarded(self: AttestationBackend, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(self, *args, **kwargs)
        except NotImplementedError:
            raise
        except AttestationError as exc:
            message = _text(exc)
            safe = _safe(self, message)
            if safe == message:
                raise
            cause = exc.cause
            # masked, and of the same kind where it is built as the base
            # is (a helper's failure stays one: the client treats it apart)
            if type(exc).__init__ is AttestationError.__init__:
                raise type(exc)(safe, cause) from None
        except Exception as exc:  # noqa: BLE001 - the point of the guard
            safe = _safe(self, f"the {self.name} backend failed: "
                         f"{type(exc).__name__}: {_text(exc)}")
            cause = "other"
        raise AttestationError(safe, cause) from None

    guarded._guarded = True  # type: ignore[attr-defined]
    return guarded  # type: ignore[return-value]


_MAX_MESSAGE = 500


def _safe(backend: AttestationBackend, message: str) -> str:
    text = Redactor(backend.secrets)(message)
    text = "".join(c if c.isprintable() else "?" for c in text)
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE - 3] + "..."
    return text


def _text(exc: BaseException) -> str:
    try:
        return str(exc)[:1000]
    except Exception:  # noqa: BLE001 - a broken __str__ says nothing
        return "(no message)"
