"""Scoring benchmark: our engine against plain pyradiomics on the whole volume, in one run.

    python bench/bench_scoring.py [--quick] [--json PATH]

Builds a synthetic CT (bench/synthetic_ct.py: 512x512x300 at 0.7x0.7x1.0 mm, 10 lesions of 0.5
to 100 mL; --quick: 256x256x120, 4 lesions of 0.5 to 20 mL) and times:

- the baseline: plain pyradiomics, default extractor with our classes (firstorder, glcm, glrlm,
  glszm, gldm, ngtdm, shape), 1 mm trilinear resampling, binWidth 10 with pyradiomics' own
  numbering, on the whole image and one whole-volume label map per lesion core and per ring,
  sequentially, in a child process of its own (so its peak memory is its own);
- our engine exactly as deployed: `radiomics-cds scorer` processes (1 or 2) called over gRPC by
  GrpcScorer, the study's crops scored through service.scorer.score_lesions (the path the
  service takes) by as many client threads as processes, then the patient aggregate; with the CD8 profile (only what the
  signature and the lesion measures need) and with the full feature panel.

Then it checks values: the CD8 profile's features must equal the full panel's computed on the
whole volume (relative 1e-9), and, for information only, how far plain pyradiomics' values of
the same five features are from ours (they differ by design: docs/method.md section 2).

It prints Markdown tables (for bench/README.md) and a summary; the ratios are the point, not
the seconds, which depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import radiomics
import SimpleITK as sitk
from radiomics.featureextractor import RadiomicsFeatureExtractor

from service.imaging.crops import lesion_crop
from service.location import LocationRules
from service.model import CtSeries, LesionCrop, LesionMask, LesionResult, PatientResult, Provenance
from service.scorer import Scorer, score_lesions
from service.scoring.client import GrpcScorer
from service.scoring.ibsi_names import pyradiomics_feature
from service.scoring.lesion import ScoringContext, score_lesion
from service.scoring.panel import full_panel
from service.scoring.ring import ring_mask
from service.scoring.settings import FEATURE_CLASSES, ExtractionSettings
from service.scoring.signatures import Signature, load_signature
from synthetic_ct import SyntheticStudy, make_study

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.crops import whole_volume  # noqa: E402

FULL_STUDY = ((300, 512, 512), 10, (0.5, 100.0))  # (z, y, x) voxels, lesions, volume range mL
QUICK_STUDY = ((120, 256, 256), 4, (0.5, 20.0))
IDENTITY_RTOL = 1e-9
GOAL_X_FASTER = 5.0
ENGINE_RUNS = (("signature", 1), ("signature", 2), ("full", 1), ("full", 2))
PANEL_LABELS = {"signature": "CD8 profile", "full": "full panel"}
BASELINE_LABEL = "baseline: plain pyradiomics, whole volume, sequential"
SCORER_READY_TIMEOUT_S = 120.0

Values = dict[str, dict[str, float]]  # one lesion's features: region -> feature -> value


@dataclass
class RunResult:
    """One configuration's timings, memory and values (baseline or engine)."""

    label: str
    short: str  # column heading in the per-lesion table
    study_s: float
    lesion_s: list[float]
    peak_rss_mib: list[float]  # per process that did the scoring
    features: list[Values]  # per lesion


# --- the baseline: plain pyradiomics on the whole volume ------------------------------------


@dataclass(frozen=True)
class RegionBoxes:
    """A lesion's core and ring on a box of the CT grid (placed into whole-volume label maps)."""

    offset_zyx: tuple[int, int, int]
    core: np.ndarray
    ring: np.ndarray


def ring_boxes(ct: CtSeries, lesion: LesionMask, width_mm: float) -> RegionBoxes:
    """Core and ring on the original grid, on a box padded past the ring's reach.

    ring_mask on the whole 512x512x300 grid would need a 1023x1023x599 distance transform (many
    GB); the ring depends only on boundary points within `width_mm`, so a box padded by more
    than that gives the same voxels as the whole grid (clipped where the volume ends, as the
    whole grid is).
    """
    spacing_zyx = tuple(reversed(ct.geometry.spacing))
    pad = np.array([int(np.ceil(width_mm / s)) + 2 for s in spacing_zyx])
    low = np.maximum(np.asarray(lesion.offset_zyx) - pad, 0)
    high = np.minimum(np.asarray(lesion.offset_zyx) + np.asarray(lesion.mask.shape) + pad, ct.hu.shape)
    core = np.zeros(tuple(int(n) for n in high - low), dtype=bool)
    start = np.asarray(lesion.offset_zyx) - low
    core[tuple(slice(int(a), int(a + n)) for a, n in zip(start, lesion.mask.shape))] = lesion.mask
    return RegionBoxes(tuple(int(v) for v in low), core, ring_mask(core, spacing_zyx, width_mm))


def _whole_label_map(box: np.ndarray, offset_zyx: tuple[int, int, int], like: sitk.Image) -> sitk.Image:
    """A label image (1 = region) on the whole CT grid, as a plain pyradiomics user supplies it."""
    size_xyz = like.GetSize()
    labels = np.zeros((size_xyz[2], size_xyz[1], size_xyz[0]), dtype=np.uint8)
    labels[tuple(slice(o, o + n) for o, n in zip(offset_zyx, box.shape))] = box
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(like)
    return image


def _peak_rss_mib(pid: int | str = "self") -> float:
    """VmHWM (peak resident set) of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmHWM for process {pid}")


def _default_extractor() -> RadiomicsFeatureExtractor:
    """pyradiomics' default extractor (diagnostics on), our classes and resampling, its own bin numbering."""
    extractor = RadiomicsFeatureExtractor(resampledPixelSpacing=[1.0, 1.0, 1.0], interpolator="sitkLinear", binWidth=10)
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(**{name: [] for name in FEATURE_CLASSES})
    return extractor


def baseline_child(image_path: str, boxes: list[RegionBoxes]) -> tuple[list[float], list[Values], float]:
    """Runs in a fresh process: (seconds per lesion, values per lesion, peak RSS MiB).

    The CT is read from an image file, as pyradiomics users do, so the process holds one copy.
    Label maps are built before each timed call; one untimed warm-up call (the smallest
    lesion's core) pays the first-call costs first, as the engine's warm-up does.
    """
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    image = sitk.ReadImage(image_path)
    extractor = _default_extractor()
    smallest = min(boxes, key=lambda b: int(b.core.sum()))
    extractor.execute(image, _whole_label_map(smallest.core, smallest.offset_zyx, image))
    seconds: list[float] = []
    values: list[Values] = []
    for box in boxes:
        elapsed = 0.0
        lesion_values: Values = {}
        for region, mask in (("core", box.core), ("ring", box.ring)):
            label_map = _whole_label_map(mask, box.offset_zyx, image)
            start = time.perf_counter()
            result = extractor.execute(image, label_map)
            elapsed += time.perf_counter() - start
            del label_map
            lesion_values[region] = {k: float(v) for k, v in result.items() if k.startswith("original_")}
        seconds.append(elapsed)
        values.append(lesion_values)
    return seconds, values, _peak_rss_mib()


def run_baseline(study: SyntheticStudy, workdir: Path) -> RunResult:
    """Plain pyradiomics in a child process; rings are computed here, outside the timing."""
    image = sitk.GetImageFromArray(study.ct.hu)
    image.SetSpacing(study.ct.geometry.spacing)
    image.SetOrigin(study.ct.geometry.origin)
    image.SetDirection(study.ct.geometry.direction)
    image_path = workdir / "ct.nrrd"
    sitk.WriteImage(image, str(image_path))
    del image
    width = ExtractionSettings().ringWidthMm
    boxes = [ring_boxes(study.ct, lesion, width) for lesion in study.lesions]
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        seconds, values, peak = pool.submit(baseline_child, str(image_path), boxes).result()
    return RunResult(BASELINE_LABEL, "baseline", sum(seconds), seconds, [peak], values)


# --- our engine: scorer processes over gRPC -----------------------------------------------


def _free_port() -> int:
    """A loopback port nobody holds now (the scorer binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ScorerProcess:
    """One `radiomics-cds scorer` process we started."""

    process: subprocess.Popen
    port: int
    log_path: Path


def _start_scorer(panel: str, workdir: Path) -> ScorerProcess:
    """The deployed scoring core: the venv's console script, configured only by RCDS_* variables."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCDS_")}
    # RCDS_HTTP_PORT=0: each scorer's /metrics on an ephemeral port, so two scorers can run side by side
    env.update(RCDS_SCORER_ADDRESS=f"127.0.0.1:{port}", RCDS_FEATURE_PANEL=panel, RCDS_SCORER_WORKERS="1",
               RCDS_HTTP_HOST="127.0.0.1", RCDS_HTTP_PORT="0")
    log_path = workdir / f"scorer-{panel}-{port}.log"
    with log_path.open("wb") as log:
        command = [str(Path(sys.executable).with_name("radiomics-cds")), "--log-level", "WARNING", "scorer"]
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    return ScorerProcess(process, port, log_path)


def _wait_serving(scorer: ScorerProcess) -> None:
    """Ready = a gRPC channel connects; a process that died says why (its log)."""
    with GrpcScorer(f"127.0.0.1:{scorer.port}") as client:
        try:
            client.wait_ready(timeout_s=SCORER_READY_TIMEOUT_S)
        except Exception as error:
            raise RuntimeError(f"scorer on port {scorer.port} not ready (exit code {scorer.process.poll()}):\n"
                               f"{scorer.log_path.read_text()[-2000:]}") from error


def _stop(scorer: ScorerProcess) -> None:
    """SIGTERM, as a supervisor stops it (grace period for in-flight calls), then kill if stuck."""
    scorer.process.terminate()
    try:
        scorer.process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        scorer.process.kill()
        scorer.process.wait()


@contextmanager
def scorers(panel: str, count: int, workdir: Path) -> Iterator[list[ScorerProcess]]:
    """`count` fresh scorer processes (fresh, so each run's peak memory is its own)."""
    started: list[ScorerProcess] = []
    try:
        for _ in range(count):
            started.append(_start_scorer(panel, workdir))
        for scorer in started:
            _wait_serving(scorer)
        yield started
    finally:
        for scorer in started:
            _stop(scorer)


def _warm_up(started: Sequence[ScorerProcess], client: GrpcScorer, crop: LesionCrop) -> None:
    """One untimed call per process, then one per process through the round-robin channel.

    The first call in a process pays lazy imports and first-use costs; the calls through the
    shared channel also make sure it has connected to every process before the clock starts.
    """
    for scorer in started:
        with GrpcScorer(f"127.0.0.1:{scorer.port}") as direct:
            direct.score_lesion(crop)
    for _ in started:
        client.score_lesion(crop)


class TimedScorer:
    """A Scorer that passes every call on and notes how long each lesion took, by lesion number."""

    def __init__(self, scorer: Scorer) -> None:
        self._scorer = scorer
        self.lesion_s: dict[int, float] = {}

    def describe(self) -> Provenance:
        return self._scorer.describe()

    def check_size(self, crop: LesionCrop) -> None:
        self._scorer.check_size(crop)

    def score_lesion(self, crop: LesionCrop) -> LesionResult:
        start = time.perf_counter()
        result = self._scorer.score_lesion(crop)
        self.lesion_s[crop.number] = time.perf_counter() - start
        return result

    def aggregate(self, lesions: Sequence[LesionResult]) -> PatientResult:
        return self._scorer.aggregate(lesions)

    def serving(self) -> bool:
        return self._scorer.serving()


def _score_study(scorer: Scorer, ct: CtSeries, lesions: Sequence[LesionMask],
                 parallel: int) -> tuple[float, list[float], list[LesionResult]]:
    """service.pipeline.score_study's scoring steps, timed: (study s, per-lesion s, results).

    Describe (for the settings), crops, then service.scorer.score_lesions (size checks,
    ScoreLesion from `parallel` threads, AggregatePatient); outputs (SR, Bundle) are not part of
    scoring and are left out.
    """
    timed = TimedScorer(scorer)
    start = time.perf_counter()
    settings = ExtractionSettings.from_dict(dict(timed.describe().settings))
    crops = [lesion_crop(ct, mask, settings) for mask in lesions]
    scored = score_lesions(timed, crops, parallel=parallel)
    study_s = time.perf_counter() - start
    return study_s, [timed.lesion_s[crop.number] for crop in crops], scored.lesions


def run_engine(study: SyntheticStudy, panel: str, processes: int, repeats: int, workdir: Path) -> RunResult:
    """Our engine with `processes` scorer processes behind one round-robin client.

    The study is scored `repeats` times on the same processes and the medians are kept: one
    run of a second or two is easily doubled by other work on a small machine, whereas the
    baseline's minutes average such bursts out.
    """
    with scorers(panel, processes, workdir) as started:
        target = "ipv4:" + ",".join(f"127.0.0.1:{s.port}" for s in started)
        with GrpcScorer(target) as client:
            client.wait_ready(timeout_s=SCORER_READY_TIMEOUT_S)
            smallest = min(study.lesions, key=lambda lesion: lesion.voxel_count)
            _warm_up(started, client, lesion_crop(study.ct, smallest, ExtractionSettings()))
            timings = [_score_study(client, study.ct, study.lesions, processes) for _ in range(repeats)]
        peaks = [_peak_rss_mib(s.process.pid) for s in started]
    study_s = statistics.median(t[0] for t in timings)
    lesion_s = [statistics.median(t[1][i] for t in timings) for i in range(len(study.lesions))]
    label = f"{PANEL_LABELS[panel]}, {processes} process{'es' if processes > 1 else ''}"
    short = f"{'CD8' if panel == 'signature' else 'full'} x{processes}"
    return RunResult(label, short, study_s, lesion_s, peaks, [r.features for r in timings[0][2]])


# --- values ----------------------------------------------------------------------------------


def whole_volume_full_panel(study: SyntheticStudy, signature: Signature) -> list[Values]:
    """Reference values: our full panel, in this process, on the whole volume per lesion."""
    settings = ExtractionSettings()
    context = ScoringContext(settings, signature, LocationRules(), full_panel(settings))
    return [score_lesion(whole_volume(lesion_crop(study.ct, lesion, settings), study.ct), context).features
            for lesion in study.lesions]


def _relative(value: float, reference: float) -> float:
    """|value - reference| / |reference|; the absolute difference where the reference is 0."""
    return abs(value - reference) / abs(reference) if reference != 0.0 else abs(value)


def max_relative_difference(runs: Sequence[list[Values]],
                            reference: list[Values]) -> tuple[float, int]:
    """(largest relative difference, values compared): every feature the runs computed vs the reference."""
    worst, compared = 0.0, 0
    for run in runs:
        for lesion, whole in zip(run, reference):
            for region, features in lesion.items():
                for name, value in features.items():
                    worst = max(worst, _relative(value, whole[region][name]))
                    compared += 1
    return worst, compared


def baseline_differences(baseline: RunResult, ours: list[Values],
                         signature: Signature) -> list[dict[str, object]]:
    """Per CD8 feature: median and max relative difference of plain pyradiomics vs ours."""
    rows = []
    for variable in signature.variables:
        feature_class, feature = pyradiomics_feature(variable.feature)
        plain_name = f"original_{feature_class}_{feature}"
        differences = [_relative(plain[variable.region][plain_name], mine[variable.region][variable.feature])
                       for plain, mine in zip(baseline.features, ours) if mine]
        rows.append({"region": variable.region, "feature": variable.feature, "pyradiomics": plain_name,
                     "median_relative_difference": statistics.median(differences),
                     "max_relative_difference": max(differences)})
    return rows


# --- report -----------------------------------------------------------------------------------


def machine_info() -> dict[str, object]:
    """What the seconds depend on: CPU, memory and the engines' versions."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    memory_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:"))
    return {
        "cpu_count": os.cpu_count(), "cpu_model": model, "memory_gib": round(memory_kib / 1024 ** 2, 1),
        "python": platform.python_version(), "pyradiomics": str(radiomics.__version__),
        "SimpleITK": sitk.Version_VersionString(), "numpy": np.__version__,
    }


def lesion_volumes_ml(study: SyntheticStudy) -> list[float]:
    """Voxel-count volumes, as the lesion's mask on the CT grid gives them."""
    voxel_ml = float(np.prod(study.ct.geometry.spacing)) / 1000.0
    return [lesion.voxel_count * voxel_ml for lesion in study.lesions]


def _rss_text(peaks: Sequence[float]) -> str:
    """One number per process ("372 + 430"): processes do not share their peaks."""
    return " + ".join(f"{p:.0f}" for p in peaks)


def study_table(baseline: RunResult, runs: Sequence[RunResult]) -> str:
    """Markdown: one row per configuration, ratios as baseline time / ours."""
    lines = ["| configuration | study s | mean s / lesion | max s / lesion | x faster than baseline "
             "| peak RSS MiB (per process) |", "|---|---:|---:|---:|---:|---:|"]
    for run in (baseline, *runs):
        lines.append(f"| {run.label} | {run.study_s:.2f} | {statistics.mean(run.lesion_s):.2f} | "
                     f"{max(run.lesion_s):.2f} | {baseline.study_s / run.study_s:.1f} | "
                     f"{_rss_text(run.peak_rss_mib)} |")
    return "\n".join(lines)


def lesion_table(study: SyntheticStudy, baseline: RunResult, runs: Sequence[RunResult]) -> str:
    """Markdown: one row per lesion, since cost grows with the lesion's size."""
    lines = ["| lesion | region | mL | baseline s | " + " | ".join(f"{run.short} s" for run in runs) + " | "
             + " | ".join(f"{run.short} x faster" for run in runs) + " |",
             "|---|---|---:|---:|" + "---:|" * (2 * len(runs))]
    for i, (lesion, volume_ml) in enumerate(zip(study.lesions, lesion_volumes_ml(study))):
        times = " | ".join(f"{run.lesion_s[i]:.2f}" for run in runs)
        ratios = " | ".join(f"{baseline.lesion_s[i] / run.lesion_s[i]:.1f}" for run in runs)
        lines.append(f"| {lesion.number} | {study.regions[i]} | {volume_ml:.2f} | "
                     f"{baseline.lesion_s[i]:.2f} | {times} | {ratios} |")
    return "\n".join(lines)


def values_table(rows: Sequence[dict[str, object]]) -> str:
    """Markdown: plain pyradiomics vs ours for the CD8 features (informational)."""
    lines = ["| region | feature (ours) | pyradiomics name | median rel. difference | max rel. difference |",
             "|---|---|---|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['region']} | {row['feature']} | {row['pyradiomics']} | "
                     f"{row['median_relative_difference']:.3g} | {row['max_relative_difference']:.3g} |")
    return "\n".join(lines)


def summary(report: dict) -> str:
    """The claims, in words: goal met or not, identity PASS/FAIL, and what the numbers include."""
    runs = {run["label"]: run for run in report["runs"]}
    baseline_s = report["baseline"]["study_s"]
    cd8 = runs[f"{PANEL_LABELS['signature']}, 1 process"]
    ratio = baseline_s / cd8["study_s"]
    identity = report["identity"]
    return "\n".join([
        f"- Goal: CD8 profile at least {GOAL_X_FASTER:.0f}x faster than the baseline: "
        f"{ratio:.1f}x with 1 process ({'MET' if ratio >= GOAL_X_FASTER else 'NOT MET'}), "
        f"{baseline_s / runs[PANEL_LABELS['signature'] + ', 2 processes']['study_s']:.1f}x with 2.",
        f"- Identity: CD8 profile (crops, over gRPC) vs full panel on the whole volume: max relative difference "
        f"{identity['cd8_vs_whole_max_rel']:.3g} over {identity['cd8_compared']} values "
        f"({'PASS' if identity['cd8_pass'] else 'FAIL'} at {IDENTITY_RTOL:g}); full panel (crops) vs whole volume: "
        f"{identity['full_vs_whole_max_rel']:.3g} over {identity['full_compared']} values "
        f"({'PASS' if identity['full_pass'] else 'FAIL'}).",
        "- Plain pyradiomics' values of the CD8 features differ from ours, as expected: it numbers grey levels "
        "from each ROI's minimum (ours: absolute 10 HU bins from -1000 HU), anchors its resampling grid at the "
        "mask's bounding box (ours: IBSI, fixed by the whole image), resamples masks by nearest neighbour "
        "(ours: trilinear then >= 0.5), and here gets a ring drawn on the 0.7x0.7x1 mm grid (ours: on the 1 mm grid).",
        "- Baseline: whole-volume label maps built and rings computed (ring_mask on the original grid, in a box "
        "padded past the ring) outside the timed region; pyradiomics' default extractor also computes "
        "shape features of the ring (meaningless, kept: it is the default) and its diagnostics.",
        "- Warm-up: one untimed call per process (and, for the baseline, one untimed extraction) before timing.",
        f"- Our engine: median of {report['repeats']} scorings of the study on the same processes (per study and "
        "per lesion); the baseline: one run (its minutes average out short bursts of other work).",
        f"- Engine study time = Describe + crops + ScoreLesion calls + AggregatePatient, from the client "
        f"(this process, which also uses CPU on this {report['machine']['cpu_count']}-core machine). "
        f"SimpleITK's resampling is multithreaded in every configuration.",
        "- Per-lesion seconds are the client's ScoreLesion latency; with 2 processes that includes waiting behind "
        "another lesion (round robin is not load-aware, each scorer runs one call at a time) and sharing the cores.",
        f"- Peak RSS of this bench process (phantom generation, crops, client): "
        f"{report['bench_process_peak_rss_mib']:.0f} MiB; the baseline ran in its own process.",
        "- Ratios are the point; seconds depend on the machine.",
    ])


def render(report: dict, tables: dict[str, str]) -> str:
    """The whole printed report: context, tables, summary."""
    machine = report["machine"]
    shape = report["study"]["shape_zyx"]
    head = (f"Machine: {machine['cpu_count']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB; "
            f"Python {machine['python']}, pyradiomics {machine['pyradiomics']}, SimpleITK {machine['SimpleITK']}, "
            f"numpy {machine['numpy']}; 1-minute load average {machine['load_average_1min'][0]:.2f} at start, "
            f"{machine['load_average_1min'][1]:.2f} at end (other work on the machine perturbs the seconds).\n"
            f"Study: synthetic CT {shape[2]}x{shape[1]}x{shape[0]} (x, y, z) at 0.7x0.7x1.0 mm, "
            f"{report['study']['lesions']} lesions of {report['study']['volume_range_ml'][0]:g} to "
            f"{report['study']['volume_range_ml'][1]:g} mL (built in {report['study']['build_s']:.1f} s).")
    return "\n\n".join([
        head, "Per study:", tables["study"], "Per lesion (seconds per ScoreLesion call; baseline: core + ring):",
        tables["lesion"], "Plain pyradiomics vs ours, CD8 features (expected to differ, see below):",
        tables["values"], "Summary:", summary(report),
    ])


def _run_dict(run: RunResult) -> dict[str, object]:
    """A run for the JSON file (values stay out: they are checked, not reported)."""
    return {"label": run.label, "study_s": run.study_s, "lesion_s": run.lesion_s, "peak_rss_mib": run.peak_rss_mib}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="256x256x120 with 4 lesions of 0.5 to 20 mL (smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--repeats", type=int, default=5, help="times our engine scores the study (median kept)")
    args = parser.parse_args(argv)
    logging.getLogger("radiomics").setLevel(logging.ERROR)

    shape, lesions, volume_range = QUICK_STUDY if args.quick else FULL_STUDY
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    study = make_study(shape, lesions, volume_range)
    build_s = time.perf_counter() - start
    signature = load_signature()

    with tempfile.TemporaryDirectory(prefix="rcds-bench-") as tmp:
        workdir = Path(tmp)
        runs = [run_engine(study, panel, processes, args.repeats, workdir) for panel, processes in ENGINE_RUNS]
        bench_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        baseline = run_baseline(study, workdir)

    reference = whole_volume_full_panel(study, signature)
    cd8_runs = [run.features for run, (panel, _) in zip(runs, ENGINE_RUNS) if panel == "signature"]
    full_runs = [run.features for run, (panel, _) in zip(runs, ENGINE_RUNS) if panel == "full"]
    cd8_rel, cd8_n = max_relative_difference(cd8_runs, reference)
    full_rel, full_n = max_relative_difference(full_runs, reference)
    report = {
        "machine": machine_info() | {"load_average_1min": [load_before, os.getloadavg()[0]]},
        "study": {"shape_zyx": list(shape), "lesions": lesions, "volume_range_ml": list(volume_range),
                  "build_s": build_s, "regions": study.regions,
                  "volumes_ml": lesion_volumes_ml(study)},
        "baseline": _run_dict(baseline),
        "runs": [_run_dict(run) for run in runs],
        "identity": {
            "cd8_vs_whole_max_rel": cd8_rel, "cd8_compared": cd8_n, "cd8_pass": cd8_rel <= IDENTITY_RTOL,
            "full_vs_whole_max_rel": full_rel, "full_compared": full_n, "full_pass": full_rel <= IDENTITY_RTOL,
        },
        "baseline_vs_ours": baseline_differences(baseline, cd8_runs[0], signature),
        "bench_process_peak_rss_mib": bench_peak,
        "repeats": args.repeats,
    }
    tables = {"study": study_table(baseline, runs), "lesion": lesion_table(study, baseline, runs),
              "values": values_table(report["baseline_vs_ours"])}
    text = render(report, tables)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report | {"markdown": text}, indent=2))
    return 0 if report["identity"]["cd8_pass"] and report["identity"]["full_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
