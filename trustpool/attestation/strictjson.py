# SPDX-License-Identifier: Apache-2.0
"""JSON that a trust decision can rest on, for every backend that reads it
(an HTTP answer, a trust file)."""

from __future__ import annotations

import json
from typing import Any

from trustpool.exceptions import AttestationError

__all__ = ["loads_strict"]


def loads_strict(raw: bytes) -> Any:
    """Decode JSON that a trust decision can rest on.

    Refuses what :func:`json.loads` quietly accepts or chokes on: a key
    twice in one object (read last-wins, so ``{"trust_lvl": "untrusted",
    "trust_lvl": "trusted"}`` would say trusted), ``NaN``/``Infinity``,
    nesting deep enough to raise ``RecursionError``, and any encoding but
    UTF-8.

    :raises AttestationError: on anything but strict JSON.
    """
    if raw.startswith(b"\xef\xbb\xbf"):  # RFC 8259: a BOM may be ignored
        raw = raw[3:]
    try:
        # RFC 8259: UTF-8 only. json.loads would also guess UTF-16/32.
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise AttestationError("not UTF-8", "malformed") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys,
                          parse_constant=_no_constant)
    except AttestationError:
        raise
    except RecursionError:
        raise AttestationError("nested too deeply", "malformed") from None
    except (ValueError, TypeError) as exc:  # incl. UnicodeDecodeError
        raise AttestationError(str(exc)[:200], "malformed") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise AttestationError(
                    f"the key {_short(key)!r} appears twice in one "
                    "object", "malformed")
            seen.add(key)
    return result


def _no_constant(name: str) -> Any:
    raise AttestationError(f"{name} is not a JSON number", "malformed")


def _short(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:80])
