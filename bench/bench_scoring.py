"""Scoring benchmark: our engine against what users run today, all in one run, alternated.

    python bench/bench_scoring.py [--quick] [--repeats N] [--json PATH]

Run it with the benchmark's own virtualenv (bench/README.md: bench/requirements.txt adds
flash-radiomics to the service's dependencies). Builds a synthetic CT (bench/synthetic_ct.py:
512x512x300 at 0.7x0.7x1.0 mm, 10 lesions of 0.5 to 100 mL; --quick: 256x256x120, 4 lesions of
0.5 to 20 mL) and scores the study with every contender, in rounds: each round runs every
contender once, in an order rotated by one each round, so that a burst of other work on the
machine does not fall on one contender only; medians over the rounds are reported.

Contenders (each in a process of its own, so that its peak memory is its own):
- ours, exactly as deployed: `radiomics-cds scorer` processes (1 or 2) called over gRPC as the
  service calls them, with the CD8 profile (only what the signature and the lesion measures need)
  and with the full panel;
- pyradiomics on a padded crop (the headline baseline: how a competent user runs it), with the
  same features of core and ring as each of our panels;
- flash-radiomics (a faster engine with pyradiomics' definitions), likewise;
- MIRP (the IBSI reference engine, in its own interpreter: bench/mirp_contender.py), with the
  CD8 profile's feature families, on a crop on our grid (reported as not run without MIRP);
- pyradiomics on the whole volume and whole-volume label maps, its default extractor (kept for
  comparison with earlier figures; full panel only, it takes minutes).
Every baseline does inside the timing what a user must do to get these numbers: cut the crop (or
build the whole-volume label map), build the 2 mm ring with SimpleITK (binary dilation minus
erosion) and extract the features of core and ring.

Then it checks values: our features computed from crops over gRPC must equal our full panel
computed in-process on the whole volume (relative 1e-9); for information, how far pyradiomics'
values of the CD8 features are from ours (they differ by design: docs/method.md section 2), and
how far MIRP's are over every feature both compute.

It prints Markdown tables (for bench/README.md) and ends with one line for comparing runs:
`summary: cd8-vs-pyradiomics-crop=N.NNx full-vs-pyradiomics-crop=N.NNx cd8-vs-flash=N.NNx cd8-vs-mirp=N.NNx`.
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
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from service.imaging.crops import lesion_crop
from service.location import LocationRules
from service.model import CtSeries, LesionCrop, LesionMask, LesionResult
from service.scorer import Scorer, score_lesions
from service.scoring.client import GrpcScorer
from service.scoring.ibsi_names import pyradiomics_feature
from service.scoring.lesion import ScoringContext, score_lesion
from service.scoring.panel import RegionClasses, feature_panel, full_panel
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import Signature, load_signature
from synthetic_ct import SyntheticStudy, make_study

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.crops import whole_volume  # noqa: E402
from tests.support.mirp_names import our_name  # noqa: E402

FULL_STUDY = ((300, 512, 512), 10, (0.5, 100.0))  # (z, y, x) voxels, lesions, volume range mL
QUICK_STUDY = ((120, 256, 256), 4, (0.5, 20.0))
IDENTITY_RTOL = 1e-9
SCORER_READY_TIMEOUT_S = 120.0
# Targets of issue 15: ours / baseline, per study (and per lesion for the largest lesion).
TARGET_CD8_VS_CROP = 3.0
TARGET_FULL_VS_CROP = 1.5
TARGET_CD8_VS_FLASH = 1.0

Values = dict[str, dict[str, float]]  # one lesion's features: region -> feature -> value
PanelRegions = dict[str, RegionClasses]  # region -> pyradiomics class -> features (empty: all)


@dataclass
class Timings:
    """One contender's rounds: study seconds and per-lesion seconds of each, values of the first."""

    study_s: list[float] = field(default_factory=list)
    lesion_s: list[list[float]] = field(default_factory=list)
    features: list[Values] = field(default_factory=list)

    def add(self, study_s: float, lesion_s: list[float], features: list[Values]) -> None:
        self.study_s.append(study_s)
        self.lesion_s.append(lesion_s)
        if not self.features:
            self.features = features

    @property
    def median_study_s(self) -> float:
        return statistics.median(self.study_s)

    def median_lesion_s(self) -> list[float]:
        return [statistics.median(run[i] for run in self.lesion_s) for i in range(len(self.lesion_s[0]))]


@dataclass
class Contender:
    """Something that scores the whole study once per call."""

    key: str  # short name, also the JSON key
    label: str  # row heading
    panel: str  # "signature" (CD8 features) or "full"
    run_once: Callable[[], tuple[float, list[float], list[Values]]]
    peak_rss_mib: Callable[[], list[float]]
    timings: Timings = field(default_factory=Timings)
    unavailable: str | None = None  # why it could not run on this machine
    # Whether the untimed warm-up rounds run it: not the whole-volume baseline, whose round takes
    # minutes on the full study while its first-call costs are a fraction of a percent of that.
    warms_up: bool = True


def _peak_rss_mib(pid: int | str = "self") -> float:
    """VmHWM (peak resident set) of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmHWM for process {pid}")


# --- the baselines: what a user runs, in a child process each ---------------------------------

# Set in each baseline's child process by _child_setup.
_CHILD: dict[str, object] = {}


def ring_radius_voxels(spacing_xyz: Sequence[float], width_mm: float) -> list[int]:
    """The plain user's 2 mm ring: a ball of round(width / spacing) voxels per axis (x, y, z)."""
    return [max(1, int(round(width_mm / s))) for s in spacing_xyz]


def user_ring(core: sitk.Image, radius: Sequence[int]) -> sitk.Image:
    """The peritumoral ring as a SimpleITK user draws it: dilation minus erosion of the core."""
    dilated = sitk.BinaryDilate(core, list(radius), sitk.sitkBall, 0, 1)
    eroded = sitk.BinaryErode(core, list(radius), sitk.sitkBall, 0, 1)
    return sitk.Subtract(dilated, eroded)


def _label_map(mask: np.ndarray, offset_zyx: Sequence[int], like: sitk.Image, start_zyx: Sequence[int]) -> sitk.Image:
    """A uint8 label image (1 = lesion) on `like`'s grid, which starts at `start_zyx` of the CT."""
    size_xyz = like.GetSize()
    labels = np.zeros((size_xyz[2], size_xyz[1], size_xyz[0]), dtype=np.uint8)
    labels[tuple(slice(o - s, o - s + n) for o, s, n in zip(offset_zyx, start_zyx, mask.shape))] = mask
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(like)
    return image


def padded_crop(image: sitk.Image, offset_zyx: Sequence[int], shape_zyx: Sequence[int],
                pad_xyz: Sequence[int]) -> tuple[sitk.Image, list[int]]:
    """The lesion's bounding box padded by `pad_xyz` voxels (clipped at the image), and its start (z, y, x)."""
    size = image.GetSize()
    low = [max(0, offset_zyx[2 - a] - pad_xyz[a]) for a in range(3)]
    high = [min(size[a], offset_zyx[2 - a] + shape_zyx[2 - a] + pad_xyz[a]) for a in range(3)]
    crop = image[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
    return crop, [low[2], low[1], low[0]]


def _pyradiomics_extractors(regions: PanelRegions, whole_volume_defaults: bool) -> dict[str, object]:
    """One extractor per region, enabled for exactly that region's classes and features.

    Crop: resampling to 1 mm (trilinear), binWidth 10 (pyradiomics' own bin numbering), no
    diagnostics (a competent user's settings). Whole volume: the same but with pyradiomics'
    default diagnostics on (image and mask hashes), as the earlier baseline ran.
    """
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    extractors = {}
    for region, classes in regions.items():
        extractor = RadiomicsFeatureExtractor(resampledPixelSpacing=[1.0, 1.0, 1.0], interpolator="sitkLinear",
                                              binWidth=10, additionalInfo=whole_volume_defaults)
        extractor.disableAllFeatures()
        extractor.enableFeaturesByName(**{name: list(features) for name, features in classes.items()})
        extractors[region] = extractor
    return extractors


def _flash_extractors(regions: PanelRegions, hdf5_dir: str) -> dict[str, object]:
    """flash-radiomics with the crop baseline's settings, one extractor per region.

    Made afresh for every round: flash-radiomics caches preprocessed inputs by the Python id()
    of the image objects, and ids are reused once objects are freed.
    """
    from flash_radiomics import RadiomicsFeatureExtractor

    return {
        region: RadiomicsFeatureExtractor({
            "setting": {"label": 1, "binWidth": 10, "resampledPixelSpacing": [1.0, 1.0, 1.0],
                        "interpolator": "sitkLinear", "additionalInfo": False, "hdf5OutputDirectory": hdf5_dir},
            "imageType": {"Original": {}},
            "scalarFeatureClass": {name: list(features) for name, features in classes.items()},
            "spatialFeatureClass": None,
        }, backend="cpu")
        for region, classes in regions.items()
    }


def _child_setup(kind: str, image_path: str, lesions: list[tuple[tuple[int, int, int], np.ndarray]],
                 regions: PanelRegions, width_mm: float, scratch: str) -> None:
    """Runs once in the baseline's process: the CT read from a file, as its users do."""
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    if kind == "flash":
        import flash_radiomics  # fails here, not mid-round, if it cannot run

        flash_radiomics.setVerbosity(logging.ERROR)  # it logs every step at INFO to stderr by default
        logging.getLogger("flash_radiomics").setLevel(logging.ERROR)
    image = sitk.ReadImage(image_path)
    _CHILD.update(kind=kind, image=image, lesions=lesions, regions=regions, scratch=scratch,
                  radius=ring_radius_voxels(image.GetSpacing(), width_mm))


def _child_lesion(extractors: dict[str, object], offset_zyx: tuple[int, int, int], mask: np.ndarray,
                  keep: list[object]) -> Values:
    """One lesion as the user scores it: crop (or whole volume), label map, ring, features."""
    image: sitk.Image = _CHILD["image"]
    radius: list[int] = _CHILD["radius"]
    if _CHILD["kind"] == "pyradiomics-whole":
        grid, start = image, [0, 0, 0]
    else:  # padded past the ring and the resampling's reach
        grid, start = padded_crop(image, offset_zyx, mask.shape, [r + 2 for r in radius])
    core = _label_map(mask, offset_zyx, grid, start)
    masks = {"core": core, "ring": user_ring(core, radius)}
    keep.extend([grid, *masks.values()])  # alive until the round ends (see _flash_extractors)
    values: Values = {}
    for region, extractor in extractors.items():
        result = extractor.execute(grid, masks[region])
        values[region] = {k: float(v) for k, v in result.items() if k.startswith("original_")}
    return values


def child_warm_up() -> None:
    """One untimed lesion (the smallest), so that first-call costs are not timed."""
    lesions = _CHILD["lesions"]
    offset, mask = min(lesions, key=lambda lesion: int(lesion[1].sum()))
    _child_lesion(_child_extractors(), offset, mask, [])


def _child_extractors() -> dict[str, object]:
    regions: PanelRegions = _CHILD["regions"]
    if _CHILD["kind"] == "flash":
        return _flash_extractors(regions, str(_CHILD["scratch"]))
    return _pyradiomics_extractors(regions, whole_volume_defaults=_CHILD["kind"] == "pyradiomics-whole")


def child_score_study() -> tuple[float, list[float], list[Values]]:
    """The study, lesion after lesion: (study s, per-lesion s, values per lesion)."""
    keep: list[object] = []
    start = time.perf_counter()
    extractors = _child_extractors()
    seconds, values = [], []
    for offset, mask in _CHILD["lesions"]:
        lesion_start = time.perf_counter()
        values.append(_child_lesion(extractors, offset, mask, keep))
        seconds.append(time.perf_counter() - lesion_start)
    return time.perf_counter() - start, seconds, values


def child_peak_rss_mib() -> float:
    return _peak_rss_mib()


@contextmanager
def baseline(kind: str, key: str, label: str, panel: str, regions: PanelRegions, study: SyntheticStudy,
             image_path: Path, scratch: Path) -> Iterator[Contender]:
    """A baseline in a fresh process of its own, warmed up; unavailable (with the reason) if it fails."""
    width = ExtractionSettings().ringWidthMm
    lesions = [(lesion.offset_zyx, lesion.mask) for lesion in study.lesions]
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_child_setup,
                               initargs=(kind, str(image_path), lesions, regions, width, str(scratch)))
    try:
        contender = Contender(key, label, panel, lambda: pool.submit(child_score_study).result(),
                              lambda: [pool.submit(child_peak_rss_mib).result()], warms_up=kind != "pyradiomics-whole")
        try:
            pool.submit(child_warm_up).result()
        except Exception as error:  # an engine that cannot run here is reported, not fatal
            contender.unavailable = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        yield contender
    finally:
        pool.shutdown(cancel_futures=True)


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
            direct.score_batch([crop])
    for _ in started:
        client.score_study([crop])


def _score_study(scorer: Scorer, ct: CtSeries, lesions: Sequence[LesionMask],
                 parallel: int) -> tuple[float, list[float], list[LesionResult]]:
    """service.pipeline.score_study's scoring steps, timed: (study s, per-lesion s, results).

    The study: Describe (for the settings), crops, then service.scorer.score_lesions (size
    checks, the lesions in `parallel` ScoreLesions calls from as many threads, the patient level
    in the same call when there is one, else AggregatePatient); outputs (SR, Bundle) are not part
    of scoring and are left out. Then each lesion alone, as a user scoring that one lesion would:
    its crop cut and scored in its own call (the per-lesion times).
    """
    start = time.perf_counter()
    settings = ExtractionSettings.from_dict(dict(scorer.describe().settings))
    crops = [lesion_crop(ct, mask, settings) for mask in lesions]
    scored = score_lesions(scorer, crops, parallel=parallel)
    study_s = time.perf_counter() - start
    lesion_s = []
    for mask, in_study in zip(lesions, scored.lesions):
        start = time.perf_counter()
        (alone,) = scorer.score_batch([lesion_crop(ct, mask, settings)])
        lesion_s.append(time.perf_counter() - start)
        if alone != in_study:  # the same crop, the same numbers, however it travels
            raise RuntimeError(f"lesion {in_study.number}: scored alone it differs from its result in the study")
    return study_s, lesion_s, scored.lesions


@contextmanager
def engine(panel: str, processes: int, study: SyntheticStudy, workdir: Path) -> Iterator[Contender]:
    """Our engine with `processes` scorer processes behind one round-robin client, warmed up."""
    with scorers(panel, processes, workdir) as started:
        target = "ipv4:" + ",".join(f"127.0.0.1:{s.port}" for s in started)
        with GrpcScorer(target) as client:
            client.wait_ready(timeout_s=SCORER_READY_TIMEOUT_S)
            smallest = min(study.lesions, key=lambda lesion: lesion.voxel_count)
            _warm_up(started, client, lesion_crop(study.ct, smallest, ExtractionSettings()))

            def run_once() -> tuple[float, list[float], list[Values]]:
                study_s, lesion_s, results = _score_study(client, study.ct, study.lesions, processes)
                return study_s, lesion_s, [result.features for result in results]

            name = "CD8 profile" if panel == "signature" else "full panel"
            plural = "es" if processes > 1 else ""
            yield Contender(f"ours-{'cd8' if panel == 'signature' else 'full'}-x{processes}",
                            f"ours: {name}, {processes} scorer process{plural}", panel, run_once,
                            lambda: [_peak_rss_mib(s.process.pid) for s in started])


# --- MIRP: the IBSI reference engine, in its own interpreter ---------------------------------

REPO = Path(__file__).resolve().parents[1]
# Our classes in MIRP's feature families (MIRP computes whole families).
MIRP_FAMILIES = {"firstorder": "statistics", "glcm": "glcm", "glrlm": "glrlm", "glszm": "glszm", "gldm": "ngldm",
                 "ngtdm": "ngtdm", "shape": "morphology"}


def mirp_settings(settings: ExtractionSettings) -> dict[str, object]:
    """Our default extraction settings in MIRP's terms (as tests/integration/test_mirp_agreement.py
    spells IBSI configuration C): trilinear to 1 mm without anti-aliasing, mask at 0.5, integer
    HU (MIRP rounds CT after interpolation), 10 HU bins from -1000 HU (MIRP's default lower bound
    for CT), texture averaged over the 3D directions."""
    assert settings.resampledPixelSpacing is not None and settings.binWidth is not None
    return {
        "image_modality": "CT", "by_slice": False, "new_spacing": settings.resampledPixelSpacing[0],
        "spline_order": 1, "anti_aliasing": False, "roi_spline_order": 1,
        "roi_interpolation_mask_inclusion_threshold": settings.maskThreshold,
        "base_discretisation_method": "fixed_bin_size", "base_discretisation_bin_width": settings.binWidth,
        "glcm_spatial_method": "3d_average", "glrlm_spatial_method": "3d_average", "glszm_spatial_method": "3d",
        "ngldm_spatial_method": "3d", "ngtdm_spatial_method": "3d", "ivh_discretisation_method": "none",
    }


def mirp_python(given: Path | None) -> Path | None:
    """MIRP's interpreter: --mirp-python, RCDS_MIRP_PYTHON or .venv-mirp (scripts/install-mirp)."""
    candidates = [given, os.environ.get("RCDS_MIRP_PYTHON"), REPO / ".venv-mirp" / "bin" / "python"]
    return next((Path(c) for c in candidates if c and Path(c).exists()), None)


class MirpProcess:
    """bench/mirp_contender.py in MIRP's interpreter: one command per line, one JSON reply per line."""

    def __init__(self, python: Path, setup: Path, log: Path) -> None:
        self._log = log.open("wb")
        self.process = subprocess.Popen([str(python), str(REPO / "bench" / "mirp_contender.py"), str(setup)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True)

    def ask(self, command: str) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"MIRP process ended (exit code {self.process.wait()})")
        reply: dict = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@contextmanager
def mirp(python: Path | None, regions: PanelRegions, study: SyntheticStudy, image_path: Path,
         workdir: Path) -> Iterator[Contender]:
    """MIRP with the CD8 profile's families per region, warmed up; unavailable (why) if it cannot run."""
    settings = ExtractionSettings()
    label = "MIRP, padded crop"
    if python is None:
        yield Contender("mirp-cd8", label, "signature", _not_run, _not_run,
                        unavailable="MIRP is not installed (scripts/install-mirp, RCDS_MIRP_PYTHON or --mirp-python)")
        return
    lesions = workdir / "lesions.npz"
    np.savez(lesions, **{f"offset_{i}": np.asarray(lesion.offset_zyx) for i, lesion in enumerate(study.lesions)},
             **{f"mask_{i}": lesion.mask.astype(np.uint8) for i, lesion in enumerate(study.lesions)})
    scratch = workdir / "mirp"
    scratch.mkdir()
    radius = ring_radius_voxels(study.ct.geometry.spacing, settings.ringWidthMm)
    assert settings.resampledPixelSpacing is not None
    setup = {"ct": str(image_path), "lesions": str(lesions), "ring_radius_xyz": radius,
             "pad_xyz": [r + 2 for r in radius], "new_spacing_mm": settings.resampledPixelSpacing[0],
             "families": {region: sorted({MIRP_FAMILIES[name] for name in classes}) for region, classes in regions.items()},
             "settings": mirp_settings(settings), "scratch": str(scratch)}
    setup_path = workdir / "mirp-setup.json"
    setup_path.write_text(json.dumps(setup))
    process = MirpProcess(python, setup_path, workdir / "mirp.log")
    try:
        def run_once() -> tuple[float, list[float], list[Values]]:
            reply = process.ask("study")
            return reply["study_s"], reply["lesion_s"], reply["features"]

        contender = Contender("mirp-cd8", label, "signature", run_once,
                              lambda: [process.ask("peak")["peak_rss_mib"]])
        try:
            process.ask("warm-up")
        except Exception as error:  # an engine that cannot run here is reported, not fatal
            log = (workdir / "mirp.log").read_text(errors="replace").strip().splitlines()
            contender.unavailable = f"{error}; {log[-1] if log else ''}"[:300]
        yield contender
    finally:
        process.close()


def _not_run() -> NoReturn:
    raise RuntimeError("an unavailable contender is never run")


def mirp_differences(theirs: list[Values], ours: list[Values]) -> dict[str, dict[str, object]]:
    """Per region: how far MIRP's values are from ours (our full panel) over the features both compute."""
    rows: dict[str, dict[str, object]] = {}
    for region in ("core", "ring"):
        differences: dict[str, float] = {}
        for mirp_lesion, our_lesion in zip(theirs, ours):
            mine = our_lesion.get(region, {})
            for name, value in mirp_lesion.get(region, {}).items():
                if our_name(name) in mine:
                    key = our_name(name)
                    differences[key] = max(differences.get(key, 0.0), _relative(value, mine[key]))
        if differences:
            worst = max(differences, key=lambda name: differences[name])
            rows[region] = {"features": sorted(differences), "max_relative_difference": differences[worst],
                            "worst_feature": worst}
    return rows


# --- values ----------------------------------------------------------------------------------


def whole_volume_full_panel(study: SyntheticStudy, signature: Signature) -> list[Values]:
    """Reference values: our full panel, in this process, on the whole volume per lesion."""
    settings = ExtractionSettings()
    context = ScoringContext(settings, signature, LocationRules(), full_panel(settings))
    return [score_lesion(whole_volume(lesion_crop(study.ct, lesion, settings), study.ct), context).features
            for lesion in study.lesions]


def rounded_hu(study: SyntheticStudy) -> SyntheticStudy:
    """The study with integer HU: MIRP rounds CT intensities on reading (a CT stores integers;
    the synthetic CT's are not), so its values are compared with ours on the rounded CT."""
    return replace(study, ct=replace(study.ct, hu=np.round(study.ct.hu)))


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


def baseline_differences(plain: list[Values], ours: list[Values], signature: Signature) -> list[dict[str, object]]:
    """Per CD8 feature: median and max relative difference of pyradiomics (on a crop) vs ours."""
    rows = []
    for variable in signature.variables:
        feature_class, feature = pyradiomics_feature(variable.feature)
        plain_name = f"original_{feature_class}_{feature}"
        differences = [_relative(theirs[variable.region][plain_name], mine[variable.region][variable.feature])
                       for theirs, mine in zip(plain, ours) if mine]
        rows.append({"region": variable.region, "feature": variable.feature, "pyradiomics": plain_name,
                     "median_relative_difference": statistics.median(differences),
                     "max_relative_difference": max(differences)})
    return rows


# --- report -----------------------------------------------------------------------------------


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _mirp_version(python: Path | None) -> str:
    """MIRP's version, asked of its own interpreter."""
    if python is None:
        return "not installed"
    run = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('mirp'))"],
                         capture_output=True, text=True, check=False)
    return run.stdout.strip() or "unknown"


def machine_info() -> dict[str, object]:
    """What the seconds depend on: CPU, memory and the engines' versions."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    memory_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:"))
    return {
        "cpu_count": os.cpu_count(), "cpu_model": model, "memory_gib": round(memory_kib / 1024 ** 2, 1),
        "python": platform.python_version(), "pyradiomics": _version("pyradiomics-bhklab"),
        "flash-radiomics": _version("flash-radiomics"), "SimpleITK": sitk.Version_VersionString(),
        "numpy": np.__version__,
    }


def lesion_volumes_ml(study: SyntheticStudy) -> list[float]:
    """Voxel-count volumes, as the lesion's mask on the CT grid gives them."""
    voxel_ml = float(np.prod(study.ct.geometry.spacing)) / 1000.0
    return [lesion.voxel_count * voxel_ml for lesion in study.lesions]


def _rss_text(peaks: Sequence[float]) -> str:
    """One number per process ("372 + 430"): processes do not share their peaks."""
    return " + ".join(f"{p:.0f}" for p in peaks)


def study_table(contenders: Sequence[Contender], peaks: dict[str, list[float]]) -> str:
    """Markdown: one row per contender, medians over the rounds."""
    lines = ["| contender | features | study s (median) | rounds (s) | max s / lesion | peak RSS MiB (per process) |",
             "|---|---|---:|---|---:|---:|"]
    for c in contenders:
        if c.unavailable:
            lines.append(f"| {c.label} | {PANEL_NAMES[c.panel]} | could not run: {c.unavailable} | | | |")
            continue
        rounds = ", ".join(f"{s:.2f}" for s in c.timings.study_s)
        lines.append(f"| {c.label} | {PANEL_NAMES[c.panel]} | {c.timings.median_study_s:.2f} | {rounds} | "
                     f"{max(c.timings.median_lesion_s()):.2f} | {_rss_text(peaks[c.key])} |")
    return "\n".join(lines)


def ratio(baseline: Contender | None, ours: Contender, lesion: int | None = None) -> float | None:
    """How many times faster ours is than the baseline (medians), per study or for one lesion."""
    if baseline is None or baseline.unavailable:
        return None
    if lesion is None:
        return baseline.timings.median_study_s / ours.timings.median_study_s
    return baseline.timings.median_lesion_s()[lesion] / ours.timings.median_lesion_s()[lesion]


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


# (ours, baseline, target) comparisons of the summary and the ratio table
COMPARISONS = (
    ("ours-cd8-x1", "pyradiomics-crop-cd8", TARGET_CD8_VS_CROP),
    ("ours-full-x1", "pyradiomics-crop-full", TARGET_FULL_VS_CROP),
    ("ours-cd8-x1", "flash-cd8", TARGET_CD8_VS_FLASH),
    ("ours-cd8-x1", "mirp-cd8", None),
    ("ours-full-x1", "flash-full", None),
    ("ours-cd8-x2", "pyradiomics-crop-cd8", None),
    ("ours-full-x2", "pyradiomics-crop-full", None),
    ("ours-full-x1", "pyradiomics-whole-full", None),
)


def ratio_table(study: SyntheticStudy, by_key: dict[str, Contender]) -> str:
    """Markdown: ours vs each baseline with the same features, per study and for the largest lesion."""
    largest = int(np.argmax(lesion_volumes_ml(study)))
    volume = lesion_volumes_ml(study)[largest]
    lines = [f"| ours | baseline | x faster, study | x faster, {volume:.0f} mL lesion | target |", "|---|---|---:|---:|---|"]
    for ours_key, baseline_key, target in COMPARISONS:
        ours, other = by_key[ours_key], by_key.get(baseline_key)
        per_study, per_lesion = ratio(other, ours), ratio(other, ours, largest)
        if target is None:
            verdict = ""
        elif per_study is None or per_lesion is None:
            verdict = f"at least {target:g}x: not measured"
        else:
            met = per_study >= target and per_lesion >= target
            verdict = f"at least {target:g}x: {'MET' if met else 'NOT MET'}"
        label = other.label if other else baseline_key
        lines.append(f"| {ours.label} | {label} | {_x(per_study)} | {_x(per_lesion)} | {verdict} |")
    return "\n".join(lines)


def lesion_table(study: SyntheticStudy, contenders: Sequence[Contender]) -> str:
    """Markdown: median seconds per lesion and contender (baselines: crop or label map + ring + core + ring)."""
    shown = [c for c in contenders if not c.unavailable]
    lines = ["| lesion | region | mL | " + " | ".join(c.key for c in shown) + " |",
             "|---|---|---:|" + "---:|" * len(shown)]
    medians = [c.timings.median_lesion_s() for c in shown]
    for i, (lesion, volume_ml) in enumerate(zip(study.lesions, lesion_volumes_ml(study))):
        lines.append(f"| {lesion.number} | {study.regions[i]} | {volume_ml:.2f} | "
                     + " | ".join(f"{m[i]:.3f}" for m in medians) + " |")
    return "\n".join(lines)


def values_table(rows: Sequence[dict[str, object]]) -> str:
    """Markdown: pyradiomics (crop) vs ours for the CD8 features (informational)."""
    lines = ["| region | feature (ours) | pyradiomics name | median rel. difference | max rel. difference |",
             "|---|---|---|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['region']} | {row['feature']} | {row['pyradiomics']} | "
                     f"{row['median_relative_difference']:.3g} | {row['max_relative_difference']:.3g} |")
    return "\n".join(lines)


def mirp_table(rows: dict[str, dict[str, object]]) -> str:
    """Markdown: per region, MIRP's largest relative difference from ours over the shared features."""
    if not rows:
        return "(MIRP did not run)"
    lines = ["| region | shared features | max rel. difference | where |", "|---|---:|---:|---|"]
    for region, row in rows.items():
        features = row["features"]
        assert isinstance(features, list)
        lines.append(f"| {region} | {len(features)} | {row['max_relative_difference']:.3g} | {row['worst_feature']} |")
    return "\n".join(lines)


def summary_line(by_key: dict[str, Contender]) -> str:
    """The one line to compare runs by (issue 15)."""
    cd8, full = by_key["ours-cd8-x1"], by_key["ours-full-x1"]
    return (f"summary: cd8-vs-pyradiomics-crop={_x(ratio(by_key['pyradiomics-crop-cd8'], cd8))} "
            f"full-vs-pyradiomics-crop={_x(ratio(by_key['pyradiomics-crop-full'], full))} "
            f"cd8-vs-flash={_x(ratio(by_key.get('flash-cd8'), cd8))} "
            f"cd8-vs-mirp={_x(ratio(by_key.get('mirp-cd8'), cd8))}")


def notes(report: dict, contenders: Sequence[Contender]) -> str:
    """What the numbers include, the identity check, and any engine that could not run."""
    identity = report["identity"]
    lines = [
        f"- Identity: CD8 profile (crops, over gRPC) vs our full panel on the whole volume: max relative difference "
        f"{identity['cd8_vs_whole_max_rel']:.3g} over {identity['cd8_compared']} values "
        f"({'PASS' if identity['cd8_pass'] else 'FAIL'} at {IDENTITY_RTOL:g}); full panel (crops) vs whole volume: "
        f"{identity['full_vs_whole_max_rel']:.3g} over {identity['full_compared']} values "
        f"({'PASS' if identity['full_pass'] else 'FAIL'}).",
        f"- Rounds: {report['repeats']}; each runs every contender once, the order rotated by one per round; "
        "medians per study and per lesion. Warm-up: one untimed lesion per process, then "
        f"{report['warm_up_rounds']} untimed round(s) of the whole study for every contender but the whole-volume "
        "baseline (minutes per round on the full study; its first-call costs are a fraction of a percent of that).",
        "- Ours, per study: Describe + crops + the lesions in one ScoreLesions call per scorer process (with the "
        "patient level when there is one call, else AggregatePatient), from the client (this process, which also "
        "uses the CPU); the scorer also computes volume, diameters and the signature score. Ours, per lesion: "
        "that lesion alone, its crop cut and scored in its own call.",
        "- Baselines: inside the timing, per lesion, the padded crop (bounding box + ring radius + 2 voxels; "
        "whole volume: a whole-volume label map), the ring by SimpleITK BinaryDilate minus BinaryErode (ball of "
        f"{report['ring_radius_voxels']} voxels, x y z), and extraction of core and ring with the panel's "
        "features; resampling to 1 mm trilinear, binWidth 10 with each engine's own bin numbering. pyradiomics on "
        "a crop and flash-radiomics: diagnostics off; pyradiomics on the whole volume: its default diagnostics on. "
        "flash-radiomics: CPU backend, its default threads (all cores), a fresh extractor per round, and the HDF5 "
        "file it writes for every extraction.",
        "- MIRP (CD8 profile only; in its own interpreter; its values compared with our full panel on the whole "
        "volume with the CT rounded to integer HU, as MIRP rounds CT on reading): per lesion the padded crop, widened by a few voxels so "
        "that its IBSI grid (which MIRP centres on the image it is given) falls on the whole image's grid as ours "
        "does, the ring by scipy.ndimage dilation minus erosion (ellipsoidal ball of the same radii; MIRP's "
        "environment has no SimpleITK), crop and masks written as NIfTI (MIRP reads geometry from files) and "
        "extract_features for core (statistics, GLRLM) and ring (GLRLM): it computes whole families. Our default "
        "settings in MIRP's terms: 1 mm trilinear without anti-aliasing, mask at 0.5, integer HU, 10 HU bins "
        "from -1000 HU.",
        f"- OpenBLAS threads: {os.environ.get('OPENBLAS_NUM_THREADS')} in this process and every contender's (the "
        "service sets 1 when importing unless OPENBLAS_NUM_THREADS is set, and the baselines inherit this process's "
        "environment).",
        "- Peak RSS: VmHWM of each contender's own process(es); this bench process: "
        f"{report['bench_process_peak_rss_mib']:.0f} MiB (phantom generation, crops, client).",
        f"- Load: 1-minute load average {report['machine']['load_average_1min'][0]:.2f} at start, "
        f"{report['machine']['load_average_1min'][1]:.2f} at end, highest between rounds "
        f"{max(report['round_load_average_1min']):.2f} (other work on a {report['machine']['cpu_count']}-core machine "
        "perturbs the seconds; alternation spreads it over all contenders).",
    ]
    lines += [f"- {c.label} could not run on this machine: {c.unavailable}" for c in contenders if c.unavailable]
    lines.append("- Ratios are the point; seconds depend on the machine.")
    return "\n".join(lines)


def render(report: dict, tables: dict[str, str], contenders: Sequence[Contender], by_key: dict[str, Contender]) -> str:
    """The whole printed report: context, tables, notes, and the summary line last."""
    machine = report["machine"]
    shape = report["study"]["shape_zyx"]
    head = (f"Machine: {machine['cpu_count']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB; "
            f"Python {machine['python']}, pyradiomics-bhklab {machine['pyradiomics']}, flash-radiomics "
            f"{machine['flash-radiomics']}, MIRP {machine['mirp']}, SimpleITK {machine['SimpleITK']}, numpy {machine['numpy']}.\n"
            f"Study: synthetic CT {shape[2]}x{shape[1]}x{shape[0]} (x, y, z) at 0.7x0.7x1.0 mm, "
            f"{report['study']['lesions']} lesions of {report['study']['volume_range_ml'][0]:g} to "
            f"{report['study']['volume_range_ml'][1]:g} mL (built in {report['study']['build_s']:.1f} s).")
    return "\n\n".join([
        head, "Ours against each baseline with the same features (medians):", tables["ratios"],
        "Per study:", tables["study"], "Per lesion (median seconds):", tables["lesion"],
        "pyradiomics (crop) vs ours, CD8 features (expected to differ: docs/method.md section 2):",
        tables["values"], "MIRP (crop on our grid) vs ours (full panel, whole volume, integer HU), CD8 profile's families:", tables["mirp"], "Notes:", notes(report, contenders), summary_line(by_key),
    ])


PANEL_NAMES = {"signature": "CD8 profile's", "full": "full panel's"}


def run_rounds(contenders: Sequence[Contender], repeats: int, warm_up_rounds: int) -> list[float]:
    """`warm_up_rounds` untimed rounds, then `repeats` timed ones, each contender once per round,
    the order rotated each round; load averages of the timed rounds.

    The untimed rounds score the whole study: a single small lesion does not bring a process to
    the state it reaches after a study (its allocator's arenas, caches, lazily built tables), so
    without them the first timed round measured partly warm-up, and with three rounds it could
    set the median (ours on the full study took 0.37, 0.29, 0.22 s in one run).
    """
    runnable = [c for c in contenders if not c.unavailable]
    for _ in range(warm_up_rounds):
        for contender in runnable:
            if contender.warms_up:
                contender.run_once()
    loads = []
    for r in range(repeats):
        for contender in runnable[r % len(runnable):] + runnable[:r % len(runnable)]:
            contender.timings.add(*contender.run_once())
        loads.append(os.getloadavg()[0])
    return loads


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="256x256x120 with 4 lesions of 0.5 to 20 mL (smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (every contender once per round; medians kept)")
    parser.add_argument("--warm-up-rounds", type=int, default=1,
                        help="untimed rounds of the whole study before the timed ones (every contender but the "
                             "whole-volume baseline)")
    parser.add_argument("--mirp-python", type=Path,
                        help="MIRP's interpreter (default: RCDS_MIRP_PYTHON, else .venv-mirp/bin/python; "
                             "without one MIRP is reported as not run)")
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error("--repeats must be at least 3 (medians of at least 3)")
    if args.warm_up_rounds < 0:
        parser.error("--warm-up-rounds cannot be negative")
    logging.getLogger("radiomics").setLevel(logging.ERROR)

    shape, lesions, volume_range = QUICK_STUDY if args.quick else FULL_STUDY
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    study = make_study(shape, lesions, volume_range)
    build_s = time.perf_counter() - start
    signature = load_signature()
    settings = ExtractionSettings()
    mirp_interpreter = mirp_python(args.mirp_python)
    regions = {panel: feature_panel(panel, settings, signature).regions for panel in ("signature", "full")}

    with tempfile.TemporaryDirectory(prefix="rcds-bench-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        image = sitk.GetImageFromArray(study.ct.hu)
        image.SetSpacing(study.ct.geometry.spacing)
        image.SetOrigin(study.ct.geometry.origin)
        image.SetDirection(study.ct.geometry.direction)
        image_path = workdir / "ct.nrrd"
        sitk.WriteImage(image, str(image_path))
        del image
        contenders = [stack.enter_context(engine(panel, n, study, workdir))
                      for panel, n in (("signature", 1), ("full", 1), ("signature", 2), ("full", 2))]
        for kind, name in (("pyradiomics-crop", "pyradiomics, padded crop"), ("flash", "flash-radiomics, padded crop")):
            for panel, short in (("signature", "cd8"), ("full", "full")):
                contenders.append(stack.enter_context(baseline(
                    kind, f"{kind}-{short}", name, panel, regions[panel], study, image_path, workdir)))
        contenders.append(stack.enter_context(mirp(mirp_interpreter, regions["signature"], study, image_path, workdir)))
        contenders.append(stack.enter_context(baseline(
            "pyradiomics-whole", "pyradiomics-whole-full", "pyradiomics, whole volume (default extractor)", "full",
            regions["full"], study, image_path, workdir)))
        round_loads = run_rounds(contenders, args.repeats, args.warm_up_rounds)
        peaks = {c.key: c.peak_rss_mib() for c in contenders if not c.unavailable}
        bench_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    by_key = {c.key: c for c in contenders}
    reference = whole_volume_full_panel(study, signature)
    cd8_rel, cd8_n = max_relative_difference([by_key[k].timings.features for k in ("ours-cd8-x1", "ours-cd8-x2")], reference)
    full_rel, full_n = max_relative_difference([by_key[k].timings.features for k in ("ours-full-x1", "ours-full-x2")], reference)
    report = {
        "machine": machine_info() | {"load_average_1min": [load_before, os.getloadavg()[0]],
                                     "mirp": _mirp_version(mirp_interpreter)},
        "round_load_average_1min": round_loads,
        "study": {"shape_zyx": list(shape), "lesions": lesions, "volume_range_ml": list(volume_range),
                  "build_s": build_s, "regions": study.regions, "volumes_ml": lesion_volumes_ml(study)},
        "contenders": {c.key: {"label": c.label, "panel": c.panel, "unavailable": c.unavailable,
                               "study_s": c.timings.study_s, "lesion_s": c.timings.lesion_s,
                               "peak_rss_mib": peaks.get(c.key)} for c in contenders},
        "identity": {
            "cd8_vs_whole_max_rel": cd8_rel, "cd8_compared": cd8_n, "cd8_pass": cd8_rel <= IDENTITY_RTOL,
            "full_vs_whole_max_rel": full_rel, "full_compared": full_n, "full_pass": full_rel <= IDENTITY_RTOL,
        },
        "baseline_vs_ours": baseline_differences(by_key["pyradiomics-crop-cd8"].timings.features,
                                                 by_key["ours-cd8-x1"].timings.features, signature),
        "mirp_vs_ours": (mirp_differences(by_key["mirp-cd8"].timings.features, whole_volume_full_panel(
                             rounded_hu(study), signature)) if not by_key["mirp-cd8"].unavailable else {}),
        "ring_radius_voxels": ring_radius_voxels(study.ct.geometry.spacing, settings.ringWidthMm),
        "bench_process_peak_rss_mib": bench_peak,
        "repeats": args.repeats,
        "warm_up_rounds": args.warm_up_rounds,
    }
    tables = {"ratios": ratio_table(study, by_key), "study": study_table(contenders, peaks),
              "lesion": lesion_table(study, contenders), "values": values_table(report["baseline_vs_ours"]),
              "mirp": mirp_table(report["mirp_vs_ours"])}
    text = render(report, tables, contenders, by_key)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report | {"markdown": text}, indent=2))
    return 0 if report["identity"]["cd8_pass"] and report["identity"]["full_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
