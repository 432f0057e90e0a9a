"""The registry's HTTP API (issue 30): the admin's services over HTTP, for automation.

Views are thin: they parse input with a serializer, call the same service the admin
calls, and report the result. Authentication is a user's token
(``authentication``), permissions are that user's roles (``permissions``), errors are
RFC 9457 problem details (``problems``), writes may carry an ``Idempotency-Key``
(``idempotency``). See docs/api.md.
"""
