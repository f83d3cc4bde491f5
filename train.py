"""Train Monodepth2: python train.py --model_name NAME [options] (see options.py)."""
import os
import signal

import cpu_threads  # noqa: F401  (before paddle: sets its CPU thread count)

from checkpoint import last_checkpoint
from datasets import DataError
from options import MonodepthOptions
from trainer import Trainer


def interrupt(signum, frame):
    """SIGTERM as Ctrl-C: the run unwinds, and the DataLoader's workers and their shared memory
    are cleaned up (Paddle's own handler aborts the process, leaving both behind)."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, interrupt)
    opt = MonodepthOptions().parse()
    try:
        Trainer(opt).train()
    except (DataError, OSError) as e:  # a file that cannot be read or written: the message names it
        raise SystemExit("error: {}".format(e))
    except KeyboardInterrupt:
        raise SystemExit("stopped; {}".format(last_checkpoint(os.path.join(opt.log_dir, opt.model_name, "models"))))
