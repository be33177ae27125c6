"""``attnsr serve``: a local web page and an HTTP API for upscaling.

Modules, bottom up (only :mod:`~attnsr.serve.app` and :mod:`~attnsr.serve.schemas`
import FastAPI / pydantic):

- :mod:`~attnsr.serve.config`: :class:`ServeConfig`, the server's settings;
- :mod:`~attnsr.serve.errors`: :class:`ApiError`, an error with its HTTP status;
- :mod:`~attnsr.serve.sniff`: what an upload is, from its bytes (never its name);
- :mod:`~attnsr.serve.catalogue`: the models clients may name, and the warm instances;
- :mod:`~attnsr.serve.jobs`: the bounded job queue, its workers and result expiry;
- :mod:`~attnsr.serve.service`: accepting and running jobs, without HTTP;
- :mod:`~attnsr.serve.guard`: the ASGI gate (Host check, token, upload size, headers);
- :mod:`~attnsr.serve.app`: ``create_app(config)``, the FastAPI application;
- ``static/``: the page (HTML, CSS, JS; no CDN).

See docs/serve.md.
"""

from __future__ import annotations

from attnsr.serve.config import ServeConfig

__all__ = ["ServeConfig"]
