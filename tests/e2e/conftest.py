"""The browser fixture, shared by the end-to-end modules."""

from tests.e2e.test_admin_lifecycle import browser  # noqa: F401 -- a fixture, used by name
