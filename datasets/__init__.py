"""Data loading, and the registry of datasets (DATASETS) that --dataset, evaluation and
ground-truth export look names up in: a new dataset is a module here and one line below.

Reproducible use (the same batches for any num_workers)::

    dataset = dataset_class("kitti")(data_path, lines, 192, 640, [0, -1, 1, "s"], 4,
                                     is_train=True, seed=seed)
    sampler = SeededBatchSampler(len(dataset), batch_size, shuffle=True, drop_last=True,
                                 seed=seed, num_replicas=world_size, rank=rank)
    loader = Loader(dataset, batch_sampler=sampler, num_workers=n)  # a paddle.io.DataLoader
    for epoch in range(num_epochs):
        dataset.set_epoch(epoch)   # before iter(loader): workers copy the dataset then
        sampler.set_epoch(epoch)
        for inputs in loader: ...

A sample that cannot be loaded raises DataError (naming the file) in the main process.
Paddle's default collate stacks the dict items (tuple keys included) into tensors.
"""
from .folder_dataset import FolderDataset
from .kitti_dataset import KITTIDepthDataset, KITTIOdomDataset, KITTIRAWDataset, KITTITestImages
from .loader import DataError, Loader
from .mono_dataset import MonoDataset
from .sampler import SeededBatchSampler

DATASETS = {
    "kitti": KITTIRAWDataset,
    "kitti_odom": KITTIOdomDataset,
    "kitti_depth": KITTIDepthDataset,
    "kitti_test": KITTITestImages,
    "folder": FolderDataset,
}


def dataset_class(name):
    """The dataset class registered as `name`."""
    if name not in DATASETS:
        raise ValueError("unknown dataset {!r}: choose from {}".format(name, ", ".join(sorted(DATASETS))))
    return DATASETS[name]


def known_stereo_scale(record):
    """Metres per network unit of stereo-trained depth (the rig's baseline over STEREO_BASELINE):
    the scale the weights record (`record`: their entries, network.RECORDED), else that of the
    rig of their dataset (KITTI's); None when neither is known."""
    return record.get("stereo_scale") or dataset_class(record.get("dataset") or "kitti").stereo_scale


def stereo_scale(record, flag, advice):
    """known_stereo_scale, or a ValueError naming `flag`, the option asking for it, and
    `advice`, what to do instead."""
    scale = known_stereo_scale(record)
    if scale is None:
        raise ValueError("{}: depth stereo-trained on --dataset {} has no known metric scale (weights trained "
                         "here record it); {}".format(flag, record.get("dataset") or "kitti", advice))
    return scale
