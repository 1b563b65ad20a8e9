"""Keras (TensorFlow) twin of DiamondGAN's released generator for bench/synthesize.py; run with an interpreter
that has TensorFlow (not NeuroShift's venv):

    /tmp/tfenv/bin/python bench/_keras_diamondgan.py --threads 2 --rounds 3 --batch 8 --volume-slices 16

Layout and padding as in the authors' Keras model (hongweilibran/DiamondGAN@22a69c39 train.py:242-355, read,
not copied): image and domain streams c7s1-48 (reflection padding 3, 'valid' conv) -> d72 -> d144 (3x3 stride-2
``padding='same'``) -> 9 residual blocks of 144 (3x3 ``padding='same'``: zero padding), concatenated,
u72 -> u48 (``Conv2DTranspose(3, strides=2, padding='same')``) -> c7s1-3, tanh; instance norm with scale and
offset as ``GroupNormalization(groups=channels)``. Layers are named after NeuroShift's parameter names
(``image_stream.9.body.0`` -> ``image_stream_9_body_0``). Prints one JSON line: parameter count (must be
7,218,987 like ours), median seconds of one 240x240 slice (``predict_on_batch``), of a batch and of a volume
of ``--volume-slices`` slices (``predict``, batch ``--batch``), TensorFlow version and threads; ``--cpu-time``:
process CPU seconds instead of wall time (bench/synthesize.py --cpu-time, a busy machine).

``--serve``: after the model is built and warm, print one JSON line (parameters, versions), then answer each
stdin line ``slice`` / ``batch`` with one JSON line ``{"s": seconds}`` of one ``predict_on_batch`` (``quit``
ends): bench/synthesize.py interleaves these rounds with its own, so load changes hit both alike.

``--parity IN.npz OUT.npz``: build the twin at the size, width and block count of the weights in ``IN``
(NeuroShift state-dict names and layouts, ``x`` and ``dm`` inputs NHWC), load them, write the output to
``OUT`` (bench/synthesize.py: ours with the released options against this).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def build(keras, h: int = 240, w: int = 240, blocks: int = 9, base: int = 48, out_channels: int = 3):
    from keras import layers, ops
    w0, w1, w2 = base, 3 * base // 2, 3 * base

    class ReflectPad(layers.Layer):
        def __init__(self, p, **kw):
            super().__init__(**kw)
            self.p = p

        def call(self, x):
            return ops.pad(x, [[0, 0], [self.p, self.p], [self.p, self.p], [0, 0]], mode="reflect")

    def norm(c, name):
        return layers.GroupNormalization(groups=c, epsilon=1e-5, name=name.replace(".", "_"))

    def conv(c, k, name, **kw):
        return layers.Conv2D(c, k, name=name.replace(".", "_"), **kw)

    def c7(x, c, p):
        return layers.ReLU()(norm(c, f"{p}.1")(conv(c, 7, f"{p}.0")(ReflectPad(3)(x))))

    def down(x, c, p, i):
        return layers.ReLU()(norm(c, f"{p}.{i + 1}")(conv(c, 3, f"{p}.{i}", strides=2, padding="same")(x)))

    def res(x, p):
        y = layers.ReLU()(norm(w2, f"{p}.body.1")(conv(w2, 3, f"{p}.body.0", padding="same")(x)))
        y = norm(w2, f"{p}.body.4")(conv(w2, 3, f"{p}.body.3", padding="same")(y))
        return layers.Add()([x, y])

    def stream(x, p):
        x = down(down(c7(x, w0, p), w1, p, 3), w2, p, 6)
        for b in range(blocks):
            x = res(x, f"{p}.{9 + b}")
        return x

    img = keras.Input((h, w, 3))
    dom = keras.Input((h, w, 1))
    x = layers.Concatenate()([stream(img, "image_stream"), stream(dom, "domain_stream")])
    for c, i in ((w1, 0), (w0, 3)):
        up = layers.Conv2DTranspose(c, 3, strides=2, padding="same", name=f"decoder_{i}")
        x = layers.ReLU()(norm(c, f"decoder.{i + 1}")(up(x)))
    out = layers.Activation("tanh")(conv(out_channels, 7, "decoder.6")(ReflectPad(3)(x)))
    return keras.Model([img, dom], out)


def parity(keras, src: str, dst: str) -> dict:
    """Load NeuroShift weights (state-dict names, torch layouts) into the twin and run it on ``x``, ``dm``."""
    import numpy as np
    data = dict(np.load(src))
    x, dm = data.pop("x"), data.pop("dm")
    blocks = len({k.split(".")[1] for k in data if k.startswith("image_stream.") and ".body." in k})
    base = int(data["image_stream.0.weight"].shape[0])
    m = build(keras, x.shape[1], x.shape[2], blocks, base, int(data["decoder.6.weight"].shape[0]))
    for layer in m.layers:
        key = layer.name.replace("_stream", "-stream").replace("_", ".").replace("-stream", "_stream")
        if f"{key}.weight" not in data:
            continue
        wt, b = data[f"{key}.weight"], data[f"{key}.bias"]
        if isinstance(layer, keras.layers.GroupNormalization):
            layer.set_weights([wt, b])
        else:  # torch (out, in, kh, kw) conv / (in, out, kh, kw) transposed conv -> Keras (kh, kw, ., .)
            layer.set_weights([wt.transpose(2, 3, 1, 0), b])
    y = np.asarray(m.predict_on_batch([x, dm]))
    np.save(dst, y)
    return {"params": int(m.count_params()), "blocks": blocks, "base": base, "out_shape": list(y.shape)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--volume-slices", type=int, default=16)
    ap.add_argument("--cpu-time", action="store_true", help="time with process CPU seconds (busy machine)")
    ap.add_argument("--parity", nargs=2, metavar=("IN_NPZ", "OUT_NPY"), help="run NeuroShift weights, no timing")
    ap.add_argument("--serve", action="store_true", help="time one call per stdin line (interleaved rounds)")
    args = ap.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    if args.parity:
        print(json.dumps(parity(keras, *args.parity)), flush=True)
        return
    m = build(keras)
    rng = np.random.default_rng(0)
    x1 = [rng.uniform(-1, 1, (1, 240, 240, 3)).astype("float32"), np.full((1, 240, 240, 1), 1.0, "float32")]
    xb = [rng.uniform(-1, 1, (args.batch, 240, 240, 3)).astype("float32"),
          np.full((args.batch, 240, 240, 1), 1.0, "float32")]
    xv = [rng.uniform(-1, 1, (args.volume_slices, 240, 240, 3)).astype("float32"),
          np.full((args.volume_slices, 240, 240, 1), 1.0, "float32")]

    info = {"params": int(m.count_params()), "tensorflow": tf.__version__, "keras": keras.__version__,
            "threads": args.threads, "clock": "process CPU s" if args.cpu_time else "wall s", "batch": args.batch}
    if args.serve:
        import sys
        inputs = {"slice": x1, "batch": xb}
        for v in inputs.values():
            m.predict_on_batch(v)
        print(json.dumps(info), flush=True)
        for line in sys.stdin:
            what = line.strip()
            if what not in inputs:
                break
            t0 = clock()
            m.predict_on_batch(inputs[what])
            print(json.dumps({"s": clock() - t0}), flush=True)
        return

    def timed(fn, rounds):
        fn()
        ts = []
        for _ in range(rounds):
            t0 = clock()
            fn()
            ts.append(clock() - t0)
        return float(np.median(ts))
    res = {**info, "slice_s": timed(lambda: m.predict_on_batch(x1), args.rounds),
           "batch_s": timed(lambda: m.predict_on_batch(xb), args.rounds)}
    t0 = time.perf_counter()
    m.predict(xv, batch_size=args.batch, verbose=0)
    res["volume_s"] = time.perf_counter() - t0
    res["volume_slices"] = args.volume_slices
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
