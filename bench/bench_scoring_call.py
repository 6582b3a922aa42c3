"""One scorer call taken apart: where a lesion's time goes, and what gRPC adds to it.

    python bench/bench_scoring_call.py [--panel signature|full] [--calls 25] [--profile]

On the `--quick` study of bench_scoring.py (crops as the service cuts them), per lesion:
- in-process: the servicer's work from the request's bytes to the reply's (parse, decode,
  `score_lesion`, encode, serialise), in this process;
- over gRPC: the crop alone in a ScoreLesions call (`GrpcScorer.score_batch`) against a
  `radiomics-cds scorer` process (as deployed, one worker), timed from the client, the same crop;
- Describe over gRPC: a call with an empty request and a small constant reply, the round trip
  without a crop.
The three are alternated call by call (so that other work on the machine falls on all of them),
fastest and median of `--calls` each; gRPC minus in-process (medians) is what the call itself
costs: the crop's bytes, protobuf on both sides, the loopback transfer and the server's thread.

`--profile` adds a cProfile of the in-process calls per lesion, attributed to the parts of the
scorer (cumulative time of each part's function over all of the calls' time).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# As in every service process (service/__init__.py): one OpenBLAS thread, set before numpy loads
# (bench_scoring imports it first), so the in-process calls run as the scorer's do.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from bench_scoring import QUICK_STUDY, scorers  # noqa: E402
from synthetic_ct import make_study  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from service.imaging.crops import lesion_crop  # noqa: E402
from service.location import LocationRules  # noqa: E402
from service.model import LesionCrop  # noqa: E402
from service.scoring import codec  # noqa: E402
from service.scoring.client import GrpcScorer  # noqa: E402
from service.scoring.lesion import ScoringContext, score_lesion  # noqa: E402
from service.scoring.panel import feature_panel  # noqa: E402
from service.scoring.proto.radiomics_cds.v1 import scoring_pb2 as pb  # noqa: E402
from service.scoring.settings import ExtractionSettings  # noqa: E402
from service.scoring.signatures import load_signature  # noqa: E402

# Parts of a call, by the functions that do each (file suffix, function name).
PARTS = {
    "lesion measures": [("scoring/measures.py", "measure_lesion")],
    "resampling to the IBSI grid": [("scoring/lesion.py", "lesion_on_feature_grid")],
    "the ring": [("scoring/ring.py", "ring_mask")],
    "feature classes": [("scoring/features.py", "region_features")],
    "  of which the GLRLM matrix (pyradiomics' C)": [("~", "<built-in method radiomics._cmatrices.calculate_glrlm>")],
    "  of which GLCM MCC (Q and eigenvalues)": [("scoring/glcm_vectorised.py", "getMCCFeatureValue"),
                                                ("radiomics/glcm.py", "getMCCFeatureValue")],
    "  of which shape's set-up (mesh area, volume, diameters, axes)": [
        ("scoring/shape_tabulated.py", "_initSegmentBasedCalculation")],
    "codec and protobuf": [("scoring/codec.py", "crop_from_pb"), ("scoring/codec.py", "lesion_to_pb"),
                           ("~", "<method 'SerializeToString' of 'google._upb._message.Message' objects>"),
                           ("~", "<method 'FromString' of 'google._upb._message.Message' objects>")],
}


def in_process_call(context: ScoringContext) -> Callable[[bytes], bytes]:
    """The servicer's ScoreLesion from request bytes to reply bytes, without gRPC."""
    def call(request: bytes) -> bytes:
        crop = codec.crop_from_pb(pb.ScoreLesionRequest.FromString(request))
        return codec.lesion_to_pb(score_lesion(crop, context)).SerializeToString()
    return call


def _ms(seconds: list[float]) -> str:
    return f"{min(seconds) * 1e3:.1f} / {statistics.median(seconds) * 1e3:.1f}"


def timings(crops: list[LesionCrop], call: Callable[[bytes], bytes], client: GrpcScorer, calls: int) -> list[str]:
    """Markdown rows: per lesion, in-process, gRPC and Describe (fastest / median, ms)."""
    rows = []
    for crop in crops:
        request = codec.crop_to_pb(crop).SerializeToString()
        local: list[float] = []
        remote: list[float] = []
        describe: list[float] = []
        for _ in range(calls):
            start = time.perf_counter()
            call(request)
            local.append(time.perf_counter() - start)
            start = time.perf_counter()
            client.score_batch([crop])
            remote.append(time.perf_counter() - start)
            start = time.perf_counter()
            client.describe()
            describe.append(time.perf_counter() - start)
        overhead = (statistics.median(remote) - statistics.median(local)) * 1e3
        rows.append(f"| {crop.image_hu.size} | {len(request) / 1e6:.2f} | {_ms(local)} | {_ms(remote)} | "
                    f"{overhead:.1f} | {_ms(describe)} |")
    return rows


def profile_shares(crops: list[LesionCrop], call: Callable[[bytes], bytes], calls: int) -> list[str]:
    """Markdown rows: per part, its share of the in-process call, per lesion."""
    shares: dict[str, list[str]] = {part: [] for part in PARTS}
    per_call_ms = []
    for crop in crops:
        request = codec.crop_to_pb(crop).SerializeToString()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            call(request)
        profiler.disable()
        stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]  # pstats keeps it untyped
        total = sum(tottime for _, _, tottime, _, _ in stats.values())
        per_call_ms.append(f"{total / calls * 1e3:.0f}")
        for part, functions in PARTS.items():
            cumulative = sum(cum for (file, _, function), (_, _, _, cum, _) in stats.items()
                             if any(file.endswith(suffix) and function == name for suffix, name in functions))
            shares[part].append(f"{100 * cumulative / total:.0f}%")
    rows = [f"| {part} | " + " | ".join(values) + " |" for part, values in shares.items()]
    return rows + ["| (ms per call under cProfile) | " + " | ".join(per_call_ms) + " |"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--panel", choices=("signature", "full"), default="signature")
    parser.add_argument("--calls", type=int, default=25, help="calls per lesion and kind (fastest and median kept)")
    parser.add_argument("--profile", action="store_true", help="also profile the in-process calls by part")
    args = parser.parse_args()
    shape, lesions, volume_range = QUICK_STUDY
    study = make_study(shape, lesions, volume_range)
    settings = ExtractionSettings()
    signature = load_signature()
    context = ScoringContext(settings, signature, LocationRules(), feature_panel(args.panel, settings, signature))
    crops = sorted((lesion_crop(study.ct, mask, settings) for mask in study.lesions), key=lambda c: -c.image_hu.size)
    call = in_process_call(context)
    with tempfile.TemporaryDirectory(prefix="rcds-bench-") as tmp, scorers(args.panel, 1, Path(tmp)) as (scorer,):
        with GrpcScorer(f"127.0.0.1:{scorer.port}") as client:
            for crop in crops:  # first calls pay lazy imports and first-use costs, on both sides
                client.score_batch([crop])
                call(codec.crop_to_pb(crop).SerializeToString())
            load = os.getloadavg()[0]
            rows = timings(crops, call, client, args.calls)
    print(f"panel {args.panel}, {args.calls} calls per lesion and kind, 1-minute load average {load:.2f} "
          f"before, {os.getloadavg()[0]:.2f} after\n")
    print("| crop voxels | request MB | in-process ms (fastest / median) | over gRPC ms | gRPC minus in-process, "
          "medians, ms | Describe over gRPC ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    if args.profile:
        print("\n| part | " + " | ".join(f"crop of {c.image_hu.size} voxels" for c in crops) + " |")
        print("| --- |" + " ---: |" * len(crops))
        print("\n".join(profile_shares(crops, call, args.calls)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
