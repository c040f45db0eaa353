"""Skip markers for tests that need a dataset scripts/setup.sh installs (a bare checkout may not have it)."""

from __future__ import annotations

import pytest


def have_fashion_mnist() -> bool:
    from edgeport.data import fashion_mnist
    from edgeport.errors import UserError

    try:
        fashion_mnist.load("test")
        return True
    except UserError:
        return False


needs_fashion_mnist = pytest.mark.skipif(not have_fashion_mnist(), reason="Debian dataset-fashion-mnist not installed")
