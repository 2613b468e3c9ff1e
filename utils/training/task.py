"""Training tasks: what one step of the shared training loop computes.

The loop in `utils/training/trainer.py` drives a *task*, an `nn.Module` with this contract:

- ``task(images, labels) -> dict[str, Tensor]``: named scalar loss terms, the total under
  ``"loss"`` (the only one back-propagated; the others are logged);
- ``task.model``: the network that is evaluated, frozen/unfrozen and saved;
- ``task.extra_state() -> dict`` / ``task.load_extra_state(dict)``: extra trainable modules
  (e.g. knowledge-distillation connectors) saved under the checkpoint's ``"extra"``;
- ``task.set_memory_format(plan) -> dict`` (optional): lay each network out in the memory
  format the run's `utils.training.speed.SpeedPlan` picks for it, convert the inputs to match
  in ``forward``, and return the config fields that record the formats chosen. A task
  without it trains in the layout its model has.

`SegmentationTask` is supervised training (FastSegFormer, the teacher, comparison models);
`utils/training/distillation.py` holds the distillation task built on the same contract.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from utils.training.speed import SpeedPlan, as_memory_format, to_memory_format

SegLossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class SegmentationTask(nn.Module):
    """Supervised segmentation: model logits vs labels through `seg_loss`.

    `seg_loss` is a callable (logits, target) -> scalar that upsamples logits to the label
    size; when it also has ``terms(logits, target) -> dict`` (utils.training.losses.SegLoss),
    each term is reported. Models with auxiliary heads (``hasattr(model, "aux_losses")``) are
    run with ``return_aux=True`` and their already-weighted auxiliary terms are added to the total.
    """

    def __init__(self, model: nn.Module, seg_loss: SegLossFn) -> None:
        super().__init__()
        self.model = model
        self.seg_loss = seg_loss
        self.memory_format = "nchw"  # of the model and its inputs (set_memory_format)

    def set_memory_format(self, plan: SpeedPlan) -> dict[str, str]:
        """The model (and each batch) in the plan's memory format for it."""
        self.memory_format = plan.memory_format_of(self.model)
        to_memory_format(self.model, self.memory_format)
        return {"memory_format": self.memory_format}

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        # images (B, 3, H, W) float, labels (B, H, W) long with 255 = ignore
        images = as_memory_format(images, self.memory_format)
        aux = None
        if hasattr(self.model, "aux_losses"):
            logits, aux = self.model(images, return_aux=True)
        else:
            logits = self.model(images)  # (B, K, h, w)
        if hasattr(self.seg_loss, "terms"):
            terms = dict(self.seg_loss.terms(logits, labels))
        else:
            terms = {"seg": self.seg_loss(logits, labels)}
        if aux is not None:
            for name, value in self.model.aux_losses(aux, labels, self.seg_loss).items():
                terms[name if name not in terms else f"aux_{name}"] = value
        terms["loss"] = sum(terms.values())
        return terms

    def extra_state(self) -> dict:
        """No extra trainable modules in supervised training."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        if state:
            raise ValueError(
                f"SegmentationTask has no extra modules, but the checkpoint's 'extra' holds "
                f"{sorted(state)} (a distillation checkpoint? resume it with train_distillation.py)"
            )
