"""Registries: names for transforms, models, losses and functions, and the errors when a name is wrong."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lamina.core import (
    MissingKeyError,
    Transform,
    lookup_function,
    lookup_loss,
    lookup_model,
    lookup_transform,
    model_recipe,
    register_function,
    register_loss,
    register_model,
    register_transform,
    registered_name,
)


@register_transform("test_core.Scale")
class Scale(Transform):
    def __init__(self, k: float = 2.0) -> None:
        super().__init__()
        self.k = k

    def encodes(self, x: float) -> float:
        return x * self.k


class SubScale(Scale):
    pass


@register_model("test_core.tiny")
def tiny(n_out: int = 3, hidden: int = 4) -> nn.Module:
    return nn.Sequential(nn.Linear(2, hidden), nn.Linear(hidden, n_out))


@register_function("test_core.first_char")
def first_char(s: str) -> str:
    return s[0]


@register_loss("test_core.L")
class L(nn.Module):
    pass


def test_lookups_return_what_was_registered() -> None:
    assert lookup_transform("test_core.Scale") is Scale
    assert lookup_function("test_core.first_char") is first_char
    assert lookup_loss("test_core.L") is L
    m = lookup_model("test_core.tiny")(n_out=5)
    assert isinstance(m, nn.Module)


def test_registered_name_is_a_class_own() -> None:
    assert registered_name(Scale(3.0)) == "test_core.Scale"
    assert registered_name(Scale) == "test_core.Scale"
    assert registered_name(SubScale()) is None  # a subclass is not its parent: it needs its own name
    assert registered_name(first_char) == "test_core.first_char"
    assert registered_name(lambda x: x) is None


def test_model_recipe_remembers_the_arguments() -> None:
    m = tiny(n_out=7)
    assert model_recipe(m) == ("test_core.tiny", {"n_out": 7, "hidden": 4})
    assert model_recipe(nn.Linear(1, 1)) is None
    out = m(torch.zeros(1, 2))
    assert out.shape == (1, 7)


def test_unknown_name_lists_the_registered_ones_with_help() -> None:
    with pytest.raises(KeyError) as e:
        lookup_transform("test_core.Nope")
    assert isinstance(e.value, MissingKeyError)
    msg = str(e.value)
    assert "'test_core.Nope'" in msg and "test_core.Scale" in msg
    assert "\nhelp:" in msg  # a real newline: the message prints as written, not as a repr


def test_a_name_taken_by_another_class_is_refused() -> None:
    with pytest.raises(ValueError, match=r"(?s)already registered.*help:"):

        @register_transform("test_core.Scale")
        class Other(Transform):
            pass


def test_registering_the_same_class_again_is_fine() -> None:
    register_transform("test_core.Scale")(Scale)
    assert lookup_transform("test_core.Scale") is Scale
