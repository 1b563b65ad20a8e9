"""In-Slicer self tests of the LesionSynth module (need ``slicer.util`` and a scene; no Qt widgets).

Called from the ``LesionSynthTest`` methods of ``LesionSynth.py`` (the class stays there, where
``ScriptedLoadableModule.runTest`` looks for ``<ModuleName>Test``); ``test`` is that
``ScriptedLoadableModuleTest``. Run here too under pytest's stand-ins
(``Testing/slicer/test_lesionsynth_logic.py``). Every image is SYNTHETIC.
"""

from __future__ import annotations

import shutil
import tempfile

import slicer

from .synthesis import SynthesisParameters


def check_synthesis(test, logic, python: str, env: dict) -> None:
    """An untrained tiny synthDIR package on a SYNTHETIC two-contrast scan (6 x 32 x 32 voxels of 1 x 1 x 2 mm),
    run through the background CLI exactly as the Synthesise button does: a SYNTHETIC node of the input's shape
    and an uncertainty node. ``logic`` is the module's ``LesionSynthLogic``; ``python``/``env`` the engine
    process (``neuroshift_slicer.environment.engine_process``)."""
    import numpy as np

    from neuroshift.io.volume import Volume
    from neuroshift.synthesis.inference import save_package
    from neuroshift.synthesis.pix2pix import UNetGenerator
    from neuroshift_slicer.volume_nodes import add_volume_node

    k, j, i = np.indices((6, 32, 32))
    brain = ((i - 16) ** 2 + (j - 16) ** 2) < 144
    flair = add_volume_node(slicer.mrmlScene, Volume(np.where(brain, 100.0 + i, 0).astype(np.float32),
                                                     [1, 1, 2]), "SYNTHETIC test FLAIR")
    t1 = add_volume_node(slicer.mrmlScene, Volume(np.where(brain, 200.0 - j, 0).astype(np.float32),
                                                  [1, 1, 2]), "SYNTHETIC test T1")
    arch = {"in_channels": 2, "out_channels": 1, "base": 4, "depth": 2, "dropout": 0.3}
    folder = tempfile.mkdtemp(prefix="LesionSynthTest-")
    try:
        save_package(folder, "synthdir", "dir", ("flair", "t1"), arch, UNetGenerator(**arch),
                     {"trained_on": "untrained self-test package"})
        params = SynthesisParameters(target="dir", model=folder, device="cpu", uncertainty=True, mc_samples=3)
        job = logic.synthesis.start_background({"flair": flair, "t1": t1}, params, python=python, env=env)
        job.run.wait(300)
        out = logic.synthesis.finish_background(job)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    test.assertIn("SYNTHETIC", out.synthetic.GetName())
    test.assertEqual(out.synthetic.GetAttribute("NeuroShift.Synthetic"), "true")
    test.assertIsNotNone(out.uncertainty)
    test.assertEqual(slicer.util.arrayFromVolume(out.synthetic).shape, (6, 32, 32))
    test.delayDisplay("LesionSynth synthesis test passed")


def check_points_to_mask(test) -> None:
    """One markup point at a voxel centre, 5 mm diameter on a 1 mm grid: the 81 lattice points with
    x^2 + y^2 + z^2 <= 6.25 mm^2."""
    import numpy as np

    from neuroshift.io.volume import Volume

    from .insertion import points_to_mask

    reference = Volume(np.zeros((9, 9, 9), np.float32), [1, 1, 1])
    centre = reference.ijk_to_ras() @ np.array([4, 4, 4, 1.0])
    mask = points_to_mask([("p", centre[:3])], reference, 5.0)
    test.assertEqual(int(mask.data.sum()), 81)  # lattice points with x^2 + y^2 + z^2 <= 6.25
    test.delayDisplay("LesionSynth points-to-mask test passed")
