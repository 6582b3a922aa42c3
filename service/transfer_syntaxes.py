"""Which transfer syntaxes we accept for images: lossless ones whose pixel data we can decode.

A listener that acknowledges an image it cannot decode turns a sender's retry into a failed
study hours later. So the listener offers, for image SOP classes, only the syntaxes that
pydicom can decode with the decoders installed now (asked of pydicom at start-up, so the list
follows the installed plugins instead of drifting from them), and of those only the lossless
ones: radiomics texture features change under lossy compression, and a CD8 score computed on
a lossily compressed CT is not the score the signature was built on. A sender with a lossy or
undecodable syntax then finds no accepted presentation context and converts (most PACS send
Explicit VR Little Endian then) or reports the failure; nothing is acknowledged and lost.
"""

from __future__ import annotations

import functools

from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pynetdicom import ALL_TRANSFER_SYNTAXES

# Lossless by definition in PS3.5 Annex A / PS3.6: the decoded pixels are the sent pixels.
# (JPEG 2000 .4.91, JPEG-LS .4.81, JPEG baseline/extended .4.50/.4.51, HTJ2K .4.203, MPEG/HEVC
# video and JPEG XL recompression may be lossy, so they are not here.)
LOSSLESS_TRANSFER_SYNTAXES = frozenset({
    uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian, uid.JPEGLossless, uid.JPEGLosslessSV1, uid.JPEGLSLossless,
    uid.JPEG2000Lossless, uid.JPEG2000MCLossless, uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL,
    uid.RLELossless,
    uid.UID("1.2.840.10008.1.2.4.110"),  # JPEG XL Lossless (no pydicom 3.0 decoder yet)
    uid.UID("1.2.840.10008.1.2.8.1"),  # Deflated Image Frame Compression (likewise)
})


def can_decode(transfer_syntax: str) -> bool:
    """Whether pydicom can decode pixel data in `transfer_syntax` with what is installed."""
    try:
        return get_decoder(transfer_syntax).is_available
    except NotImplementedError:  # pydicom has no decoder for this syntax at all (video, JPEG XL)
        return False


@functools.cache
def image_transfer_syntaxes() -> tuple[uid.UID, ...]:
    """The syntaxes accepted for images (CT, Enhanced CT, SEG): lossless and decodable now,
    in pynetdicom's order. Computed once: the installed decoders do not change while we run."""
    return tuple(uid.UID(syntax) for syntax in ALL_TRANSFER_SYNTAXES
                 if syntax in LOSSLESS_TRANSFER_SYNTAXES and can_decode(syntax))


def transfer_syntax_of(dataset: Dataset) -> uid.UID | None:
    """The (0002,0010) Transfer Syntax UID a dataset was read in; None for one built in memory."""
    file_meta = getattr(dataset, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    return uid.UID(str(syntax)) if syntax else None
