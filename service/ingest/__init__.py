"""DICOM reception: Storage SCP, durable spool, index and study completeness."""
