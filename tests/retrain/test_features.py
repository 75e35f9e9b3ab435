import numpy as np
import pytest
import torch

from nolb.retrain.feature_source import FeatureSource
from nolb.retrain.features import FeatureCache, extract_features

data_module = pytest.importorskip("nolb.data")
models = pytest.importorskip("nolb.models")


@pytest.fixture(scope="module")
def digits():
    return data_module.build_data("digits_lt", imbalance_ratio=20)


def _model(seed=0):
    torch.manual_seed(seed)
    return models.build_model("small_cnn", 10, in_channels=1, width=8).eval()


class CallCounter:
    """Counts batches that reach the model's first layer (i.e. backbone passes)."""

    def __init__(self, model):
        self.calls = 0
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        first.register_forward_hook(self._hook)

    def _hook(self, *args):
        self.calls += 1


def _source(model, data, cache_dir, views=2):
    return FeatureSource(model, data, views=views, cache_dir=cache_dir, batch_size=128, seed=0)


def test_features_equal_a_direct_backbone_pass(digits):
    model = _model()
    source = _source(model, digits, None)
    val = source.split("val")
    loader = source.loader("val", train=False)
    with torch.no_grad():
        expected = torch.cat([model.forward_features(x) for x, _ in loader])
        labels = torch.cat([y for _, y in loader])
    assert val.features.dtype == torch.float32 and val.num_images == len(digits.val)  # train views: float16
    torch.testing.assert_close(val.features, expected, rtol=0, atol=0)  # float32, bit for bit
    assert torch.equal(val.labels, labels)
    train = source.split("train")
    assert train.features.dtype == torch.float16
    assert train.features.shape == (2 * len(digits.train), model.feature_dim)
    # the two augmented views of the same image differ, the label multiset is the training set twice
    assert torch.equal(torch.bincount(train.labels), 2 * digits.class_counts)


def test_cache_is_reused_without_running_the_backbone(digits, tmp_path):
    model = _model()
    counter = CallCounter(model)
    first = _source(model, digits, tmp_path).split("train")
    built_calls = counter.calls
    assert built_calls > 0
    again = _source(model, digits, tmp_path)
    second = again.split("train")
    assert counter.calls == built_calls and again.reused["train"]
    assert torch.equal(first.features, second.features) and torch.equal(first.labels, second.labels)
    stored = np.load(tmp_path / "train.features.npy", mmap_mode="r")
    np.testing.assert_array_equal(stored, first.features.numpy())


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "no_manifest", "bad_manifest"])
def test_corrupt_or_partial_cache_is_rebuilt(digits, tmp_path, damage):
    model = _model()
    counter = CallCounter(model)
    original = _source(model, digits, tmp_path, views=1).split("train").features.clone()
    features_path, _, manifest_path = FeatureCache(tmp_path).paths("train")
    if damage == "flip_byte":
        raw = bytearray(features_path.read_bytes())
        raw[-3] ^= 0xFF
        features_path.write_bytes(bytes(raw))
    elif damage == "truncate":
        features_path.write_bytes(features_path.read_bytes()[:-100])
    elif damage == "no_manifest":
        manifest_path.unlink()
    else:
        manifest_path.write_text("{not json")
    calls = counter.calls
    source = _source(model, digits, tmp_path, views=1)
    rebuilt = source.split("train").features
    assert counter.calls > calls and not source.reused["train"]
    assert torch.equal(rebuilt, original)  # augmentation is seeded: the same rows again


def test_stale_cache_is_rebuilt_when_weights_or_views_change(digits, tmp_path):
    model = _model()
    before = _source(model, digits, tmp_path, views=1).split("val").features.clone()
    with torch.no_grad():
        next(model.parameters()).add_(0.5)
    source = _source(model, digits, tmp_path, views=1)
    after = source.split("val").features
    assert not source.reused["val"] and not torch.equal(before, after)
    more_views = _source(model, digits, tmp_path, views=3)
    assert more_views.split("train").features.shape[0] == 3 * len(digits.train)
    assert not more_views.reused["train"]


def test_extract_features_counts_views():
    batches = [(torch.randn(4, 3), torch.tensor([0, 1, 0, 1])), (torch.randn(2, 3), torch.tensor([1, 1]))]
    split = extract_features(torch.nn.Linear(3, 5), batches, views=3)
    assert split.features.shape == (18, 5) and split.num_images == 6 and split.views == 3
