"""The scoring core: lesion measures, radiomics, signatures, patient aggregates, gRPC service."""
