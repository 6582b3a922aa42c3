"""radiomics-cds: imaging biomarkers for immunotherapy and radiotherapy decision support."""

import os

__version__ = "0.1.0"

# OpenBLAS single-threaded unless the environment says otherwise; set here, before anything
# imports numpy, because OpenBLAS reads it once when it loads. Its only work here is small
# dense algebra (e.g. the eigenvalues of pyradiomics' GLCM MCC, Ng x Ng per direction), where
# its threads do not help, and on a busy machine they spin waiting for each other: the full
# panel of a 1.7 mL lung lesion took 1.0-2.6 s with OpenBLAS' default threads and 0.35-0.43 s
# with one. Parallelism comes from scorer workers and processes, one lesion each.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
