"""Fixtures shared by several test files."""
import pytest

from mmc2f.toolkit.synthetic_data import make_coco_shapes


@pytest.fixture(scope='session')
def coco_shapes(tmp_path_factory) -> str:
    """A tiny COCO-format set of coloured shapes (2 training images, 1
    validation image, 32x32), its root with a trailing slash. Shared: a test
    that changes it works on a copy."""
    root = str(tmp_path_factory.mktemp('coco_shapes'))
    make_coco_shapes(root, num_train=2, num_val=1, size=(32, 32))
    return root + '/'
