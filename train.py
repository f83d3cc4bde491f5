"""Train Monodepth2: python train.py --model_name NAME [options] (see options.py)."""
import signal

import cpu_threads  # noqa: F401  (before paddle: sets its CPU thread count)
from datasets import DataError
from options import MonodepthOptions
from trainer import Trainer


def interrupt(signum, frame):
    """SIGTERM as Ctrl-C: the run unwinds, and the DataLoader's workers and their shared memory
    are cleaned up (Paddle's own handler aborts the process, leaving both behind)."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, interrupt)
    try:
        Trainer(MonodepthOptions().parse()).train()
    except (DataError, OSError) as e:  # a file that cannot be read or written: the message names it
        raise SystemExit("error: {}".format(e))
    except KeyboardInterrupt:
        raise SystemExit("stopped (--resume continues from the last checkpoint, models/last)")
