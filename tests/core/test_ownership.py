"""owned_input: transforms may overwrite their input only inside it, and only dense tensors, no autograd."""

from __future__ import annotations

import pytest
import torch

from lamina.core import input_is_owned, owned_input, writable_in_place


def test_ownership_is_scoped_and_reset_after_an_error() -> None:
    assert not input_is_owned()
    with owned_input():
        assert input_is_owned()
        with owned_input():
            assert input_is_owned()
        assert input_is_owned()  # the inner block restores the outer state, not False
    assert not input_is_owned()
    with pytest.raises(RuntimeError), owned_input():
        raise RuntimeError("boom")
    assert not input_is_owned()


def test_writable_in_place_only_for_dense_tensors_without_autograd() -> None:
    x = torch.rand(2, 3, 4, 5)
    assert not writable_in_place(x)  # not owned
    with owned_input():
        assert writable_in_place(x)
        assert writable_in_place(x.contiguous(memory_format=torch.channels_last))
        assert not writable_in_place(x[:, :1].expand(2, 3, 4, 5))  # a broadcast view: elements alias
        assert not writable_in_place(x[..., ::2])  # strided view of something else
        assert not writable_in_place(torch.rand(3, requires_grad=True))
