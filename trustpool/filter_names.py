# SPDX-License-Identifier: Apache-2.0
"""Names shared by the filter and the tools, without importing Nova."""

#: The flavor extra spec TrustedFilter reads; the same key as Nova's old
#: in-tree filter.
EXTRA_SPEC = "trust:trusted_host"
