"""``neuroshift mrf dictionary|match|train|predict|evaluate``: MR fingerprinting (paper 001).

Heavy imports (torch, numpy, nibabel) stay inside the command functions so ``--help`` is fast.
"""

from __future__ import annotations

import argparse

from .common import plain

EPILOG = """\
examples:
  neuroshift mrf dictionary --out dict.npz                       # representative 35-frame schedule
  neuroshift mrf match frames.nii.gz --dictionary dict.npz --out maps/ --denoise --svd-energy 0.99999
  neuroshift mrf predict frames.nii.gz --out maps/               # shipped demo U-Net (SYNTHETIC-trained)
  neuroshift mrf evaluate --pred maps/ --ref ref/ --out eval/
  neuroshift mrf train --out model/ --work work/ --epochs 100

Frames: a 4D NIfTI with the frames last, or a folder of 3D frames; the schedule lies beside them
(NAME.schedule.json or schedule.json, inside a frames folder schedule.json) or is given with --schedule.
A dictionary or model made for another schedule is refused. Times in ms, flip angles in degrees,
probabilities in percent. Outputs are written atomically on the input's grid.
The shipped schedule is REPRESENTATIVE (within paper 001's ranges), not the scanner's.
"""


def register(sub) -> None:
    p = sub.add_parser("mrf", help="MR fingerprinting: dictionary, matching, U-Net maps, evaluation",
                       description=plain(__doc__.splitlines()[0]), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(dest="mrf_command", metavar="STEP", parser_class=type(p))

    d = s.add_parser("dictionary", help="simulate the T1 x T2* x B1 dictionary of a schedule")
    d.add_argument("--schedule", help="schedule JSON (default: the shipped REPRESENTATIVE schedule)")
    d.add_argument("--out", required=True, help="output .npz")
    d.add_argument("--device", default="auto", help="auto, cpu or cuda")
    d.set_defaults(func=_dictionary)

    m = s.add_parser("match", help="dictionary matching: T1, T2*, B1, PD, quality")
    m.add_argument("frames", help="4D NIfTI (frames last) or folder of 3D frames")
    m.add_argument("--dictionary", required=True, help=".npz from 'mrf dictionary'")
    m.add_argument("--schedule", help="schedule JSON (default: beside the frames)")
    m.add_argument("--mask", help="brain mask (default: voxels with any non-zero frame)")
    m.add_argument("--out", required=True, help="output folder")
    m.add_argument("--denoise", action="store_true", help="MP-PCA (dipy) before matching")
    m.add_argument("--svd-energy", type=float, help="SVD compression keeping this energy fraction, e.g. 0.99999")
    m.add_argument("--memory-mb", type=float, default=256.0, help="score memory per chunk (MB; method scores)")
    m.add_argument("--method", choices=("auto", "tree", "scores"), default="auto",
                   help="tree: exact k-d tree nearest atom (default on CPU); scores: chunked products (default on GPU)")
    m.add_argument("--b1-map", help="measured B1+ map (scale, on the frames' grid): restricts the B1 axis")
    m.add_argument("--threads", type=int, help="cores for the tree search (default: all available)")
    m.add_argument("--device", default="auto")
    m.set_defaults(func=_match)

    t = s.add_parser("train", help="train the regression U-Net on SYNTHETIC phantom frames")
    t.add_argument("--out", required=True, help="model package folder")
    t.add_argument("--work", required=True, help="work folder (checkpoints, log.csv)")
    t.add_argument("--schedule", help="schedule JSON (default: the shipped REPRESENTATIVE schedule)")
    from ..mrf.train import MRFTrainConfig
    from ..training.config import add_arguments

    add_arguments(t, MRFTrainConfig)
    t.add_argument("--resume", action="store_true")
    t.add_argument("--device", default="auto")
    t.set_defaults(func=_train)

    r = s.add_parser("predict", help="T1, T2*, NAWM, GM and lesion probability maps with the U-Net")
    r.add_argument("frames")
    r.add_argument("--model", help="model package (default: the shipped SYNTHETIC-trained demo)")
    r.add_argument("--schedule")
    r.add_argument("--out", required=True)
    r.add_argument("--device", default="auto")
    r.set_defaults(func=_predict)

    e = s.add_parser("evaluate", help="relative deviation, Dice and LDR vs threshold (CSV + PNG)")
    e.add_argument("--pred", required=True, help="folder with T1/T2star/NAWM/GM/lesion .nii.gz")
    e.add_argument("--ref", required=True, help="reference folder (lesion: probability in %% or 0/1 mask)")
    e.add_argument("--mask", help="brain mask for the relative deviation")
    e.add_argument("--out", required=True)
    e.set_defaults(func=_evaluate)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _schedule(path):
    from ..mrf.schedule import load_schedule, representative_schedule

    return load_schedule(path) if path else representative_schedule()


def _dictionary(a) -> int:
    from ..mrf.dictionary import build_dictionary, save_dictionary
    from ..torch_device import resolve_device

    sched = _schedule(a.schedule)
    d = build_dictionary(sched, device=resolve_device(a.device))
    save_dictionary(d, a.out)
    print(f"dictionary {d.grid_shape} x {d.n_frames} frames, schedule {sched.hash[:12]}, built in "
          f"{d.meta['build_seconds']} s -> {a.out}")
    return 0


def _mask(path, ref):
    if not path:
        return None
    from ..io.files import read_volume

    m = read_volume(path)
    ref.require_same_grid(m, "mask and frames")
    return m.data > 0


def _match(a) -> int:
    import json
    import time

    from ..mrf.dictionary import load_dictionary
    from ..mrf.frames_io import find_schedule, read_frames, write_maps
    from ..mrf.match import OUTPUTS, match_volume

    sched = find_schedule(a.frames, a.schedule)
    d = load_dictionary(a.dictionary, sched)
    frames, ref = read_frames(a.frames)
    if frames.shape[-1] != len(sched):
        from ..errors import DimensionError

        raise DimensionError(f"{a.frames}: {frames.shape[-1]} frames, the schedule has {len(sched)}")
    mask = _mask(a.mask, ref)
    b1_map = None
    if a.b1_map:
        from ..io.files import read_volume

        b1v = read_volume(a.b1_map)
        ref.require_same_grid(b1v, "B1 map and frames")
        b1_map = b1v.data
    t0 = time.perf_counter()
    if a.denoise:
        from ..mrf.denoise import mppca_denoise

        frames = mppca_denoise(frames, mask)
    from ..threads import requested_threads

    res = match_volume(frames, d, mask, b1_map=b1_map, svd_energy=a.svd_energy, memory_mb=a.memory_mb,
                       device=None if a.device == "auto" else a.device, method=a.method,
                       threads=requested_threads(a.threads))
    info = {"schedule_hash": sched.hash, "dictionary": str(a.dictionary),
            "denoise": "dipy mppca" if a.denoise else None, "method": a.method, "b1_map": a.b1_map,
            "svd_energy": a.svd_energy, "seconds": round(time.perf_counter() - t0, 2), "units": OUTPUTS}
    write_maps({k: v for k, v in res.items() if k in OUTPUTS}, ref, a.out,
               extra_files={"mrf_match.json": json.dumps(info, indent=1) + "\n"})
    print(f"matched {int((res['index'] >= 0).sum())} voxels in {info['seconds']} s -> {a.out}")
    return 0


def _train(a) -> int:
    from ..mrf.model import save_package
    from ..mrf.train import MRFTrainConfig, config_dict, train_model
    from ..torch_device import resolve_device
    from ..training.config import from_dict, values_from_args

    sched = _schedule(a.schedule)
    cfg = from_dict(MRFTrainConfig, values_from_args(a, MRFTrainConfig))
    model, res = train_model(cfg, sched, a.work, device=resolve_device(a.device), resume=a.resume)
    save_package(model.cpu(), a.out, sched, {
        "notes": "Trained on SYNTHETIC NeuroShift phantom frames; not for clinical use.",
        "training": {"config": config_dict(cfg), "history": res.history}})
    print(f"model -> {a.out} (final: {res.final})")
    return 0


def _predict(a) -> int:
    import json

    from ..mrf.frames_io import find_schedule, read_frames, write_maps
    from ..mrf.model import OUTPUT_UNITS, check_frames, load_package, predict_volume
    from ..mrf.schedule import data_dir
    from ..torch_device import resolve_device

    sched = find_schedule(a.frames, a.schedule)
    dev = resolve_device(a.device)
    manifest, model = load_package(a.model or data_dir() / "demo_model", sched, device=dev)
    frames, ref = read_frames(a.frames)
    check_frames(frames, sched)
    maps = predict_volume(model, frames, device=dev)
    info = {"model": str(a.model or "demo_model"), "model_notes": manifest.get("notes", ""),
            "schedule_hash": sched.hash, "units": OUTPUT_UNITS}
    write_maps(maps, ref, a.out, extra_files={"mrf_predict.json": json.dumps(info, indent=1) + "\n"})
    print(f"maps {', '.join(maps)} -> {a.out}")
    return 0


def _evaluate(a) -> int:
    import json

    from ..io.jsonsafe import json_safe
    from ..mrf.frames_io import read_maps
    from ..mrf.metrics import curves_csv_text, summarise
    from ..mrf.model import OUTPUT_NAMES
    from ..mrf.plots import curves_png

    pred, pref = read_maps(a.pred, OUTPUT_NAMES)
    ref, rref = read_maps(a.ref, OUTPUT_NAMES)
    pref.require_same_grid(rref, "prediction and reference maps")
    mask = _mask(a.mask, rref)
    s = summarise(pred, ref, mask)
    curves = s.pop("curves", None)
    files = {"mrf_evaluate.json": json.dumps(json_safe(s), indent=1) + "\n"}
    if curves is not None:
        files["lesion_curves.csv"] = curves_csv_text(curves)
        files["lesion_curves.png"] = curves_png(curves)
    from ..io.atomic import atomic_dir

    with atomic_dir(a.out) as tmp:
        for name, content in files.items():
            (tmp / name).write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    print(json.dumps(json_safe(s)))
    return 0
