"""Datasets as in-memory tensors: named ones, the user's own, and the network shape they imply.

No torchvision and no DataLoader: a dataset is read once into ``uint8`` tensors and the trainer
indexes batches straight out of them (on the GPU when it trains there).

- :func:`load_dataset` takes ``--data``: ``fashion-mnist`` (default), ``cifar10``, ``synthetic``
  (:mod:`~ghostnas.data.named`), an image folder in the ImageFolder layout
  (:mod:`~ghostnas.data.folder`, decoded with Pillow once into :mod:`~ghostnas.data.cache`) or an
  ``.npz`` file (:mod:`~ghostnas.data.npz`).
- :func:`from_arrays` takes images and labels already in memory (numpy or torch); every user
  dataset, from disk or not, goes through it (:mod:`~ghostnas.data.core`).
- :func:`holdout` is the fixed, seeded train/validation split every search decision uses; a test
  split is only ever scored once, at the end of ``ghostnas train``.
- :func:`input_shape` is the one rule for ``in_chans``, ``num_classes`` and the stem stride
  (:mod:`~ghostnas.data.shape`).
"""

from __future__ import annotations

from ghostnas.data.cache import cache_dir, clear_cache
from ghostnas.data.core import (
    Dataset,
    DatasetError,
    DatasetSpec,
    Split,
    from_arrays,
    holdout,
    memory_available,
    train_val_split,
)
from ghostnas.data.named import DATASETS, DEBIAN_FASHION_MNIST, dataset_spec, read_idx, synthetic_dataset
from ghostnas.data.shape import STRIDE2_FROM, check_input_size, input_shape, stem_stride_for
from ghostnas.data.source import DataArg, data_label, load_dataset, spec_of

__all__ = [
    "DATASETS",
    "DEBIAN_FASHION_MNIST",
    "STRIDE2_FROM",
    "DataArg",
    "Dataset",
    "DatasetError",
    "DatasetSpec",
    "Split",
    "cache_dir",
    "check_input_size",
    "clear_cache",
    "data_label",
    "dataset_spec",
    "from_arrays",
    "holdout",
    "input_shape",
    "load_dataset",
    "memory_available",
    "read_idx",
    "spec_of",
    "stem_stride_for",
    "synthetic_dataset",
    "train_val_split",
]
