"""Qt-free logic of ShiftSimulator's stress-test panel: cases, model, grid -> results as MRML nodes.

Cases come from the scene (an image node with its tissues and ground-truth lesion
mask; parameters found as by :class:`ShiftSimulationCore.source_parameters`) or
from a folder / CSV (:mod:`neuroshift.stress.cases`). The run is the engine's
(:func:`neuroshift.stress.run_stress_test`), either in this process
(:meth:`StressTestLogic.run`, Cancel through a flag) or, for the GUI, in a
separate process (:meth:`StressTestLogic.start_background`, a
:class:`neuroshift_slicer.background.BackgroundRun` of ``neuroshift stress-test``,
Cancel = kill; the finished points stay on disk and a rerun resumes).

Results are shown as

* a ``vtkMRMLTableNode`` with one row per case × grid point (metrics as columns),
* a ``vtkMRMLTableNode`` of case means and one ``vtkMRMLPlotChartNode`` with a
  ``vtkMRMLPlotSeriesNode`` per value of the second grid axis (F1 against TE per TI),
* the heat map as a scalar volume node (one slice: x = first axis, y = second) and
  the report's PNG/HTML files.

Tested with pytest against a real ``vtkMRMLScene`` (``Testing/slicer/test_stress_slicer_logic.py``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from neuroshift.errors import InputError
from neuroshift.io.params import AcquisitionParams
from neuroshift.progress import Cancelled, ProgressCallback

CancelFlag = Callable[[], bool]
DEFAULT_STRESS_MODEL = "wmh-demo"


def model_names() -> list:
    """Installed segmentation model packages (the bundled demo first): suggestions for the panel's model field."""
    try:
        from neuroshift.segment.registry import list_models

        names = [m["name"] for m in list_models() if m.get("kind") == "segmentation"]  # not synthesis, not broken
    except Exception as exc:  # noqa: BLE001 - a broken model folder must not break the GUI
        logging.warning(f"ShiftSimulator: could not list the model packages: {exc}")
        names = []
    return [DEFAULT_STRESS_MODEL] + [n for n in names if n != DEFAULT_STRESS_MODEL]


class StressTestLogic:
    """Stress tests from Slicer (no Qt, no ``slicer.app``)."""

    def __init__(self, scene):
        self.scene = scene

    # ------------------------------------------------------------------ cases
    def case_from_nodes(self, case_id: str, image_node, mask_node, tissues, *, params: AcquisitionParams | None = None,
                        brain_mask_node=None, label_mapping: Mapping | None = None, sequence: str = "flair"):
        """An in-memory case from scene nodes (tissues: label map, segmentation or ``{tissue: PV node}``)."""
        from neuroshift.stress.cases import LoadedCase
        from neuroshift_slicer.volume_nodes import volume_from_node

        from .logic import ShiftSimulationCore

        if image_node is None or mask_node is None:
            raise InputError("choose the image and its ground-truth lesion mask")
        sim_logic = ShiftSimulationCore(self.scene)
        found = sim_logic.source_parameters(image_node)
        if params is not None:
            found = found.merged(params)
        image = volume_from_node(image_node)
        image = image.with_data(np.asarray(image.data, dtype=np.float32))
        mask = volume_from_node(mask_node)
        fractions = sim_logic.tissue_fractions(tissues, image_node, label_mapping)
        brain = volume_from_node(brain_mask_node) if brain_mask_node is not None else None
        case = LoadedCase(case_id, image, found, fractions, mask, brain)
        return case.load(sequence, inputs=())

    @staticmethod
    def cases_from_folder(path: str | os.PathLike, sequence: str = "flair"):
        from neuroshift.stress.cases import load_cases

        return load_cases(path, sequence=sequence)

    def write_cases(self, cases: Sequence, workdir: str | os.PathLike) -> Path:
        """Write in-memory cases as a CSV case list (for a background run); returns the CSV path."""
        import csv
        import io

        from neuroshift.io.atomic import write_text_atomic
        from neuroshift.io.files import write_volume

        work = Path(workdir)
        rows = []
        for case in cases:
            folder = work / "cases" / case.case_id
            folder.mkdir(parents=True, exist_ok=True)
            write_volume(case.image, folder / "image.nii.gz")
            write_volume(case.mask, folder / "lesion_mask.nii.gz")
            row = {"case": case.case_id, "image": f"cases/{case.case_id}/image.nii.gz",
                   "mask": f"cases/{case.case_id}/lesion_mask.nii.gz", "params": case.params.label(),
                   "brain_mask": ""}
            for tissue, vol in case.fractions.items():
                write_volume(vol, folder / f"pv_{tissue}.nii.gz")
                row[f"pv_{tissue}"] = f"cases/{case.case_id}/pv_{tissue}.nii.gz"
            if case.brain_mask is not None:
                write_volume(case.brain_mask, folder / "brain_mask.nii.gz")
                row["brain_mask"] = f"cases/{case.case_id}/brain_mask.nii.gz"
            rows.append(row)
        fields = ["case", "image", "mask", "params", "brain_mask"] + \
            sorted({k for r in rows for k in r if k.startswith("pv_")})
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow(r)
        path = work / "cases.csv"
        write_text_atomic(path, buf.getvalue())
        return path

    # ------------------------------------------------------------------ running
    def run(self, cases, model, grid: str, outdir: str | os.PathLike, *, sequence: str = "flair",
            metric: str = "lesion_f1", form: str = "quadratic", workers: int = 1,
            progress: ProgressCallback | None = None, cancel: CancelFlag | None = None, simulator=None,
            show: bool = True) -> dict:
        """Run (or resume) the stress test in this process, write the report and (``show``) add result nodes.

        ``cancel()`` returning True stops at the next point with :class:`Cancelled`; finished points stay
        in ``outdir`` and a later run resumes.
        """
        from neuroshift.stress.report import write_report
        from neuroshift.stress.runner import run_stress_test

        def step(fraction: float, message: str) -> None:
            if cancel is not None and cancel():
                raise Cancelled("cancelled by the user; finished points are kept")
            if progress is not None:
                progress(fraction, message)

        run = run_stress_test(cases, model, grid, outdir, sequence=sequence, workers=workers, progress=step,
                              simulator=simulator)
        report = write_report(run, outdir, metric=metric, form=form)
        out = {"run": run, "report": report}
        if show:
            out["nodes"] = self.show_results(run, metric, report)
        return out

    def start_background(self, cases, model: str, grid: str, outdir: str | os.PathLike, *,
                         sequence: str = "flair", metric: str = "lesion_f1", form: str = "quadratic",
                         workers: int = 1, python: str | None = None, env: dict | None = None):
        """``neuroshift stress-test`` in a separate process (poll it; Cancel = ``run.cancel()``).

        ``cases``: a folder / CSV path, or in-memory cases (written to ``outdir/input`` first).
        ``python``/``env``: the interpreter (``PythonSlicer`` in Slicer) and extra environment (PYTHONPATH).
        """
        from neuroshift_slicer.background import BackgroundRun

        if not isinstance(model, str):
            raise InputError("a background run needs the model as text (package name/folder or cmd:...)")
        if isinstance(cases, (str, os.PathLike)):
            cases_path = Path(cases)
        else:
            cases_path = self.write_cases(list(cases), Path(outdir) / "input")
        args = ["stress-test", str(outdir), "--cases", str(cases_path), "--model", model, "--grid", grid,
                "--sequence", sequence, "--metric", metric, "--surface", form, "--workers", str(workers)]
        return BackgroundRun(args, python=python, env=env)

    def load_results(self, outdir: str | os.PathLike, *, metric: str = "lesion_f1", show: bool = True) -> dict:
        """Results of a finished (or cancelled) background run as nodes."""
        from neuroshift.stress.runner import load_run

        run = load_run(outdir)
        report = None
        if (Path(outdir) / "report.html").is_file():
            report = {"paths": {p.name: p for p in Path(outdir).glob("*.png")}}
            report["paths"]["html"] = Path(outdir) / "report.html"
        out = {"run": run, "report": report}
        if show:
            out["nodes"] = self.show_results(run, metric, report)
        return out

    # ------------------------------------------------------------------ result nodes
    def show_results(self, run, metric: str = "lesion_f1", report: dict | None = None) -> dict:
        nodes = {"table": self.results_table(run)}
        if run.grid_records():
            means, chart = self.plot_chart(run, metric)
            nodes.update(means_table=means, chart=chart, heatmap=self.heatmap_volume(run, metric))
        if report:
            nodes["files"] = {k: str(v) for k, v in report.get("paths", {}).items()}
        return nodes

    def results_table(self, run, name: str = "StressTest results"):
        """One row per case × point: case, point, baseline, grid axes, every metric."""
        from neuroshift.stress.report import metric_names

        metrics = metric_names(run)
        columns = {"case": [], "point": [], "baseline": []}
        columns.update({a: [] for a in run.axes})
        columns.update({m: [] for m in metrics})
        for rec in run.records:
            columns["case"].append(rec["case"])
            columns["point"].append(rec["point"])
            columns["baseline"].append(1.0 if rec.get("baseline") else 0.0)
            for a in run.axes:
                v = rec.get("grid", {}).get(a)
                columns[a].append(np.nan if v is None else float(v))
            for m in metrics:
                v = rec.get("metrics", {}).get(m)
                columns[m].append(np.nan if v is None else float(v))
        return self._table_node(name, columns, text_columns=("case", "point"))

    def plot_chart(self, run, metric: str = "lesion_f1", name: str = "StressTest"):
        """Table of case means (x = first axis, one column per value of the second) and its plot chart."""
        import slicer

        from neuroshift.stress.report import LABELS, heatmap_matrix

        ax_x, ax_y, xs, ys, mat = heatmap_matrix(run, metric)
        columns = {ax_x: list(map(float, xs))}
        names = []
        for i, y in enumerate(ys):
            col = f"{metric} {ax_y}={y:g}" if ax_y else metric
            columns[col] = list(map(float, mat[i]))
            names.append(col)
        table = self._table_node(f"{name} {metric} means", columns)
        chart = self.scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{name} {metric} vs {ax_x}")
        colors = _colors(len(names))
        for col, color in zip(names, colors):
            series = self.scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", col)
            series.SetAndObserveTableNodeID(table.GetID())
            series.SetXColumnName(ax_x)
            series.SetYColumnName(col)
            series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
            series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
            series.SetColor(*color)
            chart.AddAndObservePlotSeriesNodeID(series.GetID())
        chart.SetTitle(f"{LABELS.get(metric, metric)} against {ax_x}" + (f" per {ax_y}" if ax_y else ""))
        chart.SetXAxisTitle(ax_x)
        chart.SetYAxisTitle(LABELS.get(metric, metric))
        return table, chart

    def heatmap_volume(self, run, metric: str = "lesion_f1", name: str | None = None):
        """The heat map of case means as a one-slice scalar volume (i = first axis, j = second axis)."""
        from neuroshift.io.volume import Volume
        from neuroshift.stress.report import heatmap_matrix
        from neuroshift_slicer.volume_nodes import add_volume_node

        ax_x, ax_y, xs, ys, mat = heatmap_matrix(run, metric)
        vol = Volume(np.asarray(mat, dtype=np.float32)[None], spacing=(1.0, 1.0, 1.0))
        node = add_volume_node(self.scene, vol, name or f"StressTest {metric} heat map")
        node.SetAttribute("NeuroShift.heatmap.x", f"{ax_x}:" + ",".join(f"{v:g}" for v in xs))
        if ax_y:
            node.SetAttribute("NeuroShift.heatmap.y", f"{ax_y}:" + ",".join(f"{v:g}" for v in ys))
        return node

    def _table_node(self, name: str, columns: dict, text_columns: Sequence[str] = ()):
        import vtk

        node = self.scene.AddNewNodeByClass("vtkMRMLTableNode", name)
        table = node.GetTable()
        n = max((len(v) for v in columns.values()), default=0)
        for col, values in columns.items():
            arr = vtk.vtkStringArray() if col in text_columns else vtk.vtkDoubleArray()
            arr.SetName(col)
            arr.SetNumberOfValues(n)
            for i, v in enumerate(values):
                arr.SetValue(i, str(v) if col in text_columns else float(v))
            table.AddColumn(arr)
        node.Modified()
        return node


def _colors(n: int) -> list[tuple[float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [tuple(float(c) for c in cmap(i / max(n - 1, 1))[:3]) for i in range(n)]
