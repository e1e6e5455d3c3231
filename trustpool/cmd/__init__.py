# SPDX-License-Identifier: Apache-2.0
"""The ``trustpool`` command for operators."""
