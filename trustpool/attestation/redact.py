# SPDX-License-Identifier: Apache-2.0
"""Take configured secrets out of text before anyone sees it.

Every message built from an exception can quote what the program was
handling: requests quotes a refused header value, a TLS library may quote a
file, a plugin may put anything in its exception. Start-up validation
refuses the secrets that are known to be quoted (a header value with a line
break), but the promise "no secret in any output" must not depend on having
thought of every library's message. So every message that can carry
exception text (host reasons, the warning of a failed poll, audit events,
the CLI's one-line errors) goes through one :class:`Redactor`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

__all__ = ["MASK", "Redactor"]

MASK = "***"
#: Shorter fragments (one line of a multi-line secret, say) are not
#: masked: a two-letter fragment would mangle every message and tells an
#: attacker next to nothing.
_MIN_FRAGMENT = 4


class Redactor:
    """Replace every known form of the given secrets with ``***``.

    The forms: the value itself, each of its lines, and the escaped
    spellings under which a message quotes a string (``repr``, JSON,
    ``unicode_escape``), since a quoted multi-line value shows its line
    break as ``\\n``.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            forms.update(_forms(str(secret)))
        # longest first, so a whole value is masked before its fragments
        self._forms = sorted((f for f in forms if len(f) >= _MIN_FRAGMENT),
                             key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def __call__(self, text: object) -> str:
        """``text`` as a string, with every secret form masked.

        Never raises: whatever ``str(text)`` does, a message still comes
        out.
        """
        try:
            out = text if isinstance(text, str) else str(text)
        except Exception:  # noqa: BLE001 - a broken __str__ says nothing
            out = f"<unprintable {type(text).__name__}>"
        for form in self._forms:
            if form in out:
                out = out.replace(form, MASK)
        return out


def _forms(secret: str) -> set[str]:
    forms = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1],
             # as messages show peer-supplied text: unprintables as '?'
             "".join(c if c.isprintable() else "?" for c in secret),
             secret.encode("unicode_escape", "backslashreplace").decode(
                 "ascii", "replace")}
    for line in secret.splitlines():
        line = line.strip()
        if line:
            forms.update({line, repr(line)[1:-1]})
    return forms
