"""Start logging and the host filters as nova-scheduler does, then schedule.

Run as a script, in a process of its own, by tests/nova/test_logging.py:
oslo.log's set-up rewires the whole process's logging, and the point is to
see what nova-scheduler's own start-up does to it. The steps are those of
``nova.cmd.scheduler.main`` up to the filters (monkey-patching decided by
the same call and environment variable, ``config.parse_args``,
``logging.setup(CONF, "nova")``, ``objects.register_all``), then Nova's own
HostManager loads the filters from nova.conf. The DB-backed parts of
HostManager's start-up (cells, aggregates, instances) are skipped: there
is no database.

Usage: ``scheduler_start.py NOVA_CONF REQUESTS_JSON``, where the JSON is
``{"nodes": [...], "requests": [trust value or null, ...]}``. Prints, on
stdout, one JSON line: the nodes that passed, per request. Writes
``MARK`` on stderr once logging is set up.
"""

from __future__ import annotations

# as nova/cmd/scheduler.py, before anything else
from nova import monkey_patch  # isort: skip

monkey_patch.patch(backend="threading")

import json  # noqa: E402
import sys  # noqa: E402
from unittest import mock  # noqa: E402

import nova.conf  # noqa: E402
from nova import config, objects  # noqa: E402
from nova.scheduler import host_manager  # noqa: E402
from oslo_log import log as logging  # noqa: E402

MARK = "=== logging is set up ==="


def request(trust: str | None) -> objects.RequestSpec:
    extra_specs = {} if trust is None else {"trust:trusted_host": trust}
    flavor = objects.Flavor(name=f"flavor-{trust}", extra_specs=extra_specs,
                            memory_mb=512, vcpus=1, root_gb=1,
                            ephemeral_gb=0, swap=0)
    return objects.RequestSpec(
        ignore_hosts=[], force_hosts=[], force_nodes=[], flavor=flavor,
        instance_uuid="6c0f36b8-6b8f-4b2e-9f52-3f1e2a1d9a01",
        project_id="project-1")


def main(argv: list[str]) -> int:
    conf_file, job = argv[1], json.loads(argv[2])
    config.parse_args(["nova-scheduler"], default_config_files=[conf_file])
    logging.setup(nova.conf.CONF, "nova")
    sys.stderr.write(MARK + "\n")
    sys.stderr.flush()
    objects.register_all()
    skipped = [mock.patch.object(host_manager.HostManager, name)
               for name in ("refresh_cells_caches", "_init_aggregates",
                            "_init_instance_info")]
    for patch in skipped:
        patch.start()
    manager = host_manager.HostManager()
    for patch in skipped:
        patch.stop()
    hosts = [host_manager.HostState(f"compute-{i}", node, "cell1")
             for i, node in enumerate(job["nodes"])]
    passed = [sorted(h.nodename for h in
                     manager.get_filtered_hosts(hosts, request(trust)))
              for trust in job["requests"]]
    print(json.dumps(passed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
