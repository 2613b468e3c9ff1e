"""Fidelity against the original FastSegFormer (``../shared/reference``, see its README).

Each case holds the original model's state-dict layout, a fixed input and the original's
outputs (features in ``fork_feat`` order, logits last), recorded on the CPU in float32 with the
weights loaded before ``eval()``. We rebuild the weights with ``synth_weights.load_case``, load
them through ``nets.load_checkpoint`` (the path a published checkpoint takes), and compare
every output with the README's criterion:
``np.allclose(ours, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())``.

The synthetic weights make some deep activations of the EfficientFormerV2 cases large (up to
~4e3), where float32 rounding alone moves an output by ~1e-3 relative; those cases run in
float64, a check that does not depend on the order of rounding (the README: the original
itself in float64 passes every case).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import nets
from nets.backbones import convert_backbone_state_dict
from nets.profile import count_params

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"

# case -> (registry name, options)
CASES = {
    "fastsegformer_p": ("fastsegformer_p", {}),
    "fastsegformer_e": ("fastsegformer_e", {}),
    "fastsegformer_p_ppm_noirb": ("fastsegformer_p", {"pyramid": "ppm", "irb": False}),
    "fastsegformer_e_ppm_noirb": ("fastsegformer_e", {"pyramid": "ppm", "irb": False}),
    "teacher_swin_t_att_unet_512": ("swin_t_att_unet", {}),
}
EFFICIENTFORMER_CASES = [case for case, (name, _) in CASES.items() if name == "fastsegformer_e"]
# Above this magnitude of a reference output, compare in float64 (see the module docstring).
LARGE_ACTIVATION = 100.0


def _load_case(case: str):
    if not (REFERENCE / "synth_weights.py").is_file():
        pytest.skip(f"{REFERENCE} not found: the shared reference cases are not beside the repo")
    spec = importlib.util.spec_from_file_location("synth_weights", REFERENCE / "synth_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_case(str(REFERENCE / "cases" / case))


def _loaded_model(case: str, state: dict, num_classes: int) -> torch.nn.Module:
    name, options = CASES[case]
    torch.manual_seed(0)
    model = nets.build_model(name, num_classes=num_classes, **options)
    report = nets.load_checkpoint(model, state)
    assert report.layout == "original", report
    assert not report.missing and not report.skipped, report
    return model


def _compare(outputs: list[torch.Tensor], reference: list[np.ndarray]) -> list[str]:
    failures = []
    for i, (ours, ref) in enumerate(zip(outputs, reference, strict=True)):
        ours = ours.detach().double().numpy()
        if ours.shape != ref.shape:
            failures.append(f"output {i}: shape {ours.shape}, expected {ref.shape}")
            continue
        atol = 1e-3 * np.abs(ref).max()
        if not np.allclose(ours, ref, rtol=1e-3, atol=atol):
            err = np.abs(ours - ref).max()
            failures.append(f"output {i} {ref.shape}: max |diff| {err:.3g} (atol {atol:.3g})")
    return failures


@pytest.mark.parametrize("case", list(CASES))
def test_reference_case(case: str) -> None:
    meta, state, inputs, reference = _load_case(case)
    model = _loaded_model(case, state, meta["num_classes"])
    # Parameter count equals the original's (nothing extra such as KD connectors counted).
    assert count_params(model) == meta["num_params"]

    large = max(float(np.abs(ref).max()) for ref in reference) > LARGE_ACTIVATION
    dtype = torch.float64 if large else torch.float32
    assert large == (case in EFFICIENTFORMER_CASES)  # the README's large-activation cases
    model = model.to(dtype).eval()  # dtype first: timm caches the -E attention biases in eval
    with torch.no_grad():
        features, logits = model(inputs.to(dtype), return_features=True)
    outputs = [*features, logits]
    assert len(outputs) == meta["num_outputs"]
    failures = _compare(outputs, reference)
    assert not failures, f"{case} ({dtype}): " + "; ".join(failures)


@pytest.mark.parametrize("case", EFFICIENTFORMER_CASES)
def test_efficientformer_index_tables_equal_the_originals(case: str) -> None:
    """The original stores EfficientFormerV2's ``attention_bias_idxs`` (which attention bias
    each pair of tokens reads); timm computes its own and the loader drops the stored ones.
    They must be the same tables, or the loaded biases would land on the wrong token pairs."""
    meta, state, _, _ = _load_case(case)
    model = _loaded_model(case, state, meta["num_classes"])
    tables = {k: v for k, v in state.items() if k.endswith(".attention_bias_idxs")}
    # 4 attention blocks (stages 3 and 4) + the attention downsampling into stage 4
    assert len(tables) == 5
    for key, table in tables.items():
        # the table's module, found through the key of the biases it indexes
        biases = key.removeprefix("common_backbone.").replace(
            "attention_bias_idxs", "attention_biases"
        )
        mapped, _, _ = convert_backbone_state_dict(
            {biases: state[f"common_backbone.{biases}"]}, model.backbone
        )
        (ours,) = mapped
        module = model.backbone.get_submodule(ours.rsplit(".", 1)[0])
        assert module.attention_bias_idxs.shape == table.shape, key
        assert torch.equal(module.attention_bias_idxs, torch.as_tensor(table).long()), key
