"""Per-image v2 presets and the in-memory dataset."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from nolb.data import PRESETS, TensorImageDataset, build_transform, resolve_augment
from nolb.errors import NolbError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_imagenet_eval_is_resize_256_center_crop_224():
    image = Image.fromarray(np.random.RandomState(0).randint(0, 256, (300, 400, 3), dtype=np.uint8))
    ours = build_transform("imagenet", False, mean=MEAN, std=STD)(image)
    reference = v2.Compose([v2.ToImage(), v2.Resize(256, antialias=True), v2.CenterCrop(224),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(MEAN), list(STD))])(image)
    torch.testing.assert_close(ours, reference)


def test_imagenet_train_output_and_randomness():
    image = Image.fromarray(np.random.RandomState(1).randint(0, 256, (120, 90, 3), dtype=np.uint8))
    transform = build_transform("imagenet", True, mean=MEAN, std=STD)
    a, b = transform(image), transform(image)
    assert a.shape == b.shape == (3, 224, 224) and a.dtype == torch.float32 and not torch.equal(a, b)
    names = [type(t).__name__ for t in transform.transforms]
    assert names[1:4] == ["RandomResizedCrop", "RandomHorizontalFlip", "ColorJitter"]


def test_eval_transform_of_small_presets_only_normalises():
    images = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    out = build_transform("cifar", False, mean=(0.5,) * 3, std=(0.5,) * 3)(images)
    torch.testing.assert_close(out, images.float() / 255 * 2 - 1)


def test_resolve_augment_rules():
    assert resolve_augment("cifar", False, "autoaugment") == resolve_augment("digits", True, "none")
    assert resolve_augment("cifar", True) == PRESETS["cifar"]
    assert resolve_augment("cifar", True, "randaugment").policy == "randaugment"
    assert resolve_augment("mnist", True, {"flip": True}).flip
    with pytest.raises(NolbError, match="augment.policy"):
        resolve_augment("cifar", True, "trivialaugment")


def test_tensor_image_dataset():
    images = torch.randint(0, 256, (5, 1, 4, 4), dtype=torch.uint8)
    ds = TensorImageDataset(images, [0, 1, 2, 1, 0], class_names=["a", "b", "c"])
    image, label = ds[3]
    assert torch.equal(image, images[3]) and label == 1 and isinstance(label, int)
    sub = ds.subset([4, 0])
    assert torch.equal(sub.images, images[[4, 0]]) and sub.targets == [0, 0] and ds.to("cpu") is ds
    with pytest.raises(NolbError, match="uint8"):
        TensorImageDataset(images.float(), [0] * 5)
    with pytest.raises(NolbError, match="labels must have shape"):
        TensorImageDataset(images, [0] * 4)
