"""Where a training run's messages go: the console and ``OUTPUT/logs/train.log``.

The trainer reports through the ``par_prompt`` loggers. :func:`run_logging` routes them,
for the length of a run and on the main process only, to

- the console (information on stdout, the message alone as ``print`` would; warnings
  and errors on stderr), and
- ``OUTPUT/logs/train.log`` (appended, with time and level; each run starts with a line
  holding its command line), together with the warnings that transformers and
  Accelerate log.

Other processes stay quiet below warnings. Everything is restored afterwards, so a run
inside a larger program (or a test) leaves no handlers behind. Metrics go to the trackers
(:mod:`par_prompt.training.trackers`), not here.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator, Optional

__all__ = ["LOG_FILE", "run_logging"]

LOG_FILE = "train.log"
#: Libraries whose logged warnings also go to train.log.
LIBRARY_LOGGERS = ("accelerate", "transformers")
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def run_logging(log_file: Optional[Path]) -> Iterator[None]:
    """Route the run's messages (see the module docstring); ``log_file`` None: not the main process."""
    if log_file is None:
        yield
        return
    package = logging.getLogger("par_prompt")
    level, propagate = package.level, package.propagate
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    console.setLevel(logging.INFO)
    console.addFilter(lambda record: record.levelno < logging.WARNING)
    problems = logging.StreamHandler(sys.stderr)
    problems.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    problems.setLevel(logging.WARNING)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    to_file.setFormatter(logging.Formatter(FILE_FORMAT))
    to_file.setLevel(logging.INFO)
    library_file = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    library_file.setFormatter(logging.Formatter(FILE_FORMAT))
    library_file.setLevel(logging.WARNING)
    added = [(package, console), (package, problems), (package, to_file)]
    added += [(logging.getLogger(name), library_file) for name in LIBRARY_LOGGERS]
    for logger, handler in added:
        logger.addHandler(handler)
    package.setLevel(logging.INFO)
    package.propagate = False  # no second copy through the root logger
    to_file.handle(package.makeRecord(package.name, logging.INFO, __file__, 0, "---- run: %s",
                                      (" ".join(sys.argv) or "training",), None))
    try:
        yield
    except BaseException as error:  # the reason a run stopped belongs in its log
        to_file.handle(package.makeRecord(package.name, logging.ERROR, __file__, 0, "run stopped: %s: %s",
                                          (type(error).__name__, " ".join(str(error).split())), None))
        raise
    finally:
        for logger, handler in added:
            logger.removeHandler(handler)
        to_file.close()
        library_file.close()
        package.setLevel(level)
        package.propagate = propagate
