"""KITTI data loading.

Reproducible use (the same batches for any num_workers)::

    dataset = KITTIRAWDataset(data_path, lines, 192, 640, [0, -1, 1, "s"], 4,
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
from .kitti_dataset import KITTIDepthDataset, KITTIOdomDataset, KITTIRAWDataset
from .loader import DataError, Loader
from .mono_dataset import MonoDataset
from .sampler import SeededBatchSampler
