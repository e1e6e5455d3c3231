"""What README ("Operations") says ``sync-traits`` needs from Placement:
the policies of the calls a real pass makes against a real Placement, and
that Placement's own defaults grant them to the admin and service roles
(Nova's service user) but not to a member or reader."""

from __future__ import annotations

import pathlib
import re

import pytest
from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import session as ks_session
from oslo_config import cfg
from oslo_policy import policy
from placement import policies

from trustpool import trait_sync
from trustpool.conf import make_client
from trustpool.openstack.placement import PlacementAPI

from tests.support.config import point_at
from tests.support.placement_server import PlacementServer

README = (pathlib.Path(__file__).resolve().parents[2]
          / "README.rst").read_text()
#: (method, path with ids replaced) -> the Placement policy it is checked
#: against (placement/handlers: each handler's context.can(...)).
POLICY_OF = {
    ("PUT", "/traits/{name}"): "placement:traits:update",
    ("GET", "/resource_providers"): "placement:resource_providers:list",
    ("GET", "/resource_providers/{uuid}/traits"):
        "placement:resource_providers:traits:list",
    ("PUT", "/resource_providers/{uuid}/traits"):
        "placement:resource_providers:traits:update",
}


class RecordingAdapter(ks_adapter.Adapter):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: set[tuple[str, str]] = set()

    def request(self, url, method, **kwargs):
        path = re.sub(r"/traits/CUSTOM_\w+$", "/traits/{name}", url)
        path = re.sub(r"/resource_providers/[0-9a-f-]{36}",
                      "/resource_providers/{uuid}", path)
        self.calls.add((method, path))
        return super().request(url, method, **kwargs)


@pytest.fixture(scope="module")
def placement(tmp_path_factory):
    server = PlacementServer(tmp_path_factory.mktemp("placement")).start()
    yield server
    server.stop()


def readme_policies() -> set[str]:
    start = README.index("``sync-traits`` as a service\n")
    end = README.index("\nAttestation service down", start)
    return set(re.findall(r"``(placement:[a-z_:]+)``", README[start:end]))


def test_readme_names_the_policies_a_real_pass_needs(conf, placement,
                                                     oat_server, pki):
    trait_sync.register_opts(conf)
    gains = placement.create_provider("policy-gains", {"COMPUTE_NODE"})
    loses = placement.create_provider(
        "policy-loses", {"COMPUTE_NODE", "CUSTOM_TRUSTPOOL_TRUSTED"})
    oat_server.levels = {"policy-gains": "trusted",
                         "policy-loses": "untrusted"}
    point_at(conf, oat_server, pki["ca"].cert_path)
    adapter = RecordingAdapter(
        ks_session.Session(), endpoint_override=placement.url,
        additional_headers={"X-Auth-Token": "admin"})
    result = trait_sync.sync(conf, PlacementAPI(adapter), make_client(conf))
    assert result.ok, result.summary()
    assert "CUSTOM_TRUSTPOOL_TRUSTED" in placement.traits(gains)[0]
    assert "CUSTOM_TRUSTPOOL_TRUSTED" not in placement.traits(loses)[0]
    unknown = adapter.calls - set(POLICY_OF)
    assert not unknown, f"calls this test cannot map to a policy: {unknown}"
    assert {POLICY_OF[c] for c in adapter.calls} == readme_policies()


@pytest.mark.parametrize(("roles", "allowed"), [
    (["service"], True), (["admin"], True),
    (["member", "reader"], False)])
def test_placement_defaults_grant_them_to_admin_and_service(roles, allowed):
    conf = cfg.ConfigOpts()
    conf([], default_config_files=[])
    enforcer = policy.Enforcer(conf)
    enforcer.register_defaults(policies.list_rules())
    enforcer.load_rules()
    creds = {"roles": roles, "project_id": "p1", "user_id": "u1"}
    assert len(readme_policies()) == len(POLICY_OF)
    for name in readme_policies():
        assert enforcer.enforce(name, {"project_id": "p1"}, creds) is \
            allowed, name
