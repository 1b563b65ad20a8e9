"""The "Stress test" panel of the ShiftSimulator widget (Qt; imported only inside Slicer).

Runs ``neuroshift stress-test`` on the scene's case (the input volume, tissues and source
parameters of the simulation panel plus a lesion mask) or on a folder / CSV of cases, through
the Qt-free :class:`ShiftSimulatorLib.stress_logic.StressTestLogic`, in a background process
polled by the shared :class:`neuroshift_slicer.jobs.BackgroundJobController`; shows the results
as a table node, a plot chart (metric against the first grid axis, one series per value of the
second) and a heat-map volume, with the HTML report one click away.

Its settings are fields of the module's parameter node (``stress*``), bound in the .ui.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Callable, Optional

import qt
import slicer
from slicer.i18n import tr as _

from neuroshift_slicer.environment import MODEL_REQUIREMENTS, REPORT_REQUIREMENTS, engine_process, ensure_requirements
from neuroshift_slicer.jobs import BackgroundJobController

from .progress_display import show_busy, show_progress
from .stress_logic import DEFAULT_STRESS_MODEL, model_names  # noqa: F401 - re-exported for ShiftSimulator.py

#: Choices of ``neuroshift stress-test`` shown in the panel.
STRESS_SOURCES = ("scene", "folder")
STRESS_METRICS = ("lesion_f1", "dice", "lesion_recall", "lesion_precision")
STRESS_SURFACES = ("quadratic", "linear", "interaction", "cubic", "auto")
DEFAULT_STRESS_GRID = "TE=84:150:7,TI=2200:2900:7"


class StressTestPanel:
    """Signals, run, cancel and results of the stress-test section.

    ``ui``: the module's widget variables; ``parameterNode()``: the current parameter node (or None);
    ``sceneCase(logic, p)``: the in-memory case from the simulation panel; ``updateGui()``: refresh.
    """

    def __init__(self, ui, parameterNode: Callable, sceneCase: Callable, updateGui: Callable) -> None:
        self.ui = ui
        self._parameterNode = parameterNode
        self._sceneCase = sceneCase
        self._updateGui = updateGui
        self.jobs = BackgroundJobController(self._onFinished, on_progress=self._onProgress,
                                            on_busy=self._onBusy, interval_ms=300)

    def setup(self) -> None:
        # The model field is a QLineEdit (bound by Slicer's QLineEditToStrConnector): free text such as
        # a package folder or cmd:..., with the installed packages suggested by a completer.
        completer = qt.QCompleter(model_names(), self.ui.stressModelLineEdit)
        completer.setCaseSensitivity(qt.Qt.CaseInsensitive)
        self.ui.stressModelLineEdit.setCompleter(completer)
        self.ui.stressRunButton.connect("clicked(bool)", self.onRun)
        self.ui.stressCancelButton.connect("clicked(bool)", self.jobs.cancel)
        self.ui.stressReportButton.connect("clicked(bool)", self.onOpenReport)
        self._onBusy(False)

    def cleanup(self) -> None:
        self.jobs.cancel()

    def updateGui(self, p, sceneReady: bool) -> None:
        """Visibility and enabled state; ``sceneReady``: input volume and tissues chosen above."""
        sceneMode = p.stressSource == "scene"
        self.ui.stressSceneFrame.setVisible(sceneMode)
        self.ui.stressFolderFrame.setVisible(not sceneMode)
        if sceneMode:
            casesReady = sceneReady and p.stressLesionMask is not None
            why = _("Choose the input volume and its tissues above, and the lesion mask")
        else:
            casesReady = bool(p.stressCasesPath.strip())
            why = _("Choose the cases folder or CSV")
        ready = casesReady and bool(p.stressModel.strip()) and bool(p.stressGrid.strip())
        self.ui.stressRunButton.enabled = ready and not self.jobs.busy
        self.ui.stressRunButton.toolTip = (_("Run (or resume) the stress test in a separate process") if ready
                                           else why if not casesReady else _("Enter the model and the grid"))
        self.ui.stressReportButton.enabled = self._reportPath() is not None

    # ------------------------------------------------------------------ run
    def _outdir(self, p) -> str:
        """The output folder; when empty, a new one (stored, so Run again resumes into it)."""
        outdir = p.stressOutputFolder.strip()
        if not outdir:
            base = slicer.app.defaultScenePath or tempfile.gettempdir()
            outdir = os.path.join(base, "NeuroShift-stress-" + time.strftime("%Y%m%d-%H%M%S"))
            p.stressOutputFolder = outdir
        return outdir

    def _reportPath(self) -> Optional[str]:
        p = self._parameterNode()
        outdir = p.stressOutputFolder.strip() if p else ""
        path = os.path.join(outdir, "report.html") if outdir else ""
        return path if path and os.path.isfile(path) else None

    def onRun(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not start the stress test."), waitCursor=True):
            p = self._parameterNode()
            model = p.stressModel.strip()
            extra = {**REPORT_REQUIREMENTS, **({} if model.startswith("cmd:") else MODEL_REQUIREMENTS)}
            if not ensure_requirements("ShiftSimulator", extra):
                return
            from ShiftSimulatorLib.stress_logic import StressTestLogic

            logic = StressTestLogic(slicer.mrmlScene)
            if p.stressSource == "folder":
                cases = p.stressCasesPath.strip()
                if not os.path.exists(cases):
                    raise ValueError(_("Cases folder or CSV not found: {path}").format(path=cases))
            else:
                cases = self._sceneCase(logic, p)
            outdir = self._outdir(p)
            python, env = engine_process()
            run = logic.start_background(cases, model, p.stressGrid.strip(), outdir, sequence=p.sequence,
                                         metric=p.stressMetric, form=p.stressSurface, workers=p.stressWorkers,
                                         python=python, env=env)
            self.jobs.start(run, context=(logic, outdir, p.stressMetric))

    def _onProgress(self, fraction: float, message: str) -> None:
        show_progress(self.ui.stressProgressBar, self.ui.stressStatusLabel, fraction, message)

    def _onBusy(self, busy: bool) -> None:
        show_busy(self.ui.stressProgressBar, self.ui.stressStatusLabel, self.ui.stressCancelButton, busy,
                  _("Running..."))
        self._updateGui()

    def _onFinished(self, state, context, cancelled: bool) -> None:
        logic, outdir, metric = context
        if cancelled:
            self.ui.stressStatusLabel.text = _(
                "Cancelled. Finished points are kept in {outdir}; Run again resumes.").format(outdir=outdir)
        elif state.returncode == 0:
            with slicer.util.tryWithErrorDisplay(_("Could not load the stress-test results."), waitCursor=True):
                self._showResults(logic.load_results(outdir, metric=metric)["nodes"])
                self.ui.stressStatusLabel.text = _("Done: results in {outdir}").format(outdir=outdir)
        else:
            self.ui.stressStatusLabel.text = _("Stress test failed (exit code {code}).").format(code=state.returncode)
            slicer.util.errorDisplay(_("Stress test failed."), detailedText="\n".join(state.log[-20:]))
        self._updateGui()

    def onOpenReport(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not open the report.")):
            path = self._reportPath()
            if path is None:
                raise ValueError(_("No report.html in the output folder yet"))
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(path))

    def _showResults(self, nodes: dict) -> None:
        """Table in the table view, chart in the plot view, heat map in the slice views."""
        appLogic = slicer.app.applicationLogic()
        layoutManager = slicer.app.layoutManager()
        if layoutManager is not None:
            layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView)
        appLogic.GetSelectionNode().SetActiveTableID(nodes["table"].GetID())
        appLogic.PropagateTableSelection()  # without it the table view keeps showing the previous table
        if nodes.get("chart") is not None:
            slicer.modules.plots.logic().ShowChartInLayout(nodes["chart"])
        heatmap = nodes.get("heatmap")
        if heatmap is not None:
            colors = slicer.mrmlScene.GetFirstNodeByName("Viridis")
            display = heatmap.GetDisplayNode()
            if display is not None and colors is not None:
                display.SetAndObserveColorNodeID(colors.GetID())
            slicer.util.setSliceViewerLayers(background=heatmap, fit=True)
