"""Deployment of model versions to hosts: plain Python, no Django.

`targets` describes a target, its hosts and the artifact; `connection` opens SSH
(pinned host keys) or local connections; `steps` are the single steps; `runner`
runs them on every host and rolls back on failure; `windows` says when a deploy
may start. See docs/deployment.md.
"""
