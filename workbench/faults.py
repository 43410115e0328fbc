"""Named points where tests can stop a running step, to prove a kill leaves no partial state.

``WORKBENCH_FAULT_PAUSE=<point>`` makes the process write ``<point>`` to
``WORKBENCH_FAULT_SIGNAL`` (a file) and sleep there until it is killed. Unset, a checkpoint costs
one dictionary lookup.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def checkpoint(point: str) -> None:
    if os.environ.get("WORKBENCH_FAULT_PAUSE") != point:
        return
    signal = os.environ.get("WORKBENCH_FAULT_SIGNAL")
    if signal:
        Path(signal).write_text(point)
    while True:  # wait for the test's kill -9
        time.sleep(0.1)
