"""The SOP classes we accept, in one place (SCP contexts, completeness and loading use them)."""

from pydicom.uid import UID

CT_IMAGE = UID("1.2.840.10008.5.1.4.1.1.2")
ENHANCED_CT_IMAGE = UID("1.2.840.10008.5.1.4.1.1.2.1")
RT_STRUCTURE_SET = UID("1.2.840.10008.5.1.4.1.1.481.3")
SEGMENTATION = UID("1.2.840.10008.5.1.4.1.1.66.4")
# LABELMAP SEGs (one frame holds every segment, a pixel's value is its segment number) have a
# SOP class of their own (PS3.4 B.5, added with SegmentationType LABELMAP in 2024); highdicom
# writes them under it.
LABEL_MAP_SEGMENTATION = UID("1.2.840.10008.5.1.4.1.1.66.7")
# A follow-up's mapping from a prior's Frame of Reference (service.spatial_registration): stored
# with its study, neither CT nor contours, so completeness and input selection pass it by.
SPATIAL_REGISTRATION = UID("1.2.840.10008.5.1.4.1.1.66.1")

CT_SOP_CLASSES = frozenset({CT_IMAGE, ENHANCED_CT_IMAGE})
SEGMENTATION_SOP_CLASSES = frozenset({SEGMENTATION, LABEL_MAP_SEGMENTATION})
CONTOUR_SOP_CLASSES = frozenset({RT_STRUCTURE_SET}) | SEGMENTATION_SOP_CLASSES
STORAGE_SOP_CLASSES = CT_SOP_CLASSES | CONTOUR_SOP_CLASSES | {SPATIAL_REGISTRATION}
# The classes with pixel data, which we must decode: accepted only in decodable lossless
# transfer syntaxes (service.transfer_syntaxes); an RTSTRUCT or a registration is accepted in any.
IMAGE_SOP_CLASSES = CT_SOP_CLASSES | SEGMENTATION_SOP_CLASSES


def sop_class_name(uid: object) -> str:
    """A SOP class for a user-facing message: its standard name, never the UID itself (a private
    class's UID is under a vendor's or a site's root, and messages carry no UIDs)."""
    text = str(uid or "")
    name = UID(text).name
    return name if name != text else "a private or unknown SOP Class"  # pydicom names only the standard's
