"""Tests against real Nova from PyPI.

Nova's functional package monkey-patches (eventlet, by default) when it is
imported; that has to happen before requests and urllib3 are imported, so
it is the first thing this package does.
"""

import nova.tests.functional  # noqa: F401  (must stay first)
