"""The listener and worker under conditions a hospital network produces: a transfer cut off
mid-way, a full disk, an association addressed to someone else, a listener open to anyone, a
large study next to a small one, a structure set of hundreds of ROIs.

Every peer is real: `radiomics-cds serve` in a subprocess, pynetdicom and dcmtk as senders, a
real tmpfs of a few MiB as the full disk (mounting one needs root, as CI runs).
"""

from __future__ import annotations

import copy
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, evt
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import EnhancedCTImageStorage, Verification

from service.errors import InputError
from service.imaging.contours import LESION_ROI_TYPES
from service.imaging.selection import lesion_masks, read_study_headers, select_inputs
from tests.support.external import missing_dependency
from tests.support.ct_series import slice_pixels, write_enhanced_ct
from tests.support.processes import LOOPBACK, wait_until
from tests.support.service import OUR_AE, RunningService

pytestmark = [pytest.mark.external, pytest.mark.timeout(400)]

OUT_OF_RESOURCES = 0xA700


def _sender(max_pdu: int = 16384) -> AE:
    ae = AE(ae_title="Modality_1")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 30
    ae.maximum_pdu_size = max_pdu
    ae.add_requested_context(EnhancedCTImageStorage)
    ae.add_requested_context(Verification)
    return ae


@pytest.fixture
def big_instance(tmp_path: Path) -> Path:
    """A 100-frame 512 x 512 Enhanced CT (52 MB): seconds on the wire in 16 KiB PDUs, so it is
    caught mid-transfer, and larger than the small disk."""
    path = tmp_path / "enhanced.dcm"
    write_enhanced_ct(path, pydicom.uid.generate_uid(), [slice_pixels(k) for k in range(100)])
    return path


class _SwitchedOffMidTransfer:
    """An EVT_PDU_SENT handler for the sender: after some data PDUs, wait until the listener has
    started writing the instance, then cut the connection as a modality switched off would.
    Deterministic where aborting from another thread was not: on a fast machine the whole
    instance could arrive before the abort."""

    def __init__(self, arriving: Callable[[], bool], after_pdus: int = 8) -> None:
        self.arriving = arriving
        self.after_pdus = after_pdus
        self.sent = 0
        self.cut = threading.Event()

    def __call__(self, event: evt.Event) -> None:
        if not isinstance(event.pdu, P_DATA_TF) or self.cut.is_set():
            return
        self.sent += 1
        if self.sent < self.after_pdus:
            return
        wait_until(self.arriving, 60, "the instance to be arriving in var/receiving")
        self.cut.set()
        connection = event.assoc.dul.socket
        assert connection is not None and connection.socket is not None
        connection.socket.shutdown(socket.SHUT_RDWR)


def test_a_transfer_cut_off_midway_leaves_nothing_behind(tmp_path: Path, big_instance: Path) -> None:
    service = RunningService(tmp_path / "var")
    receiving = tmp_path / "var" / "receiving"
    try:
        switch_off = _SwitchedOffMidTransfer(lambda: any(receiving.iterdir()))
        assoc = _sender().associate(
            LOOPBACK, service.dicom_port, ae_title=OUR_AE, evt_handlers=[(evt.EVT_PDU_SENT, switch_off)]
        )
        assert assoc.is_established
        sending = threading.Thread(target=assoc.send_c_store, args=(pydicom.dcmread(big_instance),), daemon=True)
        sending.start()
        sending.join(90)
        assert switch_off.cut.is_set(), "the connection was never cut mid-transfer"
        wait_until(lambda: not any(receiving.iterdir()), 30, "the partial file to be removed")
        assert service.indexed() == set()
    finally:
        service.stop()
    (receiving / "recv-left-by-a-crash.dcm").write_bytes(b"partial header with a patient name")
    outbox = tmp_path / "var" / "outbox"
    outbox.mkdir(exist_ok=True)
    (outbox / ".2.25.1234.dcm.x1y2.tmp").write_bytes(b"half an SR, with the patient's header")
    restarted = RunningService(tmp_path / "var")
    try:
        assert not any(receiving.iterdir()) and not list(outbox.glob("*.tmp"))
        assert "removed 2 partial writes" in restarted.read_log()
    finally:
        restarted.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real file system of 6 MiB (tmpfs) for the service's var directory."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        missing_dependency(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_answers_out_of_resources_and_keeps_the_association(small_disk: Path, big_instance: Path) -> None:
    service = RunningService(small_disk / "var")
    try:
        assoc = _sender().associate(LOOPBACK, service.dicom_port, ae_title=OUR_AE)
        assert assoc.is_established
        for _ in range(3):  # the modality retries; each attempt gets an answer, not an abort
            status = assoc.send_c_store(pydicom.dcmread(big_instance))
            assert status.Status == OUT_OF_RESOURCES, status
            assert "out of storage space" in status.ErrorComment
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        assert not any((small_disk / "var" / "receiving").iterdir())
        assert service.indexed() == set()
        assert service.metric("rcds_instances_rejected_total", reason="storage_error") == 3
        assert service.read_log().count("cannot receive an instance") == 1  # not one line per failure
    finally:
        service.stop()


def test_an_association_for_another_ae_title_is_rejected(service: RunningService) -> None:
    ae = _sender()
    assoc = ae.associate(LOOPBACK, service.dicom_port, ae_title="SOME_PACS")
    assert assoc.is_rejected
    assert service.rejected("called_ae") == 1
    accepted = ae.associate(LOOPBACK, service.dicom_port, ae_title=OUR_AE)
    assert accepted.is_established
    accepted.release()  # left open, it held the service's stop for the 30 s network timeout


def test_a_listener_open_to_anyone_says_so_at_start(tmp_path: Path) -> None:
    open_service = RunningService(tmp_path / "open", dicom_host="0.0.0.0")
    guarded = RunningService(tmp_path / "guarded", dicom_host="0.0.0.0", dicom_allowed_calling_aes="STORESCU")
    try:
        assert "accepts plain DICOM from any calling AE title" in open_service.read_log()
        assert "accepts plain DICOM from any calling AE title" not in guarded.read_log()
    finally:
        open_service.stop()
        guarded.stop()


def _many_lesions(sts019: Path, directory: Path, copies: int) -> Path:
    """STS_019's RTSTRUCT with its GTV repeated `copies` times as separate ROIs (a structure set
    of many lesions, each as costly to score as the real one)."""
    rtstruct = pydicom.dcmread(sts019 / "mask" / "RS.dcm")
    roi, contour, observation = (
        rtstruct.StructureSetROISequence[0],
        rtstruct.ROIContourSequence[0],
        rtstruct.RTROIObservationsSequence[0],
    )
    for number in range(2, copies + 1):
        for sequence, item, keyword in (
            (rtstruct.StructureSetROISequence, roi, "ROINumber"),
            (rtstruct.ROIContourSequence, contour, "ReferencedROINumber"),
            (rtstruct.RTROIObservationsSequence, observation, "ReferencedROINumber"),
        ):
            duplicate = copy.deepcopy(item)
            setattr(duplicate, keyword, number)
            sequence.append(duplicate)
        rtstruct.StructureSetROISequence[-1].ROIName = f"GTV_{number}"
        rtstruct.RTROIObservationsSequence[-1].ObservationNumber = number
    rtstruct.SOPInstanceUID = pydicom.uid.generate_uid()
    directory.mkdir()
    rtstruct.save_as(directory / "RS.dcm")
    return directory / "RS.dcm"


def test_too_many_lesions_fail_the_study_before_any_mask(sts019: Path, tmp_path: Path) -> None:
    inputs, _ = select_inputs(read_study_headers(sts019 / "image", _many_lesions(sts019, tmp_path / "rs", 12)))
    with pytest.raises(InputError, match=r"12 lesion ROIs with contours, more than max_lesions_per_study \(10\)"):
        lesion_masks(inputs, LESION_ROI_TYPES, max_lesions=10)
    masks, _ = lesion_masks(inputs, LESION_ROI_TYPES, max_lesions=12)
    assert len(masks) == 12


def test_a_small_study_is_not_held_up_by_a_large_one(
    sts019: Path, data_dir: Path, tmp_path: Path, service: RunningService
) -> None:
    """STS_019 with 100 lesions holds the scorer for a while; STS_025, sent meanwhile, is scored
    beside it (concurrent_studies, default 2) and done while the large one is still being
    scored; the queue gauge counts the studies being processed as it happens."""
    large_uid = str(pydicom.dcmread(next((sts019 / "image").iterdir()), stop_before_pixels=True).StudyInstanceUID)
    small_study = data_dir / "ct-rtstruct" / "STS_025"
    small_uid = str(pydicom.dcmread(small_study / "mask" / "RS.dcm").StudyInstanceUID)
    large = tmp_path / "large"
    shutil.copytree(sts019 / "image", large / "image")
    _many_lesions(sts019, large / "mask", 100)
    assert service.storescu(large).returncode == 0
    wait_until(lambda: service.study_state(large_uid) == "processing", 120, "the large study to be processed")
    assert service.metric("rcds_queue_depth", state="processing") == 1
    assert service.storescu(small_study).returncode == 0
    wait_until(lambda: service.study_state(small_uid) == "done", 120, "the small study to be done")
    assert service.study_state(large_uid) == "processing"  # still scoring its 100 lesions
    state, detail = service.wait_for(large_uid, timeout_s=300)
    assert state == "done", detail
    assert service.metric("rcds_queue_depth", state="processing") == 0
