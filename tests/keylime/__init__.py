"""End to end against a real Keylime 6.6.0 stack on swtpm (tox -e keylime).

Imports Nova's functional package first, as tests/nova does, because the
tests go through Nova's HostManager.
"""

import nova.tests.functional  # noqa: F401  (must stay first)
