"""Latency: from the last instance of a study acknowledged to its SR and FHIR Bundle in the
outbox of `radiomics-cds serve`, against the pure feature time of the same lesions.

What a clinician waits for is the whole path after the sender is done: deciding the study is
complete, reading it, scoring, the follow-up comparison and writing SR, PDF and Bundle. The
floor under that is the scorer alone on the same lesion crops, so the ratio of the two says how
much the service adds around the science.

- latency: `radiomics-cds serve` (a subprocess, the deployed settings, a fresh var directory per
  run) receives the study from dcmtk's storescu over loopback; the clock starts when storescu
  exits (every C-STORE answered, association released) and stops when the study's SR and
  Bundle are both in the outbox (polled every 20 ms). A study the service could not call
  complete by geometry (a lesion closer to the end of the scan than the CT the scoring reads
  beyond it: service.ingest.completeness) waits out the quiet period; issue 15's goal excludes
  that wait, so the table gives the latency as measured and without the quiet period (the
  measured time minus `quiet_seconds` when serve's waiting stage says the quiet period decided).
- the same serve's next study: each run of the synthetic study then sends it again under other
  UIDs to the serve that has just scored it, timed the same way: the first study of a fresh
  serve would show any first-use cost its warm-up (service.outputs.warm_up) leaves, the next one
  meets the serve most studies meet. The summary stays on the first.
- features: in this process, service.scoring's InProcessScorer (the scorer the child runs)
  scores the same study's crops one after the other (service.scorer.score_lesions,
  parallel=1), timed around that call only: reading and cropping are outside.

Studies: the shared STS_019 (47 slices, one lesion; RTSTRUCT) and, unless `--quick`, the
synthetic chest/abdomen of bench/synthetic_ct.py (512 x 512 x 300, 10 lesions) written as a CT
series plus a DICOM SEG (highdicom). Runs alternate (latency, features, latency, ...), each
`--repeats` times (at least 3), after one untimed warm-up of each; medians are reported.

    /work/main/.venv/bin/python bench/bench_latency.py            # both studies, 3 runs each
    /work/main/.venv/bin/python bench/bench_latency.py --quick    # STS_019 only, 3 runs

After the table of latencies, a table of where they went: the median over the runs of each
stage as serve timed it (its rcds_study_stage_seconds histogram, scraped after each run). It
ends with `summary: latency-vs-features=N.NNx` (the median latency of a fresh serve's first study,
quiet period excluded, over the median feature time of the largest study measured).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from service.roles.scorer import scoring_context  # noqa: E402
from service.config import Config  # noqa: E402
from service.imaging.contours import LESION_ROI_TYPES  # noqa: E402
from service.imaging.crops import lesion_crop  # noqa: E402
from service.imaging.selection import lesion_masks, read_study_headers, select_inputs  # noqa: E402
from service.observability import STUDY_STAGES  # noqa: E402
from service.scorer import score_lesions  # noqa: E402
from service.scoring.in_process import InProcessScorer  # noqa: E402
from service.scoring.settings import ExtractionSettings  # noqa: E402
from synthetic_ct import SyntheticStudy, make_study  # noqa: E402
from tests.support.service import RunningService  # noqa: E402
from tests.support.synthetic_results import STS_019  # noqa: E402

POLL_SECONDS = 0.02


@dataclass(frozen=True)
class Study:
    name: str
    ct_dir: Path
    contours: Path  # RTSTRUCT or SEG file
    study_uid: str
    lesions: int
    slices: int
    fresh_serve: bool = True  # else sent to a serve that has just scored the same study under other UIDs


def _sts019() -> Study:
    ct_dir, rs = STS_019 / "image", STS_019 / "mask" / "RS.dcm"
    if not rs.exists():
        sys.exit(f"shared data missing: {rs}")
    headers = read_study_headers(ct_dir, rs)
    study_uid = str(headers[0].StudyInstanceUID)
    inputs, _ = select_inputs(headers)
    masks, _ = lesion_masks(inputs, LESION_ROI_TYPES)
    return Study("STS_019", ct_dir, rs, study_uid, len(masks), len(inputs.ct.sop_instance_uids))


def _synthetic(made: SyntheticStudy, folder: Path, fresh_serve: bool = True) -> Study:
    """bench/synthetic_ct.py's 10-lesion study (`made`, built once) as DICOM: 300 CT files and
    one SEG (highdicom), each lesion a segment named as the service's location rules expect; new
    UIDs every call, so writing it twice gives the same study twice under other UIDs."""
    ct, geometry = made.ct, made.ct.geometry
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    (folder / "image").mkdir(parents=True)
    slices = []
    hu = np.clip(np.rint(ct.hu), -1024, 3071).astype(np.int16)
    for z in range(hu.shape[0]):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = CTImageStorage, ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Synthetic^Latency", "SYNTH-LAT", "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", ""
        ds.ReferringPhysicianName, ds.Manufacturer, ds.Modality = "", "radiomics-cds bench", "CT"
        ds.SeriesNumber, ds.InstanceNumber, ds.PositionReferenceIndicator = 1, z + 1, ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [geometry.origin[0], geometry.origin[1], geometry.origin[2] + z * geometry.spacing[2]]
        ds.PixelSpacing = [geometry.spacing[1], geometry.spacing[0]]
        ds.SliceThickness, ds.KVP, ds.AcquisitionNumber, ds.ConvolutionKernel = geometry.spacing[2], 120, 1, "B30f"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.PixelData = hu[z].tobytes()
        ds.save_as(folder / "image" / f"CT{z + 1:04d}.dcm", enforce_file_format=True)
        slices.append(ds)
    labels = np.zeros(hu.shape, dtype=np.uint8)
    for lesion in made.lesions:
        z0, y0, x0 = lesion.offset_zyx
        box = labels[z0:z0 + lesion.mask.shape[0], y0:y0 + lesion.mask.shape[1], x0:x0 + lesion.mask.shape[2]]
        box[lesion.mask] = lesion.number
    tissue = hd.sr.CodedConcept("85756007", "SCT", "Tissue")
    lesion_type = hd.sr.CodedConcept("52988006", "SCT", "Lesion")
    algorithm = hd.AlgorithmIdentificationSequence("bench synthetic_ct", hd.sr.CodedConcept("123109", "DCM", "Manual Processing"), "1")
    descriptions = [hd.seg.SegmentDescription(lesion.number, lesion.name, tissue, lesion_type,
                                              hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC, algorithm)
                    for lesion in made.lesions]
    seg = hd.seg.Segmentation(source_images=slices, pixel_array=labels, segmentation_type="BINARY",
                              segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=2,
                              sop_instance_uid=generate_uid(), instance_number=1, manufacturer="radiomics-cds bench",
                              manufacturer_model_name="synthetic_ct", software_versions="1", device_serial_number="1")
    seg_path = folder / "seg.dcm"
    seg.save_as(seg_path)
    name = "synthetic 10-lesion" if fresh_serve else "synthetic 10-lesion, next study on the same serve"
    return Study(name, folder / "image", seg_path, study_uid, len(made.lesions), hu.shape[0], fresh_serve)


@dataclass(frozen=True)
class Run:
    """One latency run: seconds as measured, without the quiet period, and serve's own
    seconds per stage of the study (rcds_study_stage_seconds' sums)."""

    measured: float
    active: float
    stages: dict[str, float]


STAGE_METRIC = "rcds_study_stage_seconds"


def _stage_seconds(service: RunningService, studies: int) -> dict[str, float]:
    """serve's seconds per stage, summed over its studies, once it has observed the last stage
    (completing, after the outputs are in the outbox, so shortly after the clock stops) of
    `studies` studies."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        samples = service.metrics()
        if samples.get((f"{STAGE_METRIC}_count", (("stage", "completing"),)), 0) >= studies:
            return {dict(labels)["stage"]: value for (name, labels), value in samples.items()
                    if name == f"{STAGE_METRIC}_sum"}
        time.sleep(POLL_SECONDS)
    sys.exit("serve did not observe the study's completing stage within 30 s")


def _one_study(service: RunningService, study: Study, quiet_seconds: float, studies_before: int,
               stages_before: dict[str, float]) -> tuple[Run, dict[str, float]]:
    """Send `study` to a running serve and time it to its SR and Bundle in the outbox; returns
    the run and serve's stage sums after it. serve's histogram sums over every study it scored,
    so this study's stages are the sums after its last stage (`studies_before` + 1 observed)
    minus `stages_before`."""
    sent = service.storescu(study.ct_dir, study.contours, options=("-R",))  # -R: propose what is sent (SEG too)
    acknowledged = time.monotonic()
    if sent.returncode != 0:
        sys.exit(f"storescu failed: {sent.stdout}{sent.stderr}")
    deadline = acknowledged + 900
    while time.monotonic() < deadline:
        sr = service.result_sr(study.study_uid)
        if sr is not None and sr.exists() and sr.with_suffix(".fhir.json").exists():
            seconds = time.monotonic() - acknowledged
            stages = _stage_seconds(service, studies_before + 1)
            waited = stages.get("waiting", 0.0) - stages_before.get("waiting", 0.0)
            quiet = quiet_seconds if waited >= quiet_seconds else 0.0  # the quiet period decided
            run = Run(seconds, seconds - quiet,
                      {stage: value - stages_before.get(stage, 0.0) for stage, value in stages.items()})
            return run, stages
        if service.study_state(study.study_uid) == "failed":
            sys.exit(f"the study failed: {service.status()}")
        time.sleep(POLL_SECONDS)
    sys.exit(f"no result after 900 s: {service.read_log()[-3000:]}")


def _latency(study: Study, work: Path, quiet_seconds: float, second: Study | None = None) -> tuple[Run, Run | None]:
    """Seconds from storescu's exit to the study's SR and Bundle both in a fresh serve's outbox:
    as measured, and without the quiet period when that is what made the study ready; and where
    serve says they went. With `second` (the same study under other UIDs), the same for it sent
    next to the same serve: a serve that has scored a study before, as most studies find it."""
    var_dir = work / "var"
    service = RunningService(var_dir)
    try:
        first, stages = _one_study(service, study, quiet_seconds, 0, {})
        if second is None:
            return first, None
        return first, _one_study(service, second, quiet_seconds, 1, stages)[0]
    finally:
        service.stop()
        shutil.rmtree(var_dir)


def _features(study: Study, scorer: InProcessScorer) -> float:
    """Seconds the scorer alone takes for the study's crops, one lesion after the other."""
    inputs, _ = select_inputs(read_study_headers(study.ct_dir, study.contours))
    settings = ExtractionSettings.from_dict(dict(scorer.describe().settings))
    masks, _ = lesion_masks(inputs, LESION_ROI_TYPES)
    crops = [lesion_crop(inputs.ct, mask, settings) for mask in masks]
    started = time.perf_counter()
    score_lesions(scorer, crops, parallel=1)
    return time.perf_counter() - started


def _print_stages(rows: list[tuple[Study, list[Run], list[float]]]) -> None:
    """Where each study's latency went, as serve timed it: the median of each stage over the
    runs (serve's stages, README metrics table; waiting includes the quiet period when that
    decided, and the page is what was left of its rendering once the SR was written)."""
    stages = list(STUDY_STAGES)
    print()
    print("Seconds per stage, serve's rcds_study_stage_seconds (medians of the runs):")
    print()
    print("| study | " + " | ".join(stages) + " |")
    print("|---|" + "---:|" * len(stages))
    for study, runs, _ in rows:
        medians = (statistics.median(run.stages.get(stage, 0.0) for run in runs) for stage in stages)
        print(f"| {study.name} | " + " | ".join(f"{value:.2f}" for value in medians) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="STS_019 only")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (at least 3)")
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error("--repeats must be at least 3 (medians of at least 3)")
    config = Config()
    scorer = InProcessScorer(scoring_context(config), volume_filter_ml=config.volume_filter_ml,
                             max_message_bytes=config.grpc_max_message_bytes)
    print(f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"1-minute load average {os.getloadavg()[0]:.2f} at start. serve as deployed "
          f"(quiet period {config.quiet_seconds:g} s, {config.scorer_workers} scorer workers).")
    rows: list[tuple[Study, list[Run], list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        work = Path(tmp)
        studies: list[tuple[Study, Study | None]] = [(_sts019(), None)]
        if not args.quick:
            made = make_study()
            studies.append((_synthetic(made, work / "synthetic"),
                            _synthetic(made, work / "synthetic-again", fresh_serve=False)))
        for study, second in studies:
            _features(study, scorer)  # warm-up: lazy imports, page cache
            _latency(study, work, config.quiet_seconds)
            latencies, next_runs, features = [], [], []
            for _ in range(args.repeats):
                first, again = _latency(study, work, config.quiet_seconds, second)
                latencies.append(first)
                if again is not None:
                    next_runs.append(again)
                features.append(_features(study, scorer))
            rows.append((study, latencies, features))
            if second is not None:
                rows.append((second, next_runs, features))  # the same crops: the same feature runs
    print()
    print("| study | lesions | CT slices | latency median s | without quiet period s | features median s | "
          "ratio (without quiet period) | latency runs (s) | feature runs (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for study, latencies, features in rows:
        measured, active = (statistics.median(getattr(run, k) for run in latencies) for k in ("measured", "active"))
        print(f"| {study.name} | {study.lesions} | {study.slices} | {measured:.2f} | {active:.2f} | "
              f"{statistics.median(features):.2f} | {active / statistics.median(features):.2f}x | "
              f"{', '.join(f'{run.measured:.2f}' for run in latencies)} | {', '.join(f'{s:.2f}' for s in features)} |")
    _print_stages(rows)
    print()
    print(f"1-minute load average {os.getloadavg()[0]:.2f} at end.")
    study, latencies, features = next(row for row in reversed(rows) if row[0].fresh_serve)
    active = statistics.median(run.active for run in latencies)
    print(f"summary: latency-vs-features={active / statistics.median(features):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
