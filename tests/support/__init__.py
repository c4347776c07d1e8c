"""Helpers for this project's own tests; conftest.py holds only fixtures.

``tests/`` is on ``sys.path`` (pytest's default rootdir handling), so tests import
these as ``from support.site import build_site``.
"""
