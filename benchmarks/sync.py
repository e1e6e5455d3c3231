"""``tox -e bench-sync``: sync-traits against a real Placement service.

Figures, not pass/fail:

* throughput of a full initial sync, providers/s, sequential
  (concurrency 1) and threaded (concurrency 8), for 1,000 and 10,000
  providers;
* a steady-state diff sync of 10,000 providers with 1% changed;
* ``GET /allocation_candidates`` latency with and without
  ``required=CUSTOM_TRUSTPOOL_TRUSTED`` (half the providers trusted).

Targets on 2 cores: steady-state diff sync of 10,000 providers with 1%
changed under 10 s; a full initial sync at 60 providers/s or more.

Placement runs under gunicorn on a throwaway PostgreSQL (Debian's package,
started here) where available, with three workers; otherwise on sqlite
with one (sqlite takes no concurrent writers), where "threaded" measures
the client side's overlap only.
"""

from __future__ import annotations

import benchmarks._common as common  # first: sets Nova's threading mode

import argparse
import concurrent.futures
import logging
import pathlib
import statistics
import tempfile
import time

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import session as ks_session
from oslo_config import cfg

from tests.support.pki import make_pki
from tests.support import postgres_server
from tests.support.placement_server import PlacementServer
from trustpool.conf import make_client
from trustpool import conf as tp_conf
from trustpool import trait_sync
from trustpool.openstack.placement import PlacementAPI

TRAIT = "CUSTOM_TRUSTPOOL_TRUSTED"


def make_providers(server: PlacementServer, count: int, prefix: str
                   ) -> dict[str, str]:
    def one(i: int) -> tuple[str, str]:
        name = f"{prefix}{i:06d}"
        uuid = server.create_provider(name, {"COMPUTE_NODE"})
        server.session.put(
            f"{server.url}/resource_providers/{uuid}/inventories",
            json={"resource_provider_generation": server.traits(uuid)[1],
                  "inventories": {"VCPU": {"total": 16},
                                  "MEMORY_MB": {"total": 65536}}}
        ).raise_for_status()
        return name, uuid

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return dict(pool.map(one, range(count)))


def conf_for(oat_port: int, pki: dict, concurrency: int) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    tp_conf.register_opts(conf)
    trait_sync.register_opts(conf)
    conf([], default_config_files=[])
    for key, value in {"attestation_server": "127.0.0.1",
                       "attestation_port": oat_port,
                       "attestation_server_ca_file": str(pki["ca"].cert_path),
                       "read_timeout": 60.0}.items():
        conf.set_override(key, value, tp_conf.GROUP)
    conf.set_override("concurrency", concurrency, trait_sync.GROUP)
    return conf


def clear_trait(server: PlacementServer, api: PlacementAPI,
                uuids: list[str]) -> None:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda u: api.set_trait(u, TRAIT, False), uuids))


def run(size: int, workdir: pathlib.Path, pki: dict, server: PlacementServer,
        api: PlacementAPI) -> None:
    start = time.monotonic()
    providers = make_providers(server, size, f"b{size}-")
    print(f"   (made {size} providers in {time.monotonic() - start:.0f}s)")
    names = sorted(providers)
    trusted = set(names[::2])
    oat = common.RemoteOAT(pki, sorted(trusted), workdir)
    try:
        for concurrency in (1, 8):
            conf = conf_for(oat.port, pki, concurrency)
            client = make_client(conf)
            clear_trait(server, api, [providers[n] for n in trusted])
            start = time.monotonic()
            result = trait_sync.sync(conf, api, client)
            took = time.monotonic() - start
            assert result.added == len(trusted) and result.errors == 0
            print(f"   full sync, {size} providers ({result.added} gain the "
                  f"trait), concurrency {concurrency}: {took:.1f}s, "
                  f"{size / took:.0f} providers/s")
        if size >= 10_000:
            # steady state: 1% change (half gain, half lose the trait)
            changed = names[:size // 100]
            oat.stop()
            flipped = trusted.symmetric_difference(changed)
            oat = common.RemoteOAT(pki, sorted(flipped), workdir)
            conf = conf_for(oat.port, pki, 8)
            client = make_client(conf)
            start = time.monotonic()
            result = trait_sync.sync(conf, api, client)
            took = time.monotonic() - start
            assert result.added + result.removed == len(changed), result
            print(f"   diff sync, {size} providers, {len(changed)} changed: "
                  f"{took:.1f}s")
        query = "/allocation_candidates?resources=VCPU:1,MEMORY_MB:512" \
            "&limit=1000"
        times = {}
        for label, url in (("without trait", query),
                           ("with trait", f"{query}&required={TRAIT}")):
            samples = []
            for _ in range(5):
                t0 = time.monotonic()
                server.json(url)
                samples.append(time.monotonic() - t0)
            times[label] = statistics.median(samples)
        print(f"   allocation_candidates over {size} providers: "
              f"{times['without trait'] * 1e3:.0f} ms without, "
              f"{times['with trait'] * 1e3:.0f} ms with the trait "
              f"({times['with trait'] / times['without trait']:.2f}x)")
    finally:
        oat.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*",
                        default=[1_000, 10_000])
    parser.add_argument("--sqlite", action="store_true",
                        help="sqlite even where PostgreSQL is available")
    args = parser.parse_args()
    logging.getLogger("trustpool").setLevel(logging.WARNING)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="trustpool-sync-"))
    pki = make_pki(workdir)
    use_pg = not args.sqlite and postgres_server.available()
    for size in args.sizes:
        database = postgres_server.PostgresServer() if use_pg else None
        try:
            url = database.start() if database else None
            server = PlacementServer(workdir / f"placement-{size}", url,
                                     workers=3 if database else 1).start()
            try:
                api = PlacementAPI(ks_adapter.Adapter(
                    ks_session.Session(), endpoint_override=server.url,
                    additional_headers={"X-Auth-Token": "admin"}))
                kind = ("PostgreSQL, 3 gunicorn workers" if database
                        else "sqlite, 1 gunicorn worker")
                print(f"{size} providers (Placement on {kind}):")
                run(size, workdir, pki, server, api)
            finally:
                server.stop()
        finally:
            if database:
                database.stop()


if __name__ == "__main__":
    main()
