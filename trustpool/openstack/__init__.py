# SPDX-License-Identifier: Apache-2.0
"""Clients of the other OpenStack services the operator tools talk to.

``session`` builds keystoneauth1 sessions from nova.conf groups, as Nova
does; ``placement`` and ``compute`` are the few calls the trait sync and
the drift report need. Nothing inside nova-scheduler imports this package.
"""
