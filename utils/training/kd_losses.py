"""Knowledge-distillation losses: FastSegFormer's P&KL (logits) and NFD (features), DIST and CWD.

Paper: "FastSegFormer: A knowledge distillation-based method for real-time semantic
segmentation of surface defects in navel oranges", Computers and Electronics in Agriculture
217, 108604 (2024), section on multi-resolution knowledge distillation. The student sees the
image at 224x224, the teacher at 512x512; every teacher map is resized to the student's size.

P&KL (pixel-wise KL + pixel MSE), with q = softmax(logits / t) over the classes and p = logits:

    L_pkl = 1/(Ws Hs) * ( k1 * t^2 * sum_i KL(q_t_i || q_s_i) + (1 - k1) * sum_i MSE(p_s_i, p_t_i) )

NFD (normalised feature distillation), summed over the paired feature maps:

    L_nfd = sum_pairs 1/(Ws Hs) * || Normal(F_t) - Normal(F_s) ||_2

How this module resolves what the formulas leave open (docs/distillation.md has the reasoning):

- The sums run over the Ws*Hs pixels of ONE image, so each term is a per-pixel mean for one
  image; the batch is averaged (mean over B). Loss values do not depend on the batch size, and
  under DDP the gradient average over ranks equals the global-batch mean.
- MSE(p_s_i, p_t_i) is the mean over the K classes of the squared logit difference at pixel i,
  so the MSE term is ``F.mse_loss`` over (B, K, H, W).
- KL direction: the paper writes KL(q_s || q_t); we compute KL(q_t || q_s) = sum_k q_t (log q_t -
  log q_s), teacher as the target distribution. That is what the original code computes
  (``F.kl_div(log q_s, q_t)`` evaluates sum q_t (log q_t - log q_s)) and the direction for which
  Hinton's t^2 factor compensates the 1/t^2 scaling of the gradient (q_s - q_t) / t.
- Normal standardises each channel of each image over (H, W): (F - mean) / sqrt(var + eps) with
  the biased variance (instance normalisation without affine). Each map is standardised at its
  own resolution, then the teacher map is resized and the student map goes through its 1x1
  connector. Standardising the student before the connector makes the loss invariant to any
  per-channel positive affine change of either map, whatever the connector.
- ||.||_2 is the Frobenius norm over (C, H, W) of one image (not squared), then averaged over B.
- Teacher tensors are targets: they are detached here, so no gradient ever reaches the teacher.
- Resizing is bilinear with align_corners=True, as the original code resizes teacher maps.

Two logit losses published since, offered beside the paper's (docs/distillation.md):

DIST (Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022), with
Y = softmax(logits / tau) over the classes and d_p(u, v) = 1 - Pearson(u, v):

    L_dist = tau^2 * ( beta * L_inter + gamma * L_intra )
    L_inter = mean over pixels i of d_p(Y_s[:, i], Y_t[:, i])       (across the K classes)
    L_intra = mean over classes k of d_p(Y_s[k, :], Y_t[k, :])      (across the pixels)

CWD (Shu et al., "Channel-wise Knowledge Distillation for Dense Prediction", ICCV 2021), with
phi(y)_c = softmax over the H*W positions of channel c of y / T:

    L_cwd = T^2 / C * sum_c KL( phi(y_t)_c || phi(y_s)_c )

How this module resolves what those formulas leave open:

- Teacher logits are resized to the student's size and detached, as for P&KL.
- DIST's pixels: each pixel is an instance (the reference segmentation code flattens the
  pixels). The intra-class Pearson runs over the pixels of ONE image, then classes and images
  are averaged, so the loss does not depend on the batch size or on the split over DDP ranks;
  the reference code pools the pixels of its whole local batch (the same for one image).
- Pearson(u, v) = <u - mean u, v - mean v> / (||u - mean u|| ||v - mean v|| + eps), eps 1e-8
  as the reference code, so a constant vector has correlation 0 (distance 1), not NaN.
- CWD: KL(teacher || student) per channel, summed over the channels, divided by C, times T^2,
  averaged over the batch (the reference code divides the batch sum by N*C).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def resize_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of (B, C, H, W) to (B, C, *size); returned as is when already that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def _check_logits(student_logits: Tensor, teacher_logits: Tensor) -> None:
    if student_logits.dim() != 4 or teacher_logits.dim() != 4:
        raise ValueError(
            f"logits must be (B, K, H, W); got student {tuple(student_logits.shape)}, "
            f"teacher {tuple(teacher_logits.shape)}"
        )
    if student_logits.shape[:2] != teacher_logits.shape[:2]:
        raise ValueError(
            "student and teacher logits must agree in batch size and number of classes; got "
            f"student {tuple(student_logits.shape)}, teacher {tuple(teacher_logits.shape)}"
        )


def pixel_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0) -> Tensor:
    """Mean over pixels of KL(q_t || q_s), averaged over the batch (no t^2 factor).

    Args:
        student_logits: (B, K, Hs, Ws).
        teacher_logits: (B, K, Ht, Wt); bilinearly resized to (Hs, Ws), detached.
        temperature: t in q = softmax(logits / t) over K.

    Returns:
        scalar: 1/B sum_b 1/(Hs Ws) sum_i sum_k q_t (log q_t - log q_s).
    """
    _check_logits(student_logits, teacher_logits)
    teacher_logits = resize_to(teacher_logits.detach(), student_logits.shape[-2:])
    log_q_s = F.log_softmax(student_logits / temperature, dim=1)  # (B, K, Hs, Ws)
    log_q_t = F.log_softmax(teacher_logits / temperature, dim=1)  # (B, K, Hs, Ws)
    kl = (log_q_t.exp() * (log_q_t - log_q_s)).sum(dim=1)  # (B, Hs, Ws) per-pixel KL
    return kl.mean()  # mean over pixels, then over images (all images have Hs*Ws pixels)


def pixel_mse(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Mean squared logit difference over (B, K, Hs, Ws); teacher resized to (Hs, Ws), detached.

    Args:
        student_logits: (B, K, Hs, Ws).
        teacher_logits: (B, K, Ht, Wt).

    Returns:
        scalar: 1/B sum_b 1/(Hs Ws) sum_i MSE(p_s_i, p_t_i), MSE a mean over the K classes.
    """
    _check_logits(student_logits, teacher_logits)
    teacher_logits = resize_to(teacher_logits.detach(), student_logits.shape[-2:])
    return F.mse_loss(student_logits, teacher_logits)


def pkl_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 2.0,
    k1: float = 0.5,
) -> Tensor:
    """P&KL: k1 * t^2 * pixel_kl + (1 - k1) * pixel_mse (paper's logit distillation).

    Args:
        student_logits: (B, K, Hs, Ws).
        teacher_logits: (B, K, Ht, Wt); resized to the student's size, detached.
        temperature: t (paper 2).
        k1: weight of the KL part against the MSE part (paper 0.5).

    Returns:
        scalar tensor.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= k1 <= 1.0:
        raise ValueError(f"k1 must be in [0, 1], got {k1}")
    kl = pixel_kl(student_logits, teacher_logits, temperature)
    mse = pixel_mse(student_logits, teacher_logits)
    return k1 * temperature**2 * kl + (1.0 - k1) * mse


def standardize(features: Tensor, eps: float = 1e-5) -> Tensor:
    """Normal(F): each channel of each image to zero mean, unit variance over (H, W).

    Args:
        features: (B, C, H, W).
        eps: added to the (biased) variance, so constant channels give 0 instead of NaN.

    Returns:
        (B, C, H, W).
    """
    mean = features.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    var = features.var(dim=(2, 3), keepdim=True, unbiased=False)  # (B, C, 1, 1)
    return (features - mean) / torch.sqrt(var + eps)


def nfd_pair(
    student_features: Tensor,
    teacher_features: Tensor,
    connector: nn.Module | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """NFD of one feature pair: 1/(Hs Ws) ||Normal(F_t) - connector(Normal(F_s))||_2, batch mean.

    Args:
        student_features: (B, Cs, Hs, Ws).
        teacher_features: (B, Ct, Ht, Wt); standardised, resized to (Hs, Ws), detached.
        connector: maps Cs -> Ct channels (a learned 1x1 conv); None requires Cs == Ct.
        eps: see `standardize`.

    Returns:
        scalar: mean over b of the Frobenius norm over (Ct, Hs, Ws), divided by Hs*Ws.
    """
    if student_features.dim() != 4 or teacher_features.dim() != 4:
        raise ValueError(
            f"feature maps must be (B, C, H, W); got student {tuple(student_features.shape)}, "
            f"teacher {tuple(teacher_features.shape)}"
        )
    hs, ws = student_features.shape[-2:]
    target = resize_to(standardize(teacher_features.detach(), eps), (hs, ws))  # (B, Ct, Hs, Ws)
    mapped = standardize(student_features, eps)  # (B, Cs, Hs, Ws)
    if connector is not None:
        mapped = connector(mapped)  # (B, Ct, Hs, Ws)
    if mapped.shape != target.shape:
        raise ValueError(
            f"student map {tuple(student_features.shape)} maps to {tuple(mapped.shape)} but the "
            f"teacher map resized is {tuple(target.shape)}; give a connector from "
            f"{student_features.shape[1]} to {teacher_features.shape[1]} channels"
        )
    distance = (target - mapped).flatten(1).norm(dim=1)  # (B,) L2 over (Ct, Hs, Ws)
    return distance.mean() / (hs * ws)


def nfd_loss(
    student_features: Sequence[Tensor],
    teacher_features: Sequence[Tensor],
    connectors: Sequence[nn.Module | None] | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """NFD summed over paired maps: sum_j nfd_pair(student_features[j], teacher_features[j]).

    Args:
        student_features: list of (B, Cs_j, Hs_j, Ws_j), already selected and ordered in pairs.
        teacher_features: list of (B, Ct_j, Ht_j, Wt_j), same length.
        connectors: one module (or None) per pair; None for all means no connectors.
        eps: see `standardize`.

    Returns:
        scalar tensor.
    """
    if len(student_features) != len(teacher_features) or not student_features:
        raise ValueError(
            "need the same non-zero number of student and teacher maps; got "
            f"{len(student_features)} and {len(teacher_features)}"
        )
    if connectors is None:
        connectors = [None] * len(student_features)
    if len(connectors) != len(student_features):
        raise ValueError(f"{len(connectors)} connectors for {len(student_features)} feature pairs")
    terms = [
        nfd_pair(s, t, c, eps)
        for s, t, c in zip(student_features, teacher_features, connectors, strict=True)
    ]
    return torch.stack(terms).sum()


def pearson_distance(x: Tensor, y: Tensor, dim: int, eps: float = 1e-8) -> Tensor:
    """d_p(x, y) = 1 - Pearson correlation of x and y along `dim` (DIST's distance).

    Args:
        x, y: tensors of the same shape.
        dim: the dimension the correlation runs along (removed from the result).
        eps: added to the product of the norms, so a constant vector gives distance 1.

    Returns:
        1 - r, in [0, 2]; invariant to x -> a x + b, y -> c y + d for a, c > 0.
    """
    xc = x - x.mean(dim=dim, keepdim=True)
    yc = y - y.mean(dim=dim, keepdim=True)
    r = (xc * yc).sum(dim=dim) / (xc.norm(dim=dim) * yc.norm(dim=dim) + eps)
    return 1.0 - r


def dist_terms(
    student_logits: Tensor, teacher_logits: Tensor, tau: float = 1.0
) -> tuple[Tensor, Tensor]:
    """DIST's two relations (without tau^2 or weights): (L_inter, L_intra).

    Args:
        student_logits: (B, K, Hs, Ws).
        teacher_logits: (B, K, Ht, Wt); bilinearly resized to (Hs, Ws), detached.
        tau: temperature of Y = softmax(logits / tau) over the K classes.

    Returns:
        L_inter: mean over the B*Hs*Ws pixels of 1 - Pearson across the K classes.
        L_intra: mean over the B images and K classes of 1 - Pearson across the Hs*Ws pixels.
    """
    _check_logits(student_logits, teacher_logits)
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    teacher_logits = resize_to(teacher_logits.detach(), student_logits.shape[-2:])
    y_s = F.softmax(student_logits / tau, dim=1).flatten(2)  # (B, K, Hs*Ws)
    y_t = F.softmax(teacher_logits / tau, dim=1).flatten(2)  # (B, K, Hs*Ws)
    inter = pearson_distance(y_s, y_t, dim=1)  # (B, Hs*Ws): per pixel, across classes
    intra = pearson_distance(y_s, y_t, dim=2)  # (B, K): per class, across the image's pixels
    return inter.mean(), intra.mean()


def dist_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    tau: float = 1.0,
    beta: float = 1.0,
    gamma: float = 1.0,
) -> Tensor:
    """DIST: tau^2 * (beta * L_inter + gamma * L_intra) (see `dist_terms`).

    Args:
        student_logits: (B, K, Hs, Ws).
        teacher_logits: (B, K, Ht, Wt); resized to the student's size, detached.
        tau, beta, gamma: temperature and the weights of the inter- and intra-class relations
            (the reference segmentation code: 1, 1, 1).

    Returns:
        scalar tensor; 0 when the student's class probabilities are a positive affine function
        of the teacher's, in particular when the logits agree.
    """
    inter, intra = dist_terms(student_logits, teacher_logits, tau)
    return tau**2 * (beta * inter + gamma * intra)


def cwd_loss(student_logits: Tensor, teacher_logits: Tensor, tau: float = 4.0) -> Tensor:
    """CWD: T^2 / C * sum_c KL(phi_t_c || phi_s_c), phi = softmax over positions of map / T.

    Args:
        student_logits: (B, C, Hs, Ws) (C = the classes when distilling logits).
        teacher_logits: (B, C, Ht, Wt); bilinearly resized to (Hs, Ws), detached.
        tau: the temperature T (the reference segmentation runs on logits: 4).

    Returns:
        scalar: mean over the B images of T^2 / C * sum over channels of the KL divergence of
        the student's spatial distribution from the teacher's.
    """
    _check_logits(student_logits, teacher_logits)
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    teacher_logits = resize_to(teacher_logits.detach(), student_logits.shape[-2:])
    log_phi_s = F.log_softmax(student_logits.flatten(2) / tau, dim=2)  # (B, C, Hs*Ws)
    log_phi_t = F.log_softmax(teacher_logits.flatten(2) / tau, dim=2)  # (B, C, Hs*Ws)
    kl = (log_phi_t.exp() * (log_phi_t - log_phi_s)).sum(dim=2)  # (B, C) per channel
    return tau**2 * kl.mean(dim=1).mean()  # sum over C / C, then the batch mean
