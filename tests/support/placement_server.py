"""A real Placement service on 127.0.0.1: openstack-placement's WSGI app
under gunicorn, sqlite, ``auth_strategy = noauth2`` (``X-Auth-Token:
admin``). Also a tiny admin client for tests to set providers up."""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import subprocess
import sys
import time
import uuid as uuidlib
from typing import Any

import requests

from tests.support.processes import stop_group

HEADERS = {"X-Auth-Token": "admin",
           "OpenStack-API-Version": "placement 1.18",
           "Accept": "application/json"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PlacementServer:
    def __init__(self, workdir: pathlib.Path, connection: str | None = None,
                 workers: int = 1) -> None:
        """sqlite in ``workdir`` unless ``connection`` (an SQLAlchemy URL)
        names another database; ``workers`` > 1 only with a database that
        takes concurrent writers."""
        self.dir = workdir
        self.connection = connection
        self.workers = workers
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.session = requests.Session()
        self.session.headers.update(HEADERS)

    def start(self) -> PlacementServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "placement.conf").write_text(f"""
[DEFAULT]
debug = False
[api]
auth_strategy = noauth2
[placement_database]
connection = {self.connection or f"sqlite:///{self.dir}/placement.sqlite"}
# no fsync per commit: a test database, thrown away afterwards
sqlite_synchronous = False
""")
        env = {**os.environ, "OS_PLACEMENT_CONFIG_DIR": str(self.dir)}
        binary = pathlib.Path(sys.executable).parent
        subprocess.run([str(binary / "placement-manage"), "--config-file",
                        str(self.dir / "placement.conf"), "db", "sync"],
                       env=env, check=True, capture_output=True)
        log = open(self.dir / "gunicorn.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(binary / "gunicorn"), "--bind", f"127.0.0.1:{self.port}",
             # one request at a time: sqlite cannot take concurrent
             # writers ("database is locked"); conflicts between clients
             # still happen, at request granularity
             "--workers", str(self.workers), "--threads", "1",
             "placement.wsgi.api:application"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("gunicorn exited: " + (
                    self.dir / "gunicorn.log").read_text()[-2000:])
            with contextlib.suppress(requests.RequestException):
                if self.session.get(self.url + "/", timeout=1).ok:
                    return self
            time.sleep(0.2)
        raise RuntimeError("Placement did not start in 60 s")

    def stop(self) -> None:
        stop_group(self.proc)

    # -- admin helpers for tests ------------------------------------------

    def create_provider(self, name: str, traits: set[str],
                        parent: str | None = None) -> str:
        """A provider with ``traits``; a nested one under ``parent``."""
        uuid = str(uuidlib.uuid4())
        body = {"name": name, "uuid": uuid}
        if parent is not None:
            body["parent_provider_uuid"] = parent
        r = self.session.post(self.url + "/resource_providers", json=body)
        r.raise_for_status()
        for trait in traits:
            if trait.startswith("CUSTOM_"):
                self.session.put(f"{self.url}/traits/{trait}")
        self.put_traits(uuid, traits)
        return uuid

    def traits(self, uuid: str) -> tuple[set[str], int]:
        r = self.session.get(f"{self.url}/resource_providers/{uuid}/traits")
        r.raise_for_status()
        body = r.json()
        return set(body["traits"]), body["resource_provider_generation"]

    def put_traits(self, uuid: str, traits: set[str],
                   generation: int | None = None) -> requests.Response:
        if generation is None:
            generation = self.traits(uuid)[1]
        return self.session.put(
            f"{self.url}/resource_providers/{uuid}/traits",
            json={"traits": sorted(traits),
                  "resource_provider_generation": generation})

    def add_trait(self, uuid: str, trait: str) -> int:
        """Add ``trait`` as nova-compute would: read, write, retry on
        conflict. Returns the number of conflicts met."""
        self.session.put(f"{self.url}/traits/{trait}")
        conflicts = 0
        while True:
            traits, generation = self.traits(uuid)
            r = self.put_traits(uuid, traits | {trait}, generation)
            if r.status_code == 200:
                return conflicts
            if r.status_code == 409 or "concurrently" in r.text:
                conflicts += 1
                continue
            r.raise_for_status()

    def json(self, path: str) -> Any:
        r = self.session.get(self.url + path)
        r.raise_for_status()
        return r.json()

    def set_inventory(self, uuid: str, inventories: dict[str, int]) -> None:
        """Replace the inventory: ``{resource class: total}``."""
        generation = self.traits(uuid)[1]
        r = self.session.put(
            f"{self.url}/resource_providers/{uuid}/inventories",
            json={"resource_provider_generation": generation,
                  "inventories": {rc: {"total": total}
                                  for rc, total in inventories.items()}})
        r.raise_for_status()

    def set_aggregates(self, uuid: str, aggregates: list[str]) -> None:
        """Put the provider in ``aggregates`` (uuids); how a sharing
        provider is tied to the compute nodes it serves."""
        # 1.18 takes a bare list (the generation-checked form is 1.19+)
        r = self.session.put(
            f"{self.url}/resource_providers/{uuid}/aggregates",
            json=aggregates)
        r.raise_for_status()

    def carriers(self, trait: str) -> set[str]:
        """The uuids of every provider carrying ``trait``, nested and
        sharing ones included."""
        body = self.json(f"/resource_providers?required={trait}")
        return {p["uuid"] for p in body["resource_providers"]}

    def allocation_candidates(self, query: str,
                              microversion: str = "1.36") -> set[str]:
        """Every provider that some allocation request of GET
        /allocation_candidates?``query`` takes resources from."""
        r = self.session.get(
            f"{self.url}/allocation_candidates?{query}",
            headers={"OpenStack-API-Version": f"placement {microversion}"})
        r.raise_for_status()
        return {rp for request in r.json()["allocation_requests"]
                for rp in request["allocations"]}

    def delete_provider(self, uuid: str) -> None:
        """Delete a provider and, first, its children (Placement refuses
        to delete a parent). A provider already gone is fine."""
        children = self.json(f"/resource_providers?in_tree={uuid}")
        for child in children["resource_providers"]:
            if child["parent_provider_uuid"] == uuid:
                self.delete_provider(child["uuid"])
        r = self.session.delete(f"{self.url}/resource_providers/{uuid}")
        if r.status_code != 404:
            r.raise_for_status()
