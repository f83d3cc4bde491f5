"""Train Monodepth2: python train.py --model_name NAME [options] (see options.py)."""
import cpu_threads  # noqa: F401  (before paddle: sets its CPU thread count)
from datasets import DataError
from options import MonodepthOptions
from trainer import Trainer

if __name__ == "__main__":
    try:
        Trainer(MonodepthOptions().parse()).train()
    except DataError as e:  # a file that cannot be loaded: its message says which
        raise SystemExit("error: {}".format(e))
