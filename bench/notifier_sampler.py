"""Run the notifier with a sampling profiler (part of `bench/notifier.py --profile`; not a test).

A thread samples the main thread's stack every few milliseconds and rewrites the counts to
`$NOTIFIER_PROFILE_OUT` every second: `self` (the innermost frame) and `total` (anywhere on the
stack), by `file:function`, so a kill at any moment leaves a recent profile.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
import time
from collections import Counter
from pathlib import Path


def sample(main_id: int, out: Path, every: float = 0.005) -> None:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    n = 0
    last_write = time.monotonic()
    while True:
        time.sleep(every)
        frame = sys._current_frames().get(main_id)
        if frame is None:
            continue
        n += 1
        seen = set()
        first = True
        while frame is not None:
            code = frame.f_code
            name = f"{code.co_filename.rsplit('/site-packages/', 1)[-1].removeprefix(os.getcwd() + '/')}:{code.co_name}"
            if first:
                own[name] += 1
                first = False
            if name not in seen:
                total[name] += 1
                seen.add(name)
            frame = frame.f_back
        if time.monotonic() - last_write > 1.0:
            last_write = time.monotonic()
            lines = [f"samples {n}", "-- self"]
            lines += [f"{c / n:6.1%} {k}" for k, c in own.most_common(30)]
            lines += ["-- total"]
            lines += [f"{c / n:6.1%} {k}" for k, c in total.most_common(60)]
            out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    target = Path(os.environ["NOTIFIER_PROFILE_OUT"])
    threading.Thread(target=sample, args=(threading.main_thread().ident, target), daemon=True).start()
    runpy.run_module("services.notifier", run_name="__main__")
