# SPDX-License-Identifier: Apache-2.0
"""How a compute host is named to the attestation service.

A Nova compute node has two names: the hypervisor host name (the compute
node's ``hypervisor_hostname``, which Nova also gives its Placement
resource provider) and the host of the nova-compute service that runs it
(``CONF.host`` of that service). They often differ (a short and a fully
qualified name; Ironic: one service host for many nodes). Which of the two
the attestation service knows is a deployment fact, set once with
``[trusted_computing] host_attribute``; every component that asks about a
host (the filter, ``trustpool status``, the trait sync, the drift report,
an event receiver) must ask with the same name, or a host trusted under
one name is unknown under the other. This module is that one decision.

It is part of the library (no options module, no Nova, no OpenStack
client): callers hand it the attribute and the records they have, in the
shapes Nova gives them.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["ATTRIBUTES", "HOST", "NODENAME", "ComputeNode", "HostIdentity",
           "NodeIndex"]

#: The hypervisor host name: the old in-tree filter's choice, the default.
NODENAME = "nodename"
#: The nova-compute service host name.
HOST = "host"
ATTRIBUTES = (NODENAME, HOST)

# Where each name is found, per kind of record: a scheduler HostState
# attribute, a server record of the compute API, a ComputeNode field.
_HOST_STATE = {NODENAME: "nodename", HOST: "host"}
_SERVER = {NODENAME: "OS-EXT-SRV-ATTR:hypervisor_hostname",
           HOST: "OS-EXT-SRV-ATTR:host"}
_NODE = {NODENAME: "hypervisor_hostname", HOST: "service_host"}
_WHAT = {NODENAME: "hypervisor host name", HOST: "compute service host name"}


@dataclasses.dataclass(frozen=True)
class ComputeNode:
    """One compute node, as Nova knows it.

    ``uuid`` is the compute node's uuid, which is also the uuid of the
    resource provider Nova makes for it in Placement;
    ``hypervisor_hostname`` is also that provider's name;
    ``service_host`` is the host of the nova-compute service that runs
    it, ``None`` when the source of the record does not know it
    (Placement alone does not).
    """

    uuid: str
    hypervisor_hostname: str | None
    service_host: str | None = None


_STR = {str}


def _name(value: Any) -> str | None:
    """A usable name, or ``None``: never a guess, never a non-string."""
    return value if isinstance(value, str) and value else None


class HostIdentity:
    """The name under which the attestation service knows a compute host,
    from whatever record a component holds for it.

    Every ``name_of_*`` method returns ``None`` when the record does not
    carry the configured name: callers treat such a host as one the
    service cannot vouch for, and never fall back to the other name (a
    host trusted under one name would then be trusted in place of
    another).
    """

    def __init__(self, attribute: str = NODENAME) -> None:
        if attribute not in ATTRIBUTES:
            raise ValueError(f"host attribute {attribute!r} is not one of "
                             f"{', '.join(ATTRIBUTES)}")
        self._attribute = attribute

    @property
    def attribute(self) -> str:
        """The configured choice: :data:`NODENAME` or :data:`HOST`."""
        return self._attribute

    @property
    def needs_service_host(self) -> bool:
        """Whether compute nodes known only by their Placement provider
        (uuid and hypervisor host name) need another source (the Nova
        API) to be named: Placement does not know service hosts."""
        return self._attribute == HOST

    @property
    def option(self) -> str:
        """The setting, as an operator finds it in nova.conf."""
        return f"[trusted_computing] host_attribute = {self._attribute}"

    def describe(self) -> str:
        """For messages: which name, and the option that chose it
        (``compute service host name ([trusted_computing] host_attribute
        = host)``)."""
        return f"{_WHAT[self._attribute]} ({self.option})"

    def __repr__(self) -> str:
        return f"HostIdentity({self._attribute!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, HostIdentity)
                and other.attribute == self._attribute)

    def __hash__(self) -> int:
        return hash(self._attribute)

    def name_of_host_state(self, host_state: Any) -> str | None:
        """A scheduler ``HostState`` (``host`` / ``nodename``): the
        filter."""
        return _name(getattr(host_state, _HOST_STATE[self._attribute],
                             None))

    def names_of_host_states(self, host_states: Sequence[Any]
                             ) -> list[str | None]:
        """:meth:`name_of_host_state` of each, in order.

        The filter's way, once per scheduling request over every
        candidate: in the common case (every host has a non-empty string
        name) the loops run in C, three Python calls per host fewer.
        """
        getter = operator.attrgetter(_HOST_STATE[self._attribute])
        try:
            values = list(map(getter, host_states))
        except AttributeError:
            return [self.name_of_host_state(h) for h in host_states]
        if set(map(type, values)) == _STR and "" not in values:
            return values
        return [_name(value) for value in values]

    def name_of_server(self, server: Mapping[str, Any]) -> str | None:
        """A server record of the compute API (``OS-EXT-SRV-ATTR:host`` /
        ``OS-EXT-SRV-ATTR:hypervisor_hostname``): the drift report."""
        return _name(server.get(_SERVER[self._attribute]))

    def name_of_node(self, node: ComputeNode) -> str | None:
        """A compute node (Placement provider, Nova hypervisor): the trait
        sync and an event receiver."""
        return _name(getattr(node, _NODE[self._attribute]))

    def index(self, nodes: Iterable[ComputeNode]) -> NodeIndex:
        """Both directions at once for a set of compute nodes: provider
        uuid to name (a sync), name to providers (an event about a
        host)."""
        return NodeIndex(self, nodes)


class NodeIndex:
    """Compute nodes by uuid and by the name the attestation service
    knows them by.

    Several nodes can share a name (``host_attribute = host`` with a
    service that runs many nodes, as Ironic's does). A uuid given twice
    with two different names has no name at all: nothing is decided on an
    ambiguous record.
    """

    def __init__(self, identity: HostIdentity,
                 nodes: Iterable[ComputeNode]) -> None:
        self.identity = identity
        self._nodes: dict[str, ComputeNode] = {}
        self._names: dict[str, str | None] = {}
        for node in nodes:
            name = identity.name_of_node(node)
            if node.uuid in self._names and self._names[node.uuid] != name:
                name = None
            self._nodes[node.uuid] = node
            self._names[node.uuid] = name
        self._by_name: dict[str, list[ComputeNode]] = {}
        for uuid, name in self._names.items():
            if name is not None:
                self._by_name.setdefault(name, []).append(self._nodes[uuid])

    def __contains__(self, uuid: object) -> bool:
        return uuid in self._nodes

    def node(self, uuid: str) -> ComputeNode | None:
        """The node with this uuid, ``None`` when it is not known."""
        return self._nodes.get(uuid)

    def name_of(self, uuid: str) -> str | None:
        """The name to ask the attestation service about for the node
        with this uuid (its provider's uuid); ``None`` when the node is
        not known or has no such name."""
        return self._names.get(uuid)

    def nodes_named(self, name: str) -> list[ComputeNode]:
        """Every node the attestation service's ``name`` stands for: what
        a verdict about ``name`` applies to."""
        return list(self._by_name.get(name, ()))

    def names(self) -> list[str]:
        """Every name to ask about, once each, sorted."""
        return sorted(self._by_name)
