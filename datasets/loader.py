"""A DataLoader whose loading failures end the run with one message naming the file.

Paddle 3.3.1's DataLoader hangs for ever when a sample raises with num_workers=0: its
loading thread dies without closing the queue the main thread waits on. With workers the
main process gets ``SystemError: Blocking queue is killed`` and the real error only as a
printed traceback. So a failing sample is caught where it is loaded (the main process's
thread or a worker) and travels through the loader as a batch holding its message, which
iterating raises as `DataError` in the main process: the same for any number of workers.
"""
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


class Loader:
    """paddle.io.DataLoader(dataset, **kwargs) whose iteration raises DataError for a
    sample that cannot be loaded."""

    def __init__(self, dataset, **kwargs):
        self.loader = paddle.io.DataLoader(_Guarded(dataset), collate_fn=_collate, **kwargs)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if isinstance(batch, dict) and _ERROR_KEY in batch:
                raise DataError(bytes(batch[_ERROR_KEY].numpy()).decode())
            yield batch
