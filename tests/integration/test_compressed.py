"""Compressed CT as PACS send it: the real STS_019 CT compressed by real encoders (dcmtk's
dcmcjpeg, dcmcjpls, dcmcrle; pylibjpeg-openjpeg through pydicom for JPEG 2000, which dcmtk does
not write) decodes to exactly the HU volume of the uncompressed files and gives exactly their
features; a real storescu sending JPEG Lossless is acknowledged and its study scored; a sender
offering only a syntax we do not accept finds its context rejected, not a Success for a study
that would fail later.

The reference is the uncompressed shared data itself: lossless compression must reproduce it
bit for bit, so equality (not a tolerance) is the test.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification

from service.feature_report import features_from_dicom
from service.imaging.volume import read_ct_directory
from service.scoring.ibsi_names import pyradiomics_feature
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import load_signature
from tests.support.external import require_tool
from tests.support.processes import LOOPBACK
from tests.support.service import OUR_AE, QUIET_SECONDS, RunningService

pytestmark = [pytest.mark.external, pytest.mark.filterwarnings("ignore:The value length")]  # STS StudyID: 17 chars

# transfer syntax -> the dcmtk command line that writes it (input and output file appended)
DCMTK_ENCODERS = {
    uid.JPEGLosslessSV1: ("dcmcjpeg",),  # +e1, dcmcjpeg's default: what most PACS send
    uid.JPEGLossless: ("dcmcjpeg", "+el"),  # process 14, selection value 6
    uid.JPEGLSLossless: ("dcmcjpls",),
    uid.RLELossless: ("dcmcrle",),
}


def _dcmtk_compress(source: Path, target: Path, command: tuple[str, ...]) -> None:
    for file in sorted(source.iterdir()):
        subprocess.run([require_tool(command[0]), *command[1:], str(file), str(target / file.name)], check=True)


def _pydicom_compress(source: Path, target: Path, syntax: uid.UID) -> None:
    for file in sorted(source.iterdir()):
        dataset = pydicom.dcmread(file)
        dataset.compress(syntax)
        dataset.save_as(target / file.name)


@pytest.fixture(scope="module")
def compressed(sts019: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[uid.UID, Path]:
    """STS_019's CT in each lossless syntax, one folder each (the RTSTRUCT stays uncompressed)."""
    folders = {}
    for syntax in (*DCMTK_ENCODERS, uid.JPEG2000Lossless):
        folders[syntax] = tmp_path_factory.mktemp(f"ct-{syntax}")
        if syntax in DCMTK_ENCODERS:
            _dcmtk_compress(sts019 / "image", folders[syntax], DCMTK_ENCODERS[syntax])
        else:
            _pydicom_compress(sts019 / "image", folders[syntax], syntax)
        assert {str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID)
                for f in folders[syntax].iterdir()} == {syntax}
    return folders


@pytest.fixture(scope="module")
def cd8_settings() -> ExtractionSettings:
    """The CD8 signature's features only (the full panel would add minutes, not coverage)."""
    classes: dict[str, set[str]] = {}
    for variable in load_signature().variables:
        feature_class, feature = pyradiomics_feature(variable.feature)
        classes.setdefault(feature_class, set()).add(feature)
    return ExtractionSettings(featureClasses={name: tuple(sorted(features)) for name, features in classes.items()})


SYNTAXES = [*DCMTK_ENCODERS, uid.JPEG2000Lossless]


@pytest.mark.parametrize("syntax", SYNTAXES, ids=[s.name.split(" (")[0] for s in SYNTAXES])
def test_lossless_ct_gives_the_uncompressed_volume_and_features(compressed, sts019, cd8_settings, syntax):
    reference = read_ct_directory(sts019 / "image")
    decoded = read_ct_directory(compressed[syntax])
    np.testing.assert_array_equal(decoded.hu, reference.hu)
    assert decoded.geometry == reference.geometry

    rtstruct = sts019 / "mask" / "RS.dcm"
    expected = features_from_dicom(sts019 / "image", rtstruct, cd8_settings).as_json()["rois"]
    assert expected[0]["regions"]["ring"]["rlm_lgre_3D_avg"] is not None  # something to compare
    assert features_from_dicom(compressed[syntax], rtstruct, cd8_settings).as_json()["rois"] == expected


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    require_tool("storescu")
    running = RunningService(tmp_path_factory.mktemp("compressed") / "var", quiet_seconds=QUIET_SECONDS)
    yield running
    running.stop()


def test_jpeg_lossless_from_storescu_is_acknowledged_and_scored(service, compressed, sts019):
    sent = service.storescu(compressed[uid.JPEGLosslessSV1], sts019 / "mask", options=("-xs",))  # JPEG Lossless first
    assert sent.returncode == 0, sent.stderr
    study_uid = pydicom.dcmread(sts019 / "mask" / "RS.dcm").StudyInstanceUID
    state, detail = service.wait_for(study_uid)
    assert state == "done", detail
    # It arrived compressed (storescu did not fall back to decompressing it) and was scored so.
    spooled = {str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
               for path in (service.var_dir / "spool").rglob("*.dcm")}
    assert spooled == {uid.JPEGLosslessSV1, uid.ImplicitVRLittleEndian}  # the CT, the RTSTRUCT as stored
    assert len(list((service.var_dir / "outbox").glob("*.dcm"))) == 1


@pytest.mark.parametrize("syntax", [uid.JPEGBaseline8Bit, uid.MPEG2MPML], ids=["JPEG Baseline (lossy)", "MPEG2"])
def test_a_ct_context_in_a_syntax_we_do_not_accept_is_rejected(service, syntax):
    """pynetdicom as the sender: it can propose any syntax, as a misconfigured PACS would."""
    ae = AE(ae_title="LOSSY_PACS")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 10
    ae.add_requested_context(CTImageStorage, [syntax])
    ae.add_requested_context(Verification)  # so the association itself is established
    association = ae.associate(LOOPBACK, service.dicom_port, ae_title=OUR_AE)
    try:
        assert association.is_established
        assert [c.abstract_syntax for c in association.accepted_contexts] == [Verification]
        (rejected,) = association.rejected_contexts
        assert (rejected.abstract_syntax, rejected.transfer_syntax) == (CTImageStorage, [syntax])
        assert rejected.result == 0x04  # transfer syntaxes not supported (PS3.8 9.3.3.2)
    finally:
        association.release()
