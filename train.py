"""Train Monodepth2: python train.py --model_name NAME [options] (see options.py)."""
import cpu_threads  # noqa: F401  (before paddle: sets its CPU thread count)
from options import MonodepthOptions
from trainer import Trainer

if __name__ == "__main__":
    Trainer(MonodepthOptions().parse()).train()
