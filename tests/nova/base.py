"""What every real-Nova test shares: trustpool options on Nova's CONF, a
real HTTPS attestation server with certificates made for the test, and the
workarounds the Nova wheel needs."""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import sys
import tempfile

import fixtures
from nova import conf as nova_conf

from trustpool import conf as tp_conf

from tests.support import leakcheck
from tests.support.oat_server import OATServer
from tests.support.pki import CA

CONF = nova_conf.CONF

FILTER_PATH = "trustpool.filter.TrustedFilter"
AUTH_BLOB = "nova-tier-auth-blob-1f0c"
leakcheck.register(AUTH_BLOB)


class TrustpoolNovaMixin:
    """Mix into a ``nova.test.TestCase``. For tests that start Nova's
    scheduler service, call :meth:`setup_trustpool` before
    ``super().setUp()`` so the scheduler starts with the filter."""

    def _clear_attrs(self) -> None:
        # nova.test.TestCase deletes the test's public attributes after the
        # test to save memory, including the bound test method pytest >= 8
        # still holds; nothing here is big enough to matter.
        pass

    def setup_trustpool(self, levels: dict[str, str], *,
                        enabled=("ComputeFilter", "TrustedFilter"),
                        **options) -> OATServer:
        tp_conf.register_opts(CONF)
        tmp = tempfile.mkdtemp(prefix="trustpool-pki-")
        self.addCleanup(shutil.rmtree, tmp, True)
        self.ca = CA(pathlib.Path(tmp))
        issued = self.ca.issue("attestation-server")
        self.oat = OATServer(issued.cert, issued.key, levels=levels).start()
        self.addCleanup(self.oat.stop)
        # The wheel puts api-paste.ini under <prefix>/etc/nova, not where
        # Nova's conf fixture looks for it.
        self.flags(group="wsgi", api_paste_config=os.path.join(
            sys.prefix, "etc", "nova", "api-paste.ini"))
        self.flags(group="filter_scheduler", available_filters=[
            "nova.scheduler.filters.all_filters", FILTER_PATH],
            enabled_filters=list(enabled))
        values = {"attestation_server": "127.0.0.1",
                  "attestation_auth_blob": AUTH_BLOB,
                  "attestation_port": self.oat.port,
                  "attestation_server_ca_file": str(self.ca.cert_path),
                  "connect_timeout": 2.0, "read_timeout": 3.0}
        values.update(options)
        self.flags(group=tp_conf.GROUP, **values)
        self.trust_log = self.useFixture(fixtures.FakeLogger(
            name="trustpool", level=logging.DEBUG,
            format="%(levelname)s %(name)s %(message)s"))
        return self.oat

    def write_cli_conf(self) -> pathlib.Path:
        """A nova.conf for the ``trustpool`` command, pointing at the
        test's attestation server."""
        path = pathlib.Path(tempfile.mkdtemp(prefix="trustpool-conf-"))
        self.addCleanup(shutil.rmtree, path, True)
        conf = path / "nova.conf"
        conf.write_text(f"""
[trusted_computing]
attestation_server = 127.0.0.1
attestation_port = {self.oat.port}
attestation_server_ca_file = {self.ca.cert_path}
attestation_auth_blob = {AUTH_BLOB}
""")
        return conf


def admin_compute_api(api_fixture):
    """trustpool's ComputeAPI on the harness's admin API (the harness
    stubs keystone: identity travels in these headers)."""
    from keystoneauth1 import adapter as ks_adapter
    from keystoneauth1 import session as ks_session

    from trustpool.openstack.compute import ComputeAPI

    admin = api_fixture.admin_api
    return ComputeAPI(ks_adapter.Adapter(
        ks_session.Session(), endpoint_override=admin.base_url,
        additional_headers={
            "X-Auth-User": "admin", "X-User-Id": "admin",
            "X-Auth-Project-Id": admin.project_id,
            "X-Roles": "reader,member,admin"}))
