"""Scoring of the qSynth demo models (``dev/train_demo_qsynth.py``): held-out SYNTHETIC label maps per contrast
(generator defaults, real-like texture, real lesion masks of the lesion bank), real scans kept outside the repository,
and the model card that shows the manifest's scores."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "dev"))

from neuroshift.io.atomic import write_text_atomic  # noqa: E402
from qsynth_demo_settings import CONTRASTS, EVAL_AUGMENT, REAL_TEXTURE, texture_config  # noqa: E402


#: lesion-size bins (ml) of the per-size recall: at 2 mm a 0.05 ml lesion is ~6 voxels
SIZE_BINS_ML = ((0.0, 0.05), (0.05, 0.2), (0.2, 1.0), (1.0, float("inf")))


def size_recall(pred: np.ndarray, gt: np.ndarray, voxel_ml: float) -> dict[str, list[int]]:
    """Per lesion-size bin (:data:`SIZE_BINS_ML`): ``[detected, total]`` true lesions (26-connected
    components of ``gt``; detected when a predicted voxel touches it, as the lesion F1 counts)."""
    from scipy import ndimage

    cc, n = ndimage.label(gt, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return {f"{a:g}-{b:g}ml": [0, 0] for a, b in SIZE_BINS_ML}
    idx = np.arange(1, n + 1)
    size_ml = np.asarray(ndimage.sum(gt, cc, idx)) * voxel_ml
    hit = np.asarray(ndimage.maximum(pred, cc, idx)) > 0
    return {f"{a:g}-{b:g}ml": [int(hit[(size_ml >= a) & (size_ml < b)].sum()), int(((size_ml >= a) & (size_ml < b)).sum())]
            for a, b in SIZE_BINS_ML}


def evaluate(packages: dict, seeds: list[int], device: str = "cpu", lesion_model=None,
             contrasts: dict | None = None, maps: list | None = None, texture: str = "default") -> dict:
    """model -> contrast -> mean DSC / F1, pooled per-size recall and per map, on held-out qSynth label maps
    ``seeds`` with lesions from ``lesion_model`` (:class:`~neuroshift.qsynth.anatomy.LesionModel`; default:
    the generator's light default, 0.2-2 ml per map), or on the label maps ``maps`` (then ``seeds`` only name
    them). ``texture``: ``default`` (the generator's) or ``real`` (:data:`REAL_TEXTURE`: as real 3D FLAIRs
    measure). ``packages``: name -> folder or LoadedPackage."""
    from neuroshift.qsynth import QSynthConfig, generate
    from neuroshift.qsynth.anatomy import random_label_maps
    from neuroshift.segment.inference import segment_volume
    from neuroshift.segment.metrics import evaluate_masks
    from neuroshift.segment.package import load_package

    pkgs = {name: (load_package(p, device) if isinstance(p, (str, Path)) else p) for name, p in packages.items()}
    if maps is None:
        maps = [m for s in seeds for m in random_label_maps(1, seed=s, model=lesion_model)]
    out: dict = {name: {} for name in pkgs}
    for c, protocol in (contrasts or CONTRASTS).items():
        extra = {} if texture == "default" else {k: v for k, v in texture_config(protocol, texture).items()
                                                 if k in ("texture_weight", "priors")}
        cfg = QSynthConfig(protocol=protocol, augment_ranges=EVAL_AUGMENT, low_res_prob=0.0, **extra)
        for n, lab in enumerate(maps):
            g = generate(lab, cfg, seed=1000 + n)
            gt = lab.with_data((lab.data == 4).astype(np.uint8))
            voxel_ml = float(np.prod(lab.spacing)) / 1000.0
            for name, pkg in pkgs.items():
                res = segment_volume({"FLAIR": g["image"]}, pkg, device=device)
                m = evaluate_masks(res.label, gt, ignore_label=None)
                pred = np.asarray(res.label.data) > 0
                out[name].setdefault(c, []).append({
                    "map_seed": seeds[n], "dsc": round(float(m["dsc"]), 4), "f1": round(float(m["f1"]), 4),
                    "gt_ml": round(float(np.asarray(gt.data).sum()) * voxel_ml, 2),
                    "pred_ml": round(float(pred.sum()) * voxel_ml, 2),
                    "recall_by_size": size_recall(pred, np.asarray(gt.data) > 0, voxel_ml)})
    summary = {}
    for name, per in out.items():
        summary[name] = {}
        for c, rows in per.items():
            pooled = {k: [sum(r["recall_by_size"][k][i] for r in rows) for i in (0, 1)] for k in rows[0]["recall_by_size"]}
            summary[name][c] = {"dsc": round(float(np.mean([r["dsc"] for r in rows])), 4),
                                "f1": round(float(np.mean([r["f1"] for r in rows])), 4),
                                "recall_by_size": pooled, "cases": rows}
    return summary


def evaluate_bank(packages: dict, seeds: list[int], cases: str, device: str = "cpu") -> dict | None:
    """Like :func:`evaluate` (FLAIR, T2w) on label maps with the real lesion masks of the lesion-bank ``cases``
    (comma-separated; never trained on), each on the anatomy of one held-out seed; None without cases."""
    from neuroshift.qsynth.lesion_bank import bank_label_maps, load_lesion_bank

    names = [c for c in cases.split(",") if c]
    if not names:
        return None
    bank = load_lesion_bank()
    idx = [bank.names.index(c) for c in names]
    maps = [bank_label_maps(1, seed=s, bank=bank, indices=[k])[0] for s, k in zip(seeds, idx)]
    contrasts = {c: CONTRASTS[c] for c in ("FLAIR", "T2w")}
    return {"note": f"lesion-bank cases {names} (real lesion masks, never trained on) on held-out anatomy "
                    f"(seeds {seeds[:len(idx)]})", "scores": evaluate(packages, seeds[:len(idx)], device,
                                                                      contrasts=contrasts, maps=maps)}


def evaluate_real(packages: dict[str, Path], folder: Path, device: str = "cpu") -> dict:
    """model -> {"cases": [{case, dsc, f1, gt_ml, pred_ml}], "dsc", "f1"} on ``folder/*/FLAIR.nii.gz``."""
    from neuroshift.io.files import read_volume
    from neuroshift.segment.inference import segment_volume
    from neuroshift.segment.metrics import evaluate_masks
    from neuroshift.segment.package import load_package

    cases = sorted(d for d in Path(folder).iterdir() if (d / "FLAIR.nii.gz").is_file() and (d / "lesion.nii.gz").is_file())
    if not cases:
        raise SystemExit(f"{folder}: no sub-folder with FLAIR.nii.gz and lesion.nii.gz")
    out = {}
    for name, path in packages.items():
        pkg = load_package(path, device) if isinstance(path, (str, Path)) else path
        rows = []
        for d in cases:
            img = read_volume(d / "FLAIR.nii.gz")
            raw = read_volume(d / "lesion.nii.gz")
            gt = raw.with_data((np.asarray(raw.data) > 0.5).astype(np.uint8))
            res = segment_volume({"FLAIR": img}, pkg, device=device)
            m = evaluate_masks(res.label, gt, ignore_label=None)
            voxel_ml = float(np.prod(img.spacing)) / 1000.0
            rows.append({"case": d.name, "dsc": round(float(m["dsc"]), 4), "f1": round(float(m["f1"]), 4),
                         "gt_ml": round(float(np.asarray(gt.data).sum()) * voxel_ml, 2),
                         "pred_ml": round(float((np.asarray(res.label.data) > 0).sum()) * voxel_ml, 2)})
        out[name] = {"dsc": round(float(np.mean([r["dsc"] for r in rows])), 4),
                     "f1": round(float(np.mean([r["f1"] for r in rows])), 4), "cases": rows}
    return out


#: the per-map rows of the held-out evaluation live here, beside the manifest (which keeps the summaries)
DETAILS_FILE = "evaluation.json"


def split_details(evaluation: dict) -> dict:
    """Move the per-map ``cases`` rows of every synthetic evaluation set out of ``evaluation`` (in place) and
    return them as set -> model -> contrast -> rows; the lesion-bank set keeps its per-map volumes (the card shows
    them)."""
    details: dict = {}
    for name, block in evaluation.items():
        scores = block if name == "scores" else (block.get("scores") if isinstance(block, dict) else None)
        if not isinstance(scores, dict):
            continue
        for model, per in scores.items():
            for contrast, v in per.items():
                rows = v.pop("cases", None)
                if rows is None:
                    continue
                details.setdefault(name, {}).setdefault(model, {})[contrast] = rows
                if name == "bank_lesions":
                    v["gt_ml"], v["pred_ml"] = [r["gt_ml"] for r in rows], [r["pred_ml"] for r in rows]
    if details:
        evaluation["details"] = f"{DETAILS_FILE} (per-map rows of each set: map seed, DSC, F1, ml, recall by size)"
    return details


def write_evaluation(out: Path, manifest: dict) -> None:
    """Split the per-map rows off ``manifest`` (in place) into ``out/evaluation.json`` (atomic write)."""
    import json

    details = split_details(manifest["training"]["evaluation"])
    if details:
        write_text_atomic(Path(out) / DETAILS_FILE, json.dumps(details, indent=1) + "\n")


def write_model_card(out: Path, manifest: dict) -> None:
    t = manifest["training"]
    ev = t["evaluation"]["scores"]
    lines = [f"# {out.resolve().name}: qSynth-trained demo lesion model - NOT A CLINICAL MODEL", "",
             manifest["description"], "",
             f"- Trained by `dev/train_demo_qsynth.py` with `neuroshift train --synth qsynth` on {t['label_maps']['train']} "
             "SYNTHETIC label maps (ICBM152 template deformed; lesions as follows); a new synthetic image per "
             f"map and epoch (contrasts: {t.get('contrasts', '?')} - see dev/train_demo_qsynth.py; physics priors, "
             "bias, thick slices, noise, small deformations). Training lesion load: "
             f"{t['label_maps'].get('lesion_model')}" + (
                 f", plus {t['label_maps']['heavy_maps']} heavy-load maps {t['label_maps']['heavy_lesion_model']}"
                 if t["label_maps"].get("heavy_maps") else "") + " (generative model, SYNTHETIC labels)" + (
                 f", plus {t['label_maps']['bank_maps']} maps whose lesions are real consensus lesion masks of "
                 f"{len(t['label_maps']['bank_cases'])} MS patients ({t['label_maps']['bank_source']}), deformed "
                 "with the template and mirrored at random" if t["label_maps"].get("bank_maps") else "") +
             f"; lesion ml per map {t['label_maps'].get('lesion_ml')}.",
             *([f"- Started from the first network of `{Path(t['init']['path']).name}` (version {t['init'].get('version')}; "
                "SYNTHETIC training only), every layer trained."] if t.get("init") else []),
             *([f"- Texture matched to real N4-corrected 3D FLAIRs (`--texture real`): within-tissue texture weight "
                f"{cfg['texture_weight']}, within-subject spreads x{REAL_TEXTURE['within_spread']}, bias strength "
                f"{cfg['augment_ranges']['bias_strength']} (dev/qsynth_demo_settings.py REAL_TEXTURE)."]
              if isinstance(cfg := t.get("synthesis", {}).get("config"), dict) and "texture_weight" in cfg else []),
             *([f"- Texture per subject between real 3D FLAIRs and the generator's defaults (`--texture mixed`): "
                f"{cfg['augment_ranges']} (dev/qsynth_demo_settings.py MIXED_TEXTURE)."]
              if isinstance(cfg, dict) and "texture_gain" in cfg.get("augment_ranges", {}) else []),
             f"- {t['epochs']} epochs, {t['members'][0]['steps']} steps, batch {t['batch_size']}, {t['optimizer']}, "
             f"loss {t['loss']}; {t.get('wall_time_min', '?')} min on a shared 2-core CPU (short: a demo, not a "
             "converged model).",
             f"- One input channel (named FLAIR; trained contrasts: {t.get('contrasts', '?')}), one network, axial, "
             f"threshold {manifest['threshold']}. Scores on other contrasts below show what it was not trained for.", "",
             "## Held-out synthetic scores (label maps never trained on)", "", t["evaluation"]["method"] + "." + (
                 f" Per-map rows: `{DETAILS_FILE}` beside the manifest." if "details" in t["evaluation"] else ""), "",
             "| model | contrast | DSC | lesion F1 | recall by true-lesion size (ml): detected/total |",
             "|---|---|---|---|---|"]
    for model, per in ev.items():
        for c, v in per.items():
            rec = ", ".join(f"{k} {a}/{b}" for k, (a, b) in v.get("recall_by_size", {}).items())
            lines.append(f"| {model} | {c} | {v['dsc']} | {v['f1']} | {rec} |")
    light = t["evaluation"].get("light_load")
    if light:
        lines += ["", "Light lesion load: " + light["note"] + ".", "",
                  "| model | contrast | DSC | lesion F1 |", "|---|---|---|---|"]
        lines += [f"| {m} | {c} | {v['dsc']} | {v['f1']} |" for m, per in light["scores"].items() for c, v in per.items()]
    tex = t["evaluation"].get("real_texture")
    if tex:
        lines += ["", "Real-like texture: " + tex["note"] + ".", "", "| model | contrast | DSC | lesion F1 |",
                  "|---|---|---|---|"]
        lines += [f"| {m} | {c} | {v['dsc']} | {v['f1']} |" for m, per in tex["scores"].items() for c, v in per.items()]
    bank = t["evaluation"].get("bank_lesions")
    if bank:
        lines += ["", "Real lesion shapes: " + bank["note"] + ".", "",
                  "| model | contrast | DSC | lesion F1 | truth (ml) per map | predicted (ml) per map |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {m} | {c} | {v['dsc']} | {v['f1']} | {v['gt_ml']} | {v['pred_ml']} |"
                  for m, per in bank["scores"].items() for c, v in per.items()]
    prev = t.get("previous_version")
    if prev:
        lines += ["", f"## Previous version ({prev['version']}), evaluation of its time", "", prev.get("note", ""), "",
                  "| contrast / data | DSC | lesion F1 |", "|---|---|---|"]
        lines += [f"| held-out {c} | {v['dsc']} | {v['f1']} |" for c, v in prev.get("synthetic", {}).items()]
        if prev.get("real"):
            lines.append(f"| real scans (mean) | {prev['real']['dsc']} | {prev['real']['f1']} |")
    cur = t.get("curriculum")
    if cur:
        lines += ["", "## Training curriculum", "", cur["note"], "",
                  "| stage (run) | contrasts | from | lr | lesion-centred patches | epochs | steps | CPU minutes |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {k + 1} ({s['run']}) | {s['contrasts']} | {s['init']} | {s['lr']} | {s['foreground_prob']} | "
                  f"{s['epochs']} | {s['steps']} | {s['minutes']} |" for k, s in enumerate(cur["stages"])]
    if t.get("known_failures"):
        lines += ["", "## Known failures", "", *[f"- {f}" for f in t["known_failures"]]]
    if t.get("later_attempts"):
        lines += ["", "## Later training attempts (not shipped)", "", t["later_attempts"]]
    real = t.get("real_validation")
    if real:
        lines += ["", "## Real scans (validation only, never trained on)", "", real["source"], "",
                  "| model | case | DSC | lesion F1 | truth (ml) | predicted (ml) |", "|---|---|---|---|---|---|"]
        for model, v in real["scores"].items():
            for r in v["cases"]:
                lines.append(f"| {model} | {r['case']} | {r['dsc']} | {r['f1']} | {r['gt_ml']} | {r['pred_ml']} |")
            lines.append(f"| {model} | mean | {v['dsc']} | {v['f1']} | | |")
    lines += ["", "A demo: synthetic training only, few real validation scans. Use a model trained on real annotated "
              "data for any real work.", ""]
    write_text_atomic(out / "README.md", "\n".join(lines))
