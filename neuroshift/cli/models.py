"""``neuroshift models``: list installed packages, import the authors' Keras .h5 files, verify a package."""

from __future__ import annotations

import argparse
import json

EPILOG = """\
examples:
  neuroshift models list
  neuroshift models import-keras models/axial_*.h5 models/coronal_*.h5 --task claustrum --name claustrum
  neuroshift models import-keras FLAIR_T1/0.h5 FLAIR_T1/1.h5 FLAIR_T1/2.h5 --task wmh --out wmh-keras/
  neuroshift models verify claustrum

Packages are folders with manifest.json and one .safetensors file per network (SHA-256 in the manifest).
Named packages are looked up in $NEUROSHIFT_MODELS, ~/.neuroshift/models, then the bundled models.
import-keras reads Keras 2 or 3 HDF5 files (full models or weights only) with h5py: no TensorFlow needed.
Files named <view>_<i>.h5 go to that view; otherwise they are split over --views in the order given.
--task sets what the authors' released inference does (orientation, brain mask, crop, slabs, threshold;
wmh: test_tf2.py, claustrum: test_two_views.py); the manifest's settings_source names the release of
each setting.
"""


def register(sub) -> None:
    p = sub.add_parser("models", help="list, import (Keras .h5) and verify model packages",
                       description="Manage model packages (segmentation; synthesis packages are listed and verified too).", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", parser_class=type(p))
    pl = msub.add_parser("list", help="installed and bundled model packages")
    pl.add_argument("--json", action="store_true", help="print JSON instead of a table")
    pl.set_defaults(func=run_list)
    pi = msub.add_parser("import-keras", help="convert the authors' Keras .h5 files into a package",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    pi.add_argument("h5", nargs="+", metavar="H5", help="Keras .h5 files (one per network)")
    pi.add_argument("--task", choices=("claustrum", "claustrum-neonatal", "wmh"), required=True,
                    help="sets views, channels, preprocessing, threshold and slab removal of the released pipeline")
    pi.add_argument("--views", metavar="V1,V2", help="views in order (default: claustrum axial,coronal; wmh axial)")
    pi.add_argument("--channels", metavar="C1,C2", help="input channel names in order (default from the task, "
                                                        "e.g. FLAIR,T1; FLAIR for 1-channel WMH networks)")
    dest = pi.add_mutually_exclusive_group()
    dest.add_argument("--out", metavar="DIR", help="write the package to DIR")
    dest.add_argument("--name", metavar="NAME", help="install as ~/.neuroshift/models/NAME (default: the task name)")
    pi.add_argument("--orientation", metavar="CODE",
                    help="orientation of the networks' training data: 'stored' (feed the file's stored array order) "
                         "or an axis code such as LPS or RAS (default: what the authors' release does: wmh LPS, "
                         "claustrum stored; the manifest's settings_source names the release)")
    pi.add_argument("--version", default="1", help="model version recorded in the manifest (default 1)")
    pi.add_argument("--description", help="manifest description (default from the task)")
    pi.add_argument("--force", action="store_true", help="replace an existing package")
    pi.set_defaults(func=run_import)
    pv = msub.add_parser("verify", help="check a package's manifest, SHA-256 hashes and weights")
    pv.add_argument("package", metavar="DIR|NAME", help="package folder or installed name")
    pv.set_defaults(func=run_verify)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_list(args) -> int:
    from ..segment.registry import list_models, search_dirs

    models = list_models()
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    if not models:
        print("no model packages found; searched: " + ", ".join(str(d) for _, d in search_dirs()))
        return 0
    print(f"{'name':<24} {'task':<10} {'views / inputs':<22} {'demo':<5} {'source':<8} path")
    for m in models:
        if "error" in m:
            print(f"{m['name']:<24} {'?':<10} {'BROKEN: ' + m['error'][:60]}")
            continue
        if m.get("kind") == "synthesis":
            views = ",".join(m["inputs"]) + f" -> {m['target']}"
        else:
            views = ",".join(m["views"]) + f" x{m['models_per_view']}"
        print(f"{m['name']:<24} {m['task']:<10} {views:<22} {'yes' if m['demo'] else 'no':<5} {m['source']:<8} "
              f"{m['path']}")
    return 0


def _split(text):
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def run_import(args) -> int:
    from pathlib import Path

    from ..errors import InputError
    from ..segment.keras_import import import_keras
    from ..segment.registry import user_models_dir
    from ..segment.unet import count_parameters

    target = Path(args.out) if args.out else user_models_dir() / (args.name or args.task)
    if target.exists() and not args.force:
        raise InputError(f"{target} already exists; use --force to replace it")
    from .common import refuse_overwriting_inputs

    refuse_overwriting_inputs([("H5", p) for p in args.h5], [], replaced_folders=[("the package folder", target)])
    overrides = {"version": str(args.version)}
    if args.description:
        overrides["description"] = args.description
    out = import_keras(args.h5, target, task=args.task, views=_split(args.views),
                       input_channels=_split(args.channels), orientation=args.orientation, overrides=overrides)
    from ..segment.package import load_package

    pkg = load_package(out, device="cpu")
    n = count_parameters(next(iter(pkg.models.values()))[0])
    pre = pkg.manifest.get("preprocessing", {}) or {}
    print(f"{out}: task {pkg.task}, views {', '.join(f'{v} x{len(ms)}' for v, ms in pkg.models.items())}, "
          f"channels {', '.join(pkg.input_channels)}, {n:,} parameters per network; orientation "
          f"{pre.get('orientation')}, threshold {pkg.manifest.get('threshold')}, slabs "
          f"{pkg.manifest.get('slab_fraction')} ({pkg.manifest.get('slab_fill', 'zero')}); settings follow "
          f"{(pkg.manifest.get('settings_source') or {}).get('release', 'the task defaults')}")
    return 0


def run_verify(args) -> int:
    import torch

    from ..segment.package import load_package
    from ..segment.registry import find_model, synthesis_manifest
    from ..segment.unet import count_parameters

    path = find_model(args.package)
    if synthesis_manifest(path) is not None:
        return _verify_synthesis(path)
    pkg = load_package(path, device="cpu")
    m = pkg.manifest
    h, w = (m.get("preprocessing", {}) or {}).get("crop_hw") or (64, 64)
    x = torch.zeros(1, len(pkg.input_channels), int(h), int(w))
    with torch.inference_mode():
        for view, nets in pkg.models.items():
            for net in nets:
                y = net(x)
                if y.shape[-2:] != x.shape[-2:] or not torch.isfinite(y).all():
                    from ..errors import IntegrityError

                    raise IntegrityError(f"{path}: a network of view '{view}' gives a bad output")
    n = count_parameters(next(iter(pkg.models.values()))[0])
    print(f"{path}: OK ({len(m['files'])} file(s), SHA-256 verified; task {m['task']}; "
          f"{m['architecture']['name']} with {n:,} parameters; views "
          f"{', '.join(f'{v} x{len(ms)}' for v, ms in pkg.models.items())}; channels {', '.join(pkg.input_channels)}"
          f"{'; DEMO model' if m.get('demo') else ''})")
    return 0


def _verify_synthesis(path) -> int:
    """Verify a synthesis package: its weights load into the manifest's network (safetensors, no pickle), and a
    zero input of the model's size multiple gives a finite output of the input's size."""
    import torch

    from ..errors import IntegrityError
    from ..segment.unet import count_parameters
    from ..synthesis.diamondgan import availability_tensor
    from ..synthesis.inference import load_package, size_multiple

    model = load_package(path, device="cpu")
    k = size_multiple(model)
    n_in = len(model.inputs)
    # 2D: 4 multiples per side, so the bottleneck keeps > 1 pixel for instance norm
    x = torch.zeros((1, n_in) + ((k,) * 3 if model.task == "vt1c" else (4 * k,) * 2))
    with torch.inference_mode():
        if model.task == "diamondgan":  # every input available
            y = model.net(x, availability_tensor((1,) * n_in))
        else:
            y = model.net(x)
    if isinstance(y, (tuple, list)):
        y = y[0]
    if tuple(y.shape[2:]) != tuple(x.shape[2:]) or not torch.isfinite(y).all():
        raise IntegrityError(f"{path}: the {model.task} network gives a bad output for a {tuple(x.shape)} input")
    m = model.manifest
    extra = ""
    if model.error_net is not None:  # load_package checked its SHA-256 against the manifest
        from ..synthesis.error_model import MANIFEST_KEY, size_multiple as error_multiple
        e = error_multiple(m[MANIFEST_KEY]["architecture"])
        with torch.inference_mode():
            s = model.error_net(torch.zeros((1, n_in + 1, 4 * e, 4 * e)))
        if tuple(s.shape) != (1, 1, 4 * e, 4 * e) or not torch.isfinite(s).all():
            raise IntegrityError(f"{path}: the error model gives a bad output for a zero input")
        extra = f"; error model {count_parameters(model.error_net):,} parameters, SHA-256 checked"
    print(f"{path}: OK (synthesis task {model.task}; weights load; {count_parameters(model.net):,} parameters; "
          f"inputs {', '.join(model.inputs)} -> {model.target}{'; DEMO model' if m.get('demo') else ''}{extra})")
    return 0
