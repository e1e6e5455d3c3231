"""``trustpool sync-traits`` against a real Placement service (gunicorn,
sqlite, noauth2) and a real HTTPS attestation server, both on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import session as ks_session
from oslo_config import cfg

from trustpool import traits
from trustpool.attestation import AttestationClient
from trustpool.placement import PlacementAPI

from tests.support.config import point_at
from tests.support.placement_server import PlacementServer

TRAIT = "CUSTOM_TRUSTPOOL_TRUSTED"


@pytest.fixture(scope="module")
def placement(tmp_path_factory):
    server = PlacementServer(tmp_path_factory.mktemp("placement")).start()
    yield server
    server.stop()


def api_for(server: PlacementServer) -> PlacementAPI:
    adapter = ks_adapter.Adapter(
        ks_session.Session(), endpoint_override=server.url,
        additional_headers={"X-Auth-Token": "admin"})
    return PlacementAPI(adapter)


@pytest.fixture
def providers(placement):
    """Six compute node providers with an unrelated trait each."""
    names = [f"sync-{i}-{id(placement) % 1000}" for i in range(6)]
    made = {name: placement.create_provider(
        name, {"COMPUTE_NODE", "CUSTOM_KEEP_ME"}) for name in names}
    yield made
    for uuid in made.values():
        placement.session.delete(
            f"{placement.url}/resource_providers/{uuid}")


def sync_once(conf, placement, oat_server, pki):
    point_at(conf, oat_server, pki["ca"].cert_path)
    client = AttestationClient.from_config(conf)
    return traits.sync(conf, api_for(placement), client)


def carrying(placement, made):
    return {name for name, uuid in made.items()
            if TRAIT in placement.traits(uuid)[0]}


def test_sync_sets_flips_and_keeps_other_traits(conf, placement, providers,
                                                oat_server, pki):
    traits.register_opts(conf)
    names = sorted(providers)
    oat_server.levels = {names[0]: "trusted", names[1]: "trusted",
                         names[2]: "trusted", names[3]: "untrusted",
                         names[4]: "unknown"}  # names[5]: not mentioned
    # a stale trait on an untrusted host must go
    placement.add_trait(providers[names[3]], TRAIT)
    result = sync_once(conf, placement, oat_server, pki)
    assert carrying(placement, providers) == set(names[:3])
    assert (result.added, result.removed, result.errors) == (3, 1, 0)
    assert oat_server.polls() == 1  # one batch for every provider
    for uuid in providers.values():
        assert "CUSTOM_KEEP_ME" in placement.traits(uuid)[0]

    generations = {n: placement.traits(u)[1] for n, u in providers.items()}
    result = sync_once(conf, placement, oat_server, pki)
    assert (result.added, result.removed) == (0, 0)
    assert result.unchanged >= 6
    assert generations == {n: placement.traits(u)[1]
                           for n, u in providers.items()}  # no writes

    oat_server.levels[names[0]] = "untrusted"
    oat_server.levels[names[3]] = "trusted"
    result = sync_once(conf, placement, oat_server, pki)
    assert carrying(placement, providers) == {names[1], names[2], names[3]}
    assert (result.added, result.removed) == (1, 1)


def test_attestation_failure_removes_the_trait_everywhere(
        conf, placement, providers, oat_server, pki):
    traits.register_opts(conf)
    oat_server.levels = {name: "trusted" for name in providers}
    sync_once(conf, placement, oat_server, pki)
    assert carrying(placement, providers) == set(providers)
    oat_server.stop()
    result = sync_once(conf, placement, oat_server, pki)
    assert carrying(placement, providers) == set()
    assert result.attestation_failed
    assert "cannot reach" in result.summary()


def test_no_update_lost_to_a_concurrent_writer(conf, placement, oat_server,
                                               pki):
    """nova-compute keeps writing traits (bumping generations) while the
    sync runs: both sides' traits must survive."""
    traits.register_opts(conf)
    conf.set_override("concurrency", 8, traits.GROUP)
    made = {f"busy-{i}": placement.create_provider(
        f"busy-{i}", {"COMPUTE_NODE"}) for i in range(24)}
    oat_server.levels = {name: "trusted" for name in made}
    stop = threading.Event()
    written: list[tuple[str, str]] = []
    conflicts = [0]

    def writer():
        i = 0
        while not stop.is_set() and i < 400:
            name = f"busy-{i % len(made)}"
            trait = f"CUSTOM_WRITER_{i}"
            conflicts[0] += placement.add_trait(made[name], trait)
            written.append((name, trait))
            i += 1

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            result = sync_once(conf, placement, oat_server, pki)
            assert result.errors == 0
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert carrying(placement, made) == set(made)
    for name, trait in written:
        assert trait in placement.traits(made[name])[0], (name, trait)
    for uuid in made.values():
        placement.session.delete(
            f"{placement.url}/resource_providers/{uuid}")


def test_command_line(placement, providers, oat_server, pki, tmp_path):
    oat_server.levels = {name: "trusted" for name in providers}
    conf_path = tmp_path / "nova.conf"
    conf_path.write_text(f"""
[trusted_computing]
attestation_server = 127.0.0.1
attestation_port = {oat_server.port}
attestation_server_ca_file = {pki['ca'].cert_path}

[placement]
auth_type = admin_token
endpoint = {placement.url}
token = admin
""")
    result = subprocess.run(
        [sys.executable, "-m", "trustpool.cmd.main", "--config-file",
         str(conf_path), "sync-traits"], capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 0, result.stderr
    # the answer alone on stdout: the per-provider log lines go to stderr
    assert result.stdout == ("sync-traits: 6 providers seen, 6 added, 0 "
                             "removed, 0 unchanged, 0 errors\n")
    assert "gains CUSTOM_TRUSTPOOL_TRUSTED" in result.stderr
    assert carrying(placement, providers) == set(providers)
    bad = conf_path.read_text().replace("[placement]", "[trustpool_traits]"
                                        "\ntrait = TRUSTED\n[placement]")
    conf_path.write_text(bad)
    result = subprocess.run(
        [sys.executable, "-m", "trustpool.cmd.main", "--config-file",
         str(conf_path), "sync-traits"], capture_output=True, text=True,
        timeout=60)
    assert result.returncode == 2
    assert "[trustpool_traits] trait: 'TRUSTED' is not a custom trait" in \
        result.stderr


def test_trait_name_is_validated():
    conf = cfg.ConfigOpts()
    traits.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("trait", "CUSTOM_lower", traits.GROUP)
    with pytest.raises(ValueError, match="not a custom trait"):
        traits.trait_name(conf)




def test_interval_mode_keeps_following_trust(conf, placement, providers,
                                             oat_server, pki):
    traits.register_opts(conf)
    point_at(conf, oat_server, pki["ca"].cert_path)
    oat_server.levels = {name: "trusted" for name in providers}
    client = AttestationClient.from_config(conf)
    stop = threading.Event()
    runner = threading.Thread(target=traits.run_forever, args=(
        conf, api_for(placement), client, 0.2, stop))
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while carrying(placement, providers) != set(providers):
            assert time.monotonic() < deadline, "never synced"
            time.sleep(0.2)
        flipped = sorted(providers)[0]
        oat_server.levels[flipped] = "untrusted"
        while flipped in carrying(placement, providers):
            assert time.monotonic() < deadline, "the flip was not synced"
            time.sleep(0.2)
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
    assert carrying(placement, providers) == set(providers) - {flipped}
