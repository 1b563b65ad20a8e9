"""Keras (TensorFlow) twin of DiamondGAN's released generator for bench/synthesize.py; run with an interpreter
that has TensorFlow (not NeuroShift's venv):

    /tmp/tfenv/bin/python bench/_keras_diamondgan.py --threads 2 --rounds 3 --batch 8 --volume-slices 16

Layout as in the authors' Keras model (read, not copied): image and domain streams c7s1-48 (reflection
padding) -> d72 -> d144 -> 9 residual blocks of 144, concatenated, u72 -> u48 -> c7s1-3, tanh; instance norm
with scale and offset as ``GroupNormalization(groups=channels)``. Prints one JSON line: parameter count (must
be 7,218,987 like ours), median seconds of one 240x240 slice (``predict_on_batch``), of a batch and of a
volume of ``--volume-slices`` slices (``predict``, batch ``--batch``), TensorFlow version and threads;
``--cpu-time``: process CPU seconds instead of wall time (bench/synthesize.py --cpu-time, a busy machine).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def build(keras, h: int = 240, w: int = 240, blocks: int = 9):
    from keras import layers, ops

    class ReflectPad(layers.Layer):
        def __init__(self, p, **kw):
            super().__init__(**kw)
            self.p = p

        def call(self, x):
            return ops.pad(x, [[0, 0], [self.p, self.p], [self.p, self.p], [0, 0]], mode="reflect")

    def norm(c):
        return layers.GroupNormalization(groups=c, epsilon=1e-5)

    def c7(x, c):
        return layers.ReLU()(norm(c)(layers.Conv2D(c, 7)(ReflectPad(3)(x))))

    def down(x, c):
        return layers.ReLU()(norm(c)(layers.Conv2D(c, 3, strides=2, padding="same")(x)))

    def res(x):
        y = layers.ReLU()(norm(144)(layers.Conv2D(144, 3)(ReflectPad(1)(x))))
        y = norm(144)(layers.Conv2D(144, 3)(ReflectPad(1)(y)))
        return layers.Add()([x, y])

    def stream(x):
        x = down(down(c7(x, 48), 72), 144)
        for _ in range(blocks):
            x = res(x)
        return x

    img = keras.Input((h, w, 3))
    dom = keras.Input((h, w, 1))
    x = layers.Concatenate()([stream(img), stream(dom)])
    for c in (72, 48):
        x = layers.ReLU()(norm(c)(layers.Conv2DTranspose(c, 3, strides=2, padding="same")(x)))
    out = layers.Activation("tanh")(layers.Conv2D(3, 7)(ReflectPad(3)(x)))
    return keras.Model([img, dom], out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--volume-slices", type=int, default=16)
    ap.add_argument("--cpu-time", action="store_true", help="time with process CPU seconds (busy machine)")
    args = ap.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    m = build(keras)
    rng = np.random.default_rng(0)
    x1 = [rng.uniform(-1, 1, (1, 240, 240, 3)).astype("float32"), np.full((1, 240, 240, 1), 1.0, "float32")]
    xb = [rng.uniform(-1, 1, (args.batch, 240, 240, 3)).astype("float32"),
          np.full((args.batch, 240, 240, 1), 1.0, "float32")]
    xv = [rng.uniform(-1, 1, (args.volume_slices, 240, 240, 3)).astype("float32"),
          np.full((args.volume_slices, 240, 240, 1), 1.0, "float32")]

    def timed(fn, rounds):
        fn()
        ts = []
        for _ in range(rounds):
            t0 = clock()
            fn()
            ts.append(clock() - t0)
        return float(np.median(ts))
    res = {"params": int(m.count_params()), "tensorflow": tf.__version__, "keras": keras.__version__,
           "threads": args.threads, "clock": "process CPU s" if args.cpu_time else "wall s",
           "slice_s": timed(lambda: m.predict_on_batch(x1), args.rounds),
           "batch_s": timed(lambda: m.predict_on_batch(xb), args.rounds), "batch": args.batch}
    t0 = time.perf_counter()
    m.predict(xv, batch_size=args.batch, verbose=0)
    res["volume_s"] = time.perf_counter() - t0
    res["volume_slices"] = args.volume_slices
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
