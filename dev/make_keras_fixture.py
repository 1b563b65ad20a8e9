#!/usr/bin/env python
"""Build the released U-Net layout in real Keras, save .h5 files and Keras' outputs as test fixtures.

This is a developer step; Keras is NOT a runtime dependency of neuroshift. Install it outside the
project's environment, for example::

    python -m pip install --target /tmp/kerasdeps keras                  # Keras 3 (torch backend)
    PYTHONPATH=/tmp/kerasdeps KERAS_BACKEND=torch python dev/make_keras_fixture.py
    python -m pip install --target /tmp/tfdeps tensorflow-cpu tf-keras   # TensorFlow: Keras 2 files too
    PYTHONPATH=/tmp/tfdeps KERAS_BACKEND=tensorflow python dev/make_keras_fixture.py   # committed keras3 files
    PYTHONPATH=/tmp/tfdeps python dev/make_keras_fixture.py --keras tf_keras           # committed keras2 files

The committed fixtures were made with TensorFlow's convolutions (not torch's), so the 1e-4 comparison
tests the padding, cropping, upsampling and kernel-layout conventions, not one library against itself.

Each run writes, under ``Testing/fixtures/keras/`` (or ``--out``), for each network:
``<name>_<flavour>.h5`` (full model, HDF5), ``<name>_<flavour>_weights.h5`` (weights only; Keras 3 requires
the ``.weights.h5`` suffix) and ``<name>_<flavour>.npz`` (the input batch ``x``, NHWC, and Keras' output ``y``).
The fixture networks are reduced-width variants of the released layout (same depth, kernels, 4x4 conv,
crop/pad on an input size not divisible by 16), so the committed files stay small; ``--full`` adds the
full-size claustrum network (2,494,529 parameters, ~10 MB: do not commit it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: name -> (in_channels, encoder, decoder, first_kernel, input H, W)
NETWORKS = {
    "claustrum_w8": (1, (4, 8, 12, 16, 32), (16, 12, 8, 4), 3, 45, 53),
    "wmh_w16": (2, (4, 6, 8, 16, 32), (16, 8, 6, 4), 5, 37, 40),
}
FULL = {"claustrum_full": (1, (32, 64, 96, 128, 256), (128, 96, 64, 32), 3, 180, 180)}


def build_keras_unet(keras, in_channels, encoder, decoder, first_kernel, height, width):
    """The released 2D U-Net graph, written with the Keras functional API (channels last)."""
    L = keras.layers
    depth = len(decoder)

    def conv(filters, kernel, x):
        return L.Conv2D(filters, kernel, padding="same", activation="relu")(x)

    def crop_amounts(big, small):
        d = big - small
        return d // 2, d - d // 2  # odd difference: the extra pixel at the bottom/right

    inputs = keras.Input(shape=(height, width, in_channels))
    x, skips, sizes = inputs, [], []
    h, w = height, width
    for level, filters in enumerate(encoder):
        k = first_kernel if level == 0 else 3
        x = conv(filters, k, x)
        x = conv(filters, first_kernel if level == 0 else (4 if level == depth - 1 else 3), x)
        if level < depth:
            skips.append(x)
            sizes.append((h, w))
            x = L.MaxPooling2D(pool_size=(2, 2))(x)
            h, w = h // 2, w // 2
    for filters, skip, (sh, sw) in zip(decoder, reversed(skips), reversed(sizes)):
        x = L.UpSampling2D(size=(2, 2))(x)
        h, w = 2 * h, 2 * w
        skip = L.Cropping2D(cropping=(crop_amounts(sh, h), crop_amounts(sw, w)))(skip)
        x = L.Concatenate(axis=-1)([x, skip])
        x = conv(filters, 3, x)
        x = conv(filters, 3, x)
    x = L.ZeroPadding2D(padding=(crop_amounts(height, h), crop_amounts(width, w)))(x)
    outputs = L.Conv2D(1, 1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs)


def randomise(model, rng):
    """He-scaled normal kernels and non-zero biases, so that every weight matters in the comparison."""
    weights = []
    for wt in model.get_weights():
        if wt.ndim == 4:
            fan_in = wt.shape[0] * wt.shape[1] * wt.shape[2]
            weights.append((rng.standard_normal(wt.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))
        else:
            weights.append((rng.standard_normal(wt.shape) * 0.1).astype(np.float32))
    model.set_weights(weights)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keras", choices=("keras", "tf_keras"), default="keras",
                    help="keras (Keras 3, any backend) or tf_keras (Keras 2 file layout, needs TensorFlow)")
    ap.add_argument("--out", type=Path, default=ROOT / "Testing" / "fixtures" / "keras")
    ap.add_argument("--full", action="store_true", help="also the full-size claustrum network (large files)")
    ap.add_argument("--only-full", action="store_true", help="only the full-size claustrum network")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args(argv)
    if args.keras == "keras":
        os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        keras = importlib.import_module(args.keras)
    except ImportError:
        print(f"{args.keras} is not installed; see this script's docstring", file=sys.stderr)
        return 2
    major = int(keras.__version__.split(".")[0])
    flavour = f"keras{major}"
    networks = dict(FULL) if args.only_full else {**NETWORKS, **(FULL if args.full else {})}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (cin, enc, dec, k1, height, width) in networks.items():
        rng = np.random.default_rng(args.seed)
        model = build_keras_unet(keras, cin, enc, dec, k1, height, width)
        randomise(model, rng)
        x = rng.standard_normal((2, height, width, cin)).astype(np.float32)
        y = np.asarray(model.predict(x, verbose=0), dtype=np.float32)
        stem = args.out / f"{name}_{flavour}"
        model.save(str(stem) + ".h5")
        model.save_weights(str(stem) + ("_weights.weights.h5" if major >= 3 else "_weights.h5"))
        backend = keras.backend.backend() if hasattr(keras.backend, "backend") else "tensorflow"
        np.savez_compressed(str(stem) + ".npz", x=x, y=y, keras=np.array(f"{args.keras} {keras.__version__} {backend}"))
        print(f"{name}: {model.count_params():,} parameters, input {x.shape}, output range "
              f"{y.min():.3f}..{y.max():.3f}, {args.keras} {keras.__version__} ({backend} backend) -> {stem}.*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
