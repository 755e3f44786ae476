"""Several collab models trained side by side in one Learner, predicting their mean rating.

Each member is trained on its own error (`MembersMSE`: in training the ensemble returns every member's
prediction, (B, K)), so the members stay as different as if trained apart: averaging two models whose errors
differ beats either alone, while a jointly trained sum does not (measured in benchmarks/collab.py's notes).
In eval it returns the mean, (B,), so metrics, get_preds, predict and recommend see one model.
This follows torchvision's Inception, whose output also differs between training and eval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lamina.core import lookup_model, register_loss, register_model
from lamina.core.registry import lookup_model_check
from lamina.data.losses import BaseLoss

__all__ = ["CollabEnsemble", "MembersMSE", "collab_ensemble"]

_MAX_MEMBERS = 8
# the member factories a recipe may name: a fixed list, so a file cannot pick any registered model
_MEMBERS = ("collab.embedding_dot_bias", "collab.embedding_nn", "collab.item_autorec")


class CollabEnsemble(nn.Module):
    """The mean of several collab models; (B, K) member predictions while training, (B,) in eval."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("CollabEnsemble: no members.\nhelp: pass at least one collab model")
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        preds = torch.stack([m(x) for m in self.members], dim=1)  # (B, K)
        return preds if self.training else preds.mean(1)

    def scores(self, users: Tensor) -> Tensor:
        """The members' mean predicted rating of every item for each user index: (U,) -> (U, n_items)."""
        return torch.stack([m.scores(users) for m in self.members]).mean(0)  # type: ignore[operator]

    def item_factors(self) -> Tensor:
        """The first member's item factors (similar items, the factor plot)."""
        return self.members[0].item_factors()  # type: ignore[operator]

    def item_biases(self) -> Tensor | None:
        return self.members[0].item_biases()  # type: ignore[operator]


@register_loss("collab.MembersMSE")
class MembersMSE(BaseLoss):
    """Mean squared error of each member of a (B, K) ensemble output, averaged; plain MSE on (B,)."""

    def elementwise(self, pred: Tensor, targ: Tensor) -> Tensor:
        t = targ.reshape(len(pred), *([1] * (pred.ndim - 1))).to(pred.dtype)  # (B, 1) against (B, K)
        err = (pred - t) ** 2
        return err.mean(1) if err.ndim == 2 else err


def _member_shapes(shapes: Mapping[str, tuple[int, ...]], k: int) -> dict[str, tuple[int, ...]]:
    prefix = f"members.{k}."
    return {name[len(prefix) :]: s for name, s in shapes.items() if name.startswith(prefix)}


def _check_ensemble(kwargs: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> None:
    members = kwargs.get("members")
    if not isinstance(members, list | tuple) or not 1 <= len(members) <= _MAX_MEMBERS:
        raise ValueError(f"members must be a list of 1 to {_MAX_MEMBERS} models, got {str(members)[:80]}")
    for k, m in enumerate(members):
        if not isinstance(m, Mapping) or set(m) != {"model", "kwargs"} or m["model"] not in _MEMBERS:
            raise ValueError(
                f"member {k} must be {{'model': one of {sorted(_MEMBERS)}, 'kwargs': {{...}}}}, "
                f"got {str(m)[:80]}"
            )
        if not isinstance(m["kwargs"], Mapping):
            raise ValueError(f"member {k}'s kwargs must be a mapping, got {str(m['kwargs'])[:80]}")
        check = lookup_model_check(m["model"])
        if check is not None:
            check(m["kwargs"], _member_shapes(shapes, k) if shapes else {})


@register_model("collab.ensemble", check=_check_ensemble)
def collab_ensemble(members: Sequence[Mapping[str, Any]]) -> CollabEnsemble:
    """A `CollabEnsemble` from JSON: `members` = [{"model": "collab.item_autorec", "kwargs": {...}}, ...]."""
    _check_ensemble({"members": list(members)}, {})
    return CollabEnsemble([lookup_model(m["model"])(**m["kwargs"]) for m in members])
