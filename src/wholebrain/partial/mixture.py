"""The intensity model of the tissue classifier: a Gaussian mixture with partial-volume classes.

Three pure tissues (CSF, GM, WM: Gaussians of their own mean and standard deviation) and the two
partial-volume mixtures between neighbours in intensity, CSF/GM and GM/WM (as in FAST and in
Santago & Gage 1993). A mixed voxel holds a fraction ``a`` of the brighter tissue, uniform in
[0, 1], plus Gaussian noise, so its density is a difference of two normal CDFs divided by the
distance between the two means. Each mixture is split at ``a = 0.5`` into a darker and a brighter
half, so the model has seven components

    0 CSF, 1 CSF/GM (a < 0.5), 2 CSF/GM (a >= 0.5), 3 GM,
    4 GM/WM (a < 0.5), 5 GM/WM (a >= 0.5), 6 WM

and a half belongs to the tissue that fills most of the voxel (:data:`COMPONENT_TISSUE`); a
classifier then needs no extra merging step.

Why partial-volume components (``benchmarks/partial.py``, Mindboggle dev subjects): with three
Gaussians only, the long dark tail of white matter (partial volume with grey matter) widens the GM
Gaussian and tight brain masks with almost no CSF make EM spend the CSF class on dark grey matter;
the seven-component model keeps GM and WM narrow and finds the CSF class only where there is CSF.

The model is fitted by EM on a histogram (intensities are 1D, so every EM step costs a few
thousand operations whatever the image size); voxels then look up their bin.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import ndtr

__all__ = [
    "COMPONENT_TISSUE",
    "Mixture",
    "best_mixture",
    "fit_mixture",
    "initial_mixture",
    "initial_mixtures",
    "is_plausible",
    "log_likelihood",
]

log = logging.getLogger(__name__)

N_TISSUES = 3  # CSF, GM, WM (labels 1, 2, 3)
# Tissue index (0 CSF, 1 GM, 2 WM) of each of the seven components, see the module docstring.
COMPONENT_TISSUE = np.array([0, 0, 1, 1, 1, 2, 2])
_PURE = (0, 3, 6)  # component index of each pure tissue
_MIXED = ((0, 1), (1, 2))  # tissue pairs of the two partial-volume mixtures
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_MIN_PURE_SHARE = 1e-3  # a pure class with less weight keeps its mean and spread (no data)
_TINY = 1e-30  # floor of densities and weights before the logarithm


@dataclass(frozen=True)
class Mixture:
    """Parameters of the seven-component intensity model (intensity units of the fitted data).

    Attributes:
        means: (3,) float64 mean intensity of pure CSF, GM, WM.
        stds: (3,) float64 standard deviation of pure CSF, GM, WM.
        weights: (7,) float64 prior probability of each component (sums to 1).
    """

    means: np.ndarray  # (3,) pure CSF, GM, WM means
    stds: np.ndarray  # (3,) pure CSF, GM, WM standard deviations
    weights: np.ndarray  # (7,) component priors, sum 1

    def component_log_density(self, values: np.ndarray) -> np.ndarray:
        """log p(value | component) for each of the seven components.

        Args:
            values: (N,) intensities.

        Returns:
            (N, 7) float64 log densities.
        """
        values = np.asarray(values, dtype=np.float64)
        out = np.empty((values.size, 7))
        for tissue, component in enumerate(_PURE):
            z = (values - self.means[tissue]) / self.stds[tissue]
            out[:, component] = -0.5 * z * z - math.log(self.stds[tissue]) - _LOG_SQRT_2PI
        for pair, (dark, bright) in enumerate(_MIXED):
            # Noise of a mixed voxel: between the two pure ones (their variances averaged).
            std = math.sqrt(0.5 * (self.stds[dark] ** 2 + self.stds[bright] ** 2))
            low, high = self.means[dark], self.means[bright]
            middle = 0.5 * (low + high)
            span = max(high - low, 1e-6)
            for half, (start, stop) in enumerate(((low, middle), (middle, high))):
                # Uniform mean in [start, stop] (density 1/span over the whole mixture, so the
                # two halves together integrate to 1 when weighted equally) convolved with noise.
                density = (ndtr((values - start) / std) - ndtr((values - stop) / std)) / span
                out[:, 1 + 3 * pair + half] = np.log(np.maximum(2.0 * density, _TINY))
        return out

    def tissue_log_likelihood(self, values: np.ndarray) -> np.ndarray:
        """log(sum over a tissue's components of weight x density), per tissue.

        Args:
            values: (N,) intensities.

        Returns:
            (N, 3) float64: CSF, GM, WM log joint likelihoods (priors included).
        """
        joint = self.component_log_density(values) + np.log(np.maximum(self.weights, _TINY))
        out = np.empty((joint.shape[0], N_TISSUES))
        for tissue in range(N_TISSUES):
            out[:, tissue] = np.logaddexp.reduce(joint[:, tissue == COMPONENT_TISSUE], axis=1)
        return out

    def component_centres(self) -> np.ndarray:
        """(7,) mean intensity of each component (a half mixture: the middle of its range)."""
        csf, gm, wm = self.means
        return np.array(
            [csf, 0.75 * csf + 0.25 * gm, 0.25 * csf + 0.75 * gm, gm,
             0.75 * gm + 0.25 * wm, 0.25 * gm + 0.75 * wm, wm]
        )  # fmt: skip


# Starting points of EM: (CSF, GM) means as fractions of the WM mean. T1-weighted GM/WM ratios
# run from about 0.55 (MPRAGE at 3 T) to 0.85 (older or noisier sequences); CSF is darker still.
_START_RATIOS = ((0.25, 0.55), (0.3, 0.7), (0.35, 0.8))
# A fit is a T1-weighted brain only if CSF < GM < WM with at least this ratio between neighbours
# (a "CSF" class at 0.9 x GM is grey matter split in two, as on a tightly masked brain)...
_MIN_CONTRAST = 1.1
# ...GM/WM within T1-weighted range (Mindboggle's MPRAGE: 0.52; older sequences up to ~0.85),
# CSF darker than half of WM (0.15-0.35 on the dev data, ICBM152 and IXI)...
_GM_WM_RATIO = (0.4, 0.95)
_MAX_CSF_WM_RATIO = 0.5
# ...and pure GM and WM each explain at least this share of the brain (otherwise the
# partial-volume components have replaced a tissue, e.g. on a heavily interpolated image).
_MIN_TISSUE_WEIGHT = 0.02
_SCREEN_ITERATIONS = 40  # EM steps from each start before the best is kept


def initial_mixtures(counts: np.ndarray, centres: np.ndarray) -> list[Mixture]:
    """Starting points for EM from the histogram of brain intensities of a T1-weighted image.

    White matter starts at the brightest clear peak of the smoothed histogram (and, as noise
    can merge GM and WM into one bump, also at its upper half-maximum); grey matter at the
    tallest peak between 0.3 and 0.85 of it, and at fixed T1 contrast ratios; CSF darker.
    k-means or percentiles do not work as a start on tightly masked images, whose darkest third
    is grey matter, not CSF.

    Args:
        counts: (B,) voxels per histogram bin.
        centres: (B,) bin centres, increasing.

    Returns:
        Starting mixtures, the histogram-peak one first.
    """
    smooth = ndimage.gaussian_filter1d(counts.astype(np.float64), max(1.0, counts.size / 100))
    inner = smooth[1:-1]
    is_peak = (inner >= smooth[:-2]) & (inner > smooth[2:]) & (inner > 0.1 * smooth.max())
    peaks = np.flatnonzero(is_peak) + 1
    if peaks.size == 0:
        peaks = np.array([int(np.argmax(smooth))])
    wm = float(centres[peaks[-1]])
    # Noise can merge GM and WM into one bump whose peak lies below the WM mean: WM also starts
    # at the bump's upper half-maximum.
    above = np.flatnonzero((centres > wm) & (smooth < 0.5 * smooth[peaks[-1]]))
    wm_edge = float(centres[above[0]]) if above.size else wm
    grey = peaks[(centres[peaks] >= 0.3 * wm) & (centres[peaks] <= 0.85 * wm)]
    starts = []
    if grey.size:
        gm = float(centres[grey[np.argmax(smooth[grey])]])
        starts.append(_start(0.25 * wm, gm, wm))
    for top in sorted({wm, wm_edge}):
        starts.extend(_start(csf * top, gm * top, top) for csf, gm in _START_RATIOS)
    return starts


def initial_mixture(counts: np.ndarray, centres: np.ndarray) -> Mixture:
    """The first of :func:`initial_mixtures` (the histogram-peak start)."""
    return initial_mixtures(counts, centres)[0]


def _start(csf: float, gm: float, wm: float) -> Mixture:
    weights = np.array([0.1] + [0.15] * 6)
    return Mixture(
        means=np.array([csf, gm, wm]),
        stds=np.full(3, 0.05 * wm),
        weights=weights / weights.sum(),
    )


def _constrain(means: np.ndarray, stds: np.ndarray) -> None:
    """Keep a pure class narrower than half the gap to its neighbour (in place).

    Without this, a pure class with few voxels (CSF in a tight brain mask) turns into a broad
    "outlier" Gaussian overlapping grey matter, and its partial-volume components then swallow
    the dark voxels that CSF should have.
    """
    gaps = np.diff(means)
    for tissue in range(N_TISSUES):
        near = [gaps[i] for i in (tissue - 1, tissue) if 0 <= i < gaps.size and gaps[i] > 0]
        if near:
            stds[tissue] = min(stds[tissue], 0.5 * min(near))


def is_plausible(mixture: Mixture) -> bool:
    """Whether a fit is that of a T1-weighted brain (see the constants above for the rules)."""
    csf, gm, wm = mixture.means
    low, high = _GM_WM_RATIO
    ordered = 0 < csf * _MIN_CONTRAST <= gm and low * wm <= gm <= high * wm
    ordered = ordered and csf <= _MAX_CSF_WM_RATIO * wm
    present = min(mixture.weights[_PURE[1]], mixture.weights[_PURE[2]]) >= _MIN_TISSUE_WEIGHT
    return bool(ordered and present)


def log_likelihood(counts: np.ndarray, centres: np.ndarray, mixture: Mixture) -> float:
    """Log-likelihood of the histogram under the mixture (bins as points)."""
    joint = mixture.component_log_density(centres) + np.log(np.maximum(mixture.weights, _TINY))
    return float(counts @ np.logaddexp.reduce(joint, axis=1))


def best_mixture(
    counts: np.ndarray, centres: np.ndarray, *, partial_volume: bool = True
) -> Mixture:
    """EM from every start of :func:`initial_mixtures`; the most likely plausible fit.

    Args:
        counts: (B,) voxels per bin.
        centres: (B,) bin centres, increasing, evenly spaced.
        partial_volume: False: no partial-volume components (3 Gaussians).

    Returns:
        The fit with the highest likelihood among the plausible ones (or among all when none is).
    """
    # A short run from every start ranks them; the best goes on to convergence.
    fits = [
        fit_mixture(counts, centres, start, max_iterations=_SCREEN_ITERATIONS,
                    partial_volume=partial_volume)
        for start in initial_mixtures(counts, centres)
    ]  # fmt: skip
    scored = [(log_likelihood(counts, centres, fit), is_plausible(fit), fit) for fit in fits]
    pool = [item for item in scored if item[1]] or scored
    best = max(pool, key=lambda item: item[0])[2]
    log.debug("mixture starts: %s", [(round(s, 1), p, f.means.round(3)) for s, p, f in scored])
    return fit_mixture(counts, centres, best, partial_volume=partial_volume)


def fit_mixture(
    counts: np.ndarray,
    centres: np.ndarray,
    start: Mixture,
    *,
    max_iterations: int = 200,
    tolerance: float = 1e-4,
    partial_volume: bool = True,
) -> Mixture:
    """EM on a histogram: component weights from all components, means/spreads from pure ones.

    The means and standard deviations of the pure tissues are re-estimated from the voxels the
    pure components explain (a generalised EM step: the partial-volume components follow them).
    A pure tissue with almost no weight (CSF in a tight brain mask) keeps its parameters.

    Args:
        counts: (B,) voxels per bin.
        centres: (B,) bin centres, increasing, evenly spaced.
        start: starting parameters.
        max_iterations: EM steps at most.
        tolerance: stop when no mean moves by more than this times the WM mean.
        partial_volume: False: the partial-volume components get weight 0 (3 Gaussians).

    Returns:
        The fitted mixture.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    bin_width = float(centres[1] - centres[0]) if centres.size > 1 else 1.0
    means, stds, weights = start.means.copy(), start.stds.copy(), start.weights.copy()
    if not partial_volume:
        weights[[1, 2, 4, 5]] = 0.0
        weights /= weights.sum()
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 (the count is logged)
        mixture = Mixture(means, stds, weights)
        joint = mixture.component_log_density(centres) + np.log(np.maximum(weights, _TINY))
        joint -= joint.max(axis=1, keepdims=True)
        posterior = np.exp(joint)
        posterior *= (counts / posterior.sum(axis=1))[:, None]
        per_component = posterior.sum(axis=0)
        weights = per_component / total
        previous = means.copy()
        for tissue, component in enumerate(_PURE):
            n = per_component[component]
            if n <= _MIN_PURE_SHARE * total:
                continue
            mean = float(posterior[:, component] @ centres / n)
            variance = float(posterior[:, component] @ (centres - mean) ** 2 / n)
            means[tissue] = mean
            stds[tissue] = max(math.sqrt(variance), 2.0 * bin_width)
        _constrain(means, stds)
        if np.max(np.abs(means - previous)) < tolerance * abs(means[2]):
            break
    log.debug("mixture EM: %d iterations, means %s, stds %s", iterations, means, stds)
    return Mixture(means, stds, weights)
