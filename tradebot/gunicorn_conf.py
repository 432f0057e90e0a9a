"""The shipped gunicorn configuration: gunicorn -c python:tradebot.gunicorn_conf ...

Holds slow clients (#26): a threaded worker that reads each whole request in its event loop
before a thread serves it (tradebot/gunicorn_worker.py), a per-request read deadline,
bounded keep-alive, and limits on the request line and headers. It sits behind
the TLS reverse proxy (README, "Running tradebot in production"), which buffers requests.
"""

from __future__ import annotations

import os

bind = os.environ.get("TRADEBOT_GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("TRADEBOT_GUNICORN_WORKERS", "3"))
worker_class = "tradebot.gunicorn_worker.RequestBufferingWorker"
# Threads only ever serve whole requests (the worker's loop reads them), so slow clients
# hold none; up to worker_connections of them wait in the loop. Every thread that served a request
# keeps a PostgreSQL connection (CONN_MAX_AGE): workers x threads stays well under the
# server's max_connections (100 by default) with the Celery workers beside it.
threads = int(os.environ.get("TRADEBOT_GUNICORN_THREADS", "16"))
worker_connections = 1000
# A request that runs longer than this is killed with its worker (the admin's slowest
# pages take about a second; long work runs in Celery, not here).
timeout = 60
graceful_timeout = 30
keepalive = 5
# Request line and headers: Django's admin needs far less than gunicorn's defaults allow.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
accesslog = "-"
errorlog = "-"
