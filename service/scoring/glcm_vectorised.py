"""pyradiomics' GLCM coefficients and MCC with the same formulas, without its Python loops.

With absolute bins (service.scoring.features) a region's grey levels are numbered up to the
highest bin present (Ng about 100 for soft tissue, however few levels are present), and
pyradiomics' GLCM steps loop in Python over that range or over every (i, j, angle):

- `_calculateCoefficients` sums p(i, j) for every k = i + j (2 Ng - 1 masked sums over the whole
  matrix) and every k = |i - j| (Ng more): here one `bincount` each, adding the same elements in
  the same (i, j) order.
- MCC builds Q(i, j) = sum_k p(i, k) p(j, k) / (p_x(i) p_y(k) + eps) one k at a time over an
  (Ng, Ng, angles) array: here one matrix product per angle. Its eigenvalues are taken exactly as
  pyradiomics takes them.
- Cluster shade and prominence raise (i + j - mu_x - mu_y) to the 3rd and 4th power for every
  (i, j, angle); the power (numpy's pow, slow) depends on i + j only, so here it is taken once per
  distinct i + j, from the same operands in the same order, and spread over the (i, j) with that sum.

Every other coefficient and feature is pyradiomics' own. The sums are the same numbers added in
another order or grouping, so values agree to rounding (tests/unit/test_glcm_vectorised.py holds
them to pyradiomics' own class at relative 1e-9). Distance weighting is not used by this service
(ExtractionSettings has no weightingNorm), and pyradiomics' matrix step, which applies it, is
unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _sums_by_index(p_glcm: np.ndarray, index: np.ndarray, size: int) -> np.ndarray:
    """out[v, k, a] = sum of p_glcm[v, i, j, a] over the (i, j) with index[i, j] == k, shape
    (Nv, size, Na): pyradiomics' pxAddy / pxSuby layout."""
    n_v, n_i, n_j, n_a = p_glcm.shape
    per_angle = np.moveaxis(p_glcm, 3, 1).reshape(n_v * n_a, n_i * n_j)  # rows (v, a), columns (i, j) row-major
    bins = (np.arange(n_v * n_a)[:, None] * size + index.ravel()[None, :]).ravel()
    sums = np.bincount(bins, weights=per_angle.ravel(), minlength=n_v * n_a * size)
    return sums.reshape(n_v, n_a, size).transpose(0, 2, 1)


class VectorisedGlcm:
    """Mixin over radiomics.glcm.RadiomicsGLCM (listed before it in the bases)."""

    # Set by pyradiomics' RadiomicsGLCM, the class this is mixed into (declared, not assigned).
    P_glcm: np.ndarray
    coefficients: dict[str, Any]

    def _calculateCoefficients(self) -> None:  # noqa: N802 (pyradiomics' name)
        """pyradiomics' coefficients (glcm.RadiomicsGLCM._calculateCoefficients), pxAddy and pxSuby
        by bincount over the grey levels' sums and differences."""
        ng = self.coefficients["Ng"]
        eps = np.spacing(1)
        levels = self.coefficients["grayLevels"].astype("float")
        i, j = np.meshgrid(levels, levels, indexing="ij", sparse=True)
        p_glcm = self.P_glcm
        self.coefficients.update(
            eps=eps, i=i, j=j,
            kValuesSum=np.arange(2, (ng * 2) + 1, dtype="float"),
            kValuesDiff=np.arange(0, ng, dtype="float"),
            px=p_glcm.sum(2, keepdims=True),
            py=p_glcm.sum(1, keepdims=True),
            ux=np.sum(i[None, :, :, None] * p_glcm, (1, 2), keepdims=True),
            uy=np.sum(j[None, :, :, None] * p_glcm, (1, 2), keepdims=True),
            pxAddy=_sums_by_index(p_glcm, (i + j).astype(np.int64) - 2, 2 * ng - 1),
            pxSuby=_sums_by_index(p_glcm, np.abs(i - j).astype(np.int64), ng),
            HXY=(-1) * np.sum((p_glcm * np.log2(p_glcm + eps)), (1, 2)),
        )

    def _centred_sum_moment(self, power: int) -> np.ndarray:
        """sum over (i, j) of p(i, j) (i + j - mu_x - mu_y)^power per angle, shape (Nv, Na)."""
        i, j = self.coefficients["i"], self.coefficients["j"]
        ux, uy = self.coefficients["ux"][:, :, 0, :], self.coefficients["uy"][:, :, 0, :]  # (Nv, 1, Na)
        sums, where = np.unique(i + j, return_inverse=True)
        powered = (sums[None, :, None] - ux - uy) ** power  # (Nv, distinct sums, Na)
        moment: np.ndarray = np.sum(self.P_glcm * powered[:, where.reshape(i.shape[0], j.shape[1]), :], (1, 2))
        return moment

    def getClusterProminenceFeatureValue(self) -> Any:  # noqa: N802 (pyradiomics' name)
        """pyradiomics' cluster prominence (glcm.RadiomicsGLCM.getClusterProminenceFeatureValue)."""
        return np.nanmean(self._centred_sum_moment(4), 1)

    def getClusterShadeFeatureValue(self) -> Any:  # noqa: N802 (pyradiomics' name)
        """pyradiomics' cluster shade (glcm.RadiomicsGLCM.getClusterShadeFeatureValue)."""
        return np.nanmean(self._centred_sum_moment(3), 1)

    def getMCCFeatureValue(self) -> Any:  # noqa: N802 (pyradiomics' name)
        """pyradiomics' MCC (glcm.RadiomicsGLCM.getMCCFeatureValue): Q by a matrix product per
        angle, then the same eigenvalues, second largest, square root, mean over angles."""
        px = self.coefficients["px"][:, :, 0, :]  # (Nv, Ng, Na)
        py = self.coefficients["py"][:, 0, :, :]  # (Nv, Ng, Na)
        eps = self.coefficients["eps"]
        p = np.moveaxis(self.P_glcm, 3, 1)  # (Nv, Na, i, k)
        weighted = p / (np.moveaxis(px, 2, 1)[:, :, :, None] * np.moveaxis(py, 2, 1)[:, :, None, :] + eps)
        q = weighted @ np.swapaxes(p, 2, 3)  # Q[v, a, i, j] = sum_k p(i, k) p(j, k) / (px(i) py(k) + eps)
        eigenvalues = np.linalg.eigvals(q)
        eigenvalues.sort()
        if eigenvalues.shape[2] < 2:
            return 1  # flat region: pyradiomics' value
        return np.nanmean(np.sqrt(eigenvalues[:, :, -2]), 1).real
