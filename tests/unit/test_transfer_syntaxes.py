"""Which transfer syntaxes the listener accepts for images, and handle_store's own refusal.

The expected sets are the standard's: the lossless syntaxes of PS3.5 that the pinned decoders
(pylibjpeg with libjpeg and openjpeg, pydicom's own RLE and uncompressed readers) decode, and
none of the lossy ones, although those are decodable too.
"""

from __future__ import annotations

import types
from pathlib import Path

import pydicom
import pytest
from pydicom import uid
from pynetdicom import ALL_TRANSFER_SYNTAXES

from service.ingest.index import StudyIndex
from service.ingest.receive import ReceiveDirectory
from service.ingest.scp import STATUS_CANNOT_UNDERSTAND, StorageHandlers, build_ae
from service.ingest.spool import Spool
from service.sop_classes import CT_IMAGE, ENHANCED_CT_IMAGE, RT_STRUCTURE_SET, SEGMENTATION, SPATIAL_REGISTRATION
from service.transfer_syntaxes import can_decode, image_transfer_syntaxes

pytestmark = pytest.mark.filterwarnings("ignore:The value length")  # STS StudyID is 17 chars

# Lossless (PS3.5 Annex A) and decodable with the pinned plugins.
EXPECTED = {
    uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian, uid.JPEGLossless, uid.JPEGLosslessSV1, uid.JPEGLSLossless, uid.JPEG2000Lossless,
    uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL, uid.RLELossless,
}
LOSSY = {uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLSNearLossless, uid.JPEG2000, uid.HTJ2K}


def test_images_are_accepted_in_the_lossless_syntaxes_we_decode_and_no_other():
    assert set(image_transfer_syntaxes()) == EXPECTED
    assert all(can_decode(syntax) for syntax in LOSSY)  # decodable, and still refused: lossy


def test_presentation_contexts_follow_the_policy():
    contexts = {context.abstract_syntax: set(context.transfer_syntax)
                for context in build_ae("RADIOMICS_CDS", 1).supported_contexts}
    for image_class in (CT_IMAGE, ENHANCED_CT_IMAGE, SEGMENTATION):
        assert contexts[image_class] == EXPECTED
    for other_class in (RT_STRUCTURE_SET, SPATIAL_REGISTRATION):  # no pixel data to decode
        assert contexts[other_class] == set(ALL_TRANSFER_SYNTAXES)


@pytest.fixture
def handlers(tmp_path: Path):
    index = StudyIndex(tmp_path / "index.sqlite")
    yield StorageHandlers(Spool(tmp_path / "spool"), index, ReceiveDirectory(tmp_path / "receiving"))
    index.close()


def _received(dataset: pydicom.Dataset, target: Path) -> types.SimpleNamespace:
    """The event pynetdicom would hand handle_store for `dataset` received into `target`.

    A fake event: the negotiated contexts never let a real peer send an image in a syntax we
    do not accept, so only a stand-in can reach handle_store's own check (defence in depth)."""
    dataset.save_as(target, enforce_file_format=True)
    return types.SimpleNamespace(dataset_path=str(target))


def test_handle_store_refuses_an_image_in_a_syntax_we_do_not_accept(handlers, sts019, tmp_path):
    ct = pydicom.dcmread(sorted((sts019 / "image").iterdir())[0])
    ct.compress(uid.JPEGLSNearLossless, jls_error=2)  # decodable, but lossy
    response = handlers.handle_store(_received(ct, tmp_path / "in.dcm"))
    assert response.Status == STATUS_CANNOT_UNDERSTAND
    assert response.ErrorComment == "image transfer syntax not accepted: 1.2.840.10008.1.2.4.81"
    assert handlers.index.study(str(ct.StudyInstanceUID)) is None  # nothing indexed


def test_handle_store_takes_an_rtstruct_in_any_syntax(handlers, sts019, tmp_path):
    rtstruct = pydicom.dcmread(sts019 / "mask" / "RS.dcm")
    rtstruct.file_meta.TransferSyntaxUID = uid.JPEGLSNearLossless  # no pixel data: nothing lossy
    assert handlers.handle_store(_received(rtstruct, tmp_path / "in.dcm")) == 0x0000
