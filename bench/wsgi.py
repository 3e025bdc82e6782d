"""The WSGI application gunicorn serves in ``bench/http.py``: both views, one no-op receiver.

The receiver on ``event_received`` is the same as in the in-process mode: the signal has a
receiver to call, and the handler itself costs nothing.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings_http")
application = get_wsgi_application()


def _no_op_receiver(sender: Any, event: Any, **kwargs: Any) -> None:
    pass


from django_klarefi.signals import event_received  # noqa: E402  (after setup)

event_received.connect(_no_op_receiver, dispatch_uid="bench-no-op")
