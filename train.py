"""Train Monodepth2: python train.py --model_name NAME [options] (see options.py)."""
import cpu_threads  # noqa: F401  (before paddle: sets its CPU thread count)
from datasets import DataError
from options import MonodepthOptions
from trainer import Trainer

if __name__ == "__main__":
    try:
        Trainer(MonodepthOptions().parse()).train()
    except (DataError, OSError) as e:  # a file that cannot be read or written: the message names it
        raise SystemExit("error: {}".format(e))
