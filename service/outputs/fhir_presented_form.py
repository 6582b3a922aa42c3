"""The tumour-board summary for the EHR: the DiagnosticReport's presentedForm (README, "Tumour-board summary").

R4B Attachment rules (what fhir.resources' R4B model documents): `data` is the PDF in base64,
`size` its length in bytes before encoding, `hash` the base64 of its SHA-1 digest, so an EHR can
check what it stored against what we sent. `creation` is the study's date, not the wall
clock's, so identical inputs give a byte-identical Bundle.
"""

from __future__ import annotations

import base64
import hashlib

from fhir.resources.R4B.attachment import Attachment

PDF_TITLE = "radiomics-cds tumour board summary (decision support, not a diagnosis)"


def pdf_attachment(pdf: bytes, creation: str | None) -> Attachment:
    """The summary PDF as an Attachment; `creation` a FHIR date (the study's) or None."""
    return Attachment(
        contentType="application/pdf",
        data=base64.b64encode(pdf),  # pydantic Base64Bytes: takes the encoded form
        size=len(pdf),
        hash=base64.b64encode(hashlib.sha1(pdf).digest()),
        title=PDF_TITLE,
        creation=creation,  # type: ignore[arg-type]  # a FHIR dateTime string, parsed by pydantic
    )
