#!/usr/bin/env python
"""Run the authors' released inference steps with real TensorFlow-Keras on small SYNTHETIC scans (fixture).

Developer step; TensorFlow is NOT a dependency of neuroshift. Use a separate environment::

    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu SimpleITK scipy h5py
    /tmp/tfenv/bin/python dev/make_authors_parity_fixture.py        # writes Testing/fixtures/authors_parity/

What it does, for each task, re-implemented from reading the authors' public scripts (not copied):

* WMH, ``hongweilibran/wmh_ibbmTum`` ``test_tf2.py`` (commit f87d0fb): read FLAIR and T1 with SimpleITK
  (stored array order, no reorientation); brain mask FLAIR >= 30 with holes filled slice by slice
  (``scipy.ndimage.binary_fill_holes``); FLAIR and T1 z-scored inside that one mask; each axial slice
  centre-cropped/zero-padded to 200x200; three networks, ``model.predict(batch_size=1)``, mean; threshold
  0.45; crop/pad undone (zeros); the first and last ``int(0.125 n)`` slices cleared.
* Claustrum, ``hongweilibran/claustrum_multi_view`` ``test_two_views.py`` (commit 99e85a3): read the T1
  (stored order); mask T1 >= 10, holes filled per slice; z-score; coronal view = ``transpose(1, 0, 2)``,
  axial = the array; slices centre-cropped/padded to 180x180 with the volume minimum; the first/last
  ``int(0.2 n)`` slices of each view not predicted; three networks per view, mean; each view back to the
  volume with every unpredicted voxel set to the minimum of that view's mean prediction; mean of the
  two views; threshold 0.40.

The scans are small SYNTHETIC head-like volumes stored in LPS orientation (SimpleITK identity direction),
with a dark hole inside the head (tests hole filling) and a detached bright blob (the release keeps it:
no largest-component step); one in-plane size is above the crop size and one below (crop and pad both
run). The networks have the authors' layout (``dev/make_keras_fixture.py``'s builder, the release's
200x200 / 180x180 input sizes) at tiny widths with seeded random weights; the last bias is shifted so
that the ensemble's median in-brain probability sits near the threshold (masks are neither empty nor
full). Outputs: ``<task>_*.nii.gz`` (inputs), ``<view>_<i>.weights.h5`` (Keras 3 weights),
``<task>_expected.npz`` (``probability`` float32 and ``label`` uint8 in stored array order, plus versions).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "dev"))
OUT = ROOT / "Testing" / "fixtures" / "authors_parity"

#: tiny widths of the released layout (encoder, decoder)
WIDTHS = ((2, 3, 4, 4, 6), (4, 4, 3, 2))


# ----------------------------------------------------------------------------- SYNTHETIC scans
def synthetic_head(shape_kji, seed: int, scale: float, hole: float, blob: float) -> np.ndarray:
    """int16 SYNTHETIC head: textured ellipsoid (~scale), dark hole inside, detached blob, low background."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(shape_kji, dtype=np.float32)
    nk, nj, ni = shape_kji
    r = ((j - nj / 2) / (0.45 * nj)) ** 2 + ((i - ni / 2) / (0.42 * ni)) ** 2 + ((k - nk / 2) / (0.7 * nk)) ** 2
    vol = np.full(shape_kji, 3.0, dtype=np.float32)
    inside = r <= 1
    vol[inside] = scale * (1.0 + 0.25 * np.sin(j[inside] / 6.0) * np.cos(i[inside] / 3.0 + k[inside] / 4.0))
    vol[inside] += rng.normal(0, 0.03 * scale, int(inside.sum()))
    hole_r = ((j - nj / 2) / (0.08 * nj)) ** 2 + ((i - ni / 2) / (0.12 * ni)) ** 2
    vol[(hole_r <= 1) & inside] = hole
    blob_r = ((j - 0.04 * nj) / 2.5) ** 2 + ((i - 0.1 * ni) / 1.5) ** 2
    vol[blob_r <= 1] = blob
    return np.round(vol).astype(np.int16)


def write_lps(sitk, array, spacing_ijk, path):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(s) for s in spacing_ijk))
    img.SetOrigin((-10.0, 25.0, -5.0))
    img.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))  # LPS-stored: i -> left, j -> posterior, k -> superior
    sitk.WriteImage(img, str(path))


# ----------------------------------------------------------------------------- the releases' steps
def fill_per_slice(mask):
    from scipy import ndimage

    out = np.zeros(mask.shape, dtype=np.float32)
    for z in range(mask.shape[0]):
        out[z] = ndimage.binary_fill_holes(mask[z])
    return out


def centre_crop_pad(stack, rows, cols, value):
    """(N, H, W) -> (N, rows, cols): pad (extra after) or crop (start (H - rows) // 2) with ``value``."""
    n, h, w = stack.shape
    out = np.full((n, rows, cols), value, dtype=np.float32)
    sh, dh = (slice((h - rows) // 2, (h - rows) // 2 + rows), slice(0, rows)) if h >= rows else \
        (slice(0, h), slice((rows - h) // 2, (rows - h) // 2 + h))
    sw, dw = (slice((w - cols) // 2, (w - cols) // 2 + cols), slice(0, cols)) if w >= cols else \
        (slice(0, w), slice((cols - w) // 2, (cols - w) // 2 + w))
    out[:, dh, dw] = stack[:, sh, sw]
    return out, (sh, dh, sw, dw)


def back_to_volume(pred, h, w, index, value):
    """Inverse of :func:`centre_crop_pad` for (N, rows, cols) predictions; uncovered pixels = ``value``."""
    sh, dh, sw, dw = index
    out = np.full((pred.shape[0], h, w), value, dtype=np.float32)
    out[:, sh, sw] = pred[:, dh, dw]
    return out


def calibrate(models, x, threshold, where):
    """Shift each network's last bias so its median logit over ``where`` pixels equals logit(threshold)."""
    target = np.log(threshold / (1 - threshold))
    for m in models:
        p = np.clip(np.asarray(m.predict(x, batch_size=8, verbose=0))[..., 0], 1e-6, 1 - 1e-6)
        logit = np.log(p / (1 - p))
        w = m.get_weights()
        w[-1] = (w[-1] + target - np.median(logit[where])).astype(np.float32)
        m.set_weights(w)


def wmh(keras, sitk, rng, out: Path) -> None:
    rows = cols = 200
    shape = (10, 203, 20)  # [k, j, i]: rows 203 > 200 (crop), columns 20 < 200 (pad)
    flair_raw = synthetic_head(shape, 1, 150.0, 12.0, 90.0)
    t1_raw = synthetic_head(shape, 2, 80.0, 40.0, 20.0)
    spacing = (0.96, 0.96, 3.0)
    write_lps(sitk, flair_raw, spacing, out / "wmh_FLAIR.nii.gz")
    write_lps(sitk, t1_raw, spacing, out / "wmh_T1.nii.gz")
    flair = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "wmh_FLAIR.nii.gz"))).astype(np.float32)
    t1 = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "wmh_T1.nii.gz"))).astype(np.float32)
    mask = fill_per_slice(flair >= 30) == 1
    flair = (flair - np.mean(flair[mask])) / np.std(flair[mask])
    t1 = (t1 - np.mean(t1[mask])) / np.std(t1[mask])
    fx, index = centre_crop_pad(flair, rows, cols, 0.0)
    tx, _ = centre_crop_pad(t1, rows, cols, 0.0)
    x = np.stack([fx, tx], axis=-1)
    models = []
    for n in range(3):
        from make_keras_fixture import build_keras_unet, randomise

        m = build_keras_unet(keras, 2, WIDTHS[0], WIDTHS[1], 5, rows, cols)
        randomise(m, rng)
        models.append(m)
    inside = np.zeros(x.shape[:3], dtype=bool)
    inside[:, index[1], index[3]] = mask[:, index[0], index[2]]
    calibrate(models, x, 0.45, inside)
    pred = np.mean([np.asarray(m.predict(x, batch_size=1, verbose=0))[..., 0] for m in models], axis=0)
    prob = back_to_volume(pred, shape[1], shape[2], index, 0.0)
    cut = int(shape[0] * 0.125)
    prob[:cut] = 0
    prob[shape[0] - cut:] = 0
    label = (prob > 0.45).astype(np.uint8)
    for n, m in enumerate(models):
        save_weights(m, out / f"wmh_{n}.weights.h5")
    save_expected(out / "wmh_expected.npz", prob, label, keras)


#: the claustrum release's views: name -> transpose of the stored [k, j, i] array (coronal first, as released)
CLAUSTRUM_VIEWS = {"coronal": (1, 0, 2), "axial": (0, 1, 2)}


def claustrum_zscore(arr, threshold=10.0):
    """The release's normalisation: mask ``arr >= 10`` with holes filled per slice, z-score inside it."""
    mask = fill_per_slice(arr >= threshold) == 1
    arr = arr - np.mean(arr[mask])
    return arr / np.std(arr[mask]), mask


def claustrum_view_input(z, order, size=180, per=0.2):
    """One view's network input ``(N, size, size, 1)`` (slabs dropped, min padding) and how to go back."""
    varr = np.transpose(z, order)
    n = varr.shape[0]
    cut = int(n * per)
    x, index = centre_crop_pad(varr.astype(np.float32), size, size, float(np.min(varr)))
    return x[cut:n - cut, ..., None], (index, varr.shape, cut)


def claustrum_view_back(pred, order, back):
    """A view's mean prediction back to the stored array; unpredicted voxels = its minimum (as released)."""
    index, vshape, cut = back
    fill = float(np.min(pred))
    full = np.full(vshape, fill, dtype=np.float32)
    full[cut:vshape[0] - cut] = back_to_volume(pred, vshape[1], vshape[2], index, fill)
    return np.transpose(full, np.argsort(order))


def claustrum_release(arr, models_by_view, size=180, per=0.2, batch_size=1):
    """The released claustrum inference on a stored ``[k, j, i]`` array: fused probability (threshold it at 0.40)."""
    z, _ = claustrum_zscore(arr)
    probs = []
    for view, order in CLAUSTRUM_VIEWS.items():
        x, back = claustrum_view_input(z, order, size, per)
        pred = np.mean([np.asarray(m.predict(x, batch_size=batch_size, verbose=0))[..., 0]
                        for m in models_by_view[view]], axis=0)
        probs.append(claustrum_view_back(pred, order, back))
    return ((probs[0] + probs[1]) / 2).astype(np.float32)


def claustrum(keras, sitk, rng, out: Path) -> None:
    size = 180
    shape = (20, 182, 16)  # [k, j, i], 1 mm: axial slices 182x16 (crop rows, pad columns); coronal 20x16
    raw = synthetic_head(shape, 3, 100.0, 6.0, 60.0)
    write_lps(sitk, raw, (1.0, 1.0, 1.0), out / "claustrum_T1.nii.gz")
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "claustrum_T1.nii.gz")))
    from make_keras_fixture import build_keras_unet, randomise

    z, mask = claustrum_zscore(arr)
    models_by_view = {}
    for view, order in CLAUSTRUM_VIEWS.items():
        x, (index, _, cut) = claustrum_view_input(z, order, size)
        vmask = np.transpose(mask, order)[cut:cut + x.shape[0]]
        inside = np.zeros(x.shape[:3], dtype=bool)
        inside[:, index[1], index[3]] = vmask[:, index[0], index[2]]
        models = []
        for _ in range(3):
            m = build_keras_unet(keras, 1, WIDTHS[0], WIDTHS[1], 3, size, size)
            randomise(m, rng)
            models.append(m)
        calibrate(models, x, 0.40, inside)
        models_by_view[view] = models
    prob = claustrum_release(arr, models_by_view, size)
    for view, models in models_by_view.items():
        for k, m in enumerate(models):
            save_weights(m, out / f"{view}_{k}.weights.h5")
    label = (prob > 0.40).astype(np.uint8)
    save_expected(out / "claustrum_expected.npz", prob, label, keras)


def save_weights(model, path: Path) -> None:
    """``model.save_weights`` (Keras 3 ``.weights.h5``), then the same groups, datasets and attributes
    rewritten with h5py's newest file format (compact group storage): 106 kB -> 44 kB per file, content unchanged."""
    import h5py

    model.save_weights(str(path))
    tmp = path.with_name(path.name + ".tmp")

    def copy(src, dst):
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for key, item in src.items():
            if isinstance(item, h5py.Group):
                copy(item, dst.create_group(key))
            else:
                ds = dst.create_dataset(key, data=item[()])
                for a, v in item.attrs.items():
                    ds.attrs[a] = v

    with h5py.File(path, "r") as src, h5py.File(tmp, "w", libver="latest") as dst:
        copy(src, dst)
    os.replace(tmp, path)


def save_expected(path, prob, label, keras):
    import tensorflow as tf

    np.savez_compressed(path, probability=prob.astype(np.float32), label=label,
                        software=np.array(f"tensorflow {tf.__version__}, keras {keras.__version__}"))
    print(f"{path.name}: shape {prob.shape}, label voxels {int(label.sum())}/{label.size}, "
          f"probability {prob.min():.4f}..{prob.max():.4f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--seed", type=int, default=15)
    args = ap.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        import SimpleITK as sitk
        import tensorflow as tf
    except ImportError as exc:
        print(f"{exc}; see this script's docstring", file=sys.stderr)
        return 2
    keras = tf.keras
    args.out.mkdir(parents=True, exist_ok=True)
    wmh(keras, sitk, np.random.default_rng(args.seed), args.out)
    claustrum(keras, sitk, np.random.default_rng(args.seed + 1), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
