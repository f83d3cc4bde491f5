"""The training loop around the training step (model.py): data, optimisation,
validation, logging and checkpoints (checkpoint.py)."""
import json
import os
import random
import time

import numpy as np
import paddle
import paddle.nn.functional as F
from tqdm import tqdm

import run_folder
from checkpoint import (last_checkpoint, load_checkpoint, networks_problem, restore_rng_state, resume_state,
                        save_checkpoint)
from datasets import Loader, SeededBatchSampler, dataset_class
from datasets.mono_dataset import MissingFilesError
from eval_splits import MAX_DEPTH, MIN_DEPTH, SPLITS_DIR, garg_crop_mask
from layers import compute_depth_errors, disp_to_depth
from model import MonodepthModel
from options import changed_options
from utils import (check_writable, normalize_image, pick_device, progress, readlines, recover_interrupted_saves,
                   sec_to_hm_str)


def lr_factor(epoch, step_size):
    """Learning-rate multiplier of `epoch` (from 0).

    The reference steps its StepLR at the start of every epoch, which under PyTorch >= 1.1
    divides the rate by 10 from epoch step_size - 1 on: with the default 15, the first 14
    epochs train at the full rate (the paper says 15)."""
    return 0.1 ** ((epoch + 1) // step_size)


class Trainer:
    """Training loop: data, optimisation, validation, logging, checkpoints and resuming.

    Runs as one process or as one of several under paddle.distributed.launch: then each
    process takes batch_size / world_size samples of every batch, gradients are averaged
    by paddle.DataParallel, and only rank 0 logs and writes checkpoints."""

    def __init__(self, options):
        """Start the run (self.start); one that fails leaves no run folder behind where there was none."""
        folder = os.path.join(options.log_dir, options.model_name)
        created = run_folder.missing_folders(folder)
        try:
            self.start(options)
        except BaseException:
            if paddle.distributed.get_rank() == 0:
                run_folder.remove_failed_start(folder, created)
            raise

    def start(self, options):
        self.opt = opt = options
        self.log_path = os.path.join(opt.log_dir, opt.model_name)
        self.models_dir = os.path.join(self.log_path, "models")
        self.device = pick_device(opt)
        paddle.set_device(self.device)
        self.world_size = paddle.distributed.get_world_size()
        self.rank = paddle.distributed.get_rank()
        self.is_main = self.rank == 0
        if opt.batch_size % self.world_size:
            raise SystemExit("--batch_size {} must be divisible by the {} processes".format(
                opt.batch_size, self.world_size))
        if self.world_size > 1:
            paddle.distributed.init_parallel_env()
        if opt.num_gpus > 1 and opt.num_gpus != self.world_size:
            raise SystemExit(
                "--num_gpus {0}: start one process per GPU with python -m paddle.distributed.launch "
                "--gpus {1} train.py ... (--batch_size is the batch of all GPUs together: the "
                "published port's --batch_size B --num_gpus {0} is --batch_size {0}B here)".format(
                    opt.num_gpus, ",".join(map(str, range(opt.num_gpus)))))
        if self.is_main:
            self.check_run_folder()
        state = resume_state(os.path.join(self.models_dir, "last"), opt) if opt.resume else None
        if state and self.is_main:
            self.check_resumed_options()
        self.split_file = self.find_split()  # before building the networks: fail early
        if opt.seed is None:  # drawn once and recorded, so that a resumed run continues the same way
            opt.seed = state["seed"] if state else int(np.random.SeedSequence().entropy % 2 ** 31)
            if self.world_size > 1:  # every process must shuffle alike: rank 0's draw counts
                seed = paddle.to_tensor([opt.seed], dtype="int64")
                paddle.distributed.broadcast(seed, src=0)
                opt.seed = int(seed)
        random.seed(opt.seed)
        np.random.seed(opt.seed)
        paddle.seed(opt.seed)

        try:
            self.model = MonodepthModel(opt)
        except (ValueError, FileNotFoundError) as e:  # e.g. an unsupported pose encoder depth, no ImageNet file
            raise SystemExit(str(e))
        self.models = self.model.models
        self.frame_ids = self.model.frame_ids
        self.scheduler = paddle.optimizer.lr.LambdaDecay(
            opt.learning_rate, lambda epoch: lr_factor(epoch, opt.scheduler_step_size))
        self.optimizer = paddle.optimizer.Adam(
            self.scheduler, parameters=[p for p in self.model.parameters() if not p.stop_gradient])
        # float16 gradients need loss scaling; on the CPU --amp changes nothing
        self.scaler = paddle.amp.GradScaler() if opt.amp and self.device == "gpu" else None
        self.epoch, self.step, self.start_batch, self.best_val_loss = 0, 0, 0, float("inf")
        if state:
            last = os.path.join(self.models_dir, "last")
            load_checkpoint(last, self.models, list(self.models.keys()), self.optimizer, self.is_main, resuming=True)
            self.epoch, self.step, self.start_batch = state["epoch"], state["step"], state["batch"]
            self.best_val_loss = state["best_val_loss"]
            restore_rng_state(last)
        elif opt.load_weights_folder is not None:
            load_checkpoint(os.path.expanduser(opt.load_weights_folder), self.models, opt.models_to_load,
                            self.optimizer, self.is_main)
        self.step_model = paddle.DataParallel(self.model) if self.world_size > 1 else self.model

        dataset = dataset_class(opt.dataset)
        if not dataset.for_training:
            raise SystemExit("--dataset {} cannot be used for training".format(opt.dataset))
        split_file = self.split_file
        img_ext = ".png" if opt.png else ".jpg"
        datasets = []
        for part in ("train", "val"):
            try:
                datasets.append(dataset(
                    os.path.expanduser(opt.data_path), readlines(split_file.format(part)), opt.height,
                    opt.width, self.frame_ids, 4, is_train=part == "train", img_ext=img_ext, seed=opt.seed,
                    **dataset.option_kwargs(opt)))
            except MissingFilesError as e:  # the data is elsewhere, or not all of it is there
                raise SystemExit("--data_path {} lacks frames of --split {}: {}{}".format(
                    opt.data_path, opt.split, e.summary, "" if opt.png else " (PNG images need --png)"))
            except (FileNotFoundError, ValueError) as e:
                raise SystemExit("{}: {}".format(split_file.format(part), e))
        self.train_dataset, self.val_dataset = datasets
        # metres per network unit of stereo depth, recorded with the weights (datasets.stereo_scale);
        # validation's transform uses the training's units
        opt.stereo_scale = self.val_dataset.stereo_scale = self.train_dataset.stereo_scale if opt.use_stereo else None
        per_process = opt.batch_size // self.world_size
        self.train_sampler = SeededBatchSampler(len(self.train_dataset), per_process, True, True, opt.seed,
                                                self.world_size, self.rank)
        self.val_sampler = SeededBatchSampler(len(self.val_dataset), per_process, False, False, opt.seed,
                                              self.world_size, self.rank)
        if len(self.train_sampler) == 0:
            raise SystemExit("--batch_size {} is larger than the {} training samples".format(
                opt.batch_size, len(self.train_dataset)))
        self.train_loader = Loader(self.train_dataset, batch_sampler=self.train_sampler,
                                   num_workers=opt.num_workers)
        self.val_loader = Loader(self.val_dataset, batch_sampler=self.val_sampler, num_workers=0)
        self.num_total_steps = len(self.train_sampler) * opt.num_epochs
        self.val_iter = None
        self.writers = {}
        if self.is_main:
            if opt.overwrite:  # only now that the new run has started: a failed start loses nothing
                for path in run_folder.remove_run(self.log_path):
                    print("--overwrite left {}: a run does not write it".format(path))
            from visualdl import LogWriter  # imported here: only the logging process needs it
            self.writers = {mode: LogWriter(logdir=os.path.join(self.log_path, mode)) for mode in ("train", "val")}
            print("Training model named:\n  ", opt.model_name)
            print("Models and logs are saved to:\n  ", self.log_path)
            print("Training is using:\n  ", self.device, "x {}".format(self.world_size) if self.world_size > 1 else "")
            print("Using split:\n  ", opt.split)
            print("There are {:d} training items and {:d} validation items\n".format(
                len(self.train_dataset), len(self.val_dataset)))
            if state:
                print("Resuming from {} at epoch {}, batch {}".format(
                    os.path.join(self.models_dir, "last"), self.epoch, self.start_batch))
            self.save_opts()

    def find_split(self):
        """'<split folder>/{}_files.txt' of --split; missing files or --data_path stop here."""
        opt = self.opt
        split_dir = opt.split if os.path.isdir(opt.split) else os.path.join(SPLITS_DIR, opt.split)
        split_file = os.path.join(split_dir, "{}_files.txt")
        for part in ("train", "val"):
            if not os.path.isfile(split_file.format(part)):
                raise SystemExit("--split {}: split file {} not found; python tools/get_splits.py fetches "
                                 "the standard splits, or give --split a folder holding train_files.txt "
                                 "and val_files.txt".format(opt.split, split_file.format(part)))
        if not os.path.isdir(os.path.expanduser(opt.data_path)):
            raise SystemExit("--data_path {}: no such folder (the KITTI raw data: see README, KITTI "
                             "workflow; python tools/make_synthetic_kitti.py --out DIR writes a synthetic "
                             "drive to try the commands on)".format(opt.data_path))
        return split_file

    def train(self):
        self.start_time = self.last_save = time.time()
        self.first_step = self.step
        for self.epoch in range(self.epoch, self.opt.num_epochs):
            self.scheduler.step(self.epoch)  # the rate of this epoch, also after resuming
            self.run_epoch()
            val_loss = self.validate()
            if self.is_main:
                self.writers["val"].add_scalar("loss_epoch", val_loss, self.step)
                print("epoch {:>3} | validation loss {:.5f}".format(self.epoch, val_loss))
                if (self.epoch + 1) % self.opt.save_frequency == 0:
                    self.save_model("weights_{}".format(self.epoch))
                if val_loss < self.best_val_loss:
                    self.best_val_loss = val_loss
                    self.save_model("best")
                    self.link_best()
            self.start_batch = 0
            self.save_last(self.epoch + 1, 0)

    def run_epoch(self):
        if self.is_main:
            print("Training")
        self.set_train()
        self.train_sampler.set_epoch(self.epoch, self.start_batch)
        self.train_dataset.set_epoch(self.epoch)
        bar = progress(self.train_loader, total=len(self.train_sampler), desc="epoch {}".format(self.epoch),
                       unit="batch", disable=not self.is_main)
        # without a bar (not a terminal), a console line about every tenth of the epoch
        line_every = max(1, -(-len(self.train_sampler) // 10)) if bar.disable else 0
        for batch_idx, inputs in enumerate(bar, self.start_batch):
            before_op_time = time.time()
            outputs, losses = self.step_model(inputs)
            loss = losses["loss"]
            if not self.all_finite(loss):
                # the weights may already be broken (an update from an infinite gradient), so
                # the last checkpoint is kept as it is
                problem = networks_problem(self.models)
                raise SystemExit("the loss is not finite at epoch {}, batch {} (step {}); {}; {}".format(
                    self.epoch, batch_idx, self.step, "the weights have diverged: " + problem if problem else
                    "the weights are still finite", last_checkpoint(self.models_dir)))
            self.optimize(loss)
            duration = time.time() - before_op_time

            early_phase = batch_idx % self.opt.log_frequency == 0 and self.step < 2000
            late_phase = self.step % 2000 == 0
            log_now = early_phase or late_phase
            if self.is_main and (log_now or (line_every and batch_idx % line_every == 0)):
                self.log_time(batch_idx, duration, float(loss))
            if self.opt.visualdl_frequency is not None:
                log_now = self.step % self.opt.visualdl_frequency == 0
            if log_now and self.is_main:
                if "depth_gt" in inputs:
                    self.compute_depth_losses(inputs, outputs, losses)
                self.log("train", inputs, outputs, losses)
                self.val()
            self.step += 1
            if time.time() - self.last_save > 60 * self.opt.checkpoint_minutes:
                self.save_last(self.epoch, batch_idx + 1)

    def optimize(self, loss):
        """Backpropagate `loss` and update the weights (with loss scaling under --amp on a GPU)."""
        self.optimizer.clear_grad()
        if self.scaler:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()

    def set_train(self):
        """Training mode, or with --freeze_bn eval mode (as the published port fine-tunes):
        batch norm then normalises with its running statistics and leaves them as they are."""
        if self.opt.freeze_bn:
            self.model.eval()
        else:
            self.model.train()

    def all_finite(self, loss):
        """Whether the loss is finite in every process (all stop together otherwise)."""
        finite = paddle.isfinite(loss).astype("int32").reshape([1])
        if self.world_size > 1:
            paddle.distributed.all_reduce(finite, op=paddle.distributed.ReduceOp.MIN)
        return bool(finite)

    def validate(self):
        """Mean loss over the whole validation split (all processes), for choosing models/best;
        a network that predicts one depth everywhere is reported (collapse_message)."""
        self.model.eval()
        total, count = 0.0, 0
        low, high = float("inf"), float("-inf")
        with paddle.no_grad():
            for inputs in self.val_loader:
                outputs, losses = self.model(inputs)
                total += float(losses["loss"]) * inputs[("color", 0, 0)].shape[0]
                count += inputs[("color", 0, 0)].shape[0]
                disp = outputs[("disp", 0)]
                low, high = min(low, float(disp.min())), max(high, float(disp.max()))
        message = collapse_message(low, high, self.opt)
        if message and self.is_main:
            print(message)
        if self.world_size > 1:
            sums = paddle.to_tensor([total, float(count)], dtype="float64")
            paddle.distributed.all_reduce(sums)
            total, count = (float(v) for v in sums.numpy())
        self.set_train()
        return total / max(count, 1)

    def val(self):
        """Log the losses of one validation batch, as the reference does at every log step."""
        self.model.eval()
        if self.val_iter is None:
            self.val_iter = iter(self.val_loader)
        try:
            inputs = next(self.val_iter)
        except StopIteration:
            self.val_iter = iter(self.val_loader)
            inputs = next(self.val_iter)
        with paddle.no_grad():
            outputs, losses = self.model(inputs)
            if "depth_gt" in inputs:
                self.compute_depth_losses(inputs, outputs, losses)
            self.log("val", inputs, outputs, losses)
        self.set_train()

    def compute_depth_losses(self, inputs, outputs, losses):
        """Depth metrics of the batch against its ground truth (median-scaled, Garg crop):
        an indication of progress only, as in the reference."""
        gt = inputs["depth_gt"]
        h, w = gt.shape[2:]
        pred = F.interpolate(outputs[("depth", 0, 0)].detach(), [h, w], mode="bilinear", align_corners=False)
        pred = paddle.clip(pred, MIN_DEPTH, MAX_DEPTH).numpy()
        gt = gt.numpy()
        mask = (gt > 0) & garg_crop_mask((h, w))
        if not mask.any():
            return
        gt, pred = gt[mask], pred[mask]
        pred = np.clip(pred * np.median(gt) / np.median(pred), MIN_DEPTH, MAX_DEPTH)
        for name, value in zip(DEPTH_METRIC_NAMES, compute_depth_errors(gt, pred)):
            losses[name] = value

    def log_time(self, batch_idx, duration, loss):
        """One progress line, as the reference prints it."""
        samples_per_sec = self.opt.batch_size / max(duration, 1e-9)
        time_sofar = time.time() - self.start_time
        done = self.step - self.first_step + 1  # this step included
        left = (self.num_total_steps - self.step - 1) * time_sofar / done
        tqdm.write("epoch {:>3} | batch {:>6} | examples/s: {:5.1f} | loss: {:.5f} | time elapsed: {} | "
              "time left: {}".format(self.epoch, batch_idx, samples_per_sec, loss,
                                     sec_to_hm_str(time_sofar), sec_to_hm_str(left)))

    def log(self, mode, inputs, outputs, losses):
        """Losses, metrics and up to four examples' images to VisualDL."""
        writer = self.writers[mode]
        for name, value in losses.items():
            writer.add_scalar(name, float(value), self.step)
        for j in range(min(4, inputs[("color", 0, 0)].shape[0])):
            for s in self.opt.scales:
                for f in self.frame_ids:
                    writer.add_image("color_{}_{}/{}".format(f, s, j), to_hwc(inputs[("color", f, s)][j]), self.step)
                    if s == 0 and f != 0:
                        writer.add_image("color_pred_{}_{}/{}".format(f, s, j),
                                         to_hwc(outputs[("color", f, s)][j]), self.step)
                writer.add_image("disp_{}/{}".format(s, j), to_hwc(normalize_image(outputs[("disp", s)][j])),
                                 self.step)
                if self.opt.predictive_mask:
                    for k, f in enumerate(self.frame_ids[1:]):
                        writer.add_image("predictive_mask_{}_{}/{}".format(f, s, j),
                                         to_hwc(outputs["predictive_mask"][("disp", s)][j, k:k + 1]), self.step)
                elif not self.opt.disable_automasking:
                    writer.add_image("automask_{}/{}".format(s, j),
                                     to_hwc(outputs["identity_selection/{}".format(s)][j:j + 1]), self.step)

    def save_opts(self):
        """models/opt.json: every option of the run (prediction reads its depth range, frames...)."""
        os.makedirs(self.models_dir, exist_ok=True)
        with open(os.path.join(self.models_dir, "opt.json"), "w") as f:
            json.dump(dict(vars(self.opt), frame_ids=self.frame_ids), f, indent=2)

    def save_model(self, name):
        """Write models/<name>/ (every network and Adam) as one atomic step (rank 0 only)."""
        if self.is_main:
            save_checkpoint(os.path.join(self.models_dir, name), self.models, self.optimizer, self.opt)

    def link_best(self):
        """models/weights_best: the name the published Paddle port gives models/best."""
        link = os.path.join(self.models_dir, "weights_best")
        if not os.path.lexists(link):
            try:
                os.symlink("best", link)
            except OSError as e:  # no symbolic links on this file system
                print("models/best is not also reachable as {} ({})".format(link, e))

    def save_last(self, epoch, batch):
        """models/last: everything needed to continue at `batch` of `epoch` (--resume)."""
        if self.is_main:
            progress = dict(epoch=epoch, batch=batch, step=self.step, seed=self.opt.seed,
                            batch_size=self.opt.batch_size, best_val_loss=self.best_val_loss)
            save_checkpoint(os.path.join(self.models_dir, "last"), self.models, self.optimizer, self.opt, progress)
        self.last_save = time.time()

    def check_run_folder(self):
        """The run's folder must be writable (VisualDL would fail later with a bare OSError), is
        locked for this process (a second run started on it stops), and an earlier run in it is
        only continued (--resume) or replaced (--overwrite, which deletes it once the new run has
        started) when asked for. What an interrupted checkpoint save left behind is then repaired
        (not before the lock and the refusal: a second start by mistake must not touch a run that
        is still writing)."""
        try:
            check_writable(self.log_path)
        except OSError as e:
            raise SystemExit("--log_dir {}: {}".format(self.opt.log_dir, e.strerror))
        run_folder.lock(self.log_path)
        earlier = [n for n in ("models", "train", "val") if os.path.exists(os.path.join(self.log_path, n))]
        if earlier and not self.opt.resume:
            if not self.opt.overwrite:
                raise SystemExit("{} already holds a run ({}): continue it with --resume, or start it again "
                                 "with --overwrite (deletes them)".format(self.log_path, ", ".join(earlier)))
            inside = [p for p in (self.opt.load_weights_folder, self.opt.weights_init) if p and os.path.abspath(
                os.path.expanduser(p)).startswith(os.path.abspath(self.log_path) + os.sep)]
            if inside:
                raise SystemExit("--overwrite would delete {}, which this run loads: copy it elsewhere "
                                 "first".format(inside[0]))
        for line in recover_interrupted_saves(self.models_dir):
            print(line)

    def check_resumed_options(self):
        """A resumed run must keep the options that decide the networks, data and optimisation."""
        path = os.path.join(self.models_dir, "opt.json")
        try:
            with open(path) as f:
                saved = json.load(f)
        except (OSError, ValueError) as e:
            print("--resume: cannot compare the options with {} ({}); continuing".format(path, e))
            return
        changed = changed_options(self.opt, saved)
        if changed:
            raise SystemExit("--resume: the run in {} has other options: {}. Resume with the same ones, or "
                             "start a new run with another --model_name".format(self.log_path, ", ".join(changed)))


# A validation set whose disparities (sigmoid outputs, 0..1) all lie within this of each other
# has collapsed: one depth for every pixel of every image.
COLLAPSE_SPREAD = 1e-3


def collapse_message(low, high, opt):
    """What to tell the user when the validation disparities span only [low, high] (a
    collapsed network), else None. Mono from scratch collapses to --min_depth when it is
    too large (the reference does the same)."""
    if not high - low < COLLAPSE_SPREAD:
        return None
    depth = float(disp_to_depth((low + high) / 2, opt.min_depth, opt.max_depth)[1])
    if low > 0.5:
        cause = ("--min_depth {} is likely too large: from scratch, mono learns with the default 0.1 and stereo "
                 "with 0.1-1 (the network's units: KITTI's 0.54 m rig is 0.1)".format(opt.min_depth))
    else:
        cause = "--max_depth {} is likely too small, or the camera does not move".format(opt.max_depth)
    return ("WARNING: training has collapsed: the disparity is {:.4f}..{:.4f} over the whole validation set, "
            "a depth of {:.4g} everywhere. {}; start again with other options".format(low, high, depth, cause))


DEPTH_METRIC_NAMES = ["de/abs_rel", "de/sq_rel", "de/rms", "de/log_rms", "da/a1", "da/a2", "da/a3"]


def to_hwc(image):
    """A C x H x W tensor in [0, 1] as an H x W x 3 uint8 array for VisualDL."""
    array = np.clip(image.numpy().transpose(1, 2, 0), 0, 1)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return (array * 255).astype(np.uint8)
