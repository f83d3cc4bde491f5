"""A DataLoader whose loading failures end the run with one message naming the file.

Paddle 3.3.1's DataLoader hangs for ever when a sample raises with num_workers=0: its
loading thread dies without closing the queue the main thread waits on. With workers the
main process gets ``SystemError: Blocking queue is killed`` and the real error only as a
printed traceback. So a failing sample is caught where it is loaded (the main process's
thread or a worker) and travels through the loader as a batch holding its message, which
iterating raises as `DataError` in the main process: the same for any number of workers.
Its workers end with the process that started them (_end_with_parent).
"""
import ctypes
import functools
import os
import signal
import sys
import traceback

import numpy as np
import paddle
from paddle.io.dataloader.collate import default_collate_fn

_ERROR_KEY = "loading_error"


class DataError(ValueError):
    """A sample cannot be loaded; the message names the file."""


class _Failure:
    def __init__(self, message):
        self.message = message


class _Guarded(paddle.io.Dataset):
    """`dataset` whose failing samples become a _Failure instead of an exception."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        try:
            return self.dataset[index]
        except (ValueError, OSError) as e:  # a bad or missing file: the loaders' messages name it
            return _Failure(str(e))
        except Exception:  # a bug: its traceback is the message
            return _Failure("loading sample {} failed:\n{}".format(index, traceback.format_exc()))


def _collate(samples):
    failures = [s for s in samples if isinstance(s, _Failure)]
    if failures:
        return {_ERROR_KEY: np.frombuffer(failures[0].message.encode(), np.uint8)}
    return default_collate_fn(samples)


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent ends


def _leave(signum, frame):
    raise SystemExit(0)  # the worker's own clean-up (its shared memory) runs on the way out; 0: Paddle reports others


def _end_with_parent(parent, worker_id):
    """Start of a worker: it ends when the process that started it ends, however that ends
    (SIGTERM, Ctrl-C, kill -9). Paddle's workers notice a dead parent only between batches,
    and not at all while they wait to hand one over: a stopped training left them running,
    each with its copy of the data set."""
    if sys.platform.startswith("linux"):
        signal.signal(signal.SIGTERM, _leave)  # Paddle's handler would abort, leaving shared memory behind
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent ended before that
        os._exit(1)


class Loader:
    """paddle.io.DataLoader(dataset, **kwargs) whose iteration raises DataError for a
    sample that cannot be loaded, and whose workers end with the process."""

    def __init__(self, dataset, **kwargs):
        self.loader = paddle.io.DataLoader(_Guarded(dataset), collate_fn=_collate,
                                           worker_init_fn=functools.partial(_end_with_parent, os.getpid()), **kwargs)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if isinstance(batch, dict) and _ERROR_KEY in batch:
                raise DataError(bytes(batch[_ERROR_KEY].numpy()).decode())
            yield batch
