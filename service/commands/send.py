"""`radiomics-cds send`: files or folders to a DICOM peer (C-STORE), with TLS if asked."""

from __future__ import annotations

import argparse
import sys

from service.commands._progress import terminal_progress
from service.exit_codes import ExitCode
from service.outputs.pacs import dicom_files, send_files
from service.tls import ClientTls


def run(args: argparse.Namespace) -> int:
    tls = ClientTls(args.tls_ca_file, args.tls_cert_file, args.tls_key_file,
                    names=("--tls-ca-file", "--tls-cert-file", "--tls-key-file")) if args.tls else None
    if tls is not None:
        tls.context()  # unusable certificate or key files: say so before reading any DICOM file
    files = dicom_files(args.paths)
    progress = terminal_progress("sent", "files")
    report = send_files(files, args.host, args.port, args.aet, args.calling_aet, tls=tls,
                        on_progress=progress.update if progress else None)
    print(f"sent {report.sent} of {len(files)} files to {args.aet} at {args.host}:{args.port}")
    for failure in report.failed:
        print(f"failed: {failure}", file=sys.stderr)
    return ExitCode.FAILED if report.failed else ExitCode.OK
