"""A ready-to-run reader study made from the digital phantom: ``write_example_study(folder)``.

SYNTHETIC images. Paper 000's validation question as a blinded crossover (paper 004's protocol): can
readers tell a FLAIR **simulated** from the TE 112 / TI 2500 ms baseline to TE 150 / TI 2900 ms from one
**acquired** at TE 150 / TI 2900 ms? For the phantom, "acquired" means computed from the signal equation
at the target parameters (``S = c·Σ f_t S_t(θ_target)`` plus Rician noise of the baseline's σ), the
phantom's own ground truth. Per case (``C1``... from phantom seeds 0, 1, ...):

* ``acquired``  — FLAIR at TE 150 / TI 2900 ms from the equation (real, target);
* ``simulated`` — the baseline FLAIR simulated to TE 150 / TI 2900 ms with the partial-volume maps
  (:func:`neuroshift.simulate.tissuewise.fit_tissue_model`, synthetic, target);
* ``baseline``  — the FLAIR at TE 112 / TI 2500 ms, read by the reference reader in the last phase;
* ``t1``        — the T1w, shown beside every read (context).

Two readers, two phases 14 days apart, a Likert quality rating, lesion axes and a free-text comment.
The folder receives ``study.yaml`` (accepted by ``neuroshift reader-study create``), ``README.txt``,
``NOTICE-ICBM152.txt`` and ``C*/{acquired,simulated,baseline,t1}.nii.gz`` with BIDS sidecars.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

#: Target of the simulation / "acquisition" (ms) and the phantom's FLAIR baseline.
TARGET = {"TE_ms": 150.0, "TI_ms": 2900.0, "TR_ms": 9000.0}
STUDY_FILE = "study.yaml"

STUDY_YAML = """\
# Example reader study made by `neuroshift reader-study example` (SYNTHETIC phantom images).
# Blinded crossover: FLAIR acquired at TE 150 / TI 2900 ms (signal equation) vs simulated there
# from TE 112 / TI 2500 ms; reference reads of the baseline by R1 in a last phase.
name: phantom-simulated-vs-acquired
seed: {seed}
blinding: true
image_sets:
  acquired: {{label: FLAIR TE150 TI2900 acquired, synthetic: false}}
  simulated: {{label: FLAIR TE150 TI2900 simulated, synthetic: true}}
  baseline: {{label: FLAIR TE112 TI2500, synthetic: false, reference: true}}
  t1: {{label: T1w MPRAGE, kind: context, display_name: T1w}}
shows: [t1]
cases:
{cases}readers:
  - {{id: R1, role: neuroradiologist, reference: true}}
  - {{id: R2, role: resident}}
phases:
  - {{name: phase 1}}
  - {{name: phase 2, washout_days: 14}}
design: {{type: crossover, image_sets: [acquired, simulated]}}
reference_reads: {{image_set: baseline, readers: [R1]}}
tasks:
  - {{id: quality, type: likert, min: 1, max: 5, anchors: {{1: non-diagnostic, 5: excellent}}}}
  - {{id: lesions, type: lesion_axes, orthogonality_tolerance_deg: 10}}
  - {{id: comment, type: free_text, required: false}}
"""

README_TEXT = """\
Example reader study (SYNTHETIC images of the NeuroShift digital phantom).

  neuroshift reader-study create {folder}/study.yaml --db {folder}/study.sqlite
  neuroshift reader-study schedule --db {folder}/study.sqlite {folder}/schedule.csv
  neuroshift reader-study status --db {folder}/study.sqlite

Readers then read in 3D Slicer (NeuroShift > ReaderStudy, open study.sqlite), or reads are imported as CSV
(reader-study import-reads; the phase column takes a number or a phase name such as "phase 2").
"""


def _acquired(ph, rng: np.random.Generator):
    """FLAIR at TARGET from the phantom's equation (same scale c and noise σ as its baseline FLAIR)."""
    from ..physics.noise import add_rician_noise
    from ..physics.relaxation import relaxation_table
    from ..physics.signal import flair

    gt = ph.ground_truth["images"]["FLAIR"]
    table = relaxation_table(float(ph.ground_truth["field_T"]))
    img = np.zeros(ph.brain_mask.data.shape, dtype=np.float64)
    for tissue, vol in ph.fractions.items():
        tp = table[tissue]
        s_t = float(flair(tp.pd, tp.t1_ms, tp.t2_ms, te_ms=TARGET["TE_ms"], ti_ms=TARGET["TI_ms"],
                          tr_ms=TARGET["TR_ms"]))
        img += np.asarray(vol.data, dtype=np.float64) * gt["scale_c"] * s_t
    noisy = add_rician_noise(img, gt["noise_sigma"], rng=rng)
    return ph.brain_mask.with_data(np.asarray(noisy, dtype=np.float32))


def _simulated(ph):
    """The baseline FLAIR simulated to TARGET with the partial-volume maps (paper 000's model)."""
    from ..io.params import AcquisitionParams
    from ..simulate.tissuewise import fit_tissue_model

    source = AcquisitionParams.from_mapping(ph.ground_truth["images"]["FLAIR"]["params_ms"])
    model = fit_tissue_model(ph.images["FLAIR"], ph.fractions, "flair", source, brain_mask=ph.brain_mask)
    target = source.merged(AcquisitionParams.from_mapping(TARGET))
    return ph.images["FLAIR"].with_data(np.asarray(model.simulate(target), dtype=np.float32))


def write_example_study(folder: str | os.PathLike, *, cases: int = 4, seed: int = 2024) -> Path:
    """Write the example study into ``folder`` (created; refused if it already holds a study.yaml).

    Returns the path of ``study.yaml``. Everything of one case is computed before its files are written;
    ``study.yaml`` is written last, so an interrupted run never leaves a study that names missing images.
    """
    from ..errors import InputError
    from ..io.atomic import write_text_atomic
    from ..io.files import write_volume
    from ..io.params import AcquisitionParams
    from ..phantom.make import build_phantom
    from ..phantom.template import NOTICE_FILE, notice_text

    if cases < 2:
        raise InputError(f"an example study needs at least 2 cases (one per image set of the crossover), got {cases}")
    out = Path(folder)
    if (out / STUDY_FILE).exists():
        raise InputError(f"{out / STUDY_FILE} already exists; choose an empty folder")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    target_side = AcquisitionParams.from_mapping({**TARGET, "field_T": 3.0}).to_sidecar()
    for i in range(cases):
        cid = f"C{i + 1}"
        ph = build_phantom(seed=i)
        vols = {"acquired": _acquired(ph, np.random.default_rng([seed, i])), "simulated": _simulated(ph),
                "baseline": ph.images["FLAIR"], "t1": ph.images["T1w"]}
        sides = {"acquired": {**target_side, "SeriesDescription": "FLAIR TE150 TI2900 (phantom equation)"},
                 "simulated": {**target_side, "SeriesDescription": "FLAIR TE150 TI2900 (simulated from TE112)"},
                 "baseline": ph.sidecars["FLAIR"], "t1": ph.sidecars["T1w"]}
        (out / cid).mkdir(exist_ok=True)
        for name, vol in vols.items():
            write_volume(vol, out / cid / f"{name}.nii.gz")
            side = {"Manufacturer": "NeuroShift digital phantom (synthetic)", **sides[name]}
            write_text_atomic(out / cid / f"{name}.json", json.dumps(side, indent=2) + "\n")
        images = ", ".join(f"{name}: {cid}/{name}.nii.gz" for name in vols)
        lines.append(f"  - {{id: {cid}, images: {{{images}}}}}\n")
    write_text_atomic(out / NOTICE_FILE, notice_text())
    write_text_atomic(out / "README.txt", README_TEXT.format(folder=out.as_posix()))
    study = out / STUDY_FILE
    write_text_atomic(study, STUDY_YAML.format(seed=seed, cases="".join(lines)))
    return study
