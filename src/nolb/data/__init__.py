"""Long-tailed datasets, class-count profiles, samplers, augmentation presets and loaders.

``build_data(name, **options) -> LTData`` builds any dataset of :data:`DATASET_NAMES`;
``build_loader(dataset, ...)`` turns a split into device batches (whole-batch augmentation
for in-memory :class:`TensorImageDataset` splits); ``build_sampler`` gives the
instance / class-balanced / square-root / progressive samplers; ``mixup_batch`` and
``cutmix_batch`` mix batches for MiSLAS-style training.  ``data.splits`` names the images
of each split (disjoint by construction); ``write_splits`` saves it as ``splits.json``.
"""

from nolb.data.cifar_writer import write_cifar10_batches
from nolb.data.image_files import ImageFileDataset
from nolb.data.list_file import frequency_order_mapping, read_list_file, write_label_mapping
from nolb.data.loader import build_loader
from nolb.data.mixup import cutmix_batch, mixed_loss, mixup_batch
from nolb.data.profiles import PROFILE_NAMES, group_sizes, long_tailed_counts
from nolb.data.registry import DATASET_NAMES, PRESET_NAMES, LTData, build_data, dataset_options
from nolb.data.splits import check_disjoint, read_splits, write_splits
from nolb.data.samplers import SAMPLER_NAMES, ContiguousShardSampler, LongTailedSampler, build_sampler
from nolb.data.tensor_dataset import TensorImageDataset
from nolb.data.transforms import PRESETS, AugmentSpec, build_transform, resolve_augment

__all__ = [
    "DATASET_NAMES", "PRESET_NAMES", "PRESETS", "PROFILE_NAMES", "SAMPLER_NAMES",
    "AugmentSpec", "ContiguousShardSampler", "ImageFileDataset", "LTData", "LongTailedSampler",
    "TensorImageDataset", "build_data", "build_loader", "build_sampler", "build_transform",
    "cutmix_batch", "dataset_options", "frequency_order_mapping", "group_sizes", "long_tailed_counts",
    "mixed_loss", "mixup_batch", "read_list_file", "resolve_augment", "write_cifar10_batches",
    "write_label_mapping", "check_disjoint", "read_splits", "write_splits",
]
