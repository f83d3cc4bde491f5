"""Batch sampler whose shuffle depends only on (seed, epoch), split across replicas."""
import math

import numpy as np
import paddle


class SeededBatchSampler(paddle.io.Sampler):
    """Yields lists of sample indices for one replica (rank) of a data-parallel run.

    The order of an epoch is a permutation drawn from ``(seed, epoch)``, so it is
    the same in every process and every run; call ``set_epoch`` before each
    epoch.  With several replicas the order is padded by wrapping around to a
    multiple of ``num_replicas`` and replica ``rank`` takes every
    ``num_replicas``-th index, so all replicas get the same number of batches.
    """

    def __init__(self, num_samples, batch_size, shuffle=True, drop_last=False, seed=0,
                 num_replicas=1, rank=0):
        if num_samples < 1 or batch_size < 1:
            raise ValueError(f"need num_samples >= 1 and batch_size >= 1, got {num_samples}, {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, num_replicas={num_replicas})")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch, start_batch=0):
        """Select the order of `epoch`; `start_batch` skips the batches a resumed run has done."""
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def indices(self):
        """This replica's sample indices for the current epoch."""
        if self.shuffle:
            seq = np.random.SeedSequence((self.seed, self.epoch), spawn_key=(1,))
            order = np.random.default_rng(seq).permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        per_replica = math.ceil(self.num_samples / self.num_replicas)
        order = np.resize(order, per_replica * self.num_replicas)
        return order[self.rank::self.num_replicas].tolist()

    def __iter__(self):
        indices = self.indices()
        for start in range(self.start_batch * self.batch_size, len(indices), self.batch_size):
            batch = indices[start:start + self.batch_size]
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch

    def __len__(self):
        per_replica = math.ceil(self.num_samples / self.num_replicas)
        if self.drop_last:
            return max(per_replica // self.batch_size - self.start_batch, 0)
        return max(math.ceil(per_replica / self.batch_size) - self.start_batch, 0)
