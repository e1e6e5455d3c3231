# SPDX-License-Identifier: Apache-2.0
"""The compliance report and per-instance provenance, from the audit log.

Reads the JSON lines of ``trustpool.audit`` (:mod:`trustpool.events`) as a
stream, so a month of a busy cloud fits in bounded memory: aggregates per
flavor, host and time bucket, and a capped number of rows to show. Reads
logs only: no options, no OpenStack clients (``trustpool.cmd`` adds those
for ``explain``).
"""
